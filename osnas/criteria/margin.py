"""Shared part of the margin-softmax heads (CosFace, ArcFace): class weights and cosine logits.

The head's weight matrix (classes x embedding) belongs to the criterion: it is
trained with the network, reset before the final training, and never exported.
"""

from __future__ import annotations

from abc import abstractmethod

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import Field, PositiveFloat

from osnas.config import ComponentOptions
from osnas.criteria.base import Criterion, CriterionOptions, full_precision
from osnas.training import upcast


class MarginOptions(CriterionOptions):
    s: PositiveFloat = 64.0
    m: float = Field(0.5, ge=0.0)


class MarginHead(Criterion):
    """Cross-entropy over ``s * cos(theta)``, with the target class's cosine replaced by a margin version."""

    expects = "embeddings"

    def __init__(self, options: ComponentOptions, num_classes: int, output_dim: int) -> None:
        super().__init__(options, num_classes, output_dim)
        self.weight = nn.Parameter(torch.empty(num_classes, output_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, std=0.01)

    def cosine(self, outputs: torch.Tensor) -> torch.Tensor:
        """(N, classes) cosine between each embedding and each class weight."""
        return F.linear(F.normalize(upcast(outputs), dim=1), F.normalize(upcast(self.weight), dim=1)).clamp(-1.0, 1.0)

    @abstractmethod
    def target_logit(self, cos: torch.Tensor) -> torch.Tensor:
        """The margin-penalised cosine of the target class."""

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with full_precision(outputs):
            cos = self.cosine(outputs)
            index = targets[:, None]
            logits = cos.scatter(1, index, self.target_logit(cos.gather(1, index)))
            return F.cross_entropy(self.options.s * logits, targets)
