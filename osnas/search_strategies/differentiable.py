"""Derive the architecture from learnt architecture parameters (DARTS/FBNet/ProxylessNAS), repaired into the budget."""

from __future__ import annotations

import numpy as np

from osnas.errors import OsnasError
from osnas.registry import register
from osnas.search_strategies.base import History, SearchContext, SearchResult, SearchStrategy, SearchStrategyOptions
from osnas.training_strategies.arch_params import ArchStrategy


class DifferentiableSearchOptions(SearchStrategyOptions):
    repair: bool = True


@register("search_strategy", "differentiable")
class DifferentiableSearch(SearchStrategy):
    """Argmax of the training strategy's alpha; if it breaks the budget, the cheapest LUT repair by preference."""

    Options = DifferentiableSearchOptions
    needs_training_strategy = ArchStrategy

    def search(self, context: SearchContext) -> SearchResult:
        strategy = context.training_strategy
        if not isinstance(strategy, ArchStrategy):
            got = getattr(strategy, "registry_name", type(strategy).__name__)
            raise OsnasError(
                f"search_strategy 'differentiable' derives the architecture from learnt architecture parameters, "
                f"but training_strategy {got!r} has none; set training_strategy to differentiable or proxyless "
                f"(or pick another search_strategy, e.g. evolution)"
            )
        constraint = context.constraint
        derived = strategy.derive()
        info = {"derived": derived.tolist(), "derived_cost": float(constraint.cost(derived)),
                "derived_valid": bool(context.definition.valid(derived[None])[0])}
        arch, repaired = derived, False
        if not constraint.feasible(derived):
            if not self.options.repair:
                raise OsnasError(
                    f"the derived architecture costs {info['derived_cost']:.4g}, outside {constraint.describe()}"
                    f"{'' if info['derived_valid'] else ' (and breaks a rule of the space)'}; set "
                    f"search_strategy.repair: true, or raise training_strategy.penalty_weight"
                )
            with np.errstate(divide="ignore"):
                preference = np.log(strategy.arch_probabilities())
            arch, repaired = constraint.repair(derived, context.rng, preference=preference), True
        history = History(context)
        if context.resume_state:  # the one evaluation was done before the interruption
            history.load_state_dict(context.resume_state["history"])
        if not history.records:
            history.add(arch, context.evaluator.evaluate(arch), repaired=repaired)
            context.save_state({"history": history.state_dict()})
        return history.result(repaired=repaired, info=info)
