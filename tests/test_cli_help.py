"""Every command's --help: values named by metavars, never Python types; summaries whole."""

from __future__ import annotations

import re

import pytest
import typer

from rolecall.orchestrator.cli.app import app
from tests.cli_helpers import command_paths, run_cli

TYPE_NAME = re.compile(r"<(?:list\[|tuple\[|str>|int\b|float\b|path>|bool>|Path>|datetime>)")
"""A Python type as Typer writes it into help: `<list[str]>`, `<int range>`, `<path>`."""


def _commands_section(text: str) -> list[str]:
    """The lines of a help text's Commands section."""
    _, found, rest = text.partition("\nCommands:\n")
    return rest.splitlines() if found else []


COMMANDS = command_paths(typer.main.get_command(app))


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "rolecall")
def test_help_names_no_types_and_cuts_no_summary(
    capsys: pytest.CaptureFixture[str], path: tuple[str, ...]
) -> None:
    result = run_cli(capsys, *path, "--help")
    assert result.code == 0, result.err
    assert result.out.startswith("Usage: rolecall"), result.out
    assert TYPE_NAME.findall(result.out) == [], result.out
    cut = [line for line in _commands_section(result.out) if line.rstrip().endswith("...")]
    assert cut == [], result.out


def test_the_walk_covers_groups_and_leaves() -> None:
    assert {(), ("scan",), ("scan", "subnet"), ("schedule", "add", "scan")} <= set(COMMANDS)


def test_a_list_argument_shows_its_metavar_once(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "scan", "subnet", "--help")
    assert "Usage: rolecall scan subnet [OPTIONS] CIDR...\n" in result.out
    assert re.search(r"^  CIDR\.\.\.  Networks to scan\.", result.out, re.MULTILINE), result.out


def test_shell_completion_is_offered(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "--help")
    assert "--install-completion" in result.out
    assert "--show-completion" in result.out
