"""SMTP transcript (both directions of one connection) -> one record per mail transaction.

Follows Zeek's smtp.log: a transaction is logged when the server answers the end
of its data (or BDAT LAST), when a new MAIL starts before that, at RSET, at
STARTTLS (``tls`` true; nothing after it can be read) and at the end of the
connection. Client commands are queued and matched to replies in order, which
is what makes PIPELINING work. Header values are kept as sent (Zeek does not
decode RFC 2047 encoded words either). Recipients the server refused are in
``refused_rcpt`` and each refusal is also an Observation "smtp-rcpt-refused"
(value: the recipient) whose detail holds the server and its reply.

RFC 3030 CHUNKING: a ``BDAT n [LAST]`` chunk is never buffered; its n bytes are
counted down as they pass (they may be binary, cross packets, or be followed at
once by pipelined commands) and only the bytes before the blank line ending the
message headers go to the header reader, whose state carries over from one chunk
of a message to the next. A chunk the connection ends inside (a size such as 2^63
announces more than any stream carries) is one warning; its transaction is kept.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final

from rolecall.probes.passive.pcap.stream import (
    LineSplitter,
    PcapSettings,
    StreamContext,
    detail,
    overlong_warning,
    stream_where,
    text,
    utc,
)
from rolecall.probes.records import Item, Observation, ReadWarning, SmtpTransaction

HEADERS: Final = frozenset(
    {
        b"subject",
        b"from",
        b"to",
        b"date",
        b"message-id",
        b"x-mailer",
        b"user-agent",
        b"x-user-agent",
    }
)
MAX_QUEUE: Final = 1000
ARG_VERBS: Final = frozenset({"HELO", "EHLO", "LHLO", "MAIL", "RCPT", "BDAT"})
MAX_RCPT: Final = 1000
MAX_SIZE_DIGITS: Final = 30  # a BDAT size longer than this is counted as 10**30 bytes
SMTP_VERBS: Final = frozenset(
    {"EHLO", "HELO", "LHLO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT", "VRFY"}
    | {"EXPN", "HELP", "STARTTLS", "AUTH", "XCLIENT", "XFORWARD", "ETRN", "TURN"}
)


def mail_address(arg: str) -> str:
    """Return the address of a MAIL FROM:/RCPT TO: argument, without <> or ESMTP parameters."""
    value = arg.split(":", 1)[1].strip() if ":" in arg else arg.strip()
    if value.startswith("<") and ">" in value:
        return value[1 : value.index(">")]
    return value.split(" ", 1)[0].strip("<>")


def reply_text(line: bytes) -> str:
    """Render a reply line the way Zeek's last_reply shows it: code, a space, the text."""
    return text(line[:3] + b" " + line[4:]).rstrip() if line else ""


def _until_blank_line(data: bytes) -> tuple[bytes, bytes]:
    """Split message data after the blank line ending its headers (if this chunk has it)."""
    ends = [i + n for i, n in ((data.find(b"\n\r\n"), 3), (data.find(b"\n\n"), 2)) if i >= 0]
    if not ends:
        return data, b""
    cut = min(ends)
    return data[:cut], data[cut:]


def _data_end(buf: bytes, start: int, stop: int) -> int | None:
    """Where the bytes after the first end-of-data line starting in [start, stop) of ``buf`` begin.

    -1 if such a line may be completed by the next bytes, None if there is none.
    """
    end = buf.find(b"\n.", start, stop + 1)
    while end >= 0:
        after = buf[end + 2 : end + 4]
        if after == b"\r\n" or after[:1] == b"\n":
            return end + (4 if after == b"\r\n" else 3)
        if len(after) < 2 and after != b".":
            return -1  # the line may end in the next chunk
        end = buf.find(b"\n.", end + 2, stop + 1)
    return None


@dataclass(slots=True)
class _Txn:
    """The transaction being assembled."""

    ts: float
    mail_from: str = ""
    rcpt: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    headers: dict[bytes, str] = field(default_factory=dict)
    last_reply: bytes = b""  # the raw reply line, rendered when the transaction is logged
    tls: bool = False
    active: bool = False
    depth: int = 0
    chunked: bool = False  # a BDAT chunk of it was seen: its headers are being read from chunks


