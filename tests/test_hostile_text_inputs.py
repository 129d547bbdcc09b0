"""Hostile nmap XML, Zeek and firewall logs: bounded, a warning per bad value, the rest kept."""

from __future__ import annotations

import json
import time
import tracemalloc
from pathlib import Path

import pytest

from rolecall.probes.nmap.xml import MAX_MARKUP, MAX_TEXT
from tests.cli_helpers import Result, run_cli
from tests.nmap_samples import HEAD, TAIL, host_xml
from tests.zeek_helpers import tsv_header, tsv_line, write_json, write_tsv

FW_LINE = (
    "2026-11-24T03:00:00+0000 gw kernel: RC-DENY IN=eth1 OUT=eth0 SRC={src} DST=203.0.113.9 "
    "LEN={length} TOS=0x00 TTL=63 ID=1 DF PROTO=TCP SPT=40000 DPT={port} WINDOW=64240 SYN URGP=0\n"
)
CONN = {
    "ts": "1795485410.5",
    "id.orig_h": "192.0.2.1",
    "id.orig_p": "40000",
    "id.resp_h": "198.51.100.2",
    "id.resp_p": "25",
    "proto": "tcp",
    "conn_state": "SF",
    "orig_pkts": "3",
    "orig_ip_bytes": "180",
    "resp_pkts": "2",
    "resp_ip_bytes": "120",
}
SMTP = {
    "ts": "1795485410.5",
    "id.orig_h": "192.0.2.1",
    "id.orig_p": "40000",
    "id.resp_h": "198.51.100.2",
    "id.resp_p": "25",
    "trans_depth": "1",
    "helo": "pc",
    "mailfrom": "a@example.org",
    "rcptto": "b@example.net",
    "last_reply": "250 OK",
}


def ingest(capsys: pytest.CaptureFixture[str], db: Path, kind: str, path: Path) -> Result:
    """Run `rolecall ingest KIND PATH` and check it spoke in sentences, never a traceback."""
    result = run_cli(capsys, "--db", str(db), "ingest", kind, str(path))
    assert "Traceback" not in result.err
    assert "internal error" not in result.err
    return result


def exported(capsys: pytest.CaptureFixture[str], db: Path, table: str) -> list[dict[str, object]]:
    """The rows of `rolecall export TABLE` as JSON."""
    result = run_cli(capsys, "--db", str(db), "export", table, "--format", "json")
    assert result.code == 0, result.err
    rows: list[dict[str, object]] = json.loads(result.out)
    return rows


def flow_clients(capsys: pytest.CaptureFixture[str], db: Path) -> set[object]:
    """The clients of every stored flow."""
    return {row["client"] for row in exported(capsys, db, "flows")}


def test_nmap_values_that_are_not_addresses_or_ports_are_warnings(
    capsys: pytest.CaptureFixture[str], db_path: Path, tmp_path: Path
) -> None:
    before = tmp_path / "before.xml"
    before.write_text(HEAD + host_xml("10.9.0.1", 25) + TAIL)
    assert ingest(capsys, db_path, "nmap-xml", before).code == 0
    hostile = tmp_path / "hostile.xml"
    hostile.write_text(
        HEAD
        + host_xml("10.9.0.2", 25)
        + host_xml("&lt;script&gt;alert(1)&lt;/script&gt;", 25)
        + host_xml("=HYPERLINK(&quot;http://x&quot;)", 25)
        + host_xml("10.9.0.3", 99999)
        + host_xml("10.9.0.4", -25)
        + host_xml("10.9.0.5\x7f&#155;31m", 25)
        + host_xml("2001:DB8:0:0::1", 587).replace('"ipv4"', '"ipv6"')
        + TAIL
    )
    result = ingest(capsys, db_path, "nmap-xml", hostile)
    assert result.code == 2
    assert f"{hostile}:" in result.err
    assert "host skipped: address '<script>alert(1)</script>' is not an IP address" in result.err
    assert """address '=HYPERLINK("http://x")' is not an IP address""" in result.err
    assert "portid '99999' is not a port from 0 to 65535" in result.err
    assert "portid '-25' is not a port from 0 to 65535" in result.err
    assert "address '10.9.0.5\\x7f\\x9b31m' is not an IP address" in result.err
    assert "\x9b" not in result.err

    services = {(row["address"], row["port"]) for row in exported(capsys, db_path, "services")}
    assert services == {("10.9.0.1", 25), ("10.9.0.2", 25), ("2001:db8::1", 587)}
    addresses = {row["address"] for row in exported(capsys, db_path, "inventory")}
    # hosts whose port was refused are still up; the ones without an address are not kept
    assert addresses == {"10.9.0.1", "10.9.0.2", "10.9.0.3", "10.9.0.4", "2001:db8::1"}


