"""The repository stands alone: nothing in it reads files from beside the checkout."""

from __future__ import annotations

import re
import subprocess

from tests.data_paths import CHUNKING, CONFORMANCE, REPO

OUTSIDE = re.compile(
    rb"\.\./shared\b"  # a path up out of the checkout into a shared folder
    rb"|/work/shared\b"
    rb"|shared/(?:conformance|SPEC)"
    rb"""|["']shared["']\s*/"""  # a pathlib join: ... / "shared" / ...
)
"""Path forms that reach a shared folder beside the repository (not the word "shared")."""


def _repository_files() -> list[str]:
    """Every file git would commit: tracked ones and new ones not ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    )
    return [name for name in listed.stdout.decode().split("\0") if name]


def test_nothing_in_the_repository_reads_beside_the_checkout() -> None:
    me = "tests/test_self_contained.py"
    files = [name for name in _repository_files() if name != me and (REPO / name).is_file()]
    assert "README.md" in files
    found = [name for name in files if OUTSIDE.search((REPO / name).read_bytes())]
    assert found == [], f"these files reach outside the repository: {found}"


def test_zeeks_captures_are_inside_with_zeeks_licence() -> None:
    for folder in (CONFORMANCE, CHUNKING):
        assert (folder / "COPYING.zeek").is_file(), f"{folder} lacks Zeek's licence"
        cases = sorted(path.parent.name for path in folder.glob("*/trace.pcap"))
        assert cases, f"{folder} holds no capture"
        missing = [case for case in cases if not list((folder / case).glob("*.log"))]
        assert missing == [], f"captures in {folder} without Zeek's log: {missing}"


def test_no_test_data_file_is_ignored_by_git() -> None:
    """A data file .gitignore keeps out (*.db, say) would be missing from every clone."""
    ignored = subprocess.run(
        ["git", "ls-files", "--others", "--ignored", "--exclude-standard", "-z", "tests/data"],
        cwd=REPO,
        capture_output=True,
        check=True,
    )
    names = [name for name in ignored.stdout.decode().split("\0") if name]
    assert names == [], f"git ignores these test data files, so a clone lacks them: {names}"
