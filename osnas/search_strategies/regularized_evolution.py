"""Regularized (aging) evolution (Real et al., AAAI 2019): tournament parents, one-entry mutation, oldest dies."""

from __future__ import annotations

import numpy as np
from pydantic import PositiveInt, model_validator

from osnas.registry import register
from osnas.search_strategies.base import (History, SearchContext, SearchResult, SearchStrategy, SearchStrategyOptions,
                                          arch_key)
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

    def search(self, context: SearchContext) -> SearchResult:
        """``population`` random feasible members, then ``cycles`` children; saved every ``population`` cycles."""
        opts, rng, choices = self.options, context.rng, context.definition.choices
        history = History(context)
        state = history.resume()
        if state:
            cycle = state["cycle"]
            population = [np.asarray(a, dtype=np.int64) for a in state["population"]]
        else:
            cycle = 0
            population = list(context.constraint.sample_feasible(rng, opts.population))
            history.evaluate(np.stack(population), cycle=0)
        while cycle < opts.cycles:
            members = rng.choice(len(population), min(opts.sample, len(population)), replace=False)
            parent = population[max(members, key=lambda i: history.scores[arch_key(population[i])])]
            child = feasible_child(context, lambda: mutate_one(parent, choices, rng), set(history.scores),
                                   opts.max_tries)
            cycle += 1
            history.evaluate(child[None], cycle=cycle)
            population = population[1:] + [child]
            if cycle % opts.population == 0:
                history.save(cycle=cycle, population=[a.tolist() for a in population])
        return history.result(info={"cycles": cycle})
