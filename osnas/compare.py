"""``osnas compare``: run several configs over several seeds and tabulate them like OSNASLib.

Layout of the output directory::

    DIR/index.json            one entry per (method, seed), written atomically after each change
    DIR/runs/<method>-seed<s> an ordinary run directory (resumable, reportable)
    DIR/comparison.csv|.md    mean +- std per method
    DIR/pareto.png            accuracy against the constraint metric

Runs whose configs agree on everything the supernet depends on share one trained
supernet: the first trains it, the others load it (``supernet_from`` in the index and
in their results.json). A finished run (results.json) is reused and an unfinished one
resumed, so an interrupted comparison continues where it stopped.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from matplotlib.figure import Figure
from rich.table import Table

from osnas import artifacts, distributed
from osnas.agent import MainAgent
from osnas.api import Launch
from osnas.config import Config, load_config, read_yaml, validate_config
from osnas.errors import OsnasError
from osnas.registry import REGISTRIES
from osnas.report import save_figure
from osnas.run_dir import RunDir, atomic_write_json, atomic_write_text, read_json

# config sections a trained supernet depends on (the constraint and lookup table too:
# budget- or latency-aware training strategies see them); cache_dir is only a location
SUPERNET_SECTIONS = ("seed", "device", "deterministic", "dtype", "task", "criterion", "dataflow", "search_space",
                     "training_strategy", "supernet", "constraint", "lookup_table")
AXIS_LABELS = {"macs": "MACs (M, lookup table)", "params": "params (M, lookup table)",
               "latency": "latency (ms, lookup table)"}


@dataclass
class Method:
    """One config of the comparison."""

    name: str
    config: Config


@dataclass
class RunSpec:
    """One (method, seed) run."""

    method: str
    seed: int
    config: Config

    @property
    def name(self) -> str:
        return f"{self.method}-seed{self.seed}"


def supernet_key(config: Config) -> str:
    """Equal for two configs exactly when they would train the same supernet."""
    data = config.dump()
    sections = {k: data[k] for k in SUPERNET_SECTIONS}
    sections["lookup_table"] = {k: v for k, v in data["lookup_table"].items() if k != "cache_dir"}
    return hashlib.sha256(json.dumps(sections, sort_keys=True).encode()).hexdigest()[:16]


def load_methods(paths: list[Path], overrides: list[str]) -> list[Method]:
    """The configs named by file stem (by ``output.name`` where stems clash)."""
    if not paths:
        raise OsnasError("osnas compare needs at least one config file")
    configs = [load_config(p, overrides) for p in paths]
    names = [Path(p).stem for p in paths]
    if len(set(names)) < len(names):
        names = [c.output.name for c in configs]
    if len(set(names)) < len(names):
        raise OsnasError("the configs need distinct file names or distinct output.name values to tell the "
                         f"methods apart (got {', '.join(map(str, paths))})")
    return [Method(n, c) for n, c in zip(names, configs)]


def plan(methods: list[Method], seeds: int, out_dir: Path) -> list[RunSpec]:
    """Every method for every seed, seed-major (so a supernet is trained before its sharers run)."""
    specs = []
    for i in range(seeds):
        for method in methods:
            data = method.config.dump()
            data["seed"] = method.config.seed + i
            data["output"] = {"dir": str(out_dir / "runs"), "name": f"{method.name}-seed{data['seed']}"}
            if data["lookup_table"]["cache_dir"] is None:
                data["lookup_table"]["cache_dir"] = str(out_dir / artifacts.LOOKUP_TABLES)
            specs.append(RunSpec(method.name, data["seed"], validate_config(data, method.config.source)))
    return specs


class Comparison:
    """Runs (or reuses) every planned run and aggregates their results."""

    def __init__(self, specs: list[RunSpec], out_dir: Path, quiet: bool = True,
                 say: Callable[[str], None] = lambda message: None) -> None:
        self.specs = specs
        self.out_dir = Path(out_dir)
        self.runs_dir = self.out_dir / "runs"
        self.quiet = quiet
        self.say = say
        self.index_path = self.out_dir / "index.json"
        self.index: dict[str, Any] = {"runs": {}}
        if self.index_path.is_file():
            index = read_json(self.index_path)
            if not isinstance(index, dict) or not isinstance(index.get("runs"), dict):
                raise OsnasError(f"{self.index_path} is not an osnas comparison index")
            self.index = index

    def save_index(self) -> None:
        atomic_write_json(self.index_path, self.index)

    def run_all(self) -> dict[str, dict[str, Any]]:
        """Results of every run, keyed by run name, training only what is not done yet."""
        trainers: dict[str, str] = {}  # supernet key -> run whose supernet.pt the others load
        results = {}
        for number, spec in enumerate(self.specs, 1):
            key = supernet_key(spec.config)
            tag = f"[{number}/{len(self.specs)}] {spec.name}:"
            run_path = self.runs_dir / spec.name
            if (run_path / artifacts.RESULTS).is_file():
                self.open_run(spec)  # checks that its config is still the one asked for
                self.say(f"{tag} finished earlier, reused")
                if spec.name not in self.index["runs"]:  # an index lost or from elsewhere: rebuilt
                    self.record(spec, key, artifacts.read_results(run_path).to_dict().get("supernet_from"), "done")
            else:
                self.execute(spec, key, trainers.get(key), tag)
            done = artifacts.read_results(run_path).to_dict()
            source = done.get("supernet_from")
            if source is None and (run_path / artifacts.SUPERNET).is_file():
                trainers.setdefault(key, spec.name)
            results[spec.name] = {**done, "method": spec.method, "seed": spec.seed, "supernet_from": source}
        return results

    def execute(self, spec: RunSpec, key: str, trainer: str | None, tag: str) -> None:
        """Run (or resume) one run; ``trainer`` names the run whose supernet it may load."""
        run = self.open_run(spec)
        entry = self.index["runs"].get(spec.name) or {}
        source = entry.get("supernet_from", trainer)  # an earlier decision stands
        if source is not None and not (self.runs_dir / source / artifacts.SUPERNET).is_file():
            source = None
        entry = self.record(spec, key, source, "running", entry.get("started"))
        what = f"supernet of {source}" if source else "training its supernet"
        self.say(f"{tag} {'resuming' if run.exists(artifacts.METRICS) else 'running'} ({what})")
        launch = Launch(MainAgent(spec.config, quiet=self.quiet), run)
        results = launch.execute(self.runs_dir / source / artifacts.SUPERNET if source else None)
        artifacts.write_results(run, {**results, "supernet_from": source})
        entry.update(status="done", finished=time.time())
        self.save_index()

    def record(self, spec: RunSpec, key: str, source: str | None, status: str,
               started: float | None = None) -> dict[str, Any]:
        """Write the index entry of a run (atomically, with the whole index)."""
        entry = {"method": spec.method, "seed": spec.seed, "run_dir": f"runs/{spec.name}", "supernet_key": key,
                 "supernet_from": source, "status": status, "started": started or time.time(),
                 "finished": time.time() if status == "done" else None}
        self.index["runs"][spec.name] = entry
        self.save_index()
        return entry

    def open_run(self, spec: RunSpec) -> RunDir:
        """The run's directory: made with its config, or reopened if its config is unchanged."""
        path = self.runs_dir / spec.name
        if (path / artifacts.CONFIG).is_file():
            saved = read_yaml(path / artifacts.CONFIG)
            wanted = spec.config.dump()
            changed = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
            if changed:
                raise OsnasError(f"{path} was run with a different config (changed: {', '.join(changed)}); "
                                 "use another --output or delete that run directory")
            return RunDir.open(path)
        path.mkdir(parents=True, exist_ok=True)
        run = RunDir(path)
        artifacts.write_config(run, spec.config)
        return run


