"""Scores candidate architectures on the trained supernet.

For each candidate: BN statistics on its path are reset and recomputed over a
fixed set of training batches (the shared running stats of a supernet do not
fit any single path), then it is scored on a fixed validation subset. Scores are
cached, so no architecture is evaluated twice.
"""

from __future__ import annotations

from itertools import islice
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from osnas.dataflows.base import Loader
from osnas.search_spaces.supernet import Supernet
from osnas.search_strategies.base import arch_key
from osnas.training_agents.base import TrainingAgent

Batch = tuple[torch.Tensor, torch.Tensor]


def take_batches(loader: Loader, count: int) -> list[Batch]:
    """The first ``count`` batches of a loader, kept so every candidate sees the same data."""
    return [(x, y) for x, y in islice(iter(loader), count)]


def batchnorms(modules: list[nn.Module]) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for module in modules for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_bn(forward: Callable[[torch.Tensor], torch.Tensor], norms: list[nn.Module], batches: list[Batch]) -> None:
    """Replace running mean/var of ``norms`` by their exact average over ``batches``."""
    if not batches or not norms:
        return
    saved = [(m, m.momentum, m.training) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
        m.train()
    try:
        for x, _ in batches:
            forward(x)
    finally:
        for m, momentum, training in saved:
            m.momentum = momentum
            m.train(training)


class Evaluator:
    """``evaluate(archs) -> scores`` (higher is better) with BN recalibration and a cache."""

    def __init__(
        self,
        supernet: Supernet,
        agent: TrainingAgent,
        train_loader: Loader,
        val_loader: Loader,
        bn_batches: int = 4,
        val_batches: int = 4,
    ) -> None:
        self.supernet = supernet
        self.agent = agent
        self.bn_data = take_batches(train_loader, bn_batches)
        self.val_data = take_batches(val_loader, val_batches)
        self.cache: dict[tuple[int, ...], float] = {}
        self.metrics: dict[tuple[int, ...], dict[str, float]] = {}
        self.recalibrations = 0

    def validation_batches(self) -> list[Batch]:
        """The fixed validation batches candidates are scored on (strategies that learn from validation data)."""
        return list(self.val_data)

    @property
    def num_evaluated(self) -> int:
        """Distinct architectures scored so far (cache misses)."""
        return len(self.cache)

    def score(self, arch: np.ndarray) -> float:
        key = arch_key(arch)
        if key in self.cache:
            return self.cache[key]
        was_training = self.supernet.training
        self.supernet.eval()

        def forward(x: torch.Tensor) -> torch.Tensor:
            return self.supernet(x, key)

        try:
            recalibrate_bn(forward, batchnorms(self.supernet.path_modules(key)), self.bn_data)
            self.recalibrations += 1 if self.bn_data else 0
            with torch.no_grad():
                metrics = self.agent.evaluate(forward, self.val_data)
        finally:
            self.supernet.train(was_training)
        value = float(metrics[self.agent.selection_metric])
        self.cache[key] = value
        self.metrics[key] = metrics
        return value

    def evaluate(self, archs: np.ndarray) -> np.ndarray:
        """Scores of an (N, L) batch (or one (L,) vector) of architectures."""
        archs = np.atleast_2d(np.asarray(archs, dtype=np.int64))
        return np.array([self.score(a) for a in archs], dtype=np.float64)

    def state_dict(self) -> dict[str, object]:
        return {"cache": [[list(k), v] for k, v in self.cache.items()]}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.cache = {tuple(k): float(v) for k, v in state["cache"]}  # type: ignore[union-attr]
