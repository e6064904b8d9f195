"""Triplet loss with online batch-hard mining (Hermans et al., 2017; FaceNet margin)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import PositiveFloat

from osnas.criteria.base import Criterion, CriterionOptions, full_precision
from osnas.registry import register
from osnas.training import upcast


class TripletOptions(CriterionOptions):
    margin: PositiveFloat = 0.2
    normalize: bool = True


def pairwise_distances(x: torch.Tensor) -> torch.Tensor:
    """Euclidean distance matrix; clamped before the root so equal embeddings give finite gradients."""
    squared = (x * x).sum(dim=1)
    d2 = squared[:, None] + squared[None, :] - 2.0 * x @ x.T
    return d2.clamp_min(1e-12).sqrt()


@register("criterion", "triplet")
class Triplet(Criterion):
    """Batch-hard triplet loss on embeddings: per anchor, hardest positive vs hardest negative plus a margin."""

    Options = TripletOptions
    expects = "embeddings"

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with full_precision(outputs):
            x = upcast(outputs)
            if self.options.normalize:
                x = F.normalize(x, dim=1)
            dist = pairwise_distances(x)
            same = targets[:, None] == targets[None, :]
            positive = same & ~torch.eye(len(targets), dtype=torch.bool, device=targets.device)
            negative = ~same
            hardest_positive = (dist * positive).max(dim=1).values  # distances are >= 0
            far = dist.detach().max() + 1.0
            hardest_negative = torch.where(negative, dist, far).min(dim=1).values
            # anchors without a positive or a negative in the batch form no triplet
            valid = (positive.any(dim=1) & negative.any(dim=1)).float()
            losses = F.relu(hardest_positive - hardest_negative + self.options.margin)
            return (losses * valid).sum() / valid.sum().clamp_min(1.0)