class SmtpStream:
    """Parser of one SMTP connection; see the module docstring for what it logs."""

    def __init__(self, ctx: StreamContext, settings: PcapSettings) -> None:
        """Start before the banner, in command mode."""
        self.ctx = ctx
        self.max_line = settings.max_line
        self.done = False
        self.client_lines = LineSplitter(settings.max_line)
        self.server_lines = LineSplitter(settings.max_line)
        self.queue: deque[tuple[str, str, _Txn | None]] = deque()
        self.mode = "cmd"  # cmd | data | body | bdat
        self.bdat_left = 0  # bytes of the current chunk still to come
        self.bdat_size = ""  # the current chunk's size as announced, for the warning
        self.bdat_last = False
        self.chunk_txn: _Txn | None = None  # the transaction the current chunk belongs to
        self.header_lines = LineSplitter(settings.max_line)  # header lines of BDAT chunks
        self.data_lines = 0
        self.body_tail = b""
        self.in_headers = False
        self.header_name = b""
        self.confirmed = False
        self.helo = ""
        self.depth = 1
        self.txn: _Txn | None = None
        self.out: list[Item] = []

    # -- client side -------------------------------------------------------

    def feed(self, from_client: bool, data: bytes, ts: float) -> list[Item]:
        """Consume bytes of one direction; return transactions they complete."""
        if self.done:
            return []
        if from_client:
            splitter = self.client_lines
            if (
                self.mode == "cmd"
                and data.endswith(b"\r\n")
                and data.find(b"\n") == len(data) - 1
                and not splitter.buf
                and not splitter.discarding
                and len(data) <= self.max_line
            ):
                self._command(data[:-2], ts)  # the usual case: one whole command line
            else:
                pos = self._body(data, 0) if self.mode == "body" else 0
                if pos < len(data):
                    self._client(data, pos, ts)
        elif (
            data.endswith(b"\r\n")
            and data.find(b"\n") == len(data) - 1
            and not self.server_lines.buf
            and not self.server_lines.discarding
            and len(data) <= self.max_line
        ):
            self._reply(data[:-2], ts)  # the usual case: one whole reply line
        else:
            for line in self.server_lines.feed(data):
                self._reply(line, ts)
                if self.done:
                    break
        if not self.out:
            return []
        out, self.out = self.out, []
        return out

    def _client(self, data: bytes, pos: int, ts: float) -> None:
        """Route client bytes from ``pos`` on to the command, message or BDAT chunk reader."""
        splitter = self.client_lines
        # An offset, never a re-sliced rest: a feed of many short lines stays linear.
        while pos < len(data) and not self.done:
            if self.mode == "bdat":
                pos = self._chunk(data, pos)
                continue
            if self.mode == "body":
                pos = self._body(data, pos)
                continue
            if self.mode == "data" and not splitter.buf and not splitter.discarding:
                after = self._data_lines(data, pos)
                if after > pos:
                    pos = after
                    continue
            # One line at a time: what follows a line may be a chunk or a body, whose
            # bytes must reach their reader exactly as sent (binary, bare LF, long lines).
            nl = data.find(b"\n", pos)
            if 0 <= nl < pos + self.max_line and not splitter.buf and not splitter.discarding:
                # A whole line with nothing held before it: what the splitter would return.
                line = data[pos : nl - 1] if data[nl - 1 : nl] == b"\r" else data[pos:nl]
                pos = nl + 1
                if self.mode == "cmd":
                    self._command(line, ts)
                else:
                    self._data_line(line, self.txn)
                continue
            end = nl + 1 or len(data)
            for line in splitter.feed(data[pos:end]):
                if self.mode == "cmd":
                    self._command(line, ts)
                elif self.mode == "data":
                    self._data_line(line, self.txn)
            pos = end

    def _data_lines(self, data: bytes, pos: int) -> int:
        """Read the whole lines of DATA from ``pos`` while DATA lasts; return where they end.

        Lines as the splitter would give them (nothing is held before ``pos``), split at
        once; a line of ``max_line`` bytes or more is left to the splitter.
        """
        last = data.rfind(b"\n", pos)
        if last < 0:
            return pos
        txn = self.txn
        for part in data[pos:last].split(b"\n"):
            if len(part) >= self.max_line:
                break
            pos += len(part) + 1
            line = part[:-1] if part[-1:] == b"\r" else part
            if self.in_headers and txn is not None and line and line[0] not in b" \t.":
                # A header line that starts a header: what _data_line does with it, inline.
                self.data_lines += 1
                name, colon, value = line.partition(b":")
                if colon:
                    self.header_name = name = name.strip().lower()
                    if name in HEADERS and name not in txn.headers:
                        txn.headers[name] = value.strip().decode("utf-8", "backslashreplace")
                continue
            self._data_line(line, txn)
            if self.mode != "data":
                break
        return pos

    def _command(self, line: bytes, ts: float) -> None:
        """Handle one client command line."""
        verb_raw, _, arg_raw = line.partition(b" ")
        verb = verb_raw.decode("latin-1").upper()
        arg = arg_raw.decode("utf-8", "backslashreplace").strip() if verb in ARG_VERBS else ""
        if not self.confirmed:
            if verb not in SMTP_VERBS or verb in ("AUTH", "STARTTLS"):
                self.done = True  # a 220 banner but not SMTP (FTP, for one)
                return
            self.confirmed = True
        if verb in ("HELO", "EHLO", "LHLO"):
            self.helo = arg
        elif verb == "MAIL" and arg.upper().startswith("FROM:"):
            self._log()
            txn = self._current(ts)
            txn.mail_from, txn.active, txn.ts = mail_address(arg), True, ts
        elif verb == "RCPT" and arg.upper().startswith("TO:"):
            txn = self._current(ts)
            txn.active = True
            if len(txn.rcpt) < MAX_RCPT:
                txn.rcpt.append(mail_address(arg))
            self._queue("RCPT", txn.rcpt[-1] if txn.rcpt else "", txn)
            return
        elif verb == "DATA":
            self.mode, self.data_lines = "data", 0
            self.in_headers, self.header_name = True, b""
            self._current(ts)
        elif verb == "BDAT":
            self._bdat(arg, ts)
            return
        elif verb == "RSET":
            self._log()
        self._queue(verb, "")

    def _queue(self, verb: str, arg: str, txn: _Txn | None = None) -> None:
        """Remember a command awaiting its reply (bounded)."""
        if len(self.queue) >= MAX_QUEUE:
            self.queue.popleft()
        self.queue.append((verb, arg, txn))

    def _bdat(self, arg: str, ts: float) -> None:
        """Start a chunk: queue its reply, then count its bytes down (LAST ends the message)."""
        size, _, rest = arg.partition(" ")
        if not (size.isascii() and size.isdigit()):
            self._queue("BDAT?", "")  # refused by the server; no chunk can follow it
            return
        txn = self._current(ts)
        if not txn.chunked:
            txn.chunked, txn.active = True, True
            self.in_headers, self.header_name = True, b""
            self.header_lines.reset()
        reading = self.in_headers
        self.chunk_txn = txn
        self.bdat_last = rest.strip().upper() == "LAST"
        if self.bdat_last:
            self._seal("BDAT")  # pipelined commands after the chunk belong to the next one
        else:
            self._queue("CHUNK", "", txn)
        self.in_headers = reading
        self.bdat_size = size if len(size) <= MAX_SIZE_DIGITS else size[:MAX_SIZE_DIGITS] + "..."
        self.bdat_left = int(size) if len(size) <= MAX_SIZE_DIGITS else 10**MAX_SIZE_DIGITS
        if self.bdat_left:
            self.mode = "bdat"
        else:
            self._chunk_end()

    def _chunk(self, data: bytes, pos: int) -> int:
        """Count chunk bytes from ``pos`` down, reading headers; return where the chunk ends."""
        part = data[pos : pos + self.bdat_left]
        self.bdat_left -= len(part)
        if self.in_headers:
            head, _ = _until_blank_line(part)
            for line in self.header_lines.feed(head):
                self._header_line(line, self.chunk_txn)
                if not self.in_headers:
                    self.header_lines.reset()
                    break
        if not self.bdat_left:
            self._chunk_end()
        return pos + len(part)

    def _chunk_end(self) -> None:
        """A chunk is complete: back to commands; after the LAST one, the message is over."""
        self.mode = "cmd"
        self.client_lines.reset()
        if self.bdat_last:
            if self.in_headers and self.header_lines.buf:
                for line in self.header_lines.feed(b"\n"):  # a last header line without CRLF
                    self._header_line(line, self.chunk_txn)
            self.in_headers, self.chunk_txn = False, None
            self.header_lines.reset()

    def _seal(self, verb: str) -> None:
        """The message is complete: it waits for the server's answer, a new one may start."""
        txn = self.txn
        if txn is None:
            return
        txn.depth, self.depth = self.depth, self.depth + 1
        self.txn = _Txn(ts=txn.ts, last_reply=txn.last_reply)
        self.in_headers = False
        self._queue(verb, "", txn)

    def _data_line(self, line: bytes, txn: _Txn | None) -> None:
        """Handle one line of DATA while the headers are being read."""
        self.data_lines += 1
        if line == b".":
            self.mode = "cmd"
            self._seal(".")
            return
        if line.startswith(b"."):
            line = line[1:]
        self._header_line(line, txn)
        if not self.in_headers:
            self.mode, self.body_tail = "body", b"\r\n"

    def _header_line(self, line: bytes, txn: _Txn | None) -> None:
        """Collect the headers we log into ``txn``; the empty line ends them."""
        if not self.in_headers:
            return
        if not line:
            self.in_headers = False
            return
        if txn is None:
            return
        if line[:1] in (b" ", b"\t"):
            if self.header_name in txn.headers:
                joined = txn.headers[self.header_name] + " " + text(line.strip())
                txn.headers[self.header_name] = joined[: self.max_line]
            return
        name, colon, value = line.partition(b":")
        if not colon:
            return
        self.header_name = name.strip().lower()
        if self.header_name in HEADERS and self.header_name not in txn.headers:
            txn.headers[self.header_name] = text(value.strip())

    def _body(self, data: bytes, pos: int) -> int:
        """Skip message body bytes from ``pos`` up to the end-of-data line; return what follows."""
        tail = self.body_tail
        if data.find(b".", pos) < 0 and tail.find(b".") < 0:
            # no dot, no end marker (searching a dot is memchr-fast; "\n." is not)
            self.body_tail = (tail + data[max(pos, len(data) - 4) :])[-4:]
            return len(data)
        # A marker starting in the held tail is looked for in the tail and the next few
        # bytes, any other in ``data`` itself: nothing after ``pos`` is copied.
        edge = tail + data[pos : pos + 4]
        end, shift = _data_end(edge, 0, len(tail)), pos - len(tail)
        if end is None:
            end, shift = _data_end(data, pos, len(data)), 0
        if end is not None and end >= 0:
            self.mode = "cmd"
            self._seal(".")
            self.client_lines.reset()
            return max(pos, end + shift)
        self.body_tail = (tail + data[max(pos, len(data) - 4) :])[-4:]
        return len(data)

    # -- server side -------------------------------------------------------

    def _reply(self, line: bytes, ts: float) -> None:
        """Handle one reply line; the final line of a reply answers the oldest command."""
        code = line[:3]
        if line[3:4] == b"-" or len(code) < 3 or not code.isdigit():
            return  # a continuation line: the final line of the reply is what counts
        verb, arg, owner = self.queue.popleft() if self.queue else ("", "", None)
        txn = owner or self._current(ts)
        txn.last_reply = line
        status = int(code)
        if verb == "RCPT" and status >= 400 and arg in txn.rcpt:
            txn.rcpt.remove(arg)
            txn.refused.append(arg)
            self.out.append(
                Observation(
                    address=self.ctx.client,
                    kind="smtp-rcpt-refused",
                    source="pcap",
                    seen=utc(ts),
                    port=self.ctx.server_port,
                    transport="tcp",
                    value=arg,
                    detail=detail(
                        server=self.ctx.server,
                        reply=reply_text(line),
                        via_proxy=self.ctx.via_proxy,
                    ),
                )
            )
        elif verb == "DATA" and status >= 400 and self.mode == "data" and not self.data_lines:
            self.mode = "cmd"
        elif verb in (".", "BDAT") and owner is not None:
            self._emit(owner)
        elif verb == "STARTTLS" and status == 220:
            txn.tls = txn.active = True
            self._log()
            self.done = True

    # -- transactions ------------------------------------------------------

    def _current(self, ts: float) -> _Txn:
        """Return the transaction being assembled, starting one if needed."""
        if self.txn is None:
            self.txn = _Txn(ts=ts)
        return self.txn

    def _log(self) -> None:
        """Emit the current transaction if the client did anything in it, and start afresh."""
        txn = self.txn
        if txn is None or not (txn.active or txn.headers):
            return
        self.txn = _Txn(ts=txn.ts, last_reply=txn.last_reply)
        self.in_headers = False
        self._emit(txn)

    def _emit(self, txn: _Txn) -> None:
        """Append the record of one transaction to the output."""
        if not self.confirmed:
            return
        h = txn.headers
        agent = h.get(b"x-mailer") or h.get(b"user-agent") or h.get(b"x-user-agent") or ""
        to = tuple(a.strip() for a in h.get(b"to", "").split(",") if a.strip())
        self.out.append(
            SmtpTransaction(
                ts=utc(txn.ts),
                client=self.ctx.client,
                client_port=self.ctx.client_port,
                server=self.ctx.server,
                server_port=self.ctx.server_port,
                source="pcap",
                trans_depth=txn.depth or self.depth,
                helo=self.helo,
                mail_from=txn.mail_from,
                rcpt_to=tuple(txn.rcpt),
                refused_rcpt=tuple(txn.refused),
                subject=h.get(b"subject", ""),
                from_=h.get(b"from", ""),
                to=to,
                date=h.get(b"date", ""),
                msg_id=h.get(b"message-id", ""),
                user_agent=agent,
                last_reply=reply_text(txn.last_reply),
                tls=txn.tls,
                via_proxy=self.ctx.via_proxy,
            )
        )

    def gap(self, from_client: bool, size: int, ts: float) -> list[Item]:
        """Resynchronise after missing bytes: drop the partial line, stop reading headers."""
        if from_client:
            self.client_lines.reset()
            self.header_lines.reset()
            self.in_headers = False
            if self.mode == "bdat":
                self.bdat_left = max(0, self.bdat_left - size)
                if not self.bdat_left:
                    self._chunk_end()
        else:
            self.server_lines.reset()
        return []

    def finish(self, ts: float) -> list[Item]:
        """Connection over: log a transaction still open, and any cut lines."""
        if not self.done:
            for _, _, owner in self.queue:
                if owner is not None and owner.depth and owner is not self.txn:
                    self._emit(owner)
                    owner.depth = 0
            self._log()
        self.done = True
        cut = self.client_lines.overlong + self.server_lines.overlong + self.header_lines.overlong
        out, self.out = self.out, []
        if self.mode == "bdat" and self.bdat_left:
            out.append(self._unfinished_chunk())
        return out + overlong_warning(self.ctx, cut, self.max_line)

    def _unfinished_chunk(self) -> ReadWarning:
        """The warning for a BDAT chunk the connection ended inside (or the capture did)."""
        return ReadWarning(
            stream_where(self.ctx),
            f"a BDAT chunk announced as {self.bdat_size} bytes was {self.bdat_left} bytes "
            "short when the stream ended; the bytes after its command were read as the "
            "chunk and the transaction kept",
            traffic=True,
        )
