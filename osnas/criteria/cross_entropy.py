"""Cross-entropy with optional label smoothing."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from osnas.criteria.base import Criterion, CriterionOptions
from osnas.registry import register


class CrossEntropyOptions(CriterionOptions):
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)


@register("criterion", "cross_entropy")
class CrossEntropy(Criterion):
    """Softmax cross-entropy on class logits, with optional label smoothing."""

    Options = CrossEntropyOptions

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets, label_smoothing=self.options.label_smoothing)
