"""The training-agent contract: the task's loss, metrics and selection metric.

The main agent and the strategies stay task-agnostic: they call ``loss`` on the
network's outputs and ``evaluate`` with a forward function and a loader.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, ClassVar, Literal

import torch

from osnas.config import ComponentOptions
from osnas.criteria.base import Criterion
from osnas.dataflows.base import Loader

Forward = Callable[[torch.Tensor], torch.Tensor]


class TrainingAgentOptions(ComponentOptions):
    """Options every training agent accepts."""


class TrainingAgent(ABC):
    """A task: what the network outputs, how it is scored."""

    name: ClassVar[str]  # the registered name, set by @register
    Options: ClassVar[type[ComponentOptions]] = TrainingAgentOptions
    selection_metric: ClassVar[str] = "top1"
    # what the criterion must train on (its ``expects``): class logits or embeddings
    expects: ClassVar[Literal["logits", "embeddings"]] = "logits"

    def __init__(self, options: ComponentOptions, criterion: Criterion, num_classes: int) -> None:
        self.options = options
        self.criterion = criterion
        self.num_classes = num_classes

    @classmethod
    def output_dim(cls, options: ComponentOptions, num_classes: int) -> int:
        """Width of the network's output (classes, or the embedding size)."""
        return num_classes

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.criterion(outputs, targets)

    def batch_metrics(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Cheap per-batch figures for training logs (tensors: no host sync here)."""
        return {}

    @abstractmethod
    def evaluate(self, forward: Forward, loader: Loader) -> dict[str, float]:
        """Metrics of a model on a split; must include ``selection_metric`` (higher is better)."""
