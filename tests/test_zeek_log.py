"""The Zeek log format layer: headers, escapes, JSON lines, gzip, damage, file discovery."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rolecall.probes.errors import InputError
from rolecall.probes.passive.zeek.log_format import Block, LineHandler, read_log, zeek_files
from rolecall.probes.passive.zeek.records import ZeekSettings, read_zeek
from rolecall.probes.records import ReadWarning, SmtpTransaction
from tests.zeek_helpers import gzip_copy, split_items, tsv_header, tsv_line, write_json, write_tsv

SMTP_ROW = {
    "ts": "1795392123.456789",
    "uid": "CHhAvVGS1DHFjwGM9",
    "id.orig_h": "192.0.2.10",
    "id.orig_p": "40001",
    "id.resp_h": "198.51.100.25",
    "id.resp_p": "25",
    "trans_depth": "1",
    "helo": "ws1.example.org",
    "mailfrom": "a@example.org",
    "rcptto": "b@example.net,c@example.net",
    "subject": "Hello",
    "last_reply": "250 2.0.0 Ok",
    "tls": "F",
}


def smtp(tmp_path: Path, name: str, text: str) -> tuple[list[SmtpTransaction], list[ReadWarning]]:
    """Write ``text`` as a log and read it as smtp records."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    records, warnings = split_items(read_zeek(path, ZeekSettings()))
    return [r for r in records if isinstance(r, SmtpTransaction)], warnings


def test_custom_separators_and_markers_are_honoured(tmp_path: Path) -> None:
    header = tsv_header("smtp", separator="|", set_separator=";", empty="EMPTY", unset="NONE")
    row = {**SMTP_ROW, "rcptto": "b@example.net;c@example.net", "subject": "EMPTY"}
    line = tsv_line("smtp", row, separator="|", unset="NONE")
    records, warnings = smtp(tmp_path, "smtp.log", header + line)
    assert warnings == []
    assert records[0].rcpt_to == ("b@example.net", "c@example.net")
    assert records[0].subject == ""
    assert records[0].user_agent == ""  # NONE: unset
    assert records[0].helo == "ws1.example.org"


def test_escapes_decode_to_the_original_bytes(tmp_path: Path) -> None:
    row = {
        **SMTP_ROW,
        "subject": "tab\\x09inside caf\\xc3\\xa9",
        "rcptto": "x\\x2cy@example.net,z@example.net",
        "helo": "\\x2d",  # a literal "-", escaped because it equals the unset marker
    }
    records, _ = smtp(tmp_path, "smtp.log", tsv_header("smtp") + tsv_line("smtp", row))
    assert records[0].subject == "tab\tinside café"
    assert records[0].rcpt_to == ("x,y@example.net", "z@example.net")
    assert records[0].helo == "-"


def test_a_changed_fields_line_mid_file_is_followed(tmp_path: Path) -> None:
    fields = ["ts", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "subject", "helo"]
    second = "\t".join(["1795392200.0", "192.0.2.11", "40002", "198.51.100.26", "587", "S2", "h2"])
    text = (
        tsv_header("smtp")
        + tsv_line("smtp", SMTP_ROW)
        + "#fields\t"
        + "\t".join(fields)
        + "\n"
        + second
        + "\n"
    )
    records, warnings = smtp(tmp_path, "smtp.log", text)
    assert [w for w in warnings if "#types" not in w.message] == []
    assert [(r.server_port, r.subject, r.helo) for r in records] == [
        (25, "Hello", "ws1.example.org"),
        (587, "S2", "h2"),
    ]


def test_missing_header_and_short_lines_are_skipped_with_their_line(tmp_path: Path) -> None:
    line = tsv_line("smtp", SMTP_ROW)
    text = line + line + tsv_header("smtp") + line + "too\tfew\tfields\n" + line
    records, warnings = smtp(tmp_path, "smtp.log", text)
    assert len(records) == 2
    wheres = [w.where for w in warnings]
    assert f"{tmp_path / 'smtp.log'}:1" in wheres
    assert f"{tmp_path / 'smtp.log'}:12" in wheres
    assert any("2 lines without #fields" in w.message for w in warnings)


def test_a_header_lacking_required_fields_is_reported(tmp_path: Path) -> None:
    header = tsv_header("smtp", fields=["ts", "uid", "subject"])
    records, warnings = smtp(tmp_path, "smtp.log", header + "1795392000.0\tC1\tx\n")
    assert records == []
    assert warnings[0].message.startswith("smtp log without id.orig_h")


def test_json_lines_that_are_not_objects_are_skipped(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "smtp.log",
        [{"ts": 1795392123.456789, "id.orig_h": "192.0.2.10", "id.orig_p": 40001}],
    )
    good = path.read_text()
    full = good.replace("}", ',"id.resp_h":"198.51.100.25","id.resp_p":25,"rcptto":["b@x"]}')
    path.write_text("[1, 2]\n{not json\n" + full + '"text"\n')
    records, warnings = split_items(read_zeek(path, ZeekSettings()))
    assert len(records) == 1
    assert [w.where.rsplit(":", 1)[1] for w in warnings] == ["1", "2", "4"]
    assert "not an object" in warnings[0].message


