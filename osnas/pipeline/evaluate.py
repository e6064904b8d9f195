"""Phase: test the trained child, measure its costs and write results.json."""

from __future__ import annotations

import time
from typing import Any

from osnas import artifacts
from osnas.pipeline.context import RunContext
from osnas.pipeline.final import FinalPhase
from osnas.profiling import count_macs, count_params, latency_fields


class TestPhase:
    """Test metrics, MACs, params and latency of the child, with the run's timings."""

    __test__ = False  # not a pytest test class
    name = "test"

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx

    def metrics(self, final: FinalPhase) -> dict[str, float]:
        """The training agent's metrics of the trained child on the test split."""
        begin = time.perf_counter()
        final.model.eval()
        metrics = self.ctx.components.training_agent.evaluate(lambda x: final.forward(x), final.test_loader)
        self.ctx.timer.add("test", begin)
        return metrics

    def run(self, final: FinalPhase) -> dict[str, Any]:
        """The content of results.json."""
        ctx, comp = self.ctx, self.ctx.components
        arch, child = final.arch, final.model
        metrics = self.metrics(final)
        d = comp.definition
        shape = (1, d.in_channels, d.input_size, d.input_size)
        seconds = ctx.timer.seconds
        results = {
            "space": d.name,
            "indices": [int(i) for i in arch],
            "candidates": d.candidate_names(arch),
            "test": metrics,
            "test_" + comp.training_agent.selection_metric: metrics[comp.training_agent.selection_metric],
            "macs": count_macs(child, shape),
            "params": count_params(child),
            **latency_fields(child, shape, ctx.device, ctx.config.lookup_table.latency,
                             ctx.config.lookup_table.latency_runs),
            "lut_costs": comp.lut.costs(arch),
            "constraint": ctx.config.constraint.model_dump(),
            "device": str(ctx.device),
            "seconds": {k: round(v, 3) for k, v in seconds.items() if k != "total"},  # total: at the end
            "search_seconds": round(seconds.get("supernet", 0.0) + seconds.get("search", 0.0), 3),
        }
        results["seconds"]["total"] = round(ctx.timer.total(), 3)  # every process of the run, this one included
        artifacts.write_results(ctx.run, results)
        return results

