"""Shared test helpers: run the CLI in-process or as a subprocess of this checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# one thread: the tiny test models gain nothing from more, and on a busy CI box spinning
# OpenMP threads make each step tens of times slower
torch.set_num_threads(1)

from osnas.plugins import load_builtins  # noqa: E402

load_builtins()


def osnas_env(env: dict | None = None) -> dict:
    """The environment of an ``osnas`` subprocess: this checkout first on the path, one thread."""
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "COLUMNS": "200", "OMP_NUM_THREADS": "1", **(env or {})}


def run_osnas(*args: str, cwd: Path | None = None, timeout: float = 300, env: dict | None = None
              ) -> subprocess.CompletedProcess:
    """Run ``python -m osnas ARGS`` from this checkout; returns the completed process (text output)."""
    return subprocess.run([sys.executable, "-m", "osnas", *args], cwd=cwd or ROOT, capture_output=True, text=True,
                          timeout=timeout, env=osnas_env(env))


@pytest.fixture
def osnas_cli():
    return run_osnas


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    """A config that runs every phase in seconds on the digits data."""
    path = tmp_path / "tiny.yaml"
    path.write_text(
        f"""
seed: 0
device: cpu
dataflow: {{name: digits, input_size: 16, batch_size: 64}}
search_space: {{name: proxylessnas, width_mult: 0.25}}
search_strategy: {{name: evolution, population: 4, generations: 2, top_k: 2}}
constraint: {{metric: macs, max: 3.0}}
supernet: {{epochs: 1}}
final: {{epochs: 1}}
evaluation: {{bn_batches: 1, val_batches: 1}}
lookup_table: {{latency: false, cache_dir: {tmp_path / 'luts'}}}
logging: {{progress: false}}
output: {{dir: {tmp_path / 'runs'}, name: tiny}}
"""
    )
    return path


def variant(config: Path, name: str, **sections: dict) -> Path:
    """A copy of a config file next to it with sections updated (merged; replaced when naming a component)."""
    import yaml

    data = yaml.safe_load(config.read_text())
    for key, value in sections.items():
        merge = isinstance(data.get(key), dict) and isinstance(value, dict) and "name" not in value
        data[key] = {**data[key], **value} if merge else value
    path = config.with_name(f"{name}.yaml")
    path.write_text(yaml.safe_dump(data))
    return path