def test_json_of_an_unknown_log_is_reported_once(tmp_path: Path) -> None:
    path = write_json(tmp_path / "mystery.json", [{"ts": 1.0, "x": 1}] * 500)
    records, warnings = split_items(read_zeek(path, ZeekSettings()))
    assert records == []
    assert warnings == [
        ReadWarning(f"{path}:1", "log type '' is not one rolecall reads; such lines skipped")
    ]


def test_gzip_and_a_truncated_gzip(tmp_path: Path) -> None:
    plain = write_tsv(tmp_path / "plain.log", "smtp", [SMTP_ROW] * 2000)
    packed = gzip_copy(plain, tmp_path / "smtp.00:00:00-01:00:00.log.gz")
    records, warnings = split_items(read_zeek(packed, ZeekSettings()))
    assert (len(records), warnings) == (2000, [])
    cut = tmp_path / "smtp.log.gz"
    cut.write_bytes(packed.read_bytes()[: packed.stat().st_size // 2])
    records, warnings = split_items(read_zeek(cut, ZeekSettings()))
    assert 0 < len(records) < 2000
    assert len(warnings) == 1
    assert "compressed data is damaged" in warnings[0].message
    assert warnings[0].where.startswith(f"{cut}:")


def test_overlong_lines_are_skipped_not_kept(tmp_path: Path) -> None:
    long_row = {**SMTP_ROW, "subject": "x" * 300_000}
    path = write_tsv(tmp_path / "smtp.log", "smtp", [SMTP_ROW, long_row, SMTP_ROW])
    records, warnings = split_items(read_zeek(path, ZeekSettings(max_line=4096)))
    assert len(records) == 2
    assert warnings == [ReadWarning(f"{path}:10", "line longer than 4096 skipped")]


def test_unreadable_inputs_raise_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        zeek_files([tmp_path / "missing"])
    with pytest.raises(InputError, match="Cannot read"):
        list(read_zeek(tmp_path / "missing.log", ZeekSettings()))
    with pytest.raises(InputError, match="directory"):
        list(read_zeek(tmp_path, ZeekSettings()))


def test_zeek_files_expands_archive_folders_in_order(tmp_path: Path) -> None:
    names = [
        "2026-11-24/conn.00:00:00-01:00:00.log.gz",
        "2026-11-23/conn.23:00:00-00:00:00.log.gz",
        "2026-11-23/smtp.01:00:00-02:00:00.log.gz",
        "2026-11-23/stats.01:00:00-02:00:00.log.gz",
        "2026-11-23/weird.log",
        "current/dns.log",
        "current/notes.txt",
        "current/known_services.log",
        "spool/conn.2026-11-23-10-00-00.log",
    ]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(gzip.compress(b"") if name.endswith(".gz") else b"")
    single = tmp_path / "current" / "dns.log"
    found = zeek_files([tmp_path, single])
    assert [str(p.relative_to(tmp_path)) for p in found] == [
        "2026-11-23/conn.23:00:00-00:00:00.log.gz",
        "2026-11-23/smtp.01:00:00-02:00:00.log.gz",
        "2026-11-24/conn.00:00:00-01:00:00.log.gz",
        "current/dns.log",
        "current/known_services.log",
        "spool/conn.2026-11-23-10-00-00.log",
    ]
    assert zeek_files([tmp_path]) == found


def test_handlers_get_the_fields_of_their_block(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "x.log", "smtp", [SMTP_ROW, {**SMTP_ROW, "id.orig_h": "bad"}])

    def project(block: Block) -> LineHandler[tuple[str, str, str]] | str:
        def handle(values: list[str]) -> list[tuple[str, str, str]]:
            if values[2] == "bad":
                raise ValueError("refused")
            return [(block.path, values[2], values[-1])]

        return handle

    items = list(read_log(path, project))
    assert items == [
        ("smtp", "192.0.2.10", "-"),
        ReadWarning(f"{path}:10", "smtp line skipped: refused"),
    ]


def test_a_file_that_cannot_be_opened_names_itself(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "smtp.log", "smtp", [SMTP_ROW])
    os.chmod(path, 0)
    if os.access(path, os.R_OK):  # root reads anything: use a path that is not a file
        path = tmp_path / "smtp.log" / "child.log"
    with pytest.raises(InputError, match=str(path).replace("/", ".")):
        list(read_zeek(path, ZeekSettings()))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=200).map(lambda b: b.replace(b"\n", b"")),
            st.sampled_from([b"#fields\tts\tid.orig_h", b"#separator \\x", b"{", b"[]"]),
            st.sampled_from([b"#path\tconn", b"\x1f\x8b", b'{"ts":"x","id.orig_h":1}']),
            st.builds(
                lambda a, b: a.encode("utf-8", "surrogatepass") + b"\t" + b,
                st.text(max_size=30),
                st.binary(max_size=30),
            ),
        ),
        max_size=30,
    ),
    st.sampled_from(["conn", "smtp", "socks", "dns", "http", "software", "known_services"]),
)
def test_any_damage_gives_warnings_never_an_exception(
    tmp_path: Path, garbage: list[bytes], log: str
) -> None:
    good = tsv_line("smtp", SMTP_ROW).encode()
    path = tmp_path / f"{log}.log"
    path.write_bytes(tsv_header(log).encode() + b"\n".join(garbage) + b"\n" + good)
    for item in read_zeek(path, ZeekSettings(max_line=100)):
        assert isinstance(item, ReadWarning) or item.source == "zeek"
