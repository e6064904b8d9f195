"""SPOS uniform sampling (Guo et al.): one uniformly drawn path per step."""

from __future__ import annotations

import torch

from osnas.registry import register
from osnas.search_spaces.supernet import Supernet
from osnas.training import Updater
from osnas.training_agents.base import TrainingAgent
from osnas.training_strategies.base import Batch, TrainingStrategy, TrainingStrategyOptions, train_weights


class UniformOptions(TrainingStrategyOptions):
    # SPOS trains the whole space; under a tight budget most of those paths can never be chosen, so
    # drawing uniformly over the feasible set spends every step on the architectures the search ranks
    feasible_only: bool = False


@register("training_strategy", "uniform")
class Uniform(TrainingStrategy):
    """Single Path One-Shot: each step trains one path drawn uniformly from the space (or its feasible part)."""

    Options = UniformOptions

    def sample(self) -> list[int]:
        if self.options.feasible_only:
            return self.context.constraint.sample_feasible(self.rng, 1)[0].tolist()
        return self.context.definition.sample(self.rng, 1)[0].tolist()

    def step(
        self, supernet: Supernet, batch: Batch, agent: TrainingAgent, updater: Updater
    ) -> torch.Tensor:
        return train_weights(supernet, self.sample(), batch, agent, updater)
