"""The search-strategy contract: ``search(context) -> SearchResult``.

The context bundles what the design's ``search(evaluator, lookup_table,
constraint, budget)`` names, plus the training strategy (differentiable methods
derive from its architecture parameters), a metrics logger and resume state.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
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

    Options: ClassVar[type[ComponentOptions]] = SearchStrategyOptions
    # the training strategies this search works with (a base class); configs pairing others are rejected early
    needs_training_strategy: ClassVar[type] = object

    def __init__(self, options: ComponentOptions) -> None:
        self.options = options

    @abstractmethod
    def search(self, context: SearchContext) -> SearchResult:
        """Return the best architecture that satisfies ``context.constraint``."""


class History:
    """Records every evaluation and the best feasible one so far."""

    def __init__(self, context: SearchContext) -> None:
        self.context = context
        self.records: list[dict[str, Any]] = []
        self.best: np.ndarray | None = None
        self.best_score = -np.inf

    def add(self, archs: np.ndarray, scores: np.ndarray, **extra: Any) -> None:
        archs = np.atleast_2d(archs)
        costs = self.context.constraint.cost(archs)
        feasible = self.context.constraint.feasible(archs)
        for arch, score, cost, ok in zip(archs, scores, costs, feasible):
            if ok and score > self.best_score:
                self.best, self.best_score = arch.copy(), float(score)
            record = {"eval": len(self.records) + 1, "arch": arch.tolist(), "score": float(score),
                      "cost": float(cost), "best_score": float(self.best_score), **extra}
            self.records.append(record)
            self.context.log({"phase": "search", **record})

    def result(self, **kwargs: Any) -> SearchResult:
        if self.best is None:
            raise RuntimeError("search finished without a feasible architecture")
        return SearchResult(self.best, self.best_score, self.records, **kwargs)

    def state_dict(self) -> dict[str, Any]:
        return {"records": self.records, "best": None if self.best is None else self.best.tolist(),
                "best_score": self.best_score}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.records = list(state["records"])
        self.best = None if state["best"] is None else np.asarray(state["best"], dtype=np.int64)
        self.best_score = float(state["best_score"])
