"""The search-strategy contract: ``search(context) -> SearchResult``, resumable through ``state_dict``.

The context bundles what the design's ``search(evaluator, lookup_table,
constraint, budget)`` names, plus the training strategy (differentiable methods
derive from its architecture parameters), a metrics logger and the save hooks.
What a strategy may ask of the evaluator and of the training strategy is written
down as the small protocols below, so a stand-in (the ``osnas check`` probes, a
test's fake scorer) needs only those methods.

Resuming works like a training strategy's: a strategy keeps its progress on
itself, hands ``state_dict()`` to ``context.save_state`` (:meth:`SearchStrategy.checkpoint`)
whenever continuing from there is possible, and a fresh instance given that state
through ``load_state_dict`` continues to the very result the uninterrupted search
gives.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch

from osnas.config import ComponentOptions
from osnas.constraint import Constraint
from osnas.search_spaces.base import SpaceDefinition
from osnas.search_spaces.lookup_table import LookupTable


class SearchStrategyOptions(ComponentOptions):
    """Options every search strategy accepts."""


class Scorer(Protocol):
    """What every search strategy may ask of ``context.evaluator``."""

    @property
    def num_evaluated(self) -> int:
        """Distinct architectures scored so far."""

    def evaluate(self, archs: np.ndarray) -> np.ndarray:
        """(N,) scores, higher is better, of an (N, L) batch (or one (L,) vector); cached by architecture."""


@runtime_checkable
class SupernetScorer(Scorer, Protocol):
    """A scorer that also exposes the trained supernet as a differentiable function of mixing weights
    (for strategies that train on it, e.g. ``architecture_generator``)."""

    @property
    def num_train_batches(self) -> int:
        """How many fixed training batches :meth:`mixed_loss` cycles through (0: none)."""

    @property
    def device(self) -> torch.device:
        """Where the supernet's weights live."""

    def frozen(self) -> AbstractContextManager[None]:
        """While open, the supernet's weights are fixed and restored (with its BN statistics) afterwards."""

    def mixed_loss(self, weights: torch.Tensor, active: np.ndarray, step: int) -> torch.Tensor:
        """Task loss on training batch ``step`` (cycled) with (L, K) mixing ``weights``, running only the
        ``active`` (L, K) candidates; differentiable in ``weights``."""


class TrainedWith(Protocol):
    """The training strategy that trained the supernet, as a search strategy sees it."""

    name: ClassVar[str]


@runtime_checkable
class LearntArchitecture(TrainedWith, Protocol):
    """A training strategy that learnt architecture parameters (differentiable, proxyless)."""

    def arch_probabilities(self) -> np.ndarray:
        """(L, K) probabilities of each candidate."""

    def derive(self) -> np.ndarray:
        """The most likely architecture under the learnt parameters."""


def _no_file(name: str, payload: dict[str, Any]) -> Path | None:
    return None


@dataclass
class SearchContext:
    """Everything a strategy may use while searching.

    ``save_state(state)`` makes ``state`` (a strategy's ``state_dict()``) the point a
    resumed search continues from; ``save_file(name, payload)`` writes a run file the
    strategy produces (e.g. ``generator.pt``) and returns its path (None when there is
    no run directory, as in tests).
    """

    definition: SpaceDefinition
    lut: LookupTable
    constraint: Constraint
    evaluator: Scorer
    rng: np.random.Generator
    training_strategy: TrainedWith | None = None
    log: Callable[[dict[str, Any]], None] = lambda record: None
    save_state: Callable[[dict[str, Any]], None] = lambda state: None
    save_file: Callable[[str, dict[str, Any]], Path | None] = _no_file
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
    """Finds the best feasible architecture; resumable through ``state_dict`` / ``load_state_dict``.

    Subclasses keep their progress (generation, population, ...) on ``self``, extend
    ``state_dict``/``load_state_dict`` with it, open ``search`` with :meth:`begin` and
    call :meth:`checkpoint` at every point a search can continue from.
    """

    name: ClassVar[str]  # the registered name, set by @register
    Options: ClassVar[type[ComponentOptions]] = SearchStrategyOptions
    # the training strategies this search works with (a base class); configs pairing others are rejected early
    needs_training_strategy: ClassVar[type] = object

    def __init__(self, options: ComponentOptions) -> None:
        self.options = options
        self.history = History()
        self.context: SearchContext | None = None
        self._rng_state: dict[str, Any] | None = None  # restored, applied to context.rng by begin()

    @abstractmethod
    def search(self, context: SearchContext) -> SearchResult:
        """Return the best architecture that satisfies ``context.constraint`` (continuing a restored state)."""

    def begin(self, context: SearchContext) -> History:
        """Bind this search to ``context``: the history logs there, and a restored rng state replaces its rng's."""
        self.context = self.history.context = context
        if self._rng_state is not None:
            context.rng.bit_generator.state = self._rng_state
            self._rng_state = None
        return self.history

    def checkpoint(self) -> None:
        """Hand the current state to ``context.save_state`` (the agent writes it to the run's search state)."""
        if self.context is None:
            raise RuntimeError("checkpoint() before begin(context)")
        self.context.save_state(self.state_dict())

    def state_dict(self) -> dict[str, Any]:
        """A plain-data snapshot (lists, numbers, strings, tensors) that later steps do not change."""
        rng = self.context.rng.bit_generator.state if self.context is not None else self._rng_state
        return {"history": self.history.state_dict(), "rng": rng}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (taken from another instance) when :meth:`search` runs."""
        self.history.load_state_dict(state["history"])
        self._rng_state = state.get("rng")


def arch_key(arch: Any) -> tuple[int, ...]:
    """Hashable form of an architecture (score caches, ``seen`` sets)."""
    return tuple(int(i) for i in arch)


class History:
    """Records every evaluation, the score of each architecture seen and the best feasible one so far.

    It belongs to a strategy (``strategy.history``) and logs through the context it is bound to.
    """

    def __init__(self) -> None:
        self.context: SearchContext | None = None
        self.records: list[dict[str, Any]] = []
        self.scores: dict[tuple[int, ...], float] = {}
        self.best: np.ndarray | None = None
        self.best_score = -np.inf

    def _bound(self) -> SearchContext:
        if self.context is None:
            raise RuntimeError("the history is used before the strategy's begin(context)")
        return self.context

    def add(self, archs: np.ndarray, scores: np.ndarray, **extra: Any) -> None:
        context = self._bound()
        archs = np.atleast_2d(archs)
        costs = context.constraint.cost(archs)
        feasible = context.constraint.feasible(archs)
        for arch, score, cost, ok in zip(archs, scores, costs, feasible):
            self.scores[arch_key(arch)] = float(score)
            if ok and score > self.best_score:
                self.best, self.best_score = arch.copy(), float(score)
            record = {"eval": len(self.records) + 1, "arch": arch.tolist(), "score": float(score),
                      "cost": float(cost), "best_score": float(self.best_score), **extra}
            self.records.append(record)
            context.log({"phase": "search", **record})

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
            self.add(new, self._bound().evaluator.evaluate(new), **extra)
        return np.array([self.scores[arch_key(arch)] for arch in archs], dtype=np.float64)

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
