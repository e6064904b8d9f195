"""SPOS evolutionary search (Guo et al.): top-k parents, crossover and mutation under the constraint."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, PositiveInt, model_validator

from osnas.registry import register
from osnas.search_strategies.base import History, SearchContext, SearchResult, SearchStrategy, SearchStrategyOptions


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


def mutate(arch: np.ndarray, choices: np.ndarray, prob: float, rng: np.random.Generator) -> np.ndarray:
    child = arch.copy()
    flip = rng.random(len(arch)) < prob
    child[flip] = np.floor(rng.random(flip.sum()) * choices[flip]).astype(np.int64)
    return child


def crossover(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.where(rng.random(len(a)) < 0.5, a, b)


def make_child(
    context: SearchContext, parents: np.ndarray, seen: set[tuple[int, ...]], prob: float, use_crossover: bool,
    max_tries: int,
) -> np.ndarray | None:
    """A new feasible child: drawn, repaired if it breaks the budget, re-drawn if already seen."""
    rng, definition, constraint = context.rng, context.definition, context.constraint
    for _ in range(max_tries):
        if use_crossover and len(parents) > 1:
            i, j = rng.choice(len(parents), 2, replace=False)
            child = crossover(parents[i], parents[j], rng)
        else:
            child = mutate(parents[rng.integers(len(parents))], definition.choices, prob, rng)
        if not constraint.feasible(child):
            try:
                child = constraint.repair(child, rng)
            except Exception:
                continue
        if tuple(child.tolist()) not in seen:
            return child
    return None


@register("search_strategy", "evolution")
class Evolution(SearchStrategy):
    """SPOS evolution: population, top-k parents, crossover + mutation, infeasible children repaired."""

    Options = EvolutionOptions

    def search(self, context: SearchContext) -> SearchResult:
        opts = self.options
        history = History(context)
        generation = 0
        population: np.ndarray | None = None
        if context.resume_state:
            state = context.resume_state
            history.load_state_dict(state["history"])
            context.rng.bit_generator.state = state["rng"]
            generation = state["generation"]
            population = np.asarray(state["population"], dtype=np.int64)
        if population is None:
            population = context.constraint.sample_feasible(context.rng, opts.population)
        scored: dict[tuple[int, ...], float] = {tuple(r["arch"]): r["score"] for r in history.records}
        while generation < opts.generations:
            new = np.array([a for a in population if tuple(a.tolist()) not in scored], dtype=np.int64)
            if len(new):
                scores = context.evaluator.evaluate(new)
                history.add(new, scores, generation=generation)
                scored.update({tuple(a.tolist()): float(s) for a, s in zip(new, scores)})
            ranked = sorted(scored.items(), key=lambda kv: -kv[1])
            parents = np.array([k for k, _ in ranked[: opts.top_k]], dtype=np.int64)
            generation += 1
            population = self._next_population(context, parents, set(scored))
            context.save_state(self._state(history, context, generation, population))
        return history.result(info={"generations": generation})

    def _next_population(self, context: SearchContext, parents: np.ndarray, seen: set) -> np.ndarray:
        opts = self.options
        children: list[np.ndarray] = []
        n_cross = int(round(opts.population * opts.crossover_fraction))
        for i in range(opts.population):
            child = make_child(context, parents, seen, opts.mutation_prob, i < n_cross, opts.max_tries)
            if child is None:
                child = context.constraint.sample_feasible(context.rng, 1)[0]
            seen = seen | {tuple(child.tolist())}
            children.append(child)
        return np.stack(children)

    @staticmethod
    def _state(history: History, context: SearchContext, generation: int, population: np.ndarray) -> dict[str, Any]:
        return {"history": history.state_dict(), "rng": context.rng.bit_generator.state,
                "generation": generation, "population": population.tolist()}
