"""Random search: feasible architectures drawn uniformly, the best one kept."""

from __future__ import annotations

from typing import Any

from pydantic import PositiveInt

from osnas.config import ComponentOptions
from osnas.registry import register
from osnas.search_strategies.base import SearchContext, SearchResult, SearchStrategy, SearchStrategyOptions


class RandomOptions(SearchStrategyOptions):
    num_samples: PositiveInt = 50
    batch: PositiveInt = 10


@register("search_strategy", "random")
class RandomSearch(SearchStrategy):
    """Samples architectures that meet the constraint and keeps the best on the supernet."""

    Options = RandomOptions

    def __init__(self, options: ComponentOptions) -> None:
        super().__init__(options)
        self.drawn = 0

    def search(self, context: SearchContext) -> SearchResult:
        """``num_samples`` feasible draws (a repeated draw is not scored again), state saved per batch."""
        history = self.begin(context)
        while self.drawn < self.options.num_samples:
            n = min(self.options.batch, self.options.num_samples - self.drawn)
            history.evaluate(context.constraint.sample_feasible(context.rng, n))
            self.drawn += n
            self.checkpoint()
        return history.result()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "drawn": self.drawn}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.drawn = int(state["drawn"])
