"""Large captures read in a second process: the same items as serially, started at the call."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rolecall.probes.errors import InputError
from rolecall.probes.passive.pcap.read import PcapSettings, read_pcap, read_serially
from rolecall.probes.passive.worker import WorkerItems
from rolecall.probes.records import ReadWarning, SmtpTransaction
from tests.cli_helpers import run_cli
from tests.data_paths import CONFORMANCE
from tests.pcap_helpers import session, smtp_turns, write_pcap
from tests.test_zeek_worker import _children

SERIAL = PcapSettings(worker_min_bytes=None)
IN_WORKER = PcapSettings(worker_min_bytes=0)


def _mail_capture(path: Path, sessions: int, body: int) -> Path:
    """``sessions`` SMTP sessions from distinct clients, each one message of ``body`` bytes."""
    text = "".join(f"line {n} of a long message\n" for n in range(body // 26 + 1))
    packets = []
    for n in range(sessions):
        turns = smtp_turns(
            (f"EHLO c{n}\n", "250 ok\n"),
            ("MAIL FROM:<a@b.example>\n", "250 ok\n"),
            (f"RCPT TO:<u{n}@d.example>\n", "250 ok\n"),
            ("DATA\n", "354 go\n"),
            (f"Subject: part {n}\n\n{text}.\n", "250 queued\n"),
            ("QUIT\n", "221 bye\n"),
        )
        client = f"10.0.{n // 200}.{n % 200 + 1}"
        packets += session(turns, client=client, start=1_700_000_000.0 + n).packets
    packets.sort(key=lambda packet: packet[0])
    return write_pcap(path, packets)


@pytest.mark.parametrize("case", ["smtp-basic", "smtp-starttls", "socks-trace1", "socks-auth"])
def test_conformance_captures_read_the_same_in_a_worker(case: str) -> None:
    path = CONFORMANCE / case / "trace.pcap"
    in_worker = read_pcap(path, IN_WORKER)
    assert isinstance(in_worker, WorkerItems)
    assert list(in_worker) == list(read_pcap(path, SERIAL))


def test_a_damaged_capture_warns_the_same_in_a_worker(tmp_path: Path) -> None:
    full = _mail_capture(tmp_path / "full.pcap", 3, 20_000).read_bytes()
    path = tmp_path / "cut.pcap"
    path.write_bytes(full[:-700])  # ends inside a packet
    serial = list(read_pcap(path, SERIAL))
    assert list(read_pcap(path, IN_WORKER)) == serial
    assert any(isinstance(i, ReadWarning) and "ends inside" in i.message for i in serial)


def test_an_unreadable_capture_says_so_as_the_serial_reader_does(tmp_path: Path) -> None:
    path = tmp_path / "notes.pcap"
    path.write_text("not a capture at all\n")
    with pytest.raises(InputError) as serial:
        list(read_pcap(path, SERIAL))
    with pytest.raises(InputError) as in_worker:
        list(read_pcap(path, IN_WORKER))
    assert str(in_worker.value) == str(serial.value)
    assert "unknown magic" in str(serial.value)


def test_the_worker_starts_at_the_call_and_close_ends_it(tmp_path: Path) -> None:
    path = _mail_capture(tmp_path / "mail.pcap", 2, 5_000)
    before = _children()
    items = read_pcap(path, IN_WORKER)
    assert _children() - before  # running before anything is asked of it
    assert isinstance(items, WorkerItems)
    items.close()
    assert _children() == before
    items = read_pcap(path, IN_WORKER)
    assert isinstance(items, WorkerItems)
    assert next(items) is not None
    items.close()
    assert _children() == before


def test_a_large_capture_ingests_through_the_worker(
    capsys: pytest.CaptureFixture[str], db_path: Path, tmp_path: Path
) -> None:
    """Past the threshold `ingest pcap` reads in a second process and stores every record."""
    path = _mail_capture(tmp_path / "large.pcap", 120, 300_000)
    threshold = PcapSettings().worker_min_bytes
    assert threshold is not None
    assert path.stat().st_size >= threshold
    expected = [i for i in read_serially(path, SERIAL) if isinstance(i, SmtpTransaction)]
    assert len(expected) == 120
    result = run_cli(capsys, "--db", str(db_path), "ingest", "pcap", str(path))
    assert result.code == 0, result.err
    with sqlite3.connect(db_path) as connection:
        stored = connection.execute("SELECT client, subject FROM smtp ORDER BY ts").fetchall()
    assert stored == [(t.client, t.subject) for t in sorted(expected, key=lambda t: t.ts)]
    again = run_cli(capsys, "--db", str(db_path), "ingest", "pcap", str(path))
    assert "1 already ingested, unchanged" in again.out


def test_iterating_a_worker_read_directly_keeps_it_alive() -> None:
    """`for item in read_pcap(...)` holds no name for the reader; the worker must not end."""
    path = CONFORMANCE / "smtp-basic" / "trace.pcap"
    expected = len(list(read_pcap(path, SERIAL)))
    assert sum(1 for _ in read_pcap(path, IN_WORKER)) == expected
    assert [type(i) for i in read_pcap(path, IN_WORKER)] == [
        type(i) for i in read_pcap(path, SERIAL)
    ]


def _slow_sparse() -> Iterator[int]:
    """A producer whose items come far apart, as a capture's records do."""
    yield 1
    time.sleep(0.5)
    yield 2
    time.sleep(3)
    yield 3


def test_sparse_items_are_handed_on_without_waiting_for_a_full_batch() -> None:
    """The caller takes Ctrl-C between items, so items must not wait long in the worker."""
    started = time.monotonic()
    items = WorkerItems(_slow_sparse, "a slow reader")
    try:
        assert [next(items), next(items)] == [1, 2]
        assert time.monotonic() - started < 2.5
        assert list(items) == [3]
    finally:
        items.close()
