"""A space's identity in numbers: definition fingerprint, lookup-table costs and parameter counts.

``python tests/space_snapshot.py`` records them for every registered space into
``tests/data/space_snapshots.json``; ``tests/test_stage_builder.py`` compares a fresh
snapshot against that file, so a refactor of how spaces are built cannot change them.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FILE = Path(__file__).with_name("data") / "space_snapshots.json"
# (input size, channels, outputs, options): small inputs keep pricing every candidate cheap
SETTINGS: list[tuple[int, int, int, dict[str, Any]]] = [(32, 3, 10, {}), (64, 1, 7, {"width_mult": 0.5})]


def snapshot(name: str, input_size: int, channels: int, outputs: int, options: dict[str, Any]) -> dict[str, Any]:
    from osnas.profiling import count_params
    from osnas.registry import REGISTRIES
    from osnas.search_spaces.child import build_child
    from osnas.search_spaces.lookup_table import LookupTable
    from osnas.search_spaces.supernet import Supernet

    cls = REGISTRIES["search_space"].get(name)
    definition = cls(cls.Options(**options)).define(input_size, channels, outputs)
    lut = LookupTable.build(definition, "cpu", latency=False)
    archs = definition.sample(np.random.default_rng(0), 3)
    return {
        "fingerprint": definition.fingerprint(),
        "lut_base": lut.base[:2].tolist(),
        "lut_table_sha256": hashlib.sha256(np.ascontiguousarray(lut.table[:2]).tobytes()).hexdigest(),
        "lut_total": float(lut.table[:2].sum()),
        "supernet_params": count_params(Supernet(definition)),
        "child_params": [count_params(build_child(definition, a)) for a in archs],
        "child_costs": [[float(lut.cost(a, m)) for m in ("macs", "params")] for a in archs],
    }


def key(name: str, input_size: int, channels: int, outputs: int, options: dict[str, Any]) -> str:
    return f"{name}@{input_size}x{channels}->{outputs}{json.dumps(options, sort_keys=True)}"


def accepts(name: str, options: dict[str, Any]) -> bool:
    from osnas.registry import REGISTRIES

    return set(options) <= set(REGISTRIES["search_space"].get(name).Options.model_fields)


def record() -> dict[str, Any]:
    from osnas.registry import REGISTRIES

    out = {}
    for name in REGISTRIES["search_space"].names():
        for size, ch, outputs, options in SETTINGS:
            if accepts(name, options):
                out[key(name, size, ch, outputs, options)] = snapshot(name, size, ch, outputs, options)
    return out


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)
    from osnas.plugins import load_builtins

    load_builtins()
    FILE.parent.mkdir(exist_ok=True)
    FILE.write_text(json.dumps(record(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {FILE}")
