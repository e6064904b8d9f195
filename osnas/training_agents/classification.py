"""Image classification: top-1 / top-5 accuracy, selection on top-1."""

from __future__ import annotations

import torch

from osnas.config import ComponentOptions
from osnas.criteria.base import Criterion
from osnas.dataflows.base import Loader
from osnas.errors import ConfigError
from osnas.registry import register
from osnas.training_agents.base import Forward, TrainingAgent


@register("training_agent", "classification")
class Classification(TrainingAgent):
    """Classification with top-1/top-5 accuracy; candidates are selected on validation top-1."""

    selection_metric = "top1"

    def __init__(self, options: ComponentOptions, criterion: Criterion, num_classes: int) -> None:
        super().__init__(options, criterion, num_classes)
        if criterion.expects != self.expects:
            raise ConfigError(f"criterion {criterion.name!r} trains "
                              "embeddings; task classification needs class logits (cross_entropy, focal); "
                              "embedding criteria go with task face_recognition")

    def batch_metrics(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"top1": (outputs.argmax(dim=1) == targets).float().mean() * 100.0}

    @torch.no_grad()
    def evaluate(self, forward: Forward, loader: Loader) -> dict[str, float]:
        # [loss sum, top-1 hits, top-5 hits] stays on the device: one host sync at the end, not one per batch
        sums = torch.zeros(3, dtype=torch.float64)
        total = 0
        for x, y in loader:
            out = forward(x)
            hits = out.topk(min(5, out.shape[1]), dim=1).indices == y[:, None]
            batch = torch.stack([self.loss(out, y).double() * y.shape[0], hits[:, 0].sum(), hits.any(dim=1).sum()])
            sums = sums.to(batch.device) + batch
            total += y.shape[0]
        loss_sum, correct1, correct5 = sums.tolist()
        total = max(total, 1)
        return {"top1": 100.0 * correct1 / total, "top5": 100.0 * correct5 / total, "loss": loss_sum / total}
