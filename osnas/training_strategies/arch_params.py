"""Architecture parameters shared by the gradient-based strategies (differentiable, proxyless).

``alpha`` is an (L, K) matrix of logits; entries beyond a layer's candidate count
are masked (logit -inf, probability 0). It has its own Adam optimizer, is updated
on validation batches, and the hardware penalty is taken on the softmax-*expected*
lookup-table cost, so it is differentiable and means the same for every space.
"""

from __future__ import annotations

import math
from itertools import islice
from typing import Any, Iterator, Literal

import numpy as np
import torch
import torch.nn as nn
from pydantic import Field, PositiveFloat

from osnas.dataflows.base import Loader
from osnas.errors import DataError, OsnasError
from osnas.training import Updater
from osnas.training_strategies.base import Batch, TrainingContext, TrainingStrategy, TrainingStrategyOptions


class ArchOptions(TrainingStrategyOptions):
    """Options of every strategy that learns architecture parameters."""

    arch_lr: PositiveFloat = 1e-3
    arch_weight_decay: float = Field(1e-3, ge=0.0)
    warmup_epochs: int = Field(0, ge=0, description="epochs of weight-only training before alpha is updated")
    penalty: Literal["relative", "fbnet", "none"] = Field(
        "relative",
        description="relative: loss + w * relu(E[cost]/max - 1) (and relu(1 - E[cost]/min) with a min); "
        "fbnet: loss * w * log(1 + E[cost]/max) ** exponent",
    )
    penalty_weight: float = Field(1.0, ge=0.0)
    penalty_exponent: PositiveFloat = Field(0.6, description="FBNet's beta; only used by penalty: fbnet")


