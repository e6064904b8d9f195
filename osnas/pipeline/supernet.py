"""Phase: train the supernet (resumable per epoch), reuse this run's, or load another run's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from osnas import artifacts, distributed
from osnas.artifacts import SUPERNET, SUPERNET_LAST
from osnas.pipeline.context import RunContext
from osnas.pipeline.epochs import TrainingPhase
from osnas.registry import REGISTRIES
from osnas.search_spaces.supernet import Supernet
from osnas.training import DTYPES, compute_in
from osnas.training_strategies.base import TrainingContext, TrainingStrategy


class SupernetPhase(TrainingPhase):
    """Owns the supernet and the training strategy that decides what each step trains."""

    name = label = "supernet"
    last_file = SUPERNET_LAST

    def __init__(self, ctx: RunContext) -> None:
        super().__init__(ctx, ctx.config.supernet)
        comp = ctx.components
        train_loader, val_loader = comp.dataflow.search_split()
        self.loader = distributed.shard(train_loader)
        self.model = compute_in(Supernet(comp.definition).to(ctx.device), DTYPES[ctx.config.dtype])
        training = TrainingContext(comp.definition, comp.lut, comp.constraint, val_loader, ctx.device,
                                   ctx.config.seed, self.cfg.epochs)
        options = ctx.config.training_strategy
        self.strategy: TrainingStrategy = REGISTRIES["training_strategy"].get(options.name)(options.options, training)

    def run(self, reuse: Path | None = None) -> Supernet:
        """The trained supernet: this run's ``supernet.pt``, the one at ``reuse``, or trained now."""
        if reuse is not None:
            return self.load(reuse)
        self.model = self.prepare_model(self.model)
        self.updater = self.build_updater(list(self.model.parameters())
                                          + list(self.ctx.components.training_agent.criterion.parameters()))
        if self.ctx.run.exists(SUPERNET):
            state = self.ctx.run.load_checkpoint(SUPERNET, ("model", "strategy"))
            with self.ctx.run.restoring(SUPERNET):
                self.restore(state)
                self.ctx.timer.restore(state.get("seconds", {}))
            self.ctx.say("supernet: reusing the trained supernet of this run")
            return self.model
        self.resume(("strategy",))
        self.train_epochs()
        self.ctx.run.save_checkpoint(SUPERNET, self.trained_state(dict(self.ctx.timer.seconds)))
        self.ctx.run.file(SUPERNET_LAST).unlink(missing_ok=True)
        return self.model

    def load(self, path: Path) -> Supernet:
        """Reuse a supernet trained by an earlier run (``--supernet RUN/supernet.pt``)."""
        self.model = self.layout(self.model)
        self.restore(artifacts.read_supernet(path, self.ctx.components.definition))
        # the time spent on it belongs to the run that trained it
        self.ctx.run.save_checkpoint(SUPERNET, self.trained_state(None))
        return self.model

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.strategy.load_state_dict(state["strategy"])

    def trained_state(self, seconds: dict[str, float] | None) -> dict[str, Any]:
        return artifacts.supernet_state(self.model.state_dict(), self.strategy.state_dict(),
                                        self.ctx.components.definition, seconds)

    # ------------------------------------------------------------------ the epoch loop's hooks
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "strategy": self.strategy.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.strategy.load_state_dict(state["strategy"])

    def on_epoch_start(self, epoch: int) -> None:
        self.strategy.on_epoch_start(epoch)

    def step(self, batch: Any) -> torch.Tensor:
        return self.strategy.step(self.model, batch, self.ctx.components.training_agent, self.updater)

    def epoch_metrics(self) -> dict[str, Any]:
        return getattr(self.strategy, "epoch_metrics", lambda: {})()
