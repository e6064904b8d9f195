"""``osnas compare``: tables, Pareto plot, supernets shared through the store, reuse and resume on re-run,
parallel jobs, submitit's local executor, and ``osnas report CMP_DIR``."""

import csv
import json
import pickle
import re
from datetime import datetime
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from rich.console import Console

from osnas.compare import compare
from osnas.compare_report import pareto_front, rich_table
from osnas.config import load_config
from osnas.errors import OsnasError
from osnas.launch import LaunchOptions
from osnas.store import supernet_key
from tests.conftest import run_osnas, variant
from tests.datasets import run_cli

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FAST_DATA = {"input_size": 8, "test_fraction": 0.8, "val_fraction": 0.5, "batch_size": 32}
STORE = {"enabled": True}


def two_methods(tiny_config):
    """Two configs that differ only in the search strategy, sharing the supernet store."""
    evolution = variant(tiny_config, "evolution", dataflow=FAST_DATA, store=STORE)
    random = variant(tiny_config, "random", dataflow=FAST_DATA, store=STORE,
                     search_strategy={"name": "random", "num_samples": 6, "batch": 3})
    return evolution, random


def trained_supernet(run_dir: Path) -> bool:
    """Whether this run trained a supernet itself (logged supernet epochs)."""
    return any(json.loads(line)["phase"] == "supernet" for line in (run_dir / "metrics.jsonl").read_text().splitlines())


def log_span(run_dir: Path) -> tuple[datetime, datetime]:
    stamps = re.findall(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})", (run_dir / "log.txt").read_text(), re.M)
    return tuple(datetime.strptime(s, "%Y-%m-%d %H:%M:%S,%f") for s in (stamps[0], stamps[-1]))


def test_supernet_key_ignores_search_and_final_settings_only(tiny_config):
    evolution, random = two_methods(tiny_config)
    a, b = load_config(evolution), load_config(random)
    assert supernet_key(a) == supernet_key(b)
    assert supernet_key(a) != supernet_key(load_config(evolution, ["seed=1"]))
    assert supernet_key(a) != supernet_key(load_config(evolution, ["supernet.epochs=2"]))
    assert supernet_key(a) != supernet_key(load_config(evolution, ["dataflow.val_fraction=0.4"]))
    assert supernet_key(a) != supernet_key(load_config(evolution, ["training_strategy=fairness"]))
    assert supernet_key(a) == supernet_key(load_config(evolution, ["final.epochs=3", "evaluation.val_batches=2",
                                                                   "store.dir=elsewhere", "output.name=x"]))


def test_pareto_front_keeps_only_undominated_points():
    points = np.array([[1.0, 50.0], [2.0, 40.0], [2.0, 60.0], [3.0, 55.0], [4.0, 70.0]])
    assert pareto_front(points).tolist() == [[1.0, 50.0], [2.0, 60.0], [4.0, 70.0]]


def test_terminal_table_never_cuts_method_names():
    names = ["uniform_evolution_with_a_long_name", "uniform_random_with_a_long_name"]
    rows = [{"method": n, "runs": 2, **{f"{k}_{s}": 1.0 for k in ("test_top1", "macs_m", "params_m", "latency_ms",
                                                                 "supernet_s", "search_s") for s in ("mean", "std")}}
            for n in names]
    rows[1]["latency_ms_mean"] = rows[1]["latency_ms_std"] = None
    console = Console(width=80, record=True)
    console.print(rich_table(rows, "top1", "t"))
    text = console.export_text()
    assert max(map(len, text.splitlines())) <= 80 and "…" not in text
    body = [line.split("│") for line in text.splitlines()[text.splitlines().index(next(
        line for line in text.splitlines() if "┼" in line)) + 1:] if "│" in line]
    shown = []  # the first column of each row, its folded pieces joined (a row starts with a mean, not "± std")
    for cells in body:
        if cells[1].strip() and not cells[1].strip().startswith("±"):
            shown.append("")
        shown[-1] += cells[0].strip()
    assert shown == names
    assert "measured" in text and "± 1.00" in text