# ----------------------------------------------------------------------------- aggregation


def selection_metric(methods: list[Method]) -> str:
    """The test figure the table ranks on: the tasks' selection metric, which must agree."""
    metrics = {m.name: REGISTRIES["training_agent"].get(m.config.task.name).selection_metric for m in methods}
    if len(set(metrics.values())) > 1:
        raise OsnasError(f"the configs select on different metrics ({metrics}); compare configs of one task")
    return next(iter(metrics.values()))


def run_figures(results: dict[str, Any], metric: str, supernet_seconds: float) -> dict[str, float]:
    """The figures of one finished run, in table units."""
    seconds = results.get("seconds", {})
    return {
        f"test_{metric}": float(results[f"test_{metric}"]),
        "macs_m": results["macs"] / 1e6,
        "params_m": results["params"] / 1e6,
        "latency_ms": float(results["latency_ms"]),
        "supernet_s": supernet_seconds,
        "search_s": float(seconds.get("search", 0.0)),
    }


def column_titles(metric: str) -> dict[str, str]:
    return {f"test_{metric}": f"test {metric}", "macs_m": "MACs (M)", "params_m": "params (M)",
            "latency_ms": "latency (ms)", "supernet_s": "supernet training (s)", "search_s": "search (s)"}


def aggregate(methods: list[Method], results: dict[str, dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """One row per method: mean and sample std over seeds of every figure.

    A run that loaded a shared supernet is charged that supernet's training time.
    """
    rows = []
    for method in methods:
        runs = [r for r in results.values() if r["method"] == method.name]
        figures = []
        for r in runs:
            owner = results.get(r["supernet_from"], r) if r["supernet_from"] else r
            figures.append(run_figures(r, metric, float(owner.get("seconds", {}).get("supernet", 0.0))))
        row: dict[str, Any] = {"method": method.name, "runs": len(runs), "seeds": " ".join(str(r["seed"]) for r in runs)}
        for key in figures[0]:
            values = np.array([f[key] for f in figures])
            row[f"{key}_mean"] = float(values.mean())
            row[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        rows.append(row)
    return rows


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()})
    atomic_write_text(path, buffer.getvalue())
    return path


def formatted(rows: list[dict[str, Any]], metric: str) -> tuple[list[str], list[list[str]]]:
    """Header and cells ``mean ± std`` of the comparison table (markdown and terminal)."""
    titles = column_titles(metric)
    header = ["method", "runs", *titles.values()]
    cells = []
    for row in rows:
        cells.append([row["method"], str(row["runs"]),
                      *[f"{row[f'{k}_mean']:.2f} ± {row[f'{k}_std']:.2f}" for k in titles]])
    return header, cells


def write_markdown(rows: list[dict[str, Any]], metric: str, path: Path) -> Path:
    header, cells = formatted(rows, metric)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c) + " |" for c in cells]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def rich_table(rows: list[dict[str, Any]], metric: str, title: str) -> Table:
    header, cells = formatted(rows, metric)
    table = Table(title=title, title_justify="left")
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right")
    for c in cells:
        table.add_row(*c)
    return table