def test_nmap_error_message_cannot_forge_a_line(
    capsys: pytest.CaptureFixture[str], db_path: Path, tmp_path: Path
) -> None:
    xml = tmp_path / "failed.xml"
    xml.write_text(
        HEAD
        + '<runstats><finished exit="error" errormsg="bad&#155;2J&#127;&#10;rolecall: forged"/>'
        "</runstats></nmaprun>\n"
    )
    result = ingest(capsys, db_path, "nmap-xml", xml)
    assert result.code == 2
    assert "nmap reported an error: bad\\x9b2J\\x7f\\x0arolecall: forged" in result.err
    assert "\x9b" not in result.err
    assert not any(line.startswith("rolecall: forged") for line in result.err.splitlines())


def _write_long_banner(path: Path, size: int) -> Path:
    """An nmap XML file whose first host's banner attribute is ``size`` bytes long."""
    before, after = host_xml("10.8.0.1", 25, banner="@@@").split("@@@")
    with path.open("w") as handle:
        handle.write(HEAD + before)
        for _ in range(size >> 20):
            handle.write("B" * (1 << 20))
        handle.write(after + host_xml("10.8.0.2", 25) + TAIL)
    return path


def _timed_ingest(capsys: pytest.CaptureFixture[str], db: Path, path: Path) -> tuple[Result, float]:
    """Ingest an nmap XML file and how long it took, in seconds."""
    started = time.perf_counter()
    result = ingest(capsys, db, "nmap-xml", path)
    return result, time.perf_counter() - started


