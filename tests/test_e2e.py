"""An end-to-end search on a tiny budget: every phase runs and writes its outputs."""

import json

from tests.conftest import run_osnas


def test_tiny_search_end_to_end(tiny_config, tmp_path):
    proc = run_osnas("search", "--config", str(tiny_config), "--quiet")
    assert proc.returncode == 0, proc.stderr
    run_dir = next((tmp_path / "runs").iterdir())
    for name in ("config.yaml", "log.txt", "metrics.jsonl", "supernet.pt", "architecture.json", "model.pt",
                 "results.json"):
        assert (run_dir / name).is_file(), name
    arch = json.loads((run_dir / "architecture.json").read_text())
    results = json.loads((run_dir / "results.json").read_text())
    assert arch["space"] == "proxylessnas"
    assert arch["costs"]["macs"] <= 3.0
    assert results["macs"] / 1e6 <= 3.0
    assert 0.0 <= results["test_top1"] <= 100.0
    phases = {json.loads(line)["phase"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()}
    assert {"supernet", "search", "final"} <= phases
