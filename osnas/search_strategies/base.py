"""The search-strategy contract: ``search(context) -> SearchResult``.

The context bundles what the design's ``search(evaluator, lookup_table,
constraint, budget)`` names, plus the training strategy (differentiable methods
derive from its architecture parameters), a metrics logger and resume state.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from osnas.config import ComponentOptions
from osnas.constraint import Constraint
from osnas.search_spaces.base import SpaceDefinition
from osnas.search_spaces.lookup_table import LookupTable


class SearchStrategyOptions(ComponentOptions):
    """Options every search strategy accepts."""


@dataclass
class SearchContext:
    """Everything a strategy may use while searching."""

    definition: SpaceDefinition
    lut: LookupTable
    constraint: Constraint
    evaluator: Any  # Evaluator, or any object with evaluate(archs) -> scores
    rng: np.random.Generator
    training_strategy: Any = None
    log: Callable[[dict[str, Any]], None] = lambda record: None
    save_state: Callable[[dict[str, Any]], None] = lambda state: None
    resume_state: dict[str, Any] | None = None
    run_dir: Path | None = None  # where a strategy may write extra artefacts (e.g. generator.pt); None in tests
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class SearchResult:
    """The chosen architecture, its score and the trail that led to it."""

    best: np.ndarray
    score: float
    history: list[dict[str, Any]]
    pareto: list[dict[str, Any]] | None = None
    repaired: bool = False
    info: dict[str, Any] = field(default_factory=dict)


class SearchStrategy(ABC):
    """Finds the best feasible architecture."""

    name: ClassVar[str]  # the registered name, set by @register
    Options: ClassVar[type[ComponentOptions]] = SearchStrategyOptions
    # the training strategies this search works with (a base class); configs pairing others are rejected early
    needs_training_strategy: ClassVar[type] = object

    def __init__(self, options: ComponentOptions) -> None:
        self.options = options

    @abstractmethod
    def search(self, context: SearchContext) -> SearchResult:
        """Return the best architecture that satisfies ``context.constraint``."""


def arch_key(arch: Any) -> tuple[int, ...]:
    """Hashable form of an architecture (score caches, ``seen`` sets)."""
    return tuple(int(i) for i in arch)


class History:
    """Records every evaluation, the score of each architecture seen and the best feasible one so far."""

    def __init__(self, context: SearchContext) -> None:
        self.context = context
        self.records: list[dict[str, Any]] = []
        self.scores: dict[tuple[int, ...], float] = {}
        self.best: np.ndarray | None = None
        self.best_score = -np.inf

    def add(self, archs: np.ndarray, scores: np.ndarray, **extra: Any) -> None:
        archs = np.atleast_2d(archs)
        costs = self.context.constraint.cost(archs)
        feasible = self.context.constraint.feasible(archs)
        for arch, score, cost, ok in zip(archs, scores, costs, feasible):
            self.scores[arch_key(arch)] = float(score)
            if ok and score > self.best_score:
                self.best, self.best_score = arch.copy(), float(score)
            record = {"eval": len(self.records) + 1, "arch": arch.tolist(), "score": float(score),
                      "cost": float(cost), "best_score": float(self.best_score), **extra}
            self.records.append(record)
            self.context.log({"phase": "search", **record})

    def evaluate(self, archs: np.ndarray, **extra: Any) -> np.ndarray:
        """Scores of ``archs``; only architectures not scored before are evaluated and recorded."""
        archs = np.atleast_2d(np.asarray(archs, dtype=np.int64))
        fresh: dict[tuple[int, ...], np.ndarray] = {}
        for arch in archs:
            k = arch_key(arch)
            if k not in self.scores:
                fresh.setdefault(k, arch)
        if fresh:
            new = np.stack(list(fresh.values()))
            self.add(new, self.context.evaluator.evaluate(new), **extra)
        return np.array([self.scores[arch_key(arch)] for arch in archs], dtype=np.float64)

    def resume(self) -> dict[str, Any] | None:
        """Restore records and the rng from ``context.resume_state``; return that state (None: a fresh search)."""
        state = self.context.resume_state
        if not state:
            return None
        self.load_state_dict(state["history"])
        self.context.rng.bit_generator.state = state["rng"]
        return state

    def resume_generation(self, fresh: Callable[[], np.ndarray]) -> tuple[int, np.ndarray, bool]:
        """(generation, population, resumed) for generational searches: the saved ones, or 0 and ``fresh()``."""
        state = self.resume()
        if state:
            return state["generation"], np.asarray(state["population"], dtype=np.int64), True
        return 0, fresh(), False

    def save(self, **extra: Any) -> None:
        """Hand a resumable snapshot (records, rng state and the strategy's ``extra``) to ``context.save_state``."""
        self.context.save_state({"history": self.state_dict(), "rng": self.context.rng.bit_generator.state, **extra})

    def result(self, **kwargs: Any) -> SearchResult:
        if self.best is None:
            raise RuntimeError("search finished without a feasible architecture")
        return SearchResult(self.best, self.best_score, self.records, **kwargs)

    def state_dict(self) -> dict[str, Any]:
        """A snapshot (copies, plain types) that later evaluations do not change."""
        return {"records": list(self.records), "best": None if self.best is None else self.best.tolist(),
                "best_score": self.best_score}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.records = list(state["records"])
        self.scores = {tuple(r["arch"]): float(r["score"]) for r in self.records}
        self.best = None if state["best"] is None else np.asarray(state["best"], dtype=np.int64)
        self.best_score = float(state["best_score"])