def test_a_huge_nmap_attribute_takes_linear_time_and_is_cut(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    size = 15 << 20
    first, small = _timed_ingest(
        capsys, tmp_path / "a.db", _write_long_banner(tmp_path / "a.xml", size)
    )
    second, large = _timed_ingest(
        capsys, tmp_path / "b.db", _write_long_banner(tmp_path / "b.xml", 2 * size)
    )
    assert (first.code, second.code) == (0, 0), second.err
    # it took 12 s when the parser read the attribute again for each 16 KiB fed to it
    assert small < 8.0
    # twice the size, about twice the time: quadratic would be four times (a generous bound)
    assert large < 3.2 * small + 1.0, (small, large)
    banners = {
        row["address"]: row["banner"] for row in exported(capsys, tmp_path / "b.db", "services")
    }
    assert banners == {"10.8.0.1": "B" * MAX_TEXT, "10.8.0.2": ""}


def test_an_absurd_nmap_attribute_is_refused_naming_its_line(
    capsys: pytest.CaptureFixture[str], db_path: Path, tmp_path: Path
) -> None:
    before = tmp_path / "before.xml"
    before.write_text(HEAD + host_xml("10.9.0.1", 25) + TAIL)
    assert ingest(capsys, db_path, "nmap-xml", before).code == 0
    huge = _write_long_banner(tmp_path / "huge.xml", MAX_MARKUP + (1 << 20))
    result = ingest(capsys, db_path, "nmap-xml", huge)
    assert result.code == 2
    assert f"rolecall: {huge}: line 7: a tag or text longer than 32 MiB (refused)" in result.err
    services = {(row["address"], row["port"]) for row in exported(capsys, db_path, "services")}
    assert services == {("10.9.0.1", 25)}


def test_zeek_json_nested_deep_is_a_warning_for_its_line(
    capsys: pytest.CaptureFixture[str], db_path: Path, tmp_path: Path
) -> None:
    before = write_json(tmp_path / "conn.before.log", [{**CONN, "id.orig_h": "192.0.2.100"}])
    assert ingest(capsys, db_path, "zeek", before).code == 0
    log = tmp_path / "conn.log"
    deep = "[" * 30_000 + "]" * 30_000
    good = json.dumps(CONN)
    log.write_text(
        good
        + "\n"
        + '{"ts":'
        + deep
        + "}\n"
        + json.dumps({**CONN, "id.orig_h": "192.0.2.2"})
        + "\n"
        + json.dumps({**CONN, "id.orig_h": "192.0.2.3", "ts": 1e300}).replace("1e+300", "1e400")
        + "\n"
        + json.dumps({**CONN, "id.orig_h": "192.0.2.4", "ts": float("nan")})
        + "\n"
        + json.dumps({**CONN, "id.orig_h": "192.0.2.5", "id.resp_p": 10**23})
        + "\n"
        + json.dumps({**CONN, "id.orig_h": "=HYPERLINK(1)"})
        + "\n"
        + json.dumps({**CONN, "id.orig_h": "192.0.2.6", "orig_ip_bytes": -5})
        + "\n"
    )
    result = ingest(capsys, db_path, "zeek", log)
    assert result.code == 2
    assert "6 damaged entries skipped" in result.out
    assert f"{log}:2: JSON nested too deep; line skipped" in result.err
    assert f"{log}:4: conn line skipped: ts 'inf' is not a time" in result.err
    assert f"{log}:5: conn line skipped: ts 'nan' is not a time" in result.err
    assert f"{log}:6: conn line skipped: id.resp_p '{10**23}' is not a port" in result.err
    assert f"{log}:7: conn line skipped: id.orig_h '=HYPERLINK(1)' is not an IP address" in (
        result.err
    )
    assert flow_clients(capsys, db_path) == {"192.0.2.100", "192.0.2.1", "192.0.2.2"}


def test_zeek_tsv_values_out_of_range_are_warnings_for_their_lines(
    capsys: pytest.CaptureFixture[str], db_path: Path, tmp_path: Path
) -> None:
    before = write_tsv(
        tmp_path / "smtp.before.log", "smtp", [{**SMTP, "helo": "before", "id.orig_p": "40001"}]
    )
    assert ingest(capsys, db_path, "zeek", before).code == 0
    log = write_tsv(
        tmp_path / "smtp.log",
        "smtp",
        [
            SMTP,
            {**SMTP, "helo": "depth", "trans_depth": "99999999999999999999999"},
            {**SMTP, "helo": "port", "id.orig_p": "70000"},
            {**SMTP, "helo": "negative", "id.resp_p": "-25"},
            {**SMTP, "helo": "nan", "ts": "nan"},
            {**SMTP, "helo": "far", "ts": "1e400"},
            {**SMTP, "helo": "script", "id.resp_h": "<script>"},
            {**SMTP, "helo": "v6", "id.resp_h": "2001:DB8:0::25"},
        ],
    )
    result = ingest(capsys, db_path, "zeek", log)
    assert result.code == 2
    assert "6 damaged entries skipped" in result.out
    assert f"{log}:10: smtp line skipped: trans_depth '99999999999999999999999' is not a count" in (
        result.err
    )
    assert f"{log}:11: smtp line skipped: id.orig_p '70000' is not a port" in result.err
    assert f"{log}:12: smtp line skipped: id.resp_p '-25' is not a port" in result.err
    assert f"{log}:13: smtp line skipped: ts 'nan' is not a time" in result.err
    assert f"{log}:14: smtp line skipped: ts '1e400' is not a time" in result.err
    rows = exported(capsys, db_path, "smtp")
    assert {(row["helo"], row["server"]) for row in rows} == {
        ("before", "198.51.100.2"),
        ("pc", "198.51.100.2"),
        ("v6", "2001:db8::25"),
    }


def _peak_of_ingest(
    capsys: pytest.CaptureFixture[str], db: Path, kind: str, path: Path
) -> tuple[Result, int]:
    """Ingest a file and the most memory Python held meanwhile, in bytes."""
    tracemalloc.start()
    try:
        result = ingest(capsys, db, kind, path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, peak


def _write_without_newline(path: Path, head: str, size: int, tail: str) -> Path:
    """Write head, then ``size`` bytes without a newline, then tail."""
    block = b"x" * (1 << 20)
    with path.open("wb") as handle:
        handle.write(head.encode())
        for _ in range(size >> 20):
            handle.write(block)
        handle.write(tail.encode())
    return path


@pytest.mark.parametrize("kind", ["zeek", "firewall"])
def test_a_line_of_100_mb_is_skipped_without_being_held(
    capsys: pytest.CaptureFixture[str], db_path: Path, tmp_path: Path, kind: str
) -> None:
    if kind == "zeek":
        good = tsv_line("conn", CONN)
        head = tsv_header("conn") + good
    else:
        good = FW_LINE.format(src="192.0.2.1", length=60, port=25)
        head = good
    after = good.replace("192.0.2.1", "192.0.2.2")
    path = _write_without_newline(tmp_path / f"{kind}.log", head, 100 << 20, "\n" + after)
    result, peak = _peak_of_ingest(capsys, db_path, kind, path)
    assert result.code == 2
    assert f"{path}:{head.count(chr(10)) + 1}: line longer than 65536 skipped" in result.err
    # the file's digest reads 16 MiB at a time; the line itself is never held
    assert peak < 40 << 20, peak
    assert flow_clients(capsys, db_path) == {"192.0.2.1", "192.0.2.2"}


def test_firewall_values_out_of_range_are_warnings_for_their_lines(
    capsys: pytest.CaptureFixture[str], db_path: Path, tmp_path: Path
) -> None:
    before = tmp_path / "before.log"
    before.write_text(FW_LINE.format(src="192.0.2.100", length=60, port=25))
    assert ingest(capsys, db_path, "firewall", before).code == 0
    log = tmp_path / "kern.log"
    log.write_text(
        FW_LINE.format(src="192.0.2.1", length=60, port=25)
        + FW_LINE.format(src="192.0.2.2", length="99999999999999999999999", port=25)
        + FW_LINE.format(src="192.0.2.3", length=9223372036854775807, port=25)
        + FW_LINE.format(src="192.0.2.4", length=-60, port=25)
        + FW_LINE.format(src="192.0.2.5", length=60, port=99999)
        + FW_LINE.format(src="=HYPERLINK(1)", length=60, port=25)
        + FW_LINE.format(src="2001:DB8:0::7", length=60, port=25)
        + FW_LINE.format(src="192.0.2.8", length=60, port=25)
        + FW_LINE.format(src="fe80::1%=HYPERLINK(1)", length=60, port=25)
    )
    result = ingest(capsys, db_path, "firewall", log)
    assert result.code == 2
    assert "6 damaged entries skipped" in result.out
    assert "warning: and 1 more damaged entries" in result.err
    assert (
        f"{log}:2: netfilter line skipped: LEN='99999999999999999999999' is not the length"
        " of an IP packet"
    ) in result.err
    assert f"{log}:3: netfilter line skipped: LEN='9223372036854775807'" in result.err
    assert f"{log}:4: netfilter line skipped: LEN='-60'" in result.err
    assert f"{log}:5: netfilter line skipped: DPT='99999' is not a port" in result.err
    assert f"{log}:6: netfilter line skipped: SRC='=HYPERLINK(1)' is not an IP address" in (
        result.err
    )
    assert flow_clients(capsys, db_path) == {"192.0.2.100", "192.0.2.1", "2001:db8::7", "192.0.2.8"}
    denies = {row["address"] for row in exported(capsys, db_path, "inventory")}
    assert "=HYPERLINK(1)" not in denies
