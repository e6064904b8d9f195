"""A config that runs every phase in seconds (8x8 digits), as a dict to vary per test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def small_config(tmp_path: Path, lut_dir: Path, **sections: Any) -> dict[str, Any]:
    """A config as a dict that runs in seconds (8x8 digits); ``sections`` replace or add top-level keys."""
    data: dict[str, Any] = {
        "seed": 0,
        "device": "cpu",
        "dataflow": {"name": "digits", "input_size": 8, "batch_size": 64, "val_fraction": 0.5, "test_fraction": 0.8},
        "search_space": {"name": "proxylessnas", "width_mult": 0.25},
        "search_strategy": {"name": "evolution", "population": 4, "generations": 1, "top_k": 2},
        "constraint": {"metric": "macs", "max": 3.0},
        "supernet": {"epochs": 1},
        "final": {"epochs": 1},
        "evaluation": {"bn_batches": 1, "val_batches": 1},
        "lookup_table": {"latency": False, "cache_dir": str(lut_dir)},
        "logging": {"progress": False},
        "output": {"dir": str(tmp_path / "runs"), "name": "t"},
        "store": {"enabled": False},  # each run trains its own supernet
    }
    data.update(sections)
    return data


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