def test_compare_two_methods_two_seeds(tiny_config, tmp_path, capsys):
    evolution, random = two_methods(tiny_config)
    out = tmp_path / "cmp"
    proc = run_osnas("compare", str(evolution), str(random), "--seeds", "2", "--output", str(out))
    assert proc.returncode == 0, proc.stderr

    rows = list(csv.DictReader((out / "comparison.csv").open()))
    assert [r["method"] for r in rows] == ["evolution", "random"]
    for row in rows:
        assert row["runs"] == "2" and row["seeds"] == "0 1"
        for figure in ("test_top1", "macs_m", "params_m", "supernet_s", "search_s"):
            assert float(row[f"{figure}_std"]) >= 0.0
        assert row["latency_ms_mean"] == ""  # lookup_table.latency: false: never a figure
        assert 0.0 <= float(row["test_top1_mean"]) <= 100.0
        assert float(row["macs_m_mean"]) <= 3.0  # the tiny config's budget
    markdown = (out / "comparison.md").read_text().splitlines()
    assert markdown[0].startswith("| method | runs | test top1 | MACs (M)")
    assert "±" in markdown[2] and "| not measured |" in markdown[2]
    per_run = markdown[markdown.index("Runs:") + 2:]
    assert per_run[0].startswith("| run | method | seed |") and per_run[0].endswith("| supernet | Kendall tau |")
    assert [line.split(" | ")[0] for line in per_run[2:]] == ["| evolution-seed0", "| random-seed0",
                                                               "| evolution-seed1", "| random-seed1"]
    assert "| reused (evolution-seed0) |" in per_run[3] and "| trained |" in per_run[2]
    assert "evolution" in proc.stdout and "random" in proc.stdout  # the terminal table

    png = (out / "pareto.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    image = matplotlib.image.imread(out / "pareto.png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100

    # one supernet per seed: the evolution run trains it (into the store), the random run of the seed reuses it
    index = json.loads((out / "index.json").read_text())["runs"]
    assert set(index) == {"evolution-seed0", "random-seed0", "evolution-seed1", "random-seed1"}
    for seed in (0, 1):
        assert index[f"evolution-seed{seed}"]["supernet_from"] is None
        assert index[f"random-seed{seed}"]["supernet_from"] == f"evolution-seed{seed}"
        trained = [name for name in index if name.endswith(f"seed{seed}") and trained_supernet(out / index[name]["run_dir"])]
        assert trained == [f"evolution-seed{seed}"]
        results = json.loads((out / "runs" / f"random-seed{seed}" / "results.json").read_text())
        assert results["supernet_from"] == f"evolution-seed{seed}"
        assert results["latency_ms"] is None and results["latency"] == "not measured"
    assert index["evolution-seed0"]["supernet_key"] != index["evolution-seed1"]["supernet_key"]
    store = tmp_path / "runs" / "supernets"  # the configs' output.dir: shared with their single runs
    assert sorted(p.name for p in store.iterdir()) == sorted({e["supernet_key"] for e in index.values()})
    assert "supernet: reusing" in (out / "runs" / "random-seed1" / "log.txt").read_text()

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

    # a changed final setting makes new runs beside the old ones, which reuse the stored supernets
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/*") if p.is_file()}
    compare([evolution, random], 1, ["final.epochs=2"], out)
    index = json.loads((out / "index.json").read_text())["runs"]
    assert list(index) == ["evolution-seed0", "random-seed0"]  # the index is the latest comparison's
    new_dirs = [out / e["run_dir"] for e in index.values()]
    assert all(re.fullmatch(r"\w+-seed\d-[0-9a-f]{8}", p.name) for p in new_dirs)
    assert not any(trained_supernet(p) for p in new_dirs)
    assert all(json.loads((p / "results.json").read_text())["seconds"].get("supernet") is None for p in new_dirs)
    for old in stamps:  # the runs of the old config are untouched
        assert old.stat().st_mtime_ns == stamps[old]
    assert sum(trained_supernet(p) for p in (out / "runs").iterdir()) == 2  # one training per seed, ever

    # the report of the comparison directory, with the Kendall tau of an audited run
    audited = new_dirs[0]
    (audited / "audit.json").write_text(json.dumps({"version": 1, "k": 4, "proxy_epochs": 1, "kendall_tau": 0.4667,
                                                     "kendall_p": 0.2, "spearman_rho": 0.6, "spearman_p": 0.2,
                                                     "top_k": 2, "top_k_overlap": 0.5, "archs": []}))
    code, stdout, stderr = run_cli(capsys, "report", str(out))
    assert code == 0, stderr
    report = (out / "report.md").read_text()
    assert "## Per method (mean ± std over seeds)" in report and "## Per run" in report
    run_lines = [line for line in report.splitlines() if re.match(r"\| \w+-seed\d \|", line)]
    assert len(run_lines) == 2 and run_lines[0].endswith("| 0.467 |")
    assert all(line.endswith("|  |") for line in run_lines[1:])  # not audited: blank
    sharing = report[report.index("## Supernet sharing"):report.index("## Latency")]
    assert sharing.count("- supernet `") == 1
    assert "trained by runs/evolution-seed0 (an earlier run, through the store); reused by evolution-seed0, random-seed0" in sharing
    assert "not measured (lookup_table.latency: false)" in report
    for png in ("pareto.png", "accuracy.png"):
        assert (out / png).read_bytes().startswith(PNG_SIGNATURE)
    assert "evolution" in stdout and "report.md" in stdout


def test_parallel_jobs_wait_for_their_supernet_then_submitit_reuses_it(tiny_config, tmp_path):
    pytest.importorskip("submitit")
    evolution, random = two_methods(tiny_config)
    out = tmp_path / "par"
    rows, _ = compare([evolution, random], 2, [], out, options=LaunchOptions(jobs=2))
    index = json.loads((out / "index.json").read_text())["runs"]
    runs = {name: out / e["run_dir"] for name, e in index.items()}
    assert [name for name, path in runs.items() if trained_supernet(path)] == ["evolution-seed0", "evolution-seed1"]
    pids = {(path / ".lock").read_text() for path in runs.values()}
    assert len(pids) >= 2  # runs in separate worker processes
    (a0, a1), (b0, b1) = log_span(runs["evolution-seed0"]), log_span(runs["evolution-seed1"])
    assert a0 < b1 and b0 < a1  # the two supernet trainings ran at the same time
    for seed in (0, 1):  # a sharer started only once its supernet was stored
        assert log_span(runs[f"random-seed{seed}"])[0] >= log_span(runs[f"evolution-seed{seed}"])[1].replace(
            microsecond=0)
        assert index[f"random-seed{seed}"]["supernet_from"] == f"evolution-seed{seed}"

    # submitit's local executor, another output directory, a changed final training: supernets from the store
    other = tmp_path / "sub"
    options = LaunchOptions(launcher="submitit", jobs=2, cluster="local", timeout_min=10)
    rows, _ = compare([evolution], 1, ["final.epochs=2"], other, options=options)
    index = json.loads((other / "index.json").read_text())["runs"]
    assert set(index) == {"evolution-seed0"}
    for entry in index.values():
        assert entry["status"] == "done" and not trained_supernet(other / entry["run_dir"])
        assert entry["supernet_from"] == str(runs[f"evolution-seed{entry['seed']}"].resolve())  # another cmp dir
    assert list((other / "jobs").glob("*_result.pkl"))  # the jobs went through submitit
    assert rows[0]["runs"] == 1


def test_submitit_job_of_two_tasks_is_one_distributed_run(tiny_config, tmp_path):
    """``--tasks-per-job 2`` through submitit's local executor: both tasks run the run as two gloo ranks,
    rank 0 alone writes it, and the scheduler takes rank 0's result."""
    pytest.importorskip("submitit")
    config = variant(tiny_config, "two", dataflow=FAST_DATA, search_space={"max_blocks_per_stage": 1})
    out = tmp_path / "cmp"
    with pytest.raises(OsnasError, match="--tasks-per-job 2 with --gpus-per-job 1: each task .* its own GPU"):
        LaunchOptions(launcher="submitit", tasks_per_job=2, gpus_per_job=1).check()
    options = LaunchOptions(launcher="submitit", cluster="local", timeout_min=5, cpus_per_job=1, tasks_per_job=2)
    with pytest.raises(OsnasError, match=r"batch_size \(33\) .* multiple of --tasks-per-job \(2\)"):
        compare([config], 1, ["dataflow.batch_size=33"], out, options=options)
    assert not out.exists()  # refused before anything was written
    rows, _ = compare([config], 1, [], out, options=options)
    run = out / "runs" / "two-seed0"
    assert json.loads((out / "index.json").read_text())["runs"]["two-seed0"]["status"] == "done"
    assert rows[0]["runs"] == 1
    assert "distributed run: 2 processes (gloo)" in (run / "log.txt").read_text()
    phases = [json.loads(line)["phase"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert phases.count("supernet") == 1 and phases.count("final") == 1  # written once, not once per rank
    results = sorted((out / "jobs").glob("*_result.pkl"))
    assert [p.name.split("_")[1] for p in results] == ["0", "1"]  # one job, two tasks, each stored its result
    (ok0, rank0), (ok1, rank1) = (pickle.loads(p.read_bytes()) for p in results)  # files this test's jobs wrote
    assert ok0 == ok1 == "success" and rank1 is None
    assert rank0["test_top1"] == json.loads((run / "results.json").read_text())["test_top1"]
    errors = [log.read_text() for log in sorted((out / "jobs").glob("*_log.err"))]
    assert len(errors) == 2 and not any("Traceback" in e or "terminate called" in e for e in errors)  # clean exits
