"""Derive the architecture from learnt architecture parameters (DARTS/FBNet/ProxylessNAS), repaired into the budget."""

from __future__ import annotations

import numpy as np

from osnas.errors import OsnasError
from osnas.registry import register
from osnas.search_strategies.base import (LearntArchitecture, SearchContext, SearchResult, SearchStrategy,
                                          SearchStrategyOptions)
from osnas.training_strategies.arch_params import ArchStrategy


class DifferentiableSearchOptions(SearchStrategyOptions):
    repair: bool = True


@register("search_strategy", "differentiable")
class DifferentiableSearch(SearchStrategy):
    """Argmax of the training strategy's alpha; if it breaks the budget, the cheapest LUT repair by preference."""

    Options = DifferentiableSearchOptions
    needs_training_strategy = ArchStrategy

    def search(self, context: SearchContext) -> SearchResult:
        """One evaluation: the derived (or repaired) architecture; a resumed search finds it in its history."""
        strategy = context.training_strategy
        if not isinstance(strategy, LearntArchitecture):
            got = type(strategy).name if strategy is not None else "none"
            raise OsnasError(
                f"search_strategy 'differentiable' derives the architecture from learnt architecture parameters, "
                f"but training_strategy {got!r} has none; set training_strategy to differentiable or proxyless "
                f"(or pick another search_strategy, e.g. evolution)"
            )
        constraint = context.constraint
        history = self.begin(context)
        derived = strategy.derive()
        info = {"derived": derived.tolist(), "derived_cost": float(constraint.cost(derived)),
                "derived_valid": bool(context.definition.valid(derived[None])[0])}
        repaired = not constraint.feasible(derived)
        if repaired and not self.options.repair:
            raise OsnasError(
                f"the derived architecture costs {info['derived_cost']:.4g}, outside {constraint.describe()}"
                f"{'' if info['derived_valid'] else ' (and breaks a rule of the space)'}; set "
                f"search_strategy.repair: true, or raise training_strategy.penalty_weight"
            )
        if not history.records:  # a resumed search did its one evaluation before the interruption
            arch = derived
            if repaired:
                with np.errstate(divide="ignore"):
                    preference = np.log(strategy.arch_probabilities())
                arch = constraint.repair(derived, context.rng, preference=preference)
            history.add(arch, context.evaluator.evaluate(arch), repaired=repaired)
            self.checkpoint()
        return history.result(repaired=repaired, info=info)
