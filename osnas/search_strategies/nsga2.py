"""NSGA-II (Deb et al., 2002): accuracy against cost, non-dominated sorting and crowding distance."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, PositiveInt

from osnas.registry import register
from osnas.search_strategies.base import History, SearchContext, SearchResult, SearchStrategyOptions, arch_key
from osnas.search_strategies.operators import GenerationalSearch, crossover, feasible_child, mutate, unique


class NSGA2Options(SearchStrategyOptions):
    population: PositiveInt = 20
    generations: PositiveInt = 10
    crossover_prob: float = Field(0.9, ge=0.0, le=1.0)
    mutation_prob: float = Field(0.1, gt=0.0, le=1.0)
    max_tries: PositiveInt = 50


def dominance(objectives: np.ndarray) -> np.ndarray:
    """(N, N) bool: ``[i, j]`` when i dominates j (all objectives <= and one <; minimised)."""
    a, b = objectives[:, None, :], objectives[None, :, :]
    return (a <= b).all(axis=-1) & (a < b).any(axis=-1)


def non_dominated_ranks(objectives: np.ndarray) -> np.ndarray:
    """(N,) front index of each point (0 = Pareto front), peeling one front per vectorized pass."""
    dominates = dominance(objectives)
    ranks = np.full(len(objectives), -1, dtype=np.int64)
    remaining = np.ones(len(objectives), dtype=bool)
    rank = 0
    while remaining.any():
        front = remaining & ~dominates[remaining].any(axis=0)
        ranks[front] = rank
        remaining &= ~front
        rank += 1
    return ranks


def crowding_distance(objectives: np.ndarray) -> np.ndarray:
    """(N,) crowding distance within one front; the extremes of each objective get infinity."""
    n, m = objectives.shape
    if n <= 2:
        return np.full(n, np.inf)
    order = np.argsort(objectives, axis=0, kind="stable")
    ordered = np.take_along_axis(objectives, order, axis=0)
    span = ordered[-1] - ordered[0]
    span[span == 0] = 1.0
    contribution = np.zeros((n, m))
    columns = np.arange(m)
    contribution[order[1:-1], columns] = (ordered[2:] - ordered[:-2]) / span
    contribution[order[0], columns] = np.inf
    contribution[order[-1], columns] = np.inf
    return contribution.sum(axis=1)


def rank_and_crowd(objectives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ranks = non_dominated_ranks(objectives)
    crowd = np.zeros(len(objectives))
    for rank in np.unique(ranks):
        members = ranks == rank
        crowd[members] = crowding_distance(objectives[members])
    return ranks, crowd


@register("search_strategy", "nsga2")
class NSGA2(GenerationalSearch):
    """NSGA-II: Pareto front of supernet accuracy vs. cost within the constraint; best = most accurate on it."""

    Options = NSGA2Options

    def search(self, context: SearchContext) -> SearchResult:
        """``generations`` rounds of ``population`` feasible children; the state is saved after each round."""
        opts = self.options
        history = self.begin(context)
        population = self.first_population(context, opts.population)
        history.evaluate(population, generation=0)  # scored already when resumed: then nothing is evaluated
        while self.generation < opts.generations:
            offspring = self._offspring(context, population, history)
            self.generation += 1
            history.evaluate(offspring, generation=self.generation)
            combined = unique(np.concatenate([population, offspring]))
            ranks, crowd = rank_and_crowd(self._objectives(context, history, combined))
            population = self.population = combined[np.lexsort((-crowd, ranks))[: opts.population]]
            self.checkpoint()
        objectives = self._objectives(context, history, population)
        front = population[non_dominated_ranks(objectives) == 0]
        front = front[np.argsort(context.constraint.cost(front), kind="stable")]
        scores = np.array([history.scores[arch_key(a)] for a in front])
        best = int(np.argmax(scores))
        pareto = [self._entry(context, arch, score) for arch, score in zip(front, scores)]
        return SearchResult(front[best].copy(), float(scores[best]), history.records, pareto=pareto,
                            info={"generations": self.generation, "pareto_size": len(pareto)})

    @staticmethod
    def _objectives(context: SearchContext, history: History, archs: np.ndarray) -> np.ndarray:
        """(N, 2) minimised objectives: negative score and constraint-metric cost."""
        scores = np.array([history.scores[arch_key(a)] for a in archs])
        return np.stack([-scores, context.constraint.cost(archs)], axis=1)

    def _offspring(self, context: SearchContext, population: np.ndarray, history: History) -> np.ndarray:
        """Binary tournaments (rank, then crowding), crossover and mutation; feasible unseen children."""
        opts, rng, choices = self.options, context.rng, context.definition.choices
        ranks, crowd = rank_and_crowd(self._objectives(context, history, population))

        def tournament() -> np.ndarray:
            i, j = rng.integers(len(population), size=2)
            better = ranks[i] < ranks[j] or (ranks[i] == ranks[j] and crowd[i] >= crowd[j])
            return population[i if better else j]

        def propose() -> np.ndarray:
            first, second = tournament(), tournament()
            child = crossover(first, second, rng) if rng.random() < opts.crossover_prob else first
            return mutate(child, choices, opts.mutation_prob, rng)

        seen = set(history.scores)
        children = []
        for _ in range(opts.population):
            child = feasible_child(context, propose, seen, opts.max_tries)
            seen.add(arch_key(child))
            children.append(child)
        return np.stack(children)

    @staticmethod
    def _entry(context: SearchContext, arch: np.ndarray, score: float) -> dict[str, Any]:
        return {"arch": [int(i) for i in arch], "candidates": context.definition.candidate_names(arch),
                "score": float(score), "costs": context.lut.costs(arch)}
