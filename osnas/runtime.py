"""Where and how reproducibly a run computes: device choice, seeding, RNG snapshots, disk estimate."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch

from osnas.config import Config
from osnas.errors import OsnasError
from osnas.search_spaces.base import SpaceDefinition


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without it is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise OsnasError(f"device: {name} was requested but CUDA is not available here; use device: cpu or auto")
        index = torch.device(name).index
        if index is not None and index >= torch.cuda.device_count():
            raise OsnasError(f"device: {name} does not exist; this machine has {torch.cuda.device_count()} GPU(s)")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def rng_state() -> dict[str, Any]:
    """The global RNG states in types that ``torch.load(weights_only=True)`` accepts (no numpy arrays)."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"]["key"] = numpy_state["state"]["key"].tolist()
    return {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    numpy_state = dict(state["numpy"])
    numpy_state["state"] = {**numpy_state["state"], "key": np.asarray(numpy_state["state"]["key"], dtype=np.uint32)}
    np.random.set_state(numpy_state)
    torch.set_rng_state(state["torch"])


def needed_disk_bytes(config: Config, definition: SpaceDefinition, arch: np.ndarray | None = None) -> int:
    """Disk space the checkpoints of a run need at their peak, estimated before training starts.

    A checkpoint holds the weights plus the optimizer's per-weight buffers; an
    atomic write keeps the old and the new file side by side, and the finished
    phase's weights (``supernet.pt``) stay for the rest of the run. ``arch``:
    only a child is trained (``osnas train``).
    """
    from osnas.search_spaces.child import build_child
    from osnas.search_spaces.supernet import Supernet

    with torch.device("meta"):
        model = Supernet(definition) if arch is None else build_child(definition, arch)
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    opt = (config.supernet if arch is None else config.final).optimizer
    slots = 2 if opt.name in ("adam", "adamw") else int(opt.momentum > 0)
    return 2 * weights * (1 + slots) + weights + 2**20
