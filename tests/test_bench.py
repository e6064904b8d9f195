"""The benchmark suite runs and reports ratios (figures are recorded in BENCHMARKS.md, not asserted)."""

import pytest
import torch

from osnas.bench.suite import cost_queries, framework_overhead, input_pipeline, peak_rss_mb, run_suite, to_markdown


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


def test_peak_memory_is_the_worker_own_and_follows_allocations():
    """ru_maxrss would hand a worker its parent's resident size; the figure must be the worker's own."""
    import subprocess
    import sys

    parent = torch.ones(600 * 2**20 // 4)  # the parent peaks 600 MB higher
    assert parent[-1] == 1
    code = ("import torch; from osnas.bench.suite import peak_rss_mb; a = peak_rss_mb(); "
            "b = torch.ones(200 * 2**20 // 4); assert b[-1] == 1; print(a, peak_rss_mb())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    before, after = float(out[0]), float(out[1])
    assert after - before > 150
    assert before < peak_rss_mb() - 400


def test_unknown_section_or_space_is_refused_with_the_valid_names(capsys):
    from osnas.bench.cli import run

    assert run("cpu", only=["speed"]) == 2
    assert run("cpu", only=["overhead"], spaces=["nasnet"]) == 2
    out = capsys.readouterr().out
    assert "valid: overhead, cost" in out and "nasnet" in out and "proxylessnas" in out


def test_osnas_bench_exits_2_on_an_unknown_space():
    from tests.conftest import run_osnas

    proc = run_osnas("bench", "--only", "overhead", "--space", "nasnet")
    assert proc.returncode == 2
    assert "unknown search space(s) ['nasnet']" in proc.stdout + proc.stderr


def test_strategy_figures_judge_the_lean_step_against_its_single_path_and_the_stored_step_before(monkeypatch):
    """The figure logic alone: each case in its own layout, the lean targets from the right pair of cases."""
    from osnas.bench import suite

    measured = {"single path (uniform)": (1.0, 1000.0), "softmax-mixed": (4.0, 6000.0),
                "softmax-mixed, recompute (memory-lean)": (6.0, 1900.0),
                "softmax-mixed, NCHW (before issue 17)": (5.0, 6500.0),
                "gumbel": (4.0, 6000.0), "gumbel, recompute (memory-lean)": (7.0, 2100.0),
                "gumbel, NCHW (before issue 17)": (5.6, 6400.0)}
    asked = []

    def fake_step(case, device, size, batch, steps, channels_last):
        label = next(k for k, v in suite.STRATEGY_CASES.items() if v == (case, channels_last))
        asked.append((label, channels_last))
        if label not in measured:
            raise RuntimeError("not measured here")
        seconds, peak = measured[label]
        return {"step_s": seconds, "peak_mb": peak, "base_mb": 400.0}

    monkeypatch.setattr(suite, "strategy_step", fake_step)
    report = suite.Report(meta={})
    single = suite.strategy_figures(report, None, torch.device("cpu"), 64, quick=True)
    assert single["step_s"] == 1.0
    assert ("softmax-mixed, NCHW (before issue 17)", False) in asked and ("softmax-mixed", "auto") in asked
    judged = {f.name: f for f in report.figures if f.target}
    softmax_time = judged["softmax-mixed, recompute (memory-lean): step vs softmax-mixed, NCHW (before issue 17)"]
    assert softmax_time.ratio == 6.0 / 5.0 and softmax_time.passed and "1.50x" in softmax_time.value
    gumbel_time = judged["gumbel, recompute (memory-lean): step vs gumbel, NCHW (before issue 17)"]
    assert gumbel_time.ratio == 7.0 / 5.6 and gumbel_time.passed and "1.75x" in gumbel_time.value
    memory = judged["gumbel, recompute (memory-lean): peak vs single path"]
    assert memory.ratio == 2.1 and memory.passed is False
    assert judged["softmax-mixed, recompute (memory-lean): peak vs single path"].passed
    failed = [f for f in report.figures if f.value.startswith("failed")]
    assert [f.name for f in failed] == ["fairness (K paths)", "proxyless (two paths)"]


def test_search_comparison_times_every_evaluator_and_checks_the_cached_one_exact():
    from osnas.bench.suite import compare_searches
    from osnas.components import build_components
    from osnas.config import load_config
    from osnas.search_spaces.supernet import Supernet
    from tests.conftest import ROOT

    cfg = load_config(ROOT / "configs" / "quickstart.yaml", [
        "lookup_table.latency=false", "device=cpu", "search_space.width_mult=0.25", "dataflow.input_size=8",
        "search_strategy.population=4", "search_strategy.generations=2", "search_strategy.top_k=2",
        "evaluation.bn_batches=1", "evaluation.val_batches=2"])
    comp = build_components(cfg, torch.device("cpu"), None)
    runs = compare_searches(Supernet(comp.definition), cfg, comp, torch.device("cpu"))
    assert set(runs) == {"issue17", "plain", "cached", "default"}
    assert all(run["seconds"] > 0 and run["evaluated"] == runs["plain"]["evaluated"] > 4 for run in runs.values())
    assert runs["cached"]["cache"]["hits"] > 0 and runs["plain"]["cache"] == {} == runs["issue17"]["cache"]


def test_the_evaluator_of_issue_17_scores_what_todays_scores():
    """The benchmarks' baseline computes the same metrics, only slower (float64: no rounding between routes)."""
    import numpy as np

    from osnas.bench.reference_evaluator import EvaluatorAtIssue17
    from osnas.cli.profile import load_space
    from osnas.search_spaces.supernet import Supernet
    from osnas.search_strategies.evaluator import Evaluator
    from osnas.training import compute_in
    from tests.test_incremental_eval import agent, batches, candidates

    _, definition = load_space("proxylessnas", ["width_mult=0.25"], 16, 3, 10)
    torch.manual_seed(3)
    net = compute_in(Supernet(definition), torch.float64).train()
    archs = candidates(definition, 11)
    then = EvaluatorAtIssue17(net, agent(), batches(2, 0), batches(3, 1), 2, 3)
    now = Evaluator(compute_in(Supernet(definition), torch.float64), agent(), batches(2, 0), batches(3, 1), 2, 3)
    now.supernet.load_state_dict(net.state_dict())
    assert np.array_equal(then.evaluate(archs), now.evaluate(archs))
    assert then.metrics.keys() == now.metrics.keys() and then.recalibrations == len(then.metrics)
    for key, metrics in now.metrics.items():
        assert then.metrics[key] == pytest.approx(metrics, rel=1e-12)
    assert net.training and then.cache_stats() == {}
