"""The benchmark suite runs and reports ratios (figures are recorded in BENCHMARKS.md, not asserted)."""

import torch

from osnas.bench.suite import cost_queries, framework_overhead, input_pipeline, to_markdown, run_suite


def test_quick_sections_produce_figures():
    report = run_suite(torch.device("cpu"), quick=True, sections={"cost", "input"})
    names = [f.section for f in report.figures]
    assert names == ["cost", "input", "input"]
    assert all(f.ratio is not None and f.ratio > 0 for f in report.figures)
    text = to_markdown(report, "python -m benchmarks --quick")
    assert "| cost |" in text and "torch" in text


def test_overhead_measures_both_sides():
    t_super, t_child = framework_overhead("proxylessnas", torch.device("cpu"), 16, 4, repeats=2,
                                          options={"width_mult": 0.25})
    assert t_super > 0 and t_child > 0


def test_cost_queries_and_pipeline_positive():
    vec, loop = cost_queries(2_000)
    assert 0 < vec < loop
    rates = input_pipeline(torch.device("cpu"), n=256, batch=32)
    assert set(rates) == {"batched", "pil", "tensor"} and min(rates.values()) > 0
