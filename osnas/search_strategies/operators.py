"""What the evolutionary strategies share: variation operators (every child they hand out is feasible)
and the resumable state of a generational search."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from osnas.config import ComponentOptions
from osnas.errors import InfeasibleConstraintError
from osnas.search_strategies.base import SearchContext, SearchStrategy, arch_key

Key = tuple[int, ...]


def unique(archs: np.ndarray) -> np.ndarray:
    """Rows of ``archs`` without repeats, first occurrence order kept."""
    _, first = np.unique(archs, axis=0, return_index=True)
    return archs[np.sort(first)]


def mutate(arch: np.ndarray, choices: np.ndarray, prob: float, rng: np.random.Generator) -> np.ndarray:
    """Each entry redrawn uniformly with probability ``prob`` (SPOS, NSGA-II)."""
    child = arch.copy()
    flip = rng.random(len(arch)) < prob
    child[flip] = np.floor(rng.random(int(flip.sum())) * choices[flip]).astype(np.int64)
    return child


def mutate_one(arch: np.ndarray, choices: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exactly one entry (with more than one candidate) set to a different candidate (aging evolution)."""
    child = arch.copy()
    layer = int(rng.choice(np.flatnonzero(choices > 1)))
    child[layer] = (child[layer] + 1 + rng.integers(choices[layer] - 1)) % choices[layer]
    return child


def crossover(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Uniform crossover: each entry from either parent."""
    return np.where(rng.random(len(a)) < 0.5, a, b)


def feasible_child(context: SearchContext, propose: Callable[[], np.ndarray], seen: set[Key],
                   max_tries: int) -> np.ndarray:
    """A feasible child not in ``seen``: proposed, repaired if it breaks the constraint, else re-drawn.

    After ``max_tries`` proposals that were all seen before (or could not be repaired)
    a fresh feasible random architecture is returned, so the loop is bounded.
    """
    constraint = context.constraint
    for _ in range(max_tries):
        child = propose()
        if not constraint.feasible(child):
            try:
                child = constraint.repair(child, context.rng)
            except InfeasibleConstraintError:
                continue
        if arch_key(child) not in seen:
            return child
    return constraint.sample_feasible(context.rng, 1)[0]


class GenerationalSearch(SearchStrategy):
    """A search that moves a population from generation to generation; both are its resumable progress."""

    def __init__(self, options: ComponentOptions) -> None:
        super().__init__(options)
        self.generation = 0
        self.population: np.ndarray | None = None  # None: not drawn yet

    def first_population(self, context: SearchContext, size: int) -> np.ndarray:
        """The restored population, else ``size`` distinct feasible random architectures."""
        if self.population is None:
            self.population = unique(context.constraint.sample_feasible(context.rng, size))
        return self.population

    def state_dict(self) -> dict[str, Any]:
        population = None if self.population is None else self.population.tolist()
        return {**super().state_dict(), "generation": self.generation, "population": population}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.generation = int(state["generation"])
        self.population = None if state["population"] is None else np.asarray(state["population"], dtype=np.int64)
