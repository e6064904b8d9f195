"""ArcFace / additive angular margin loss (Deng et al., CVPR 2019)."""

from __future__ import annotations

import math

import torch

from osnas.criteria.margin import MarginHead, MarginOptions
from osnas.registry import register


class ArcFaceOptions(MarginOptions):
    easy_margin: bool = False


@register("criterion", "arcface")
class ArcFace(MarginHead):
    """ArcFace margin head: logits s * cos(theta + m) on the target class; the head is never exported."""

    Options = ArcFaceOptions

    def target_logit(self, cos: torch.Tensor) -> torch.Tensor:
        m = self.options.m
        sin = (1.0 - cos * cos).clamp_min(1e-9).sqrt()
        shifted = cos * math.cos(m) - sin * math.sin(m)  # cos(theta + m)
        if self.options.easy_margin:
            return torch.where(cos > 0, shifted, cos)
        # past theta = pi - m, cos(theta + m) would rise again; continue monotonically with a linear penalty
        return torch.where(cos > math.cos(math.pi - m), shifted, cos - math.sin(math.pi - m) * m)
