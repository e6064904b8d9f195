"""The GPU check script: its dry run works on a CPU machine and its dependency test reads versions right."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_check

ROOT = Path(__file__).resolve().parents[1]


def test_dry_run_writes_one_report_with_every_step(tmp_path):
    report = tmp_path / "report.md"
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--gpu-check", "--dry-run", "--report", str(report)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]
    text = report.read_text()
    for step in gpu_check.plan(sys.executable, tmp_path, [], torch.__version__):
        assert f"| {step.name} |" in text
    assert "| probe | ok |" in text and torch.__version__ in text
    expected = "planned (dry run)" if torch.cuda.is_available() else "skipped: no CUDA device (dry run)"
    assert f"| CUDA tests | {expected} |" in text
    assert "pip install --no-deps" in text and "osnas bench --device cuda" in text


def test_missing_report_folder_is_a_usage_error(tmp_path):
    assert gpu_check.main(["--dry-run", "--report", str(tmp_path / "absent" / "r.md")]) == 2


def test_requirement_bounds_are_checked():
    assert gpu_check.satisfied("torch>=2.0")
    assert not gpu_check.satisfied("torch>=999")
    assert not gpu_check.satisfied("surely-not-an-installed-package>=1")
    assert gpu_check.satisfied(f"numpy>=1.0,<{int(__import__('numpy').__version__.split('.')[0]) + 1}")
    assert not gpu_check.satisfied("numpy<1.0")


def test_the_build_requirements_are_checked_too():
    """The install step runs without build isolation: the build backend's own bound must hold on the machine."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = gpu_check.declared_dependencies()
    assert set(pyproject["build-system"]["requires"]) | set(pyproject["project"]["dependencies"]) == set(declared)
    assert any(r.startswith("setuptools>=") for r in pyproject["build-system"]["requires"])
