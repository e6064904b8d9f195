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
        history = History(context)
        state = context.resume_state
        if state:
            history.load_state_dict(state["history"])
            context.rng.bit_generator.state = state["rng"]
        while len(history.records) < self.options.num_samples:
            n = min(self.options.batch, self.options.num_samples - len(history.records))
            archs = context.constraint.sample_feasible(context.rng, n)
            history.add(archs, context.evaluator.evaluate(archs))
            context.save_state({"history": history.state_dict(), "rng": context.rng.bit_generator.state})
        return history.result()
