"""Phase: the search strategy under the constraint, resumable from ``search_state.pt``; writes architecture.json."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from osnas import artifacts, distributed
from osnas.artifacts import ARCHITECTURE, SEARCH_STATE, Architecture
from osnas.errors import OsnasError
from osnas.pipeline.context import RunContext
from osnas.progress import progress
from osnas.registry import REGISTRIES
from osnas.search_spaces.supernet import Supernet
from osnas.search_strategies.base import SearchContext, SearchResult
from osnas.training_strategies.base import TrainingStrategy


class SearchPhase:
    """Owns the evaluator's score cache, the strategy's saved state and how many records were logged."""

    name = "search"

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.strategy_state: dict[str, Any] | None = None  # what the strategy last saved
        options = ctx.config.search_strategy
        self.strategy = REGISTRIES["search_strategy"].get(options.name)(options.options)
        self.logged = 0  # search records in metrics.jsonl, so a resumed search logs each evaluation once
        self.resumed_seconds = 0.0
        self.begin = 0.0
        self.evaluator: distributed.ShardedEvaluator  # set by run(): it scores on the trained supernet

    def reuse(self) -> np.ndarray | None:
        """The architecture of a search that finished earlier in this run (or was given to ``osnas train``)."""
        ctx = self.ctx
        if not ctx.run.exists(ARCHITECTURE):
            return None
        path = ctx.run.file(ARCHITECTURE)
        record = artifacts.read_architecture(path)
        arch = record.vector(ctx.components.definition, str(path))
        ctx.timer.restore({phase: getattr(record, f"{phase}_seconds") for phase in ("supernet", "search")
                           if getattr(record, f"{phase}_seconds") is not None})
        ctx.say("search: reusing architecture.json of this run")
        return arch

    def state_dict(self) -> dict[str, Any]:
        seconds = {**self.ctx.timer.seconds, "search": self.resumed_seconds + time.perf_counter() - self.begin,
                   "total": self.ctx.timer.total()}
        return {"strategy": self.strategy_state, "evaluator": self.evaluator.state_dict(), "seconds": seconds,
                "logged": self.logged}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with self.ctx.run.restoring(SEARCH_STATE):
            self.strategy.load_state_dict(state["strategy"])
            self.evaluator.load_state_dict(state["evaluator"])
            self.ctx.timer.restore(state["seconds"])
            self.logged = int(state["logged"])
        self.strategy_state = state["strategy"]

    def run(self, supernet: Supernet, training_strategy: TrainingStrategy) -> np.ndarray:
        """Search, check the result against the constraint, write architecture.json (and pareto.json)."""
        ctx, comp = self.ctx, self.ctx.components
        self.begin = time.perf_counter()
        ev = ctx.config.evaluation
        train_loader, val_loader = comp.dataflow.search_split()
        self.evaluator = distributed.ShardedEvaluator(supernet, comp.training_agent, train_loader, val_loader,
                                                      ev.bn_batches, ev.val_batches, ev.prefix_cache_mb)
        if ctx.run.exists(SEARCH_STATE):
            self.load_state_dict(ctx.run.load_checkpoint(SEARCH_STATE, ("strategy", "evaluator", "seconds", "logged")))
            ctx.say(f"search: resuming with {self.evaluator.num_evaluated} candidates already scored")
        ctx.run.prune_metrics("search", self.logged)
        self.resumed_seconds = ctx.timer.seconds.get("search", 0.0)
        result = self.search(training_strategy)
        ctx.say(f"search: {self.evaluator.describe_cache()}")
        self.evaluator.release_activations()  # not to hold them through final training
        if not comp.constraint.feasible(result.best):
            raise OsnasError(f"search strategy {ctx.config.search_strategy.name!r} returned an architecture "
                             f"that breaks {comp.constraint.describe()}")
        ctx.timer.seconds["search"] = self.resumed_seconds + time.perf_counter() - self.begin
        self.write(result)
        ctx.run.file(SEARCH_STATE).unlink(missing_ok=True)
        return result.best

    def search(self, training_strategy: TrainingStrategy) -> SearchResult:
        """The configured search strategy, checkpointing whenever it saves its state."""
        ctx, comp = self.ctx, self.ctx.components
        rng = np.random.default_rng([ctx.config.seed, 1])

        def save_state(state: dict[str, Any]) -> None:
            self.strategy_state = state
            ctx.run.save_checkpoint(SEARCH_STATE, self.state_dict())
            ctx.checkpointed("search", self.evaluator.num_evaluated)

        with progress(ctx.progress()) as bar:
            task = bar.add_task("search", total=None, info="")

            def log_record(record: dict[str, Any]) -> None:
                ctx.run.log_metrics(record)
                self.logged += 1
                bar.update(task, completed=record.get("eval", 0), info=f"best {record.get('best_score', 0):.2f}")

            context = SearchContext(comp.definition, comp.lut, comp.constraint, self.evaluator, rng,
                                    training_strategy=training_strategy, log=log_record, save_state=save_state,
                                    save_file=ctx.run.save_checkpoint)
            return self.strategy.search(context)

    def write(self, result: SearchResult) -> None:
        ctx, comp = self.ctx, self.ctx.components
        seconds = ctx.timer.seconds
        record = Architecture.of(
            comp.definition, result.best, ctx.config.search_space.options.model_dump(),
            costs=comp.lut.costs(result.best), score=result.score, repaired=result.repaired,
            evaluated=self.evaluator.num_evaluated,
            search_seconds=round(seconds.get("search", 0.0), 3), supernet_seconds=round(seconds.get("supernet", 0.0), 3),
            **({"info": result.info} if result.info else {}))
        artifacts.write_architecture(ctx.run, record)
        if result.pareto is not None:
            artifacts.write_pareto(ctx.run, result.pareto)
