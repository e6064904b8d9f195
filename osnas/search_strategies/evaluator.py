"""Scores candidate architectures on the trained supernet.

For each candidate: BN statistics on its path are reset and recomputed over a
fixed set of training batches (the shared running stats of a supernet do not
fit any single path), then it is scored on a fixed validation subset. Scores are
cached, so no architecture is evaluated twice.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, contextmanager
from itertools import islice
from typing import Callable, Iterator

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


@contextmanager
def frozen(supernet: Supernet) -> Iterator[None]:
    """Supernet weights fixed, BN on batch statistics; parameters, modes and BN buffers restored afterwards."""
    flags = [(p, p.requires_grad) for p in supernet.parameters()]
    buffers = {name: b.clone() for name, b in supernet.named_buffers()}
    was_training = supernet.training
    supernet.eval()
    for module in supernet.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.train()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        with torch.no_grad():
            for name, b in supernet.named_buffers():
                b.copy_(buffers[name])
        supernet.train(was_training)


class Evaluator:
    """``evaluate(archs) -> scores`` (higher is better) with BN recalibration and a cache.

    It is also the search's :class:`~osnas.search_strategies.base.SupernetScorer`: the
    frozen supernet as a differentiable loss of mixing weights on its training batches.
    """

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

    # --------------------------------------------------------- SupernetScorer: training on the frozen supernet
    @property
    def num_train_batches(self) -> int:
        return len(self.bn_data)

    @property
    def device(self) -> torch.device:
        return next(self.supernet.parameters()).device

    def frozen(self) -> AbstractContextManager[None]:
        return frozen(self.supernet)

    def mixed_loss(self, weights: torch.Tensor, active: np.ndarray, step: int) -> torch.Tensor:
        x, y = self.bn_data[step % len(self.bn_data)]
        return self.agent.loss(self.supernet(x, weights, active=active), y)

    def state_dict(self) -> dict[str, object]:
        return {"cache": [[list(k), v] for k, v in self.cache.items()]}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.cache = {tuple(k): float(v) for k, v in state["cache"]}  # type: ignore[union-attr]