def pareto_front(points: np.ndarray) -> np.ndarray:
    """The (cost, accuracy) points no other point beats on both (lower cost, higher accuracy), by cost."""
    order = np.lexsort((-points[:, 1], points[:, 0]))
    front, best = [], -np.inf
    for i in order:
        if points[i, 1] > best:
            front.append(points[i])
            best = points[i, 1]
    return np.array(front)


def plot_pareto(methods: list[Method], results: dict[str, dict[str, Any]], score: str, path: Path) -> Path:
    """Accuracy against the constraint metric (LUT units): every run, each method's front, the budget."""
    metric = methods[0].config.constraint.metric
    figure = Figure(figsize=(7, 5))
    ax = figure.subplots()
    for i, method in enumerate(methods):
        runs = [r for r in results.values() if r["method"] == method.name]
        points = np.array([[r["lut_costs"][metric], r[f"test_{score}"]] for r in runs], dtype=np.float64)
        ax.scatter(points[:, 0], points[:, 1], color=f"C{i}", label=method.name, zorder=3)
        front = pareto_front(points)
        ax.step(front[:, 0], front[:, 1], where="post", color=f"C{i}", alpha=0.7)
    budgets = sorted({m.config.constraint.max for m in methods if m.config.constraint.metric == metric})
    for budget in budgets:
        ax.axvline(budget, color="k", linestyle="--", linewidth=1)
        ax.annotate(f"budget {budget:g}", (budget, 1), xycoords=("data", "axes fraction"), rotation=90,
                    va="top", ha="right", fontsize=8)
    ax.set_xlabel(AXIS_LABELS[metric])
    ax.set_ylabel(f"test {score}")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(figure, path)


def compare(config_paths: list[Path], seeds: int, overrides: list[str], out_dir: Path, quiet: bool = True,
            say: Callable[[str], None] = lambda message: None) -> tuple[list[dict[str, Any]], Table]:
    """Run the comparison (reusing what is done) and write comparison.csv, comparison.md and pareto.png."""
    if seeds < 1:
        raise OsnasError(f"--seeds must be at least 1 (got {seeds})")
    if distributed.launched():
        raise OsnasError("osnas compare runs its runs one after another in one process; start it without torchrun")
    out_dir = Path(out_dir)
    methods = load_methods(config_paths, overrides)
    metric = selection_metric(methods)
    comparison = Comparison(plan(methods, seeds, out_dir.resolve()), out_dir.resolve(), quiet, say)
    results = comparison.run_all()
    rows = aggregate(methods, results, metric)
    write_csv(rows, out_dir / "comparison.csv")
    write_markdown(rows, metric, out_dir / "comparison.md")
    plot_pareto(methods, results, metric, out_dir / "pareto.png")
    return rows, rich_table(rows, metric, f"comparison over {seeds} seed(s): {out_dir}")
