"""``osnas lookup-table build | show | fit-latency`` (in-process) and the latency models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from osnas.cli import app
from osnas.search_spaces.latency_model import LinearLatencyModel, mape
from osnas.search_spaces.lookup_table import LookupTable




def invoke(*args: str):
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def cached(config: Path) -> list[Path]:
    return sorted((config.parent / "luts").glob("proxylessnas-*.json"))


def test_build_reuses_and_reports_metadata_changes(tiny_config: Path):
    first = invoke("lookup-table", "build", "--config", str(tiny_config))
    assert "lookup table built" in first.stdout
    [path] = cached(tiny_config)
    assert str(path) in first.stdout.replace("\n", "")
    assert "reused" in invoke("lookup-table", "build", "--config", str(tiny_config)).stdout
    other = invoke("lookup-table", "build", "--config", str(tiny_config), "--set", "lookup_table.latency_runs=11")
    assert "built" in other.stdout and "latency_runs: 10 -> 11" in other.stdout
    assert len(cached(tiny_config)) == 2


def test_corrupt_or_mismatched_table_is_rebuilt_with_a_warning(tiny_config: Path):
    invoke("lookup-table", "build", "--config", str(tiny_config))
    [path] = cached(tiny_config)
    good = json.loads(path.read_text())
    path.write_text("garbage{")
    result = invoke("lookup-table", "build", "--config", str(tiny_config))
    assert "warning" in result.stderr and "corrupt" in result.stderr
    rebuilt = LookupTable.load(path)
    np.testing.assert_array_equal(rebuilt.table[:2], np.asarray(good["table"])[:2])
    stale = dict(good, meta={**good["meta"], "torch": "0.0"})
    path.write_text(json.dumps(stale))
    result = invoke("lookup-table", "build", "--config", str(tiny_config))
    assert "rebuilt" in result.stderr and "metadata" in result.stderr
    assert LookupTable.load(path).meta == good["meta"]


def test_show_prints_every_candidate_base_cost_and_metadata(tiny_config: Path):
    out = invoke("lookup-table", "show", "--config", str(tiny_config)).stdout
    lut = LookupTable.load(cached(tiny_config)[0])
    for name in ("k3_e3", "k7_e6", "zero", "MACs (M)", "params (M)", "latency (ms)", "base cost", "space_hash"):
        assert name in out
    base_macs = f"{lut.base[0] * 1e-6:.4f}"
    assert base_macs in out
    # one row per layer x candidate
    assert out.count("k5_e3") == len(lut.choices)


def test_fit_latency_reports_three_finite_errors(tiny_config: Path, tmp_path: Path):
    report_path = tmp_path / "fit.json"
    out = invoke("lookup-table", "fit-latency", "--config", str(tiny_config), "--samples", "24", "--holdout", "8",
                 "--json", str(report_path)).stdout
    assert "LUT sum" in out and "MLP" in out
    report = json.loads(report_path.read_text())
    errors = report["mape_percent"]
    assert set(errors) == {"lut_sum", "linear", "mlp"}
    assert all(np.isfinite(e[part]) and e[part] >= 0 for e in errors.values() for part in ("train", "holdout"))
    assert report["train_size"] == 24 and report["holdout_size"] == 8 and len(report["measured_ms"]) == 32
    # the linear fit minimizes training MAPE and the plain sum is one of its candidates
    assert errors["linear"]["train"] <= errors["lut_sum"]["train"] + 1e-6


def test_linear_latency_fit_minimizes_mape():
    rng = np.random.default_rng(0)
    lut_sum = rng.uniform(1.0, 3.0, 30)
    measured = 4.0 * lut_sum + 2.0 + rng.normal(0.0, 0.2, 30)
    model = LinearLatencyModel.fit(lut_sum, measured)
    assert model.scale == pytest.approx(4.0, rel=0.1) and model.offset == pytest.approx(2.0, abs=0.5)
    best = mape(model.predict(lut_sum), measured)
    # the optimum of this 2-parameter L1 problem is a line through two measured points
    pairs = [(i, j) for i in range(30) for j in range(i + 1, 30)]
    brute = min(mape(measured[i] + (measured[j] - measured[i]) / (lut_sum[j] - lut_sum[i]) * (lut_sum - lut_sum[i]),
                     measured) for i, j in pairs)
    assert best == pytest.approx(brute, rel=1e-6)
