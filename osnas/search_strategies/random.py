"""Random search: feasible architectures drawn uniformly, the best one kept."""

from __future__ import annotations

from pydantic import PositiveInt

from osnas.registry import register
from osnas.search_strategies.base import History, SearchContext, SearchResult, SearchStrategy, SearchStrategyOptions


class RandomOptions(SearchStrategyOptions):
    num_samples: PositiveInt = 50
    batch: PositiveInt = 10


@register("search_strategy", "random")
class RandomSearch(SearchStrategy):
    """Samples architectures that meet the constraint and keeps the best on the supernet."""

    Options = RandomOptions

    def search(self, context: SearchContext) -> SearchResult:
        """``num_samples`` feasible draws (a repeated draw is not scored again), state saved per batch."""
        history = History(context)
        state = history.resume()
        drawn = state["drawn"] if state else 0
        while drawn < self.options.num_samples:
            n = min(self.options.batch, self.options.num_samples - drawn)
            history.evaluate(context.constraint.sample_feasible(context.rng, n))
            drawn += n
            history.save(drawn=drawn)
        return history.result()
