"""Phase: train the found architecture from scratch on the full training split (resumable per epoch)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn

from osnas import artifacts, distributed
from osnas.artifacts import FINAL_LAST, MODEL
from osnas.pipeline.context import RunContext
from osnas.pipeline.epochs import TrainingPhase
from osnas.search_spaces.child import build_child
from osnas.training import DTYPES, compute_in

Forward = Callable[[torch.Tensor], torch.Tensor]


class FinalPhase(TrainingPhase):
    """Owns the child network (and a fresh criterion head: margin losses train one with it)."""

    name = "final"
    label = "final training"
    last_file = FINAL_LAST

    def __init__(self, ctx: RunContext, arch: np.ndarray) -> None:
        super().__init__(ctx, ctx.config.final)
        comp = ctx.components
        self.arch = arch
        train_loader, self.test_loader = comp.dataflow.final_split()
        self.loader = distributed.shard(train_loader)
        torch.manual_seed(ctx.config.seed + 17)
        child = compute_in(build_child(comp.definition, arch).to(ctx.device), DTYPES[ctx.config.dtype])
        self.model = self.prepare_model(child)
        criterion = comp.training_agent.criterion
        # a fresh head for margin losses, trained with the child and never exported with it
        for module in criterion.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        self.updater = self.build_updater(list(self.model.parameters()) + list(criterion.parameters()))
        self.forward: Forward = self.model

    def run(self) -> nn.Module:
        """The trained child (this run's ``model.pt`` when it exists); ``forward`` runs it (compiled or not)."""
        ctx = self.ctx
        self.resume()
        self.forward = self.compiled() if self.cfg.compile else self.model
        if ctx.run.exists(MODEL):
            state = ctx.run.load_checkpoint(MODEL, ("model",))
            with ctx.run.restoring(MODEL):
                self.model.load_state_dict(state["model"])
                ctx.timer.restore(state.get("seconds", {}))
            return self.model
        self.train_epochs()
        ctx.run.save_checkpoint(MODEL, artifacts.model_state(self.model.state_dict(), ctx.components.definition.name,
                                                             self.arch, ctx.timer.seconds))
        ctx.run.file(FINAL_LAST).unlink(missing_ok=True)
        return self.model

    def step(self, batch: Any) -> torch.Tensor:
        x, y = batch
        self.updater.zero_grad()
        with self.updater.autocast():
            loss = self.ctx.components.training_agent.loss(self.forward(x), y)
        self.updater.backward(loss)
        self.updater.step()
        return loss

    def compiled(self) -> Forward:
        try:
            return torch.compile(self.model)
        except Exception as exc:  # compile support depends on platform and toolchain
            self.ctx.say(f"final: torch.compile unavailable ({type(exc).__name__}: {exc}); running eagerly")
            return self.model
