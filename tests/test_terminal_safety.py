"""Text from input never acts on a terminal: no escape sequence, no forged `rolecall:` line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from rolecall.terminal_text import json_terminal_safe, terminal_safe
from tests.cli_helpers import run_cli
from tests.nmap_samples import HEAD
from tests.pcap_helpers import session, smtp_turns, write_pcap

# What a hostile peer sends: OSC title, BEL, CSI clear screen, DEL, 8-bit CSI, a bidi
# override, a line separator, NEL, and a newline followed by a forged line of our own.
HOSTILE = "\x1b]0;pwn\x07\x1b[2J\x7f\x9b31m\u202eevil\u2028\x85\nrolecall: forged"
RAW = ("\x1b", "\x07", "\x7f", "\x9b", "\u202e", "\u2028", "\x85")


def _assert_inert(text: str) -> None:
    """No raw control character, and no line that a hostile value started."""
    for char in RAW:
        assert char not in text, repr(char)
    assert not any(line.startswith("rolecall: forged") for line in text.splitlines())


@pytest.mark.parametrize(
    "char", [*RAW, "\x00", "\r", "\t", "\u200f", "\u2066", "\u2029", "\ufeff", "\udcff"]
)
def test_every_control_character_is_shown_as_an_escape(char: str) -> None:
    """C0, C1, DEL, bidi, separators, BOM and undecodable bytes become visible escapes."""
    shown = terminal_safe(f"a{char}b")
    assert shown.startswith("a\\")
    assert shown.endswith("b")
    assert shown.isprintable()


def test_printable_text_and_spaces_stay_as_they_are() -> None:
    """Letters of any script, emoji and spaces are not escaped."""
    text = "relay é 日本\u3000\u00a0 😀 \\x41"
    assert terminal_safe(text) == text


def test_json_made_safe_is_the_same_value() -> None:
    """JSON escaping leaves no raw control character and decodes to the same value."""
    document = json.dumps({"banner": HOSTILE + "\U000e0001\udcff"}, ensure_ascii=False)
    safe = json_terminal_safe(document)
    assert safe.isprintable()
    assert json.loads(safe) == json.loads(document)


@pytest.mark.parametrize("quiet", [[], ["-q"]])
def test_nmap_errormsg_cannot_forge_a_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, quiet: list[str]
) -> None:
    """nmap's errormsg with CSI, DEL and an encoded newline is one escaped line, quiet or not."""
    message = "boom&#x9b;2J&#x7f;&#x0a;rolecall: forged line&#x85;"
    scan = tmp_path / "error.xml"
    scan.write_text(
        HEAD + f'<runstats><finished time="1" exit="error" errormsg="{message}"/></runstats>'
        "</nmaprun>\n"
    )
    db = str(tmp_path / "inventory.db")
    result = run_cli(capsys, *quiet, "--db", db, "ingest", "nmap-xml", str(scan))
    assert result.code == 2
    _assert_inert(result.err)
    said = [line for line in result.err.splitlines() if "nmap reported an error" in line]
    assert len(said) == 1
    assert "\\x9b2J\\x7f\\x0arolecall: forged line\\x85" in said[0]


@pytest.fixture
def hostile_mail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """An inventory holding one SMTP transaction whose HELO and subject are hostile."""
    turns = smtp_turns(
        (f"EHLO a{HOSTILE}\n", "250 ok\n"),
        ("MAIL FROM:<a@example.org>\n", "250 ok\n"),
        ("RCPT TO:<b@example.org>\n", "250 ok\n"),
        ("DATA\n", "354 go\n"),
        (f"Subject: hi{HOSTILE.replace(chr(10), ' ')}\nFrom: a@example.org\n\nx\n.\n", "250 ok\n"),
        ("QUIT\n", "221 bye\n"),
    )
    capture = write_pcap(tmp_path / "hostile.pcap", session(turns).packets)
    db = str(tmp_path / "inventory.db")
    assert run_cli(capsys, "-q", "--db", db, "ingest", "pcap", str(capture)).code == 0
    return db


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl"])
def test_export_to_stdout_passes_no_control_character(
    capsys: pytest.CaptureFixture[str], hostile_mail: str, fmt: str
) -> None:
    """`export smtp -o -` shows the hostile values escaped, in every format."""
    result = run_cli(capsys, "--db", hostile_mail, "export", "smtp", "--format", fmt, "-o", "-")
    assert result.code == 0
    _assert_inert(result.out)
    shown = "\\x1b]0;pwn\\x07" if fmt == "csv" else "\\u001b]0;pwn\\u0007"
    assert shown in result.out
    if fmt == "json":
        assert json.loads(result.out)[0]["helo"].startswith("a\x1b]0;pwn\x07")


def test_export_to_a_file_keeps_the_values_as_valid_csv(
    capsys: pytest.CaptureFixture[str], hostile_mail: str, tmp_path: Path
) -> None:
    """A CSV file is data, not a terminal: values are kept whole, the file parses."""
    out = tmp_path / "smtp.csv"
    assert run_cli(capsys, "--db", hostile_mail, "export", "smtp", "-o", str(out)).code == 0
    with out.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["helo"].startswith("a\x1b]0;pwn\x07\x1b[2J\x7f\x9b")


def test_mail_cluster_table_is_escaped(
    capsys: pytest.CaptureFixture[str], hostile_mail: str
) -> None:
    """The cluster table quotes subjects and HELO names escaped."""
    result = run_cli(capsys, "--db", hostile_mail, "mail", "cluster", "subject", "--on", "helo")
    assert result.code == 0
    _assert_inert(result.out)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_schedule_list_escapes_a_hostile_directory_name(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, fmt: str
) -> None:
    """A watched directory named with escape sequences is listed escaped."""
    watched = tmp_path / "drop\x1b[2J\x07\x9b"
    watched.mkdir()
    db = str(tmp_path / "inventory.db")
    args = ("--db", db, "schedule", "add", "ingest", "--watch", str(watched), "--every", "60")
    added = run_cli(capsys, *args)
    assert added.code == 0
    listed = run_cli(capsys, "--db", db, "schedule", "list", "--format", fmt)
    assert listed.code == 0
    _assert_inert(added.out + listed.out)
    assert "drop\\x1b[2J\\x07\\x9b" in listed.out or "drop\\u001b[2J\\u0007\\u009b" in listed.out
