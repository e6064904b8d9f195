"""The supernet store: trained supernets kept under the key of everything that determines them.

Training the supernet is the longest phase of a run, and it depends on only part of the
config (space, data and split, training strategy and recipe, seed, dtype, ...): runs and
comparisons that differ only in the search or the final training can share it. Like the
lookup-table cache, the store is a directory (``store.dir``, default ``OUTPUT_DIR/supernets``)
that any run may read and fill::

    DIR/<key>/supernet.pt   the checkpoint (as a run writes it)
    DIR/<key>/entry.json    what the key was made of, who trained it, when, in how many seconds

An entry appears by renaming a finished temporary directory, so a reader sees a whole entry
or none, and when two processes finish the same key the first rename wins and the other
copy is dropped.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import osnas
from osnas import distributed
from osnas.artifacts import SUPERNET, SUPERNET_SOURCE
from osnas.config import Config
from osnas.run_dir import atomic_write_json, read_json

if TYPE_CHECKING:
    from osnas.pipeline.supernet import SupernetPhase
    from osnas.search_spaces.supernet import Supernet

# config sections a trained supernet depends on (the constraint and lookup table too:
# budget- or latency-aware training strategies see them); cache_dir is only a location
SUPERNET_SECTIONS = ("seed", "device", "deterministic", "dtype", "task", "criterion", "dataflow", "search_space",
                     "training_strategy", "supernet", "constraint", "lookup_table")
ENTRY_FILE = "entry.json"
CHECKPOINT = SUPERNET  # a store entry's checkpoint has the name a run gives it


def key_material(config: Config) -> dict[str, Any]:
    """Everything that determines the trained supernet, as plain data."""
    data = config.dump()
    material: dict[str, Any] = {k: data[k] for k in SUPERNET_SECTIONS}
    material["lookup_table"] = {k: v for k, v in data["lookup_table"].items() if k != "cache_dir"}
    material["versions"] = {"osnas": osnas.__version__, "torch": torch.__version__}
    return material


def supernet_key(config: Config) -> str:
    """Equal for two configs exactly when they would train the same supernet."""
    return hashlib.sha256(json.dumps(key_material(config), sort_keys=True).encode()).hexdigest()[:16]


def store_dir(config: Config) -> Path:
    return Path(config.store.dir) if config.store.dir else Path(config.output.dir) / "supernets"


@dataclass
class Entry:
    """One stored supernet."""

    key: str
    path: Path
    info: dict[str, Any]

    @property
    def created(self) -> float:
        return float(self.info.get("created", 0.0))

    @property
    def size(self) -> int:
        return sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())


class SupernetStore:
    """A directory of trained supernets keyed by :func:`supernet_key`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def for_config(cls, config: Config) -> "SupernetStore | None":
        """The store a config uses, or None when ``store.enabled`` is false."""
        return cls(store_dir(config)) if config.store.enabled else None

    def entry(self, key: str) -> Entry | None:
        """The whole entry of ``key`` (an entry missing its checkpoint or description counts as absent)."""
        path = self.root / key
        if not (path / CHECKPOINT).is_file() or not (path / ENTRY_FILE).is_file():
            return None
        try:
            info = read_json(path / ENTRY_FILE)
        except Exception:  # a damaged description: the entry is unusable, training again is safe
            return None
        return Entry(key, path, info) if isinstance(info, dict) else None

    def lookup(self, config: Config) -> Entry | None:
        """The stored supernet for this config, if its recorded key material matches exactly."""
        found = self.entry(supernet_key(config))
        return found if found is not None and found.info.get("material") == key_material(config) else None

    def put(self, config: Config, checkpoint: Path, trained_by: str, seconds: float) -> bool:
        """Store a trained supernet; False when another process stored the same key first."""
        key = supernet_key(config)
        if self.entry(key) is not None:
            return False
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            try:
                os.link(checkpoint, staging / CHECKPOINT)  # the run's file is replaced, never rewritten in place
            except OSError:
                shutil.copyfile(checkpoint, staging / CHECKPOINT)
            atomic_write_json(staging / ENTRY_FILE, {"key": key, "created": time.time(), "trained_by": trained_by,
                                                     "seconds": round(seconds, 3), "material": key_material(config)})
            os.rename(staging, self.root / key)
            return True
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                return False
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def entries(self) -> list[Entry]:
        """Every whole entry, oldest first."""
        if not self.root.is_dir():
            return []
        found = [self.entry(p.name) for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")]
        return sorted((e for e in found if e is not None), key=lambda e: e.created)

    def prune(self, older_than_days: float | None = None) -> list[Entry]:
        """Delete the entries older than ``older_than_days`` (all when None) and stale temporaries."""
        cutoff = time.time() - (older_than_days or 0.0) * 86400
        removed = [e for e in self.entries() if older_than_days is None or e.created < cutoff]
        for entry in removed:
            shutil.rmtree(entry.path, ignore_errors=True)
        if self.root.is_dir():
            for staging in self.root.glob(".tmp-*"):
                if staging.stat().st_mtime < time.time() - 3600:  # left by a killed process
                    shutil.rmtree(staging, ignore_errors=True)
        return removed


def obtain_supernet(phase: "SupernetPhase", explicit: Path | None = None) -> "Supernet":
    """The run's supernet: ``explicit``, its own, the store's, or trained now (then stored).

    Writes ``supernet_source.json`` in the run directory: the key, whether it was reused and
    who trained it, so comparisons and reports can show the sharing.
    """
    ctx = phase.ctx
    if explicit is not None or ctx.run.exists(SUPERNET):
        return phase.run(explicit)
    store = SupernetStore.for_config(ctx.config)
    if store is None:
        return phase.run()
    key = supernet_key(ctx.config)
    found = distributed.from_main(lambda: store.lookup(ctx.config))
    if found is not None:
        ctx.say(f"supernet: reusing {key} from the store ({found.path})")
        supernet = phase.run(found.path / CHECKPOINT)
        ctx.run.write_json(SUPERNET_SOURCE, {"key": key, "reused": True, "store": str(found.path),
                                             "trained_by": found.info.get("trained_by"),
                                             "seconds": found.info.get("seconds", 0.0)})
        return supernet
    supernet = phase.run()
    seconds = ctx.timer.seconds.get("supernet", 0.0)
    if distributed.is_main():
        stored = store.put(ctx.config, ctx.run.file(SUPERNET), str(ctx.run.path.resolve()), seconds)
        ctx.say(f"supernet: {'stored' if stored else 'trained; the store already holds'} {key} in {store.root}")
        ctx.run.write_json(SUPERNET_SOURCE, {"key": key, "reused": False, "store": str(store.root / key),
                                             "trained_by": str(ctx.run.path.resolve()), "seconds": round(seconds, 3)})
    return supernet
