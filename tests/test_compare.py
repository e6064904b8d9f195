"""``osnas compare``: tables, Pareto plot, one supernet per seed shared by the methods, reuse on re-run."""

import csv
import json

import matplotlib.image
import numpy as np
import pytest

from osnas.compare import compare, pareto_front, supernet_key
from osnas.config import load_config
from osnas.errors import OsnasError
from tests.conftest import run_osnas, variant

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FAST_DATA = {"test_fraction": 0.8, "val_fraction": 0.5, "batch_size": 32}


def two_methods(tiny_config):
    """Two configs that differ only in the search strategy."""
    evolution = variant(tiny_config, "evolution", dataflow=FAST_DATA)
    random = variant(tiny_config, "random", dataflow=FAST_DATA,
                     search_strategy={"name": "random", "num_samples": 6, "batch": 3})
    return evolution, random


def test_supernet_key_ignores_search_settings_only(tiny_config):
    evolution, random = two_methods(tiny_config)
    a, b = load_config(evolution), load_config(random)
    assert supernet_key(a) == supernet_key(b)
    assert supernet_key(a) != supernet_key(load_config(evolution, ["seed=1"]))
    assert supernet_key(a) != supernet_key(load_config(evolution, ["supernet.epochs=2"]))
    assert supernet_key(a) == supernet_key(load_config(evolution, ["final.epochs=3", "evaluation.val_batches=2"]))


def test_pareto_front_keeps_only_undominated_points():
    points = np.array([[1.0, 50.0], [2.0, 40.0], [2.0, 60.0], [3.0, 55.0], [4.0, 70.0]])
    assert pareto_front(points).tolist() == [[1.0, 50.0], [2.0, 60.0], [4.0, 70.0]]


def test_compare_two_methods_two_seeds(tiny_config, tmp_path):
    evolution, random = two_methods(tiny_config)
    out = tmp_path / "cmp"
    proc = run_osnas("compare", str(evolution), str(random), "--seeds", "2", "--output", str(out))
    assert proc.returncode == 0, proc.stderr

    rows = list(csv.DictReader((out / "comparison.csv").open()))
    assert [r["method"] for r in rows] == ["evolution", "random"]
    for row in rows:
        assert row["runs"] == "2" and row["seeds"] == "0 1"
        for figure in ("test_top1", "macs_m", "params_m", "latency_ms", "supernet_s", "search_s"):
            assert float(row[f"{figure}_std"]) >= 0.0
        assert 0.0 <= float(row["test_top1_mean"]) <= 100.0
        assert float(row["macs_m_mean"]) <= 3.0  # the tiny config's budget
    markdown = (out / "comparison.md").read_text().splitlines()
    assert markdown[0].startswith("| method | runs | test top1 | MACs (M)")
    assert len(markdown) == 4 and "±" in markdown[2]
    assert "evolution" in proc.stdout and "random" in proc.stdout  # the terminal table

    png = (out / "pareto.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    image = matplotlib.image.imread(out / "pareto.png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100

    # one supernet per seed: the evolution run trains it, the random run of the same seed loads it
    index = json.loads((out / "index.json").read_text())["runs"]
    assert set(index) == {"evolution-seed0", "random-seed0", "evolution-seed1", "random-seed1"}
    for seed in (0, 1):
        assert index[f"evolution-seed{seed}"]["supernet_from"] is None
        assert index[f"random-seed{seed}"]["supernet_from"] == f"evolution-seed{seed}"
        trained = [name for name in index
                   if name.endswith(f"seed{seed}") and any(
                       json.loads(line)["phase"] == "supernet"
                       for line in (out / index[name]["run_dir"] / "metrics.jsonl").read_text().splitlines())]
        assert trained == [f"evolution-seed{seed}"]
        results = json.loads((out / "runs" / f"random-seed{seed}" / "results.json").read_text())
        assert results["supernet_from"] == f"evolution-seed{seed}"
    assert index["evolution-seed0"]["supernet_key"] != index["evolution-seed1"]["supernet_key"]

    # re-running reuses every finished run: nothing is trained or rewritten
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/*") if p.is_file()}
    compare([evolution, random], 2, [], out)
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/*") if p.is_file()} == stamps
    assert json.loads((out / "index.json").read_text())["runs"] == index

    # an unfinished run (here: its results.json lost) is resumed from its own files; the others stay
    (out / "runs" / "random-seed1" / "results.json").unlink()
    rows, _ = compare([evolution, random], 2, [], out)
    assert (out / "runs" / "random-seed1" / "results.json").is_file()
    model = out / "runs" / "random-seed1" / "model.pt"
    assert model.stat().st_mtime_ns == stamps[model]  # resumed after training: not trained again
    for name in ("evolution-seed0", "random-seed0", "evolution-seed1"):
        path = out / "runs" / name / "results.json"
        assert path.stat().st_mtime_ns == stamps[path]
    assert [r["method"] for r in rows] == ["evolution", "random"]

    # a changed config never silently reuses runs made with the old one
    with pytest.raises(OsnasError, match="different config \\(changed: final\\)"):
        compare([evolution, random], 1, ["final.epochs=2"], out)
