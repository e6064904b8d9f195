"""Candidate scoring as osnas did it when issue 17 was filed (commit 92edd1a): the baseline of its targets.

Issue 17 asks for the search to take half the time and score twice the architectures per second
of "today's" evaluator. Several of the changes made for it cannot be switched off in the
current :class:`~osnas.search_strategies.evaluator.Evaluator` (scoring in inference mode, BN
folded into the convolutions, only the path switched to eval mode), so the benchmarks keep
that evaluator's scoring here and time it against the current one in one process.
"""

from __future__ import annotations

import numpy as np
import torch

from osnas.dataflows.base import Loader
from osnas.search_spaces.supernet import Supernet
from osnas.search_strategies.base import arch_key
from osnas.search_strategies.evaluator import Evaluator, batchnorms, recalibrating
from osnas.training_agents.base import TrainingAgent


class EvaluatorAtIssue17(Evaluator):
    """Per candidate: the whole supernet to eval mode, the path's BN recalibrated under ``no_grad``,
    then each validation batch scored by its own forward with the BN unfolded; no prefix cache."""

    def __init__(self, supernet: Supernet, agent: TrainingAgent, train_loader: Loader, val_loader: Loader,
                 bn_batches: int = 4, val_batches: int = 4) -> None:
        super().__init__(supernet, agent, train_loader, val_loader, bn_batches, val_batches, 0.0, 0)

    def score(self, arch: np.ndarray) -> float:
        key = arch_key(arch)
        if key in self.cache:
            return self.cache[key]
        was_training = self.supernet.training
        self.supernet.eval()

        def forward(x: torch.Tensor) -> torch.Tensor:
            return self.supernet(x, key)

        try:
            with torch.no_grad():
                if self.bn_data:
                    with recalibrating(batchnorms(self.supernet.path_modules(key))):
                        for x, _ in self.bn_data:
                            forward(x)
                metrics = self.agent.evaluate(forward, self.val_data)
        finally:
            self.supernet.train(was_training)
        self.recalibrations += 1 if self.bn_data else 0
        value = float(metrics[self.agent.selection_metric])
        self.cache[key] = value
        self.metrics[key] = metrics
        return value

    def evaluate(self, archs: np.ndarray) -> np.ndarray:
        """Scores in the order given (the lexicographic order is for the prefix cache, which this lacks)."""
        archs = np.atleast_2d(np.asarray(archs, dtype=np.int64))
        return np.array([self.score(a) for a in archs], dtype=np.float64)