def masked_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Row-wise softmax over the ``True`` entries of ``mask``; masked entries get probability 0."""
    return torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)


class ValCycle:
    """Endless validation batches, restartable exactly: the loader state at each pass start plus the position."""

    def __init__(self, loader: Loader) -> None:
        self.loader = loader
        self.start_state: dict[str, Any] | None = None
        self.position = 0
        self.iterator: Iterator[Batch] | None = None

    def _restart(self) -> None:
        self.start_state = self.loader.state_dict()
        self.position = 0
        self.iterator = iter(self.loader)

    def next(self) -> Batch:
        if self.iterator is None:
            self._restart()
        batch = next(self.iterator, None)  # type: ignore[arg-type]
        if batch is None:
            self._restart()
            batch = next(self.iterator, None)  # type: ignore[arg-type]
            if batch is None:
                raise DataError("the validation split yields no batches; architecture parameters are learnt on it "
                                "(raise dataflow.val_fraction)")
        self.position += 1
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"start_state": self.start_state, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.iterator = None
        if state["start_state"] is None:
            return
        self.loader.load_state_dict(state["start_state"])
        self._restart()
        self.iterator = islice(self.iterator, state["position"], None)  # type: ignore[arg-type]
        self.position = state["position"]


class ArchStrategy(TrainingStrategy):
    """Base of strategies that learn (L, K) architecture logits; see the module docstring."""

    Options = ArchOptions

    def __init__(self, options: ArchOptions, context: TrainingContext) -> None:
        super().__init__(options, context)
        if options.warmup_epochs >= context.total_epochs:
            raise OsnasError(
                f"training_strategy.warmup_epochs ({options.warmup_epochs}) must be smaller than supernet.epochs "
                f"({context.total_epochs}), or the architecture parameters are never trained"
            )
        d = context.definition
        self.mask = torch.as_tensor(d.choice_mask, device=context.device)
        self.alpha = nn.Parameter(torch.zeros(d.num_layers, d.max_choices, device=context.device))
        # DARTS' settings for the architecture optimizer (betas 0.5, 0.999)
        self.arch_optimizer = torch.optim.Adam([self.alpha], lr=options.arch_lr, betas=(0.5, 0.999),
                                               weight_decay=options.arch_weight_decay)
        self.val = ValCycle(context.val_loader)
        self.epoch = 0

    # ------------------------------------------------------------------ the public view of alpha
    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha]

    def probabilities(self) -> torch.Tensor:
        """(L, K) differentiable candidate probabilities (0 where a layer has no such candidate)."""
        return masked_softmax(self.alpha, self.mask)

    def arch_probabilities(self) -> np.ndarray:
        return self.probabilities().detach().cpu().numpy()

    def derive(self) -> np.ndarray:
        """The most probable candidate of every layer (may break the budget or a rule: search repairs it)."""
        return self.alpha.detach().masked_fill(~self.mask, float("-inf")).argmax(dim=1).cpu().numpy().astype(np.int64)

    @property
    def arch_training(self) -> bool:
        """False during the weight-only warm-up epochs."""
        return self.epoch >= self.options.warmup_epochs

    def on_epoch_start(self, epoch: int) -> None:
        self.epoch = epoch

    # ------------------------------------------------------------------ loss and update
    def expected_cost(self, probs: torch.Tensor) -> torch.Tensor:
        """Softmax-expected cost of the constraint's metric, in constraint units."""
        return self.context.lut.expected_cost(probs, self.context.constraint.metric)

    def arch_loss(self, task_loss: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """The task loss with the hardware penalty on ``expected_cost(probs)`` (see ``ArchOptions.penalty``)."""
        opts, constraint = self.options, self.context.constraint
        if opts.penalty == "none" or opts.penalty_weight == 0:
            return task_loss
        expected = self.expected_cost(probs.float())
        ratio = expected / constraint.max
        if opts.penalty == "fbnet":
            return task_loss * opts.penalty_weight * torch.log1p(ratio) ** opts.penalty_exponent
        penalty = torch.relu(ratio - 1.0)
        if constraint.min:
            penalty = penalty + torch.relu(1.0 - expected / constraint.min)
        return task_loss + opts.penalty_weight * penalty

    def arch_update(self, loss: torch.Tensor, updater: Updater) -> None:
        """One Adam step on alpha from ``loss``; gradients of the weights are neither computed nor kept."""
        scale = updater.scaler.get_scale() if updater.scaler.is_enabled() else 1.0
        grads = torch.autograd.grad(loss * scale, self.arch_parameters())
        self.arch_optimizer.zero_grad(set_to_none=True)
        for param, grad in zip(self.arch_parameters(), grads):
            param.grad = grad / scale
        if scale != 1.0 and not all(torch.isfinite(g).all() for g in grads):
            return  # an fp16 overflow: the weight step's scaler lowers the scale, this alpha step is skipped
        self.arch_optimizer.step()

    # ------------------------------------------------------------------ logging and state
    def epoch_metrics(self) -> dict[str, float]:
        """Expected and derived cost, and how undecided alpha still is (mean normalised entropy, 1 = uniform)."""
        with torch.no_grad():
            expected = float(self.expected_cost(self.probabilities()))
            p = masked_softmax(self.alpha.double(), self.mask).cpu().numpy()
        plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
        entropy = float((-plogp.sum(axis=1) / np.log(np.maximum(self.context.definition.choices, 2))).mean())
        derived = self.derive()
        return {"arch_expected_cost": expected, "arch_entropy": entropy,
                "arch_derived_cost": float(self.context.constraint.cost(derived)),
                "arch_derived_feasible": bool(self.context.constraint.feasible(derived))}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "alpha": self.alpha.detach().cpu().clone(),
                "arch_optimizer": self.arch_optimizer.state_dict(), "val": self.val.state_dict(), "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        with torch.no_grad():
            self.alpha.copy_(state["alpha"].to(self.alpha.device))
        self.arch_optimizer.load_state_dict(state["arch_optimizer"])
        self.val.load_state_dict(state["val"])
        self.epoch = state["epoch"]


def exponential_anneal(start: float, end: float, epoch: int, total_epochs: int) -> float:
    """``start`` at epoch 0, ``end`` at the last epoch, geometric in between (FBNet's temperature decay)."""
    progress = min(1.0, epoch / max(1, total_epochs - 1))
    return start * math.exp(progress * math.log(end / start))
