"""Regularized (aging) evolution (Real et al., AAAI 2019): tournament parents, one-entry mutation, oldest dies."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import PositiveInt, model_validator

from osnas.config import ComponentOptions
from osnas.registry import register
from osnas.search_strategies.base import SearchContext, SearchResult, SearchStrategy, SearchStrategyOptions, arch_key
from osnas.search_strategies.operators import feasible_child, mutate_one


class RegularizedEvolutionOptions(SearchStrategyOptions):
    population: PositiveInt = 20
    sample: PositiveInt = 5
    cycles: PositiveInt = 100
    max_tries: PositiveInt = 50

    @model_validator(mode="after")
    def _sample(self) -> "RegularizedEvolutionOptions":
        if self.sample > self.population:
            raise ValueError(f"sample ({self.sample}) must not exceed population ({self.population})")
        return self


@register("search_strategy", "regularized_evolution")
class RegularizedEvolution(SearchStrategy):
    """Aging evolution: best of `sample` random members is mutated in one entry; the oldest member is removed."""

    Options = RegularizedEvolutionOptions

    def __init__(self, options: ComponentOptions) -> None:
        super().__init__(options)
        self.cycle = 0
        self.population: list[np.ndarray] | None = None  # oldest first; None: not drawn yet

    def search(self, context: SearchContext) -> SearchResult:
        """``population`` random feasible members, then ``cycles`` children; saved every ``population`` cycles."""
        opts, rng, choices = self.options, context.rng, context.definition.choices
        history = self.begin(context)
        if self.population is None:
            self.population = list(context.constraint.sample_feasible(rng, opts.population))
            history.evaluate(np.stack(self.population), cycle=0)
        while self.cycle < opts.cycles:
            population = self.population
            members = rng.choice(len(population), min(opts.sample, len(population)), replace=False)
            parent = population[max(members, key=lambda i: history.scores[arch_key(population[i])])]
            child = feasible_child(context, lambda: mutate_one(parent, choices, rng), set(history.scores),
                                   opts.max_tries)
            self.cycle += 1
            history.evaluate(child[None], cycle=self.cycle)
            self.population = population[1:] + [child]
            if self.cycle % opts.population == 0:
                self.checkpoint()
        return history.result(info={"cycles": self.cycle})

    def state_dict(self) -> dict[str, Any]:
        population = None if self.population is None else [a.tolist() for a in self.population]
        return {**super().state_dict(), "cycle": self.cycle, "population": population}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.cycle = int(state["cycle"])
        self.population = None if state["population"] is None else [
            np.asarray(a, dtype=np.int64) for a in state["population"]]
