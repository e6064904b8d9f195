"""Differentiable supernet training (DARTS first-order / FBNet): every candidate runs, mixed by alpha."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field, PositiveFloat, model_validator

from osnas.registry import register
from osnas.search_spaces.supernet import Supernet
from osnas.training import Updater
from osnas.training_agents.base import TrainingAgent
from osnas.training_strategies.arch_params import ArchOptions, ArchStrategy, exponential_anneal
from osnas.training_strategies.base import Batch, TrainingContext, train_weights


class DifferentiableOptions(ArchOptions):
    gumbel: bool = Field(False, description="mix by Gumbel-softmax samples (FBNet) instead of softmax(alpha) (DARTS)")
    tau_start: PositiveFloat = Field(5.0, description="Gumbel temperature at the first epoch (FBNet: 5)")
    tau_end: PositiveFloat = Field(0.5, description="Gumbel temperature at the last epoch; exponential in between")
    recompute: bool = Field(False, description="memory-lean mixed step: keep only each searchable layer's input "
                            "and run its candidates again in the backward pass (1.5x the stored step's time at about "
                            "0.4x its peak memory on CPU, BENCHMARKS.md; results equal up to float rounding)")

    @model_validator(mode="after")
    def _cooling(self) -> "DifferentiableOptions":
        if self.tau_end > self.tau_start:
            raise ValueError(f"tau_end ({self.tau_end}) must not exceed tau_start ({self.tau_start}): it anneals down")
        return self


@register("training_strategy", "differentiable")
class Differentiable(ArchStrategy):
    """DARTS/FBNet: all candidates mixed by softmax(alpha) or Gumbel-softmax; alpha learnt on val batches."""

    Options = DifferentiableOptions

    def __init__(self, options: DifferentiableOptions, context: TrainingContext) -> None:
        super().__init__(options, context)
        self.tau = options.tau_start
        self.noise = torch.Generator().manual_seed(context.seed)  # CPU: same draws on every device

    def on_epoch_start(self, epoch: int) -> None:
        super().on_epoch_start(epoch)
        opts = self.options
        self.tau = exponential_anneal(opts.tau_start, opts.tau_end, epoch, self.context.total_epochs)

    def mixing_weights(self) -> torch.Tensor:
        """(L, K) weights of one forward: softmax(alpha), or a Gumbel-softmax sample at temperature ``tau``."""
        if not self.options.gumbel:
            return self.probabilities()
        uniform = torch.rand(self.alpha.shape, generator=self.noise).clamp_(1e-10, 1.0 - 1e-7)
        gumbel = -torch.log(-torch.log(uniform)).to(self.alpha.device)
        logits = self.alpha.masked_fill(~self.mask, float("-inf"))
        return torch.softmax((logits + gumbel) / self.tau, dim=-1)

    def step(self, supernet: Supernet, batch: Batch, agent: TrainingAgent, updater: Updater) -> torch.Tensor:
        if self.arch_training:  # first-order: alpha on a val batch, then the weights on the train batch
            x_val, y_val = self.val.next()
            with updater.autocast():
                task_loss = agent.loss(supernet(x_val, self.mixing_weights(), recompute=self.options.recompute), y_val)
            self.arch_update(self.arch_loss(task_loss, self.probabilities()), updater)
        return train_weights(supernet, self.mixing_weights().detach(), batch, agent, updater, self.options.recompute)

    def epoch_metrics(self) -> dict[str, Any]:
        metrics = super().epoch_metrics()
        return {**metrics, "tau": self.tau} if self.options.gumbel else metrics

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "noise": self.noise.get_state(), "tau": self.tau}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.noise.set_state(state["noise"])
        self.tau = state["tau"]
