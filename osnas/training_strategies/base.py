"""The training-strategy contract: which paths (or mixing weights) each supernet step trains.

A strategy may hold state (architecture parameters, a sampler's RNG); it is saved
with the supernet checkpoint through ``state_dict`` / ``load_state_dict``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from osnas.config import ComponentOptions
from osnas.constraint import Constraint
from osnas.dataflows.base import Loader
from osnas.search_spaces.base import SpaceDefinition
from osnas.search_spaces.lookup_table import LookupTable
from osnas.search_spaces.supernet import Supernet
from osnas.training import Updater
from osnas.training_agents.base import TrainingAgent

Batch = tuple[torch.Tensor, torch.Tensor]


def train_weights(supernet: Supernet, arch: Any, batch: Batch, agent: TrainingAgent, updater: Updater,
                  recompute: bool = False) -> torch.Tensor:
    """One plain weight update on ``batch`` through ``arch`` (a path or mixing weights); the detached loss.

    ``recompute``: a mixed forward stores only each layer's input (see :meth:`Supernet.forward`)."""
    x, y = batch
    updater.zero_grad()
    with updater.autocast():
        loss = agent.loss(supernet(x, arch, recompute=recompute), y)
    updater.backward(loss)
    updater.step()
    return loss.detach()


class TrainingStrategyOptions(ComponentOptions):
    """Options every training strategy accepts."""


@dataclass
class TrainingContext:
    """What a strategy may use besides the batch: the space, its prices, the budget, the val split."""

    definition: SpaceDefinition
    lut: LookupTable
    constraint: Constraint
    val_loader: Loader
    device: torch.device
    seed: int
    total_epochs: int


class TrainingStrategy(ABC):
    """Decides what one supernet training step trains."""

    name: ClassVar[str]  # the registered name, set by @register
    Options: ClassVar[type[ComponentOptions]] = TrainingStrategyOptions

    def __init__(self, options: ComponentOptions, context: TrainingContext) -> None:
        self.options = options
        self.context = context
        self.rng = np.random.default_rng(context.seed)

    @abstractmethod
    def step(self, supernet: Supernet, batch: Batch, agent: TrainingAgent, updater: Updater) -> torch.Tensor:
        """Train on one batch through ``updater`` (zero_grad, autocast forward, backward, step).

        Returns the detached loss; no host-device synchronisation here.
        """

    def on_epoch_start(self, epoch: int) -> None:
        """Called before each supernet epoch (e.g. to anneal a temperature)."""

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
