"""Image classification: top-1 / top-5 accuracy, selection on top-1."""

from __future__ import annotations

import torch

from osnas.dataflows.base import Loader
from osnas.registry import register
from osnas.training_agents.base import Forward, TrainingAgent


@register("training_agent", "classification")
class Classification(TrainingAgent):
    """Classification with top-1/top-5 accuracy; candidates are selected on validation top-1."""

    selection_metric = "top1"

    def batch_metrics(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"top1": (outputs.argmax(dim=1) == targets).float().mean() * 100.0}

    @torch.no_grad()
    def evaluate(self, forward: Forward, loader: Loader) -> dict[str, float]:
        correct1 = torch.zeros((), dtype=torch.long)
        correct5 = torch.zeros((), dtype=torch.long)
        loss_sum = torch.zeros((), dtype=torch.float64)
        total = 0
        for x, y in loader:
            out = forward(x)
            loss_sum += self.loss(out, y).double().cpu() * y.shape[0]
            k = min(5, out.shape[1])
            top = out.topk(k, dim=1).indices
            hits = top == y[:, None]
            correct1 += hits[:, 0].sum().cpu()
            correct5 += hits.any(dim=1).sum().cpu()
            total += y.shape[0]
        total = max(total, 1)
        return {
            "top1": 100.0 * correct1.item() / total,
            "top5": 100.0 * correct5.item() / total,
            "loss": loss_sum.item() / total,
        }
