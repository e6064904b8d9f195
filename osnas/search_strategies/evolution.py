"""SPOS evolutionary search (Guo et al.): top-k parents, crossover and mutation under the constraint."""

from __future__ import annotations

import numpy as np
from pydantic import Field, PositiveInt, model_validator

from osnas.registry import register
from osnas.search_strategies.base import SearchContext, SearchResult, SearchStrategyOptions, arch_key
from osnas.search_strategies.operators import GenerationalSearch, crossover, feasible_child, mutate


class EvolutionOptions(SearchStrategyOptions):
    population: PositiveInt = 20
    generations: PositiveInt = 5
    top_k: PositiveInt = 10
    mutation_prob: float = Field(0.1, gt=0.0, le=1.0)
    crossover_fraction: float = Field(0.5, ge=0.0, le=1.0)
    max_tries: PositiveInt = 50

    @model_validator(mode="after")
    def _top_k(self) -> "EvolutionOptions":
        if self.top_k > self.population:
            raise ValueError(f"top_k ({self.top_k}) must not exceed population ({self.population})")
        return self


@register("search_strategy", "evolution")
class Evolution(GenerationalSearch):
    """SPOS evolution: population, top-k parents, crossover + mutation, infeasible children repaired."""

    Options = EvolutionOptions

    def search(self, context: SearchContext) -> SearchResult:
        """``generations`` populations are scored; the state is saved before each new one is."""
        opts = self.options
        history = self.begin(context)
        population = self.first_population(context, opts.population)
        while True:
            history.evaluate(population, generation=self.generation)
            self.generation += 1
            if self.generation >= opts.generations:
                break
            ranked = sorted(history.scores.items(), key=lambda kv: -kv[1])
            parents = np.array([k for k, _ in ranked[: opts.top_k]], dtype=np.int64)
            population = self.population = self._next_population(context, parents, set(history.scores))
            self.checkpoint()
        return history.result(info={"generations": self.generation})

    def _next_population(self, context: SearchContext, parents: np.ndarray, seen: set) -> np.ndarray:
        """``population`` new feasible children: the first ``crossover_fraction`` by crossover, the rest by mutation."""
        opts, rng, choices = self.options, context.rng, context.definition.choices
        n_cross = int(round(opts.population * opts.crossover_fraction)) if len(parents) > 1 else 0
        seen = set(seen)
        children: list[np.ndarray] = []

        def cross() -> np.ndarray:
            i, j = rng.choice(len(parents), 2, replace=False)
            return crossover(parents[i], parents[j], rng)

        def mutation() -> np.ndarray:
            return mutate(parents[rng.integers(len(parents))], choices, opts.mutation_prob, rng)

        for i in range(opts.population):
            child = feasible_child(context, cross if i < n_cross else mutation, seen, opts.max_tries)
            seen.add(arch_key(child))
            children.append(child)
        return np.stack(children)
