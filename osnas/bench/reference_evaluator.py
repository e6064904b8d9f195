"""Candidate scoring as osnas did it when issue 17 was filed (commit 92edd1a): the baseline of its targets.

Issue 17 asks for the search to take half the time and score twice the architectures per second
of "today's" evaluator. Several of the changes made for it cannot be switched off in the
current :class:`~osnas.search_strategies.evaluator.Evaluator` (scoring in inference mode, BN
folded into the convolutions, only the path switched to eval mode), so the benchmarks keep
that evaluator's scoring here and time it against the current one in one process.
"""

from __future__ import annotations

import torch

from osnas.dataflows.base import Loader
from osnas.search_spaces.supernet import Supernet
from osnas.search_strategies.evaluator import Evaluator, batchnorms, recalibrating
from osnas.training_agents.base import TrainingAgent


class EvaluatorAtIssue17(Evaluator):
    """Per candidate: the whole supernet to eval mode, the path's BN recalibrated under ``no_grad``,
    then each validation batch scored by its own forward with the BN unfolded; no prefix cache."""

    def __init__(self, supernet: Supernet, agent: TrainingAgent, train_loader: Loader, val_loader: Loader,
                 bn_batches: int = 4, val_batches: int = 4) -> None:
        super().__init__(supernet, agent, train_loader, val_loader, bn_batches, val_batches, 0.0, 0)

    def _metrics(self, key: tuple[int, ...]) -> dict[str, float]:
        """As 92edd1a scored: under ``no_grad`` (``recalibrate_bn`` now runs in inference mode)."""
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
                return self.agent.evaluate(forward, self.val_data)
        finally:
            self.supernet.train(was_training)
