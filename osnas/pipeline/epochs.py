"""The one epoch loop of supernet and final training: steps, non-finite guard, metrics, checkpoint, progress."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Any

import torch
import torch.nn as nn

from osnas import distributed
from osnas.config import PhaseConfig
from osnas.dataflows.base import Loader
from osnas.errors import TrainingDivergedError
from osnas.pipeline.context import RunContext
from osnas.progress import progress
from osnas.runtime import rng_state, set_rng_state
from osnas.training import Updater, build_optimizer, build_scheduler, in_layout, resolve_amp

# what a per-epoch checkpoint holds to continue training exactly where it stopped
RESUME_KEYS = ("model", "criterion", "updater", "loader", "rng", "epoch", "seconds")


class NonFiniteGuard:
    """Tracks the first non-finite loss of an epoch on the device (no per-step host sync)."""

    def __init__(self, device: torch.device) -> None:
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)

    def update(self, loss: torch.Tensor, step: int) -> None:
        bad = ~torch.isfinite(loss)
        self.first_bad = torch.where(bad & (self.first_bad < 0), torch.full_like(self.first_bad, step), self.first_bad)

    def check(self, phase: str, epoch: int) -> None:
        step = int(distributed.maximum(self.first_bad).item())
        if step >= 0:
            raise TrainingDivergedError(
                f"the {phase} loss became NaN or infinite at epoch {epoch + 1}, step {step + 1}; "
                "the last good checkpoint is kept (lower the learning rate or enable grad_clip)"
            )


class TrainingPhase(ABC):
    """A phase that trains a model for ``cfg.epochs`` epochs, checkpointing each one to ``last_file``.

    Subclasses set ``model``, ``loader`` and ``updater`` (see :meth:`prepare`) and define one step.
    """

    name: str  # metrics and timer key
    label: str  # how messages name it
    last_file: str  # the per-epoch checkpoint

    def __init__(self, ctx: RunContext, cfg: PhaseConfig) -> None:
        self.ctx = ctx
        self.cfg = cfg
        self.model: nn.Module
        self.loader: Loader
        self.updater: Updater
        self.epoch = -1  # the last completed epoch

    # ------------------------------------------------------------------ set-up
    def prepare_model(self, model: nn.Module) -> nn.Module:
        """``model`` in the phase's memory layout, wrapped for distributed training."""
        return distributed.prepare(self.layout(model))

    def layout(self, model: nn.Module) -> nn.Module:
        """``model`` in channels-last layout when the phase uses it (``channels_last``, see training.py)."""
        return in_layout(model, self.cfg.channels_last, self.cfg.amp, self.ctx.device)

    def build_updater(self, params: list[nn.Parameter]) -> Updater:
        amp, why = resolve_amp(self.cfg.amp, self.ctx.device)
        if why and self.name not in self.ctx.amp:
            self.ctx.say(f"{self.name}: {why}")
        self.ctx.amp[self.name] = amp
        optimizer = build_optimizer(self.cfg.optimizer, params)
        scheduler = build_scheduler(self.cfg, optimizer, len(self.loader))
        return distributed.updater_type()(optimizer, scheduler, self.ctx.device, amp, self.cfg.grad_clip)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue after the last completed epoch, bit for bit."""
        return {"model": self.model.state_dict(), "criterion": self.ctx.components.training_agent.criterion.state_dict(),
                "updater": self.updater.state_dict(), "loader": self.loader.state_dict(), "rng": rng_state(),
                "epoch": self.epoch, "seconds": dict(self.ctx.timer.seconds)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.ctx.components.training_agent.criterion.load_state_dict(state["criterion"])
        self.updater.load_state_dict(state["updater"])
        self.loader.load_state_dict(state["loader"])
        set_rng_state(state["rng"])
        self.ctx.timer.restore(state["seconds"])
        self.epoch = state["epoch"]

    def resume(self, extra_keys: tuple[str, ...] = ()) -> dict[str, Any] | None:
        """Restore from ``last_file`` when an interrupted run left one; returns its content."""
        if not self.ctx.run.exists(self.last_file):
            return None
        state = self.ctx.run.load_checkpoint(self.last_file, RESUME_KEYS + extra_keys)
        self.ctx.run.check_resume_state(self.last_file, state, self.cfg.epochs)
        with self.ctx.run.restoring(self.last_file):
            self.load_state_dict(state)
        self.ctx.say(f"{self.name}: resuming after epoch {self.epoch + 1}")
        return state

    # ------------------------------------------------------------------ the loop
    @abstractmethod
    def step(self, batch: Any) -> torch.Tensor:
        """One optimisation step on ``batch``; returns its (detached) loss."""

    def on_epoch_start(self, epoch: int) -> None:
        """Called before each epoch."""

    def epoch_metrics(self) -> dict[str, Any]:
        """Extra figures logged with each epoch."""
        return {}

    def train_epochs(self) -> None:
        """Epochs ``epoch + 1 .. cfg.epochs``, each checked for a non-finite loss, logged and checkpointed."""
        ctx, steps = self.ctx, len(self.loader)
        start = self.epoch + 1
        ctx.run.prune_metrics(self.name, start)
        with progress(ctx.progress()) as bar:
            task = bar.add_task(self.name, total=self.cfg.epochs * steps, info="", completed=start * steps)
            for epoch in range(start, self.cfg.epochs):
                begin = time.perf_counter()
                self.on_epoch_start(epoch)
                self.model.train()
                guard = NonFiniteGuard(ctx.device)
                loss_sum = torch.zeros((), device=ctx.device)
                for i, batch in enumerate(self.loader):
                    loss = self.step(batch).detach()
                    guard.update(loss, i)
                    loss_sum += loss.float()
                    bar.advance(task)
                guard.check(self.label, epoch)
                train_loss = float(distributed.average(loss_sum).item()) / max(1, steps)
                ctx.timer.add(self.name, begin)
                ctx.run.log_metrics({"phase": self.name, "epoch": epoch + 1, "loss": train_loss,
                                     "lr": self.updater.param_groups[0]["lr"],
                                     "seconds": round(ctx.timer.seconds[self.name], 3), **self.epoch_metrics()})
                bar.update(task, info=f"loss {train_loss:.3f}")
                self.epoch = epoch
                ctx.run.save_checkpoint(self.last_file, self.state_dict())
                ctx.checkpointed(self.name, epoch)
