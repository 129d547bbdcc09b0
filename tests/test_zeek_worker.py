"""Large conn logs parsed in a second process: the same items, in the same order, as serially."""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from functools import partial
from pathlib import Path

import pytest

from rolecall.probes.errors import InputError, ProbeError
from rolecall.probes.passive.worker import items_in_worker
from rolecall.probes.passive.zeek.records import ZeekSettings, read_zeek
from rolecall.probes.records import Flow, ReadWarning, SmtpTransaction, SocksRequest
from tests.test_zeek_conformance import CASES, unmasked
from tests.zeek_helpers import fields_of, gzip_copy, tsv_header, tsv_line, write_json

DAY = 1795392000  # 2026-11-23 00:00:00 UTC
SERIAL = ZeekSettings(worker_min_bytes=None)
IN_WORKER = ZeekSettings(worker_min_bytes=0)


def conn_row(n: int) -> dict[str, str]:
    """Connection ``n`` of a made-up day and a half: 40 clients, 7 servers, 3 services."""
    port, proto = [("53", "udp"), ("443", "tcp"), ("25", "tcp")][n % 3]
    return {
        "ts": f"{DAY + n * 37}.{n % 1000:06d}",
        "uid": f"C{n}",
        "id.orig_h": f"192.0.2.{n % 40 + 1}",
        "id.orig_p": str(40000 + n % 20000),
        "id.resp_h": f"198.51.100.{n % 7 + 1}",
        "id.resp_p": port,
        "proto": proto,
        "conn_state": ["SF", "S0", "REJ"][n % 3],
        "orig_pkts": str(n % 9 + 1),
        "resp_pkts": str(n % 5),
        "orig_ip_bytes": str(n % 900 + 60),
        "resp_ip_bytes": str(n % 1500),
        "tunnel_parents": "(empty)",
    }


def damaged_conn_log(path: Path) -> Path:
    """A conn log with bad lines, a second header with other columns mid-file, and JSON lines."""
    lines = [tsv_header("conn")]
    lines += [tsv_line("conn", conn_row(n)) for n in range(1500)]
    lines.append("192.0.2.1\tnot enough fields\n")  # line 1509
    lines.append(tsv_line("conn", conn_row(1500) | {"id.orig_h": "999.1.2.3"}))  # line 1510
    lines.append(tsv_line("conn", conn_row(1501) | {"ts": "yesterday"}))  # line 1511
    reordered = list(reversed(fields_of("conn")))
    lines.append(tsv_header("conn", fields=reordered))
    for n in range(1502, 3000):
        row = conn_row(n)
        lines.append("\t".join(row.get(name, "-") for name in reordered) + "\n")
    lines.append('{"ts": 1795478400.5, "id.orig_h": "192.0.2.1"}\n')  # JSON without resp fields
    lines.append("#close\t2026-11-25-00-00-00\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_a_damaged_conn_log_reads_the_same_in_a_worker(tmp_path: Path) -> None:
    path = damaged_conn_log(tmp_path / "conn.log")
    serial = list(read_zeek(path, SERIAL))
    assert list(read_zeek(path, IN_WORKER)) == serial
    warnings = [item for item in serial if isinstance(item, ReadWarning)]
    assert [w.where for w in warnings[:3]] == [f"{path}:{n}" for n in (1509, 1510, 1511)]
    assert "999.1.2.3" in warnings[1].message
    flows = [item for item in serial if isinstance(item, Flow)]
    assert sum(flow.connections for flow in flows) == 2998
    assert len(warnings) == 4  # the three bad lines and the JSON conn line without id.resp_h


def test_the_worker_reads_gzip_and_small_flow_caps_the_same(tmp_path: Path) -> None:
    path = gzip_copy(damaged_conn_log(tmp_path / "plain.log"), tmp_path / "conn.log.gz")
    serial = list(read_zeek(path, ZeekSettings(flow_cap=25, worker_min_bytes=None)))
    in_worker = list(read_zeek(path, ZeekSettings(flow_cap=25, worker_min_bytes=0)))
    assert in_worker == serial
    flows = [item for item in serial if isinstance(item, Flow)]
    assert sum(flow.connections for flow in flows) == 2998
    assert len(flows) > len({(f.client, f.server, f.server_port, f.day) for f in flows})


def test_a_conn_log_named_otherwise_is_known_by_its_path_header(tmp_path: Path) -> None:
    path = damaged_conn_log(tmp_path / "connections-today.txt")
    assert list(read_zeek(path, IN_WORKER)) == list(read_zeek(path, SERIAL))


@pytest.mark.parametrize("case", CASES)
def test_conformance_logs_come_back_whole_from_a_worker(case: str, tmp_path: Path) -> None:
    path = unmasked(case, tmp_path)
    settings = ZeekSettings(keep_passwords=True)
    produce = partial(read_zeek, path, settings)
    in_worker = list(items_in_worker(produce, str(path)))
    assert in_worker == list(read_zeek(path, settings))
    assert any(isinstance(item, SmtpTransaction | SocksRequest) for item in in_worker)


def test_a_json_conn_log_reads_the_same_in_a_worker(tmp_path: Path) -> None:
    rows = [
        {k: v for k, v in conn_row(n).items() if k != "tunnel_parents"} | {"_path": "conn"}
        for n in range(500)
    ]
    path = write_json(tmp_path / "conn.json", rows)
    serial = list(read_zeek(path, SERIAL))
    assert list(read_zeek(path, IN_WORKER)) == serial
    assert sum(item.connections for item in serial if isinstance(item, Flow)) == 500


def test_an_unreadable_log_says_so_as_the_serial_reader_does(tmp_path: Path) -> None:
    folder = tmp_path / "conn.log"
    folder.mkdir()  # a log that is a directory: open() fails in the worker
    with pytest.raises(InputError) as serial:
        list(read_zeek(folder, SERIAL))
    with pytest.raises(InputError) as in_worker:
        list(read_zeek(folder, IN_WORKER))
    assert str(in_worker.value) == str(serial.value)
    assert str(folder) in str(in_worker.value)


def _dies() -> Iterator[int]:
    """A producer whose process ends without a word after one item."""
    yield 1
    os._exit(3)


def _fails() -> Iterator[int]:
    """A producer that fails after one item."""
    yield 1
    raise RuntimeError("disk on fire")


def test_a_worker_that_dies_or_fails_is_a_probe_error() -> None:
    with pytest.raises(ProbeError, match=r"ended unexpectedly \(exit status 3\)"):
        list(items_in_worker(_dies, "a log"))
    with pytest.raises(ProbeError, match="failed: RuntimeError: disk on fire"):
        list(items_in_worker(_fails, "a log"))


def _children() -> set[int]:
    """The process ids of this process's children."""
    found: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        found |= {int(pid) for pid in (task / "children").read_text().split()}
    return found


def test_stopping_early_ends_the_worker(tmp_path: Path) -> None:
    path = damaged_conn_log(tmp_path / "conn.log")
    before = _children()
    items = read_zeek(path, ZeekSettings(flow_cap=10, worker_min_bytes=0))
    assert isinstance(items, Generator)
    assert next(items) is not None
    assert _children() - before  # the worker is running
    items.close()
    assert _children() == before
