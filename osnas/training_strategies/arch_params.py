"""Architecture parameters shared by the gradient-based strategies (differentiable, proxyless).

``alpha`` is an (L, K) matrix of logits; entries beyond a layer's candidate count
are masked (logit -inf, probability 0). It has its own Adam optimizer and is
updated on validation batches with a hardware penalty chosen by
``ArchOptions.penalty`` (docs/strategies.md, "Hardware penalties"): the papers'
multiplicative forms (FBNet, ProxylessNAS) on the softmax-expected cost, which
always push the cost down, or the default budget-targeting form on the derived
(argmax) architecture's cost with the expected cost's gradient (straight
through), which pulls the architecture that will be derived onto the budget.
"""

from __future__ import annotations

import math
from itertools import islice
from typing import Any, Iterator, Literal, Optional

import numpy as np
import torch
import torch.nn as nn
from pydantic import Field, PositiveFloat, model_validator

from osnas.dataflows.base import Loader
from osnas.errors import DataError, OsnasError
from osnas.search_spaces.lookup_table import UNITS
from osnas.training import Updater
from osnas.training_strategies.base import Batch, TrainingContext, TrainingStrategy, TrainingStrategyOptions


PAPER_PENALTIES = {"fbnet": (0.2, 0.6), "proxyless": (0.2, 0.3)}  # (alpha, beta) of FBNet and ProxylessNAS


class ArchOptions(TrainingStrategyOptions):
    """Options of every strategy that learns architecture parameters."""

    arch_lr: PositiveFloat = 1e-3
    arch_weight_decay: float = Field(1e-3, ge=0.0)
    arch_betas: tuple[float, float] = Field((0.5, 0.999), description="Adam betas of alpha (DARTS: 0.5, 0.999)")
    arch_eps: PositiveFloat = 1e-8
    warmup_epochs: int = Field(0, ge=0, description="epochs of weight-only training before alpha is updated")
    penalty: Literal["budget", "distance", "excess", "fbnet", "proxyless", "none"] = Field(
        "budget",
        description="budget: loss + w * (relu(cost/max - 1) + relu(1 - cost/(budget_fraction * max))), no pull "
        "inside the band; distance: loss + w * |cost/(budget_fraction * max) - 1| (TuNAS' absolute reward); "
        "excess: loss + w * relu(cost/max - 1) (+ relu(1 - cost/min)); fbnet: loss * w * log(E[cost]) ** exponent "
        "(FBNet); proxyless: loss * w * (log E[cost] / log max) ** exponent (ProxylessNAS mul#log)",
    )
    penalty_cost: Literal["derived", "expected"] = Field(
        "derived", description="budget/distance/excess: the argmax architecture's cost (straight-through gradient of the "
        "expected cost) or the softmax-expected cost")
    penalty_weight: Optional[float] = Field(
        None, ge=0.0, description="w; default 0.2 for fbnet and proxyless (the papers' alpha), else 1")
    penalty_exponent: Optional[PositiveFloat] = Field(
        None, description="beta of fbnet (default 0.6) and proxyless (default 0.3)")
    budget_fraction: float = Field(0.95, gt=0.0, le=1.0, description="budget: the band's lower edge, distance: "
                                   "the cost aimed at, as a fraction of constraint.max (constraint.min overrides)")

    @model_validator(mode="after")
    def _betas(self) -> "ArchOptions":
        if not all(0.0 <= b < 1.0 for b in self.arch_betas):
            raise ValueError(f"arch_betas {list(self.arch_betas)} must lie in [0, 1)")
        return self

    @property
    def weight(self) -> float:
        if self.penalty_weight is not None:
            return self.penalty_weight
        return PAPER_PENALTIES.get(self.penalty, (1.0, 0.0))[0]

    @property
    def exponent(self) -> float:
        if self.penalty_exponent is not None:
            return self.penalty_exponent
        return PAPER_PENALTIES.get(self.penalty, (0.0, 1.0))[1]


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
        self.arch_optimizer = torch.optim.Adam([self.alpha], lr=options.arch_lr, betas=options.arch_betas,
                                               eps=options.arch_eps, weight_decay=options.arch_weight_decay)
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

    def penalty_floor(self) -> float:
        """The lowest cost the budget penalties accept without a pull: ``constraint.min``, else a fraction of max."""
        constraint = self.context.constraint
        return constraint.min if constraint.min is not None else self.options.budget_fraction * constraint.max

    def penalised_cost(self, probs: torch.Tensor) -> torch.Tensor:
        """``penalty_cost``: the derived architecture's cost in value, the expected cost's gradient; or E[cost]."""
        expected = self.expected_cost(probs)
        if self.options.penalty_cost == "expected":
            return expected
        derived = float(self.context.constraint.cost(self.derive()))
        return expected - expected.detach() + derived

    def arch_loss(self, task_loss: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """The task loss with the hardware penalty of ``ArchOptions.penalty``."""
        opts, constraint = self.options, self.context.constraint
        weight = opts.weight
        if opts.penalty == "none" or weight == 0:
            return task_loss
        probs = probs.float()
        if opts.penalty in PAPER_PENALTIES:  # the papers' costs in base units: MACs/params counted, latency in ms
            scale = 1.0 / UNITS[constraint.metric]
            log_cost = torch.log(self.expected_cost(probs) * scale).clamp(min=1e-6)
            if opts.penalty == "proxyless":
                log_cost = log_cost / math.log(constraint.max * scale)
            return task_loss * weight * log_cost ** opts.exponent
        cost = self.penalised_cost(probs)
        if opts.penalty == "distance":
            return task_loss + weight * torch.abs(cost / self.penalty_floor() - 1.0)
        penalty = torch.relu(cost / constraint.max - 1.0)
        if opts.penalty == "budget" or constraint.min:
            penalty = penalty + torch.relu(1.0 - cost / self.penalty_floor())
        return task_loss + weight * penalty

    def arch_update(self, loss: torch.Tensor, updater: Updater, frozen: np.ndarray | None = None) -> bool:
        """One Adam step on alpha from ``loss``; the rows of ``frozen`` layers stay as they are.

        Gradients of the weights are neither computed nor kept. False when the step
        was skipped (an fp16 overflow: the weight step's scaler lowers the scale).
        """
        scale = updater.scaler.get_scale() if updater.scaler.is_enabled() else 1.0
        grads = torch.autograd.grad(loss * scale, self.arch_parameters())
        self.arch_optimizer.zero_grad(set_to_none=True)
        for param, grad in zip(self.arch_parameters(), grads):
            param.grad = grad / scale
        if scale != 1.0 and not all(torch.isfinite(g).all() for g in grads):
            return False
        rows = None if frozen is None or not frozen.any() else torch.as_tensor(frozen, device=self.alpha.device)
        kept = None if rows is None else self.alpha.detach()[rows].clone()
        self.arch_optimizer.step()
        if rows is not None:
            with torch.no_grad():
                self.alpha[rows] = kept
        return True

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
