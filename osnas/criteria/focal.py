"""Multi-class focal loss (Lin et al., ICCV 2017)."""

from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveFloat

from osnas.config import ComponentOptions
from osnas.criteria.base import Criterion, CriterionOptions, full_precision
from osnas.errors import ConfigError
from osnas.registry import register
from osnas.training import upcast


class FocalOptions(CriterionOptions):
    gamma: float = Field(2.0, ge=0.0)
    # a constant weight, or one weight per class (e.g. inverse class frequencies)
    alpha: Optional[Union[PositiveFloat, list[PositiveFloat]]] = None


@register("criterion", "focal")
class Focal(Criterion):
    """Focal loss: cross-entropy scaled by (1 - p_target)^gamma, optional class weights alpha."""

    Options = FocalOptions

    def __init__(self, options: ComponentOptions, num_classes: int, output_dim: int) -> None:
        super().__init__(options, num_classes, output_dim)
        alpha = options.alpha
        if isinstance(alpha, list) and len(alpha) != num_classes:
            raise ConfigError(f"criterion.alpha lists {len(alpha)} class weights but the data has {num_classes} classes")
        if isinstance(alpha, list):
            weights: torch.Tensor | None = torch.tensor(alpha, dtype=torch.float32)
        else:
            weights = None if alpha is None else torch.full((num_classes,), float(alpha))
        self.register_buffer("alpha", weights, persistent=False)

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with full_precision(outputs):
            log_p = F.log_softmax(upcast(outputs), dim=1).gather(1, targets[:, None]).squeeze(1)
            loss = -(1.0 - log_p.exp()).pow(self.options.gamma) * log_p
            if self.alpha is not None:
                loss = loss * self.alpha[targets]
            return loss.mean()
