"""CosFace / large-margin cosine loss (Wang et al., CVPR 2018)."""

from __future__ import annotations

import torch
from pydantic import Field

from osnas.criteria.margin import MarginHead, MarginOptions
from osnas.registry import register


class CosFaceOptions(MarginOptions):
    m: float = Field(0.35, ge=0.0)


@register("criterion", "cosface")
class CosFace(MarginHead):
    """CosFace margin head: logits s * (cos(theta) - m) on the target class; the head is never exported."""

    Options = CosFaceOptions

    def target_logit(self, cos: torch.Tensor) -> torch.Tensor:
        return cos - self.options.m
