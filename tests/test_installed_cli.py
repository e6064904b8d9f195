"""The installed console scripts (``osnas``, ``build_interface``), run as a user runs them.

The rest of the suite calls the CLI in-process, which hides what only a fresh install
shows (a module the error path imports but no dependency installs). These tests start
the scripts pip wrote next to this interpreter.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.conftest import ROOT, osnas_env

BIN = Path(sys.executable).parent
OSNAS, BUILD_INTERFACE = BIN / "osnas", BIN / "build_interface"
pytestmark = pytest.mark.skipif(not (OSNAS.is_file() and BUILD_INTERFACE.is_file()),
                                reason=f"console scripts not installed next to {sys.executable} (pip install -e .)")

PLUGIN = '''
from osnas.dataflows.digits import Digits
from osnas.registry import register


@register("dataflow", "faulty")
class Faulty(Digits):
    def __init__(self, options, seed, device):
        raise ValueError("the user's bug [/x]")
'''


def script(path: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(path), *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env=osnas_env())


def one_error(proc: subprocess.CompletedProcess, expected: str) -> str:
    """Exit code 2, no traceback, the expected text once in the output; returns the output."""
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert "Traceback" not in text and "internal error" not in text, text
    assert text.count(expected) == 1, text
    return text


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text("dataflow: {name: digits}\n")
    return path


@pytest.mark.parametrize("args, expected", [
    (["search", "--bogus"], "No such option: --bogus"),
    (["searhc"], "No such command 'searhc'"),
    (["evaluate"], "Missing option '--config'"),
    (["profile", "--search-space", "proxylessnas", "--arch", "mobile", "--runs", "0"], "'--runs'"),
    (["compare", "c.yaml", "--seeds", "0"], "'--seeds'"),
])
def test_osnas_usage_errors(tmp_path, config, args, expected):
    one_error(script(OSNAS, *args, cwd=tmp_path), expected)


@pytest.mark.parametrize("args, expected", [
    (["-it", "criterion", "--customize-name", "x", "--bogus"], "unrecognized arguments: --bogus"),
    (["-it", "criterion"], "required: --customize-name"),
    (["-it", "nonsense", "--customize-name", "x"], "invalid choice: 'nonsense'"),
])
def test_build_interface_usage_errors(tmp_path, args, expected):
    one_error(script(BUILD_INTERFACE, *args, cwd=tmp_path), expected)


@pytest.mark.parametrize("tool", [OSNAS, BUILD_INTERFACE])
def test_output_dir_that_is_a_file(tmp_path, tool):
    (tmp_path / "taken").write_text("a file\n")
    args = (["new", "criterion", "mine", "--output-dir", "taken"] if tool == OSNAS else
            ["-it", "criterion", "--customize-name", "mine", "--output-dir", "taken"])
    text = one_error(script(tool, *args, cwd=tmp_path), "is a file, not a directory")
    assert "taken" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_exception_inside_a_plugin(tmp_path, config):
    package = tmp_path / "plugins" / "dataflow" / "faulty"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(PLUGIN)
    config.write_text("dataflow: {name: faulty}\n")
    proc = script(OSNAS, "--plugins", "plugins", "data", "check", "--config", "c.yaml", cwd=tmp_path)
    text = one_error(proc, "error in user component")
    assert f"{package / '__init__.py'}:9: ValueError: the user's bug [/x]" in text


def test_installed_versions_meet_the_declared_bounds():
    """What this suite runs against is inside what pyproject.toml allows (so CI tests what users install)."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    outside = []
    for line in project["dependencies"] + project["optional-dependencies"]["dev"]:
        req = Requirement(line)
        try:
            installed = version(req.name)
        except PackageNotFoundError:
            outside.append(f"{req.name} is declared but not installed")
            continue
        if not req.specifier.contains(installed, prereleases=True):
            outside.append(f"{req.name} {installed} not in {req.specifier}")
    assert not outside, outside
