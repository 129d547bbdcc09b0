"""Reading nmap XML safely and as a stream: hosts, names, open ports and services.

defusedxml refuses entity declarations and external references (XML bombs,
XXE); the document is read host by host so a large scan stays small in memory.
What one piece of markup (a tag with its attributes, or text) and one host may
hold is bounded, and the time taken stays linear in the size of the file: a
long tag is fed to the parser in chunks that double, since expat parses an
unfinished tag again from its start at each feed. A host whose address or a
port whose number is not one is a warning naming it; the other hosts are kept.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Final
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from rolecall.probes.errors import InputError
from rolecall.probes.field_values import ip_address, port_number
from rolecall.probes.records import HostName, Item, Observation, ReadWarning, Record, Service
from rolecall.terminal_text import terminal_safe

READ_SIZE: Final = 1 << 16
"""Bytes read at a time (a pipe may give fewer: each read is parsed at once)."""
MAX_MARKUP: Final = 32 << 20
"""Bytes of one tag with its attributes, or of one text, past which a document is refused."""
MAX_HOST_ELEMENTS: Final = 1_000_000
"""Elements in one <host> (or between two), past which a document is refused."""
MAX_TEXT: Final = 4096
"""Characters kept of a banner, product, version or other attribute (the rest is cut)."""
MAX_NAME: Final = 255
"""Characters kept of a host name (DNS names are shorter)."""
_MAX_ERROR: Final = 200  # characters of nmap's own error message repeated


class _Events:
    """A parser target building elements and noting each start and end with its line."""

    def __init__(self) -> None:
        self.builder = TreeBuilder()
        self.events: list[tuple[str, Element, int]] = []
        self.line: Callable[[], int] = lambda: 0

    def start(self, tag: str, attrs: dict[str, str]) -> Element:
        """Begin an element (and note it)."""
        element = self.builder.start(tag, attrs)
        self.events.append(("start", element, self.line()))
        return element

    def end(self, tag: str) -> Element:
        """End an element (and note it)."""
        element = self.builder.end(tag)
        self.events.append(("end", element, self.line()))
        return element

    def data(self, text: str) -> None:
        """Text inside the current element."""
        self.builder.data(text)

    def close(self) -> Element:
        """The root element, once the document is complete."""
        return self.builder.close()


def _events(stream: IO[bytes], where: str) -> Iterator[tuple[str, Element, int]]:
    """Yield (event, element, line) for each start and end tag, reading at most what is bounded."""
    target = _Events()
    parser = DefusedXMLParser(target=target)
    expat = parser.parser
    target.line = lambda: int(expat.CurrentLineNumber)
    waiting = bytearray()
    unfinished = 0  # bytes fed since the last complete tag
    while True:
        data = stream.read(READ_SIZE)
        waiting += data
        # Inside a long tag, feed only once what waits doubles what expat will parse again.
        long_tag = unfinished > READ_SIZE and unfinished + len(waiting) <= MAX_MARKUP
        if data and long_tag and len(waiting) < unfinished:
            continue
        if waiting:
            parser.feed(bytes(waiting))
            unfinished = 0 if target.events else unfinished + len(waiting)
            waiting.clear()
        if unfinished > MAX_MARKUP:
            raise InputError(
                f"{where}: line {expat.CurrentLineNumber}: a tag or text longer than"
                f" {MAX_MARKUP >> 20} MiB (refused)"
            )
        yield from target.events
        target.events.clear()
        if not data:
            break
    parser.close()
    yield from target.events


def read_nmap_xml(stream: IO[bytes], where: str, source: str) -> Iterator[Item]:
    """Yield the records of an nmap XML document, and warnings for the values refused.

    InputError names where the document cannot be read on.
    """
    for host in _guarded_hosts(stream, where, source, None):
        yield from host


def read_nmap_hosts(
    stream: IO[bytes],
    where: str,
    source: str,
    progress: Callable[[str, float], None] | None = None,
) -> Iterator[list[Record]]:
    """Yield each <host>'s records (none for a host down) as soon as the host is read.

    progress, if given, hears each <taskprogress> (nmap --stats-every): task and percent.
    A host or port with a value that is not what its field says is left out (nmap's
    own output never has one; read_nmap_xml warns of each).
    """
    for host in _guarded_hosts(stream, where, source, progress):
        yield [item for item in host if not isinstance(item, ReadWarning)]


def _guarded_hosts(
    stream: IO[bytes],
    where: str,
    source: str,
    progress: Callable[[str, float], None] | None,
) -> Iterator[list[Item]]:
    """The hosts of a document; a document that cannot be parsed on is one InputError."""
    try:
        yield from _hosts(stream, where, source, progress)
    except DefusedXmlException:
        raise InputError(
            f"{where}: refused XML with entity declarations or external references"
            " (an XML bomb or external entity)"
        ) from None
    except ParseError as exc:
        line, column = exc.position
        raise InputError(f"{where}: not well-formed XML at line {line}, column {column}") from None


def _hosts(
    stream: IO[bytes],
    where: str,
    source: str,
    progress: Callable[[str, float], None] | None,
) -> Iterator[list[Item]]:
    """Walk the document host by host, freeing each top-level element once read."""
    root: Element | None = None
    started = datetime.now(UTC)
    depth = held = host_line = 0
    for event, element, line in _events(stream, where):
        if event == "start":
            depth += 1
            held += 1
            if held > MAX_HOST_ELEMENTS:
                raise InputError(
                    f"{where}: line {line}: more than {MAX_HOST_ELEMENTS} elements in one host"
                    " (refused)"
                )
            if element.tag == "host":
                host_line = line
            if root is None:
                root = element
                if element.tag != "nmaprun":
                    tag = element.tag[:80]  # an XML name: no controls, no spaces
                    raise InputError(f"{where}: not an nmap XML file (root element <{tag}>)")
                started = _timestamp(element.get("start"), started)
            continue
        depth -= 1
        if element.tag == "host":
            yield list(_host_records(element, source, started, f"{where}:{host_line}"))
        elif element.tag == "taskprogress" and progress is not None:
            progress(element.get("task", ""), _percent(element.get("percent")))
        elif element.tag == "finished" and element.get("exit") == "error":
            message = terminal_safe(element.get("errormsg", "unknown error")[:_MAX_ERROR])
            raise InputError(f"{where}: nmap reported an error: {message}")
        if depth == 1 and root is not None:
            root.clear()
            held = 0


def _percent(value: str | None) -> float:
    """Parse a <taskprogress> percent, 0 if it is not a number from 0 to 100."""
    try:
        percent = float(value or "")
    except ValueError:
        return 0.0
    return percent if 0.0 <= percent <= 100.0 else 0.0


def _timestamp(value: str | None, fallback: datetime) -> datetime:
    """Parse an nmap epoch-seconds attribute, or return fallback."""
    try:
        return datetime.fromtimestamp(int(value or ""), UTC)
    except (ValueError, OverflowError, OSError):
        return fallback


def _host_records(host: Element, source: str, started: datetime, where: str) -> Iterator[Item]:
    """Records for one <host>: up, names, open ports and services; warnings for bad values."""
    status = host.find("status")
    if status is None or status.get("state") != "up":
        return
    try:
        address = _address(host)
    except ValueError as exc:
        yield ReadWarning(where, f"host skipped: {exc}")
        return
    if address is None:
        return
    seen = _timestamp(host.get("endtime") or host.get("starttime"), started)
    yield Observation(address, "host-up", source, seen, value=_text(status, "reason"))
    for hostname in host.iterfind("hostnames/hostname"):
        if name := hostname.get("name", "")[:MAX_NAME]:
            yield HostName(address, name, source, seen)
    for port in host.iterfind("ports/port"):
        try:
            yield from _port_records(address, port, source, seen)
        except ValueError as exc:
            yield ReadWarning(where, f"port of {address} skipped: {exc}")


def _address(host: Element) -> str | None:
    """The host's IP address (IPv4 or IPv6) in canonical form, ignoring MAC addresses.

    ValueError if the address nmap gives is not one.
    """
    for element in host.iterfind("address"):
        if element.get("addrtype") in {"ipv4", "ipv6"}:
            return ip_address(element.get("addr", ""), "address")
    return None


def _text(element: Element, name: str) -> str:
    """An attribute's value, cut to MAX_TEXT characters ("" if absent)."""
    return element.get(name, "")[:MAX_TEXT]


