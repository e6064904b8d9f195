"""Per-layer hardware lookup table: MACs, params and latency of every candidate, priced in batch.

Costs add up: ``base + sum_l table[l, arch[l]]``. MACs and params are counted with
thop / exact parameter counts on the very modules the child builder makes, so the
LUT price of an architecture equals what thop counts on ``build_child(arch)``.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import logging
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from osnas.profiling import count_macs, count_params, measure_latency
from osnas.search_spaces.base import SpaceDefinition

log = logging.getLogger(__name__)

METRICS = ("macs", "params", "latency")
# factor from stored raw values to the units of the constraint (MACs/params in millions, latency in ms)
UNITS = {"macs": 1e-6, "params": 1e-6, "latency": 1.0}
FORMAT_VERSION = 1


def code_files(obj: Any) -> dict[str, str]:
    """Name -> source of the file defining ``obj`` and of the same package's files it imports names from.

    A block's cost depends on its factory and on the module classes the factory
    builds, which live in that file or one it imports them from.
    """
    module = inspect.getmodule(obj)
    if module is None:
        return {f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', repr(obj))}": ""}
    package = module.__name__.split(".")[0]
    modules = {module.__name__: module}
    for value in vars(module).values():
        if inspect.isclass(value) or inspect.isfunction(value):
            home = inspect.getmodule(value)
            if home is not None and home.__name__.split(".")[0] == package:
                modules[home.__name__] = home
    files = {}
    for name, mod in modules.items():
        try:
            files[name] = inspect.getsource(mod)
        except (OSError, TypeError):  # no source file (e.g. defined interactively): its name only
            files[name] = ""
    return files


def implementation_hash(definition: SpaceDefinition) -> str:
    """Hash of the code the costs depend on: the files of every block factory and item class the space uses."""
    from osnas.search_spaces.blocks import BLOCKS

    objects: list[Any] = []
    for item in definition.body:
        objects.append(type(item))
        ops = [item.op] if hasattr(item, "op") else list(getattr(item, "candidates", ()))
        objects.extend(BLOCKS.get(spec.kind) for spec in ops)
    files: dict[str, str] = {}
    for obj in objects:
        files.update(code_files(obj))
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def item_input_shapes(definition: SpaceDefinition) -> list[tuple[int, ...]]:
    """Input shape (batch 1) of every body item, found by running the fixed path of first candidates."""
    shapes = []
    x = torch.zeros(1, definition.in_channels, definition.input_size, definition.input_size)
    with torch.no_grad():
        for item in definition.body:
            shapes.append(tuple(x.shape))
            module = item.child_module([0] * len(item.entries())).eval()
            x = module(x)
    return shapes


class LookupTable:
    """``(L, K)`` cost tables per metric plus the base cost of the fixed layers."""

    def __init__(self, base: np.ndarray, table: np.ndarray, choices: np.ndarray, meta: dict[str, Any]) -> None:
        self.base = np.asarray(base, dtype=np.float64)  # (3,)
        self.table = np.asarray(table, dtype=np.float64)  # (3, L, K), 0 where no candidate
        self.choices = np.asarray(choices, dtype=np.int64)
        self.meta = meta
        self._rows = np.arange(self.table.shape[1])

    # ------------------------------------------------------------------ pricing
    def raw_cost(self, archs: np.ndarray, metric: str = "macs") -> np.ndarray:
        """Costs in raw units (MAC count, param count, ms) for an (N, L) batch or one (L,) vector."""
        m = METRICS.index(metric)
        archs = np.asarray(archs, dtype=np.int64)
        single = archs.ndim == 1
        archs = np.atleast_2d(archs)
        values = self.table[m][self._rows[None, :], archs].sum(axis=1) + self.base[m]
        return values[0] if single else values

    def cost(self, archs: np.ndarray, metric: str = "macs") -> np.ndarray:
        """Costs in constraint units: MACs and params in millions, latency in ms."""
        return self.raw_cost(archs, metric) * UNITS[metric]

    def costs(self, arch: np.ndarray) -> dict[str, float]:
        """All metrics of one architecture, in constraint units."""
        return {m: float(self.cost(arch, m)) for m in METRICS}

    def unit_table(self, metric: str) -> np.ndarray:
        """(L, K) per-candidate costs in constraint units."""
        return self.table[METRICS.index(metric)] * UNITS[metric]

    def expected_cost(self, probs: torch.Tensor, metric: str = "macs") -> torch.Tensor:
        """Differentiable expected cost ``base + sum(probs * table)`` of (L, K) candidate probabilities,
        or the (B,) costs of a (B, L, K) batch of them."""
        table = torch.as_tensor(self.unit_table(metric), dtype=probs.dtype, device=probs.device)
        return (probs * table).sum(dim=(-2, -1)) + float(self.base[METRICS.index(metric)] * UNITS[metric])

    def bounds(self, metric: str, definition: SpaceDefinition) -> tuple[float, float]:
        """Cheapest and dearest achievable cost (constraint units), honouring the space's rules."""
        t = self.unit_table(metric)
        mask = definition.choice_mask
        lo_row = np.where(mask, t, np.inf).min(axis=1)
        hi_row = np.where(mask, t, -np.inf).max(axis=1)
        lo = lo_row.sum()
        for rule in definition.rules:
            idx = np.array(rule.entries)
            zero_is_min = np.isclose(t[idx, rule.zero], lo_row[idx])
            active_at_min = (~zero_is_min).sum()
            need = rule.count - active_at_min
            if need > 0:
                nonzero = np.where(mask[idx] & (np.arange(t.shape[1]) != rule.zero)[None, :], t[idx], np.inf).min(axis=1)
                delta = np.sort((nonzero - lo_row[idx])[zero_is_min])
                lo += delta[:need].sum()
        base = self.base[METRICS.index(metric)] * UNITS[metric]
        return float(lo + base), float(hi_row.sum() + base)

    # ------------------------------------------------------------------ building
    @classmethod
    def build(
        cls,
        definition: SpaceDefinition,
        device: torch.device | str = "cpu",
        latency: bool = True,
        latency_batch: int = 1,
        latency_runs: int = 10,
    ) -> "LookupTable":
        """Count MACs/params of every candidate with thop and time it on ``device``."""
        device = torch.device(device)
        shapes = item_input_shapes(definition)
        base = np.zeros(3)
        rows: list[np.ndarray] = []
        for item, shape in zip(definition.body, shapes):

            def measure(module: nn.Module, shape: tuple[int, ...] = shape) -> np.ndarray:
                lat = 0.0
                if latency:
                    timed = copy.deepcopy(module).to(device)
                    lat = measure_latency(timed, (latency_batch, *shape[1:]), device, runs=latency_runs).median_ms
                return np.array([count_macs(module, shape), count_params(module), lat], dtype=np.float64)

            item_base, item_rows = item.cost_rows(measure)
            base += item_base
            rows.extend(item_rows)
        num_layers, max_k = definition.num_layers, definition.max_choices
        table = np.zeros((3, num_layers, max_k))
        for layer, row in enumerate(rows):
            table[:, layer, : row.shape[0]] = row.T
        table[2] = np.maximum(table[2], 0.0)
        meta = cls.metadata(definition, device, latency, latency_batch, latency_runs)
        return cls(base, table, definition.choices, meta)

    @staticmethod
    def metadata(
        definition: SpaceDefinition, device: torch.device, latency: bool, latency_batch: int, latency_runs: int
    ) -> dict[str, Any]:
        """What a cached table must match to be reused: the space, the code that builds its blocks, the tools."""
        return {
            "format": FORMAT_VERSION,
            "space": definition.name,
            "space_hash": definition.fingerprint(),
            "code_hash": implementation_hash(definition),
            "osnas": package_version("osnas"),
            "thop": package_version("thop"),
            "input_size": definition.input_size,
            "device": str(device.type if device.type == "cpu" else torch.cuda.get_device_name(device)),
            "dtype": "float32",
            "torch": torch.__version__,
            "latency": latency,
            "latency_batch": latency_batch,
            "latency_runs": latency_runs,
        }

    # ------------------------------------------------------------------ storage
    def to_dict(self) -> dict[str, Any]:
        return {"meta": self.meta, "base": self.base.tolist(), "table": self.table.tolist(),
                "choices": self.choices.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LookupTable":
        table = np.asarray(data["table"], dtype=np.float64)
        base = np.asarray(data["base"], dtype=np.float64)
        choices = np.asarray(data["choices"], dtype=np.int64)
        if table.ndim != 3 or table.shape[0] != 3 or base.shape != (3,) or choices.shape != (table.shape[1],):
            raise ValueError("lookup table arrays have the wrong shape")
        if not np.isfinite(table).all() or not np.isfinite(base).all():
            raise ValueError("lookup table holds non-finite values")
        return cls(base, table, choices, dict(data["meta"]))

    def save(self, path: Path) -> None:
        from osnas.run_dir import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: Path) -> "LookupTable":
        return cls.from_dict(json.loads(Path(path).read_text()))

    @staticmethod
    def cache_key(meta: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def cache_path(cls, cache_dir: Path, meta: dict[str, Any]) -> Path:
        """The file that caches the table of ``meta`` in ``cache_dir`` (one per space and metadata)."""
        return Path(cache_dir) / f"{meta['space']}-{cls.cache_key(meta)}.json"

    @classmethod
    def load_or_build(
        cls,
        definition: SpaceDefinition,
        cache_dir: Path | None,
        device: torch.device | str = "cpu",
        latency: bool = True,
        latency_batch: int = 1,
        latency_runs: int = 10,
    ) -> tuple["LookupTable", str]:
        """A cached table whose metadata matches exactly, else a freshly built (and cached) one.

        Returns the table and a short note on what happened (reused / built / rebuilt and why).
        """
        device = torch.device(device)
        meta = cls.metadata(definition, device, latency, latency_batch, latency_runs)
        path = None if cache_dir is None else cls.cache_path(cache_dir, meta)
        note = "built"
        if path is not None and path.exists():
            try:
                table = cls.load(path)
                if table.meta == meta and table.table.shape[1:] == (definition.num_layers, definition.max_choices):
                    return table, f"reused {path}"
                note = f"rebuilt (metadata of {path} does not match)"
            except (ValueError, KeyError, TypeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
                note = f"rebuilt (cached table {path} is corrupt: {exc})"
                log.warning("lookup table %s is corrupt (%s); rebuilding it", path, exc)
        table = cls.build(definition, device, latency, latency_batch, latency_runs)
        if path is not None:
            try:
                table.save(path)
            except OSError as exc:  # a cache that cannot be written only costs time on the next run
                log.warning("cannot cache the lookup table in %s (%s); using it without caching", path,
                            exc.strerror or exc)
        return table, note
