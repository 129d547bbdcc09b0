"""The installed tree: a wheel of the checkout holds only rolecall/ and runs as `rolecall`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from rolecall import __version__
from tests.data_paths import REPO

LEFT_OUT = shutil.ignore_patterns(
    ".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "tests"
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of the checkout, built offline from a copy (the build writes into its tree)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(REPO, source, symlinks=True, ignore=LEFT_OUT)
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*build, "-w", str(work / "dist"), str(source)], check=True, timeout=240)
    return next((work / "dist").glob("rolecall-*.whl"))


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel installed (its dependencies are the suite's)."""
    env = tmp_path_factory.mktemp("venv")
    venv.create(env, with_pip=True)
    pip = [str(env / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index", "--no-deps"]
    subprocess.run([*pip, str(wheel)], check=True, timeout=240)
    return env


def _run(env: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a command of the environment outside the checkout, the suite's packages behind it."""
    environment = dict(os.environ, PYTHONPATH=sysconfig.get_paths()["purelib"])
    return subprocess.run(
        [str(env / "bin" / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        cwd=env,
        env=environment,
        timeout=120,
        check=False,
    )


def test_the_wheel_holds_only_the_rolecall_package(wheel: Path) -> None:
    """Nothing but rolecall/ and its metadata: no top-level orchestrator, probes, ..."""
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
        names = set(archive.namelist())
    assert tops == {"rolecall", f"rolecall-{__version__}.dist-info"}
    for data in (
        "rolecall/py.typed",
        "rolecall/inventory/migrations/script.py.mako",
        "rolecall/reports/templates/report.html.j2",
        "rolecall/orchestrator/demo/data/demo.pcap",
        "rolecall/inventory/rules/open_relay.py",
        "rolecall/cluster/app.py",
    ):
        assert data in names, data


def test_installed_it_imports_only_under_its_own_name(installed: Path) -> None:
    """`import inventory` fails and `import rolecall.inventory` works."""
    bare = _run(installed, "python", "-c", "import inventory")
    assert bare.returncode != 0
    assert "No module named 'inventory'" in bare.stderr
    named = _run(installed, "python", "-c", "import rolecall.inventory as i; print(i.__file__)")
    assert named.returncode == 0, named.stderr
    assert named.stdout.startswith(str(installed))


def test_installed_console_script_prints_the_version(installed: Path) -> None:
    """The console script is `rolecall`; --version prints the package's version."""
    result = _run(installed, "rolecall", "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"rolecall {__version__}"
