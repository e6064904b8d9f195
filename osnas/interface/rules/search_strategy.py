"""Search-strategy rules, on the probe space with a scorer that prefers bigger networks."""

from __future__ import annotations

from typing import Any

import numpy as np

from osnas.errors import OsnasError
from osnas.interface import probes
from osnas.interface.contract import Broken, Subject, rule, saved_and_loaded
from osnas.registry import REGISTRIES
from osnas.search_strategies.base import SearchContext, SearchResult, arch_key

Run = tuple[SearchResult, SearchContext, list[dict[str, Any]]]


def search(s: Subject, fraction: float, resume: dict[str, Any] | None = None) -> Run:
    """Run the strategy on the probe space under a budget ``fraction`` of the way up its cost range; with
    ``resume``, a fresh instance is given that state (``load_state_dict``) first."""
    states: list[dict[str, Any]] = []
    definition, lut = s.shared("probe", probes.probe_space), probes.probe_lut(s)
    trainers = REGISTRIES["training_strategy"]
    needed = getattr(s.cls, "needs_training_strategy", object)
    trainer = next(cls for cls in map(trainers.get, ["uniform", *trainers.names()]) if issubclass(cls, needed))
    strategy = s.cls(s.options)
    if resume is not None:
        strategy.load_state_dict(resume)
    context = SearchContext(definition, lut, probes.budget(lut, definition, fraction), probes.ProbeEvaluator(lut),
                            np.random.default_rng(0),
                            training_strategy=trainer(trainer.Options(), probes.training_context(s)),
                            save_state=states.append)
    return strategy.search(context), context, states


def first_run(s: Subject) -> Run:
    return s.shared("search", lambda: search(s, 0.5))


def feasible_result(result: Any, context: SearchContext, what: str) -> None:
    if not isinstance(result, SearchResult):
        raise Broken(f"search() returns {type(result).__name__}, not a SearchResult")
    try:
        best = context.definition.validate_arch(result.best)
    except OsnasError as exc:
        raise Broken(f"{what}: the result is not a valid architecture: {exc}") from None
    if not context.constraint.feasible(best):
        raise Broken(f"{what}: the result {best.tolist()} costs {float(context.constraint.cost(best)):.4g}M MACs, "
                     f"over the budget {context.constraint.max:.4g}M")
    if not isinstance(result.score, (int, float)) or not np.isfinite(result.score):
        raise Broken(f"{what}: the result's score is {result.score!r}, not a finite number")


@rule("search_strategy", "search() stops once every architecture of the space has been scored (the probe space "
                         f"has {probes.PROBE_ARCHITECTURES}, fewer than most budgets): a strategy that only proposes "
                         "unseen architectures must end when none is left")
def check_stops_when_space_is_exhausted(s: Subject) -> str:
    result, context, _ = search(s, 1.0)
    feasible_result(result, context, "whole space within the budget")
    return f"stopped after {context.evaluator.num_evaluated} of {probes.PROBE_ARCHITECTURES} architectures"


@rule("search_strategy", "search() returns a valid architecture within the budget, scored as the evaluator scored "
                         "it, with a history of records")
def check_result(s: Subject) -> str:
    result, context, _ = first_run(s)
    feasible_result(result, context, "budget half-way up the cost range")
    scored = context.evaluator.cache.get(arch_key(result.best))
    if scored is not None and abs(scored - result.score) > 1e-6 * max(1.0, abs(scored)):
        raise Broken(f"the result's score is {result.score} but the evaluator scored that architecture {scored}")
    if not isinstance(result.history, list) or not all(isinstance(r, dict) for r in result.history):
        raise Broken("result.history is not a list of dicts")
    return f"{len(result.history)} evaluations of {context.evaluator.num_evaluated} distinct architectures"


@rule("search_strategy", "under a tight budget (5% up the cost range) the result is still within it")
def check_tight_budget(s: Subject) -> None:
    result, context, _ = search(s, 0.05)
    feasible_result(result, context, "tight budget")


@rule("search_strategy", "search() saves its state_dict() through context.save_state, and a fresh instance given "
                         "that state (load_state_dict) continues to the uninterrupted search's result")
def check_resume_search(s: Subject) -> None:
    full, _, states = first_run(s)
    if not states:
        raise Broken("search() never called context.save_state(state) (SearchStrategy.checkpoint()); an "
                     "interrupted search would start over")
    state = saved_and_loaded(states[len(states) // 2], "the state passed to save_state")
    result, context, _ = search(s, 0.5, resume=state)
    feasible_result(result, context, "resumed search")
    if arch_key(result.best) != arch_key(full.best) or result.score != full.score:
        raise Broken(f"the resumed search found {arch_key(result.best)} (score {result.score}), the uninterrupted "
                     f"one {arch_key(full.best)} (score {full.score}); save everything search() continues from "
                     "in state_dict(), including context.rng (SearchStrategy.state_dict does)")
    if result.history != full.history:
        raise Broken("the resumed search's history differs from the uninterrupted one's")