def _port_records(address: str, port: Element, source: str, seen: datetime) -> Iterator[Record]:
    """Records for one open <port>; closed and filtered ports say nothing about a role.

    ValueError if its number is not a port.
    """
    state = port.find("state")
    if state is None or state.get("state") != "open":
        return
    number = port_number(port.get("portid", ""), "portid")
    transport = _text(port, "protocol") or "tcp"
    service = port.find("service")
    name = _text(service, "name") if service is not None else ""
    yield Observation(
        address,
        "port-open",
        source,
        seen,
        port=number,
        transport=transport,
        value=name,
        detail=json.dumps({"reason": _text(state, "reason")}),
    )
    # A name from nmap's port table is a guess from the number, not what the port speaks.
    probed = service is not None and service.get("method") == "probed"
    attrs = {key: _text(service, key) for key in service.attrib} if service is not None else {}
    product, version = attrs.get("product", ""), attrs.get("version", "")
    if probed:
        described = " ".join(part for part in (name, product, version) if part)
        yield Observation(
            address,
            "service",
            source,
            seen,
            port=number,
            transport=transport,
            value=described,
            detail=json.dumps(attrs),
        )
    yield Service(
        address,
        number,
        transport,
        source,
        seen,
        protocol=name if probed else "",
        product=product,
        version=version,
        banner=_script_output(port, "banner"),
    )


def _script_output(port: Element, script_id: str) -> str:
    """The output of one NSE script on a port (cut to MAX_TEXT), or an empty string."""
    for script in port.iterfind("script"):
        if script.get("id") == script_id:
            return _text(script, "output")
    return ""


def read_nmap_xml_file(path: Path) -> Iterator[Item]:
    """Yield the records (and warnings) of an nmap XML file; InputError if it cannot be read."""
    try:
        handle = path.open("rb")
        empty = path.stat().st_size == 0
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        if empty:
            raise InputError(f"{path}: empty file, not an nmap XML file")
        yield from read_nmap_xml(handle, str(path), "nmap-xml")
