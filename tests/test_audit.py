"""The ranking audit: its statistics against known orders and scipy, and `osnas audit` end to end with resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from osnas.audit import (Audit, AuditSettings, feasible_range, rank_agreement, stratified_sample, top_k_overlap)
from osnas.constraint import Constraint
from osnas.search_spaces.lookup_table import LookupTable
from osnas.search_spaces.spos import SPOS
from tests.datasets import run_cli
from tests.small_config import small_config, write_config


class KnownOrderEvaluator:
    """A synthetic supernet: scores an architecture by a fixed linear function of its indices."""

    def __init__(self, weights: np.ndarray, sign: float = 1.0) -> None:
        self.weights, self.sign = weights, sign

    def evaluate(self, archs: np.ndarray) -> np.ndarray:
        return self.sign * (np.atleast_2d(archs) @ self.weights).astype(np.float64)


def test_perfect_and_reversed_orders_give_plus_and_minus_one():
    rng = np.random.default_rng(0)
    archs = rng.integers(0, 4, size=(9, 6))
    weights = np.array([1.0, 10.0, 100.0, 1e3, 1e4, 1e5])  # distinct scores for distinct rows
    truth = KnownOrderEvaluator(weights).evaluate(archs)
    same = rank_agreement(KnownOrderEvaluator(weights).evaluate(archs), truth, top_k=3)
    reversed_ = rank_agreement(KnownOrderEvaluator(weights, -1.0).evaluate(archs), truth, top_k=3)
    assert same["kendall_tau"] == pytest.approx(1.0) and same["spearman_rho"] == pytest.approx(1.0)
    assert same["top_k_overlap"] == 1.0 and same["kendall_p"] < 0.01
    assert reversed_["kendall_tau"] == pytest.approx(-1.0) and reversed_["spearman_rho"] == pytest.approx(-1.0)
    assert reversed_["top_k_overlap"] == 0.0


def test_statistics_match_scipy_on_random_scores():
    rng = np.random.default_rng(1)
    a, b = rng.random(15), rng.random(15)
    got = rank_agreement(a, b, top_k=5)
    tau, rho = stats.kendalltau(a, b), stats.spearmanr(a, b)
    assert got["kendall_tau"] == pytest.approx(tau.statistic) and got["kendall_p"] == pytest.approx(tau.pvalue)
    assert got["spearman_rho"] == pytest.approx(rho.statistic) and got["spearman_p"] == pytest.approx(rho.pvalue)


def test_top_k_overlap_by_hand():
    supernet = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]  # top-3: items 0, 1, 2
    standalone = [0.1, 0.95, 0.3, 0.99, 0.97, 0.2]  # top-3: items 3, 4, 1
    assert top_k_overlap(supernet, standalone, 3) == pytest.approx(1 / 3)
    assert top_k_overlap(supernet, standalone, 1) == 0.0
    assert top_k_overlap(supernet, standalone, 6) == 1.0


def test_constant_scores_give_undefined_statistics_not_nan():
    got = rank_agreement(np.ones(5), np.arange(5.0), top_k=2)
    assert got["kendall_tau"] is None and got["spearman_p"] is None
    json.dumps(got, allow_nan=False)


def test_stratified_draw_is_feasible_distinct_and_spans_the_cost_range():
    definition = SPOS(SPOS.Options(width_mult=0.25)).define(16, 1, 10)
    lut = LookupTable.build(definition, "cpu", latency=False)
    lo, hi = lut.bounds("macs", definition)
    constraint = Constraint("macs", lo + 0.8 * (hi - lo), None, lut, definition)
    found = constraint.sample_feasible(np.random.default_rng(5), 1)[0]
    archs = stratified_sample(constraint, np.random.default_rng(0), 6, exclude=[found])
    assert archs.shape == (6, definition.num_layers)
    assert constraint.feasible(archs).all()
    keys = {tuple(a) for a in archs} | {tuple(found)}
    assert len(keys) == 7
    cost = np.sort(constraint.cost(archs))
    low, high = feasible_range(constraint)
    edges = np.linspace(low, high, 7)
    # one architecture per bin: the k-th cheapest lies in the k-th bin
    assert ((cost >= edges[:-1] - 1e-9) & (cost <= edges[1:] + 1e-9)).all()


def test_bad_settings_are_refused_before_anything_runs(tmp_path):
    with pytest.raises(Exception, match="top_k"):
        AuditSettings(k=3, top_k=5).check()
    with pytest.raises(Exception, match="k must be >= 2"):
        AuditSettings(k=1).check()


def test_audit_phase_of_a_search_resumes_with_osnas_audit(tmp_path, capsys, monkeypatch):
    audit = {"enabled": True, "k": 3, "proxy_epochs": 1, "top_k": 2}
    config = write_config(tmp_path / "c.yaml", small_config(tmp_path, tmp_path / "luts", audit=audit))
    original = Audit._save_state

    def save_then_interrupt(self):
        original(self)
        if sum(bool(runs) for runs in self.state["standalone"]) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(Audit, "_save_state", save_then_interrupt)
    code, _, err = run_cli(capsys, "search", "--config", str(config), "--quiet")
    assert code == 130, err
    monkeypatch.undo()
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.name != "lookup_tables"]
    assert (run_dir / "results.json").is_file()  # the audit runs after the search's own phases
    state = json.loads((run_dir / "audit_state.json").read_text())
    assert [len(runs) for runs in state["standalone"]] == [1, 1, 0, 0] and not (run_dir / "audit.json").exists()
    # a state written before `repeats` existed (one float per architecture) continues as repeats=1
    old = {**state, "settings": {k: v for k, v in state["settings"].items() if k != "repeats"},
           "standalone": [runs[0] if runs else None for runs in state["standalone"]]}
    (run_dir / "audit_state.json").write_text(json.dumps(old))

    code, out, err = run_cli(capsys, "audit", "--run", str(run_dir), "--quiet")  # settings from the run's config
    assert code == 0, err
    # only the two architectures left are trained after the resume
    assert out.count("audit: architecture") == 2 and "architecture 3/4 trained" in out
    assert "Kendall tau" in out and "found's rank" in out
    result = json.loads((run_dir / "audit.json").read_text())
    assert (run_dir / "audit.png").stat().st_size > 0
    assert [a["standalone_score"] for a in result["archs"]][:2] == [runs[0] for runs in state["standalone"][:2]]
    assert all(a["standalone_runs"] == [a["standalone_score"]] for a in result["archs"])
    assert [a["indices"] for a in result["archs"]] == state["archs"]

    assert result["version"] == 1 and result["k"] == 3 and result["proxy_epochs"] == 1 and result["top_k"] == 2
    assert len(result["archs"]) == 4 and [a["found"] for a in result["archs"]] == [False, False, False, True]
    found = result["archs"][-1]
    architecture = json.loads((run_dir / "architecture.json").read_text())
    assert found["indices"] == architecture["indices"]
    # the run's evaluator, same batches: the found architecture scores as it did in the search
    assert found["supernet_score"] == pytest.approx(architecture["score"])
    standalone = [a["standalone_score"] for a in result["archs"]]
    assert result["found_standalone"] == standalone[-1]
    assert result["median_random"] == pytest.approx(float(np.median(standalone[:-1])))
    assert result["found_rank"] == 1 + sum(s > standalone[-1] for s in standalone)
    expected = rank_agreement(np.array([a["supernet_score"] for a in result["archs"]]), np.array(standalone), 2)
    assert {key: result[key] for key in expected} == pytest.approx(expected, nan_ok=True)
    for arch in result["archs"]:
        assert arch["costs"]["macs"] <= 3.0 and 0.0 <= arch["standalone_score"] <= 100.0

    # another setting cannot silently continue this audit's state
    code, _, err = run_cli(capsys, "audit", "--run", str(run_dir), "--k", "4", "--quiet")
    assert code == 2 and "audit_state.json" in err

    # an interrupted `osnas audit` names the command that continues it
    monkeypatch.setattr(Audit, "run_all", lambda self: (_ for _ in ()).throw(KeyboardInterrupt))
    code, _, err = run_cli(capsys, "audit", "--run", str(run_dir), "--quiet")
    assert code == 130 and f"osnas audit --run {run_dir}" in err


def test_repeated_stand_alone_trainings_are_averaged(tmp_path, capsys):
    config = write_config(tmp_path / "c.yaml", small_config(tmp_path, tmp_path / "luts"))
    code, _, err = run_cli(capsys, "search", "--config", str(config), "--quiet")
    assert code == 0, err
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.name != "lookup_tables"]
    code, out, err = run_cli(capsys, "audit", "--run", str(run_dir), "--k", "2", "--top-k", "1",
                             "--proxy-epochs", "1", "--repeats", "2", "--quiet")
    assert code == 0, err
    assert out.count("audit: architecture") == 6 and "architecture 3/3 run 2/2 trained" in out
    assert "mean of 2" in out and "spread of one architecture's runs" in out
    result = json.loads((run_dir / "audit.json").read_text())
    assert result["repeats"] == 2
    for i, arch in enumerate(result["archs"]):
        assert len(arch["standalone_runs"]) == 2
        assert arch["standalone_score"] == pytest.approx(float(np.mean(arch["standalone_runs"])))
        assert (run_dir / "audit" / f"arch-{i:02d}" / "model.pt").is_file()
        assert (run_dir / "audit" / f"arch-{i:02d}-r1" / "model.pt").is_file()
    spreads = [float(np.std(a["standalone_runs"])) for a in result["archs"]]
    assert result["repeat_std_mean"] == pytest.approx(float(np.mean(spreads)))
    standalone = np.array([a["standalone_score"] for a in result["archs"]])
    expected = rank_agreement(np.array([a["supernet_score"] for a in result["archs"]]), standalone, 1)
    assert {key: result[key] for key in expected} == pytest.approx(expected, nan_ok=True)
    code, _, err = run_cli(capsys, "audit", "--run", str(run_dir), "--repeats", "0", "--quiet")
    assert code == 2 and "repeats must be >= 1" in err


def test_audit_of_an_unfinished_run_is_a_clear_error(tmp_path, capsys):
    run_dir = tmp_path / "not_a_run"
    run_dir.mkdir()
    code, _, err = run_cli(capsys, "audit", "--run", str(run_dir))
    assert code == 2 and "not an osnas run directory" in err
