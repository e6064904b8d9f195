"""The tables, plots and report of a comparison (``osnas compare`` and ``osnas report CMP_DIR``).

Everything here reads finished results (a dict per run: results.json plus method, seed, run
directory and supernet origin), so the report can be rebuilt from a comparison directory alone.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure
from rich import box
from rich.table import Table

from osnas.errors import OsnasError
from osnas.registry import REGISTRIES
from osnas.report import save_figure
from osnas.run_dir import atomic_write_text, read_json
from osnas.artifacts import CONFIG, RESULTS, SUPERNET_SOURCE

if TYPE_CHECKING:
    from osnas.compare import Method

AXIS_LABELS = {"macs": "MACs (M, lookup table)", "params": "params (M, lookup table)",
               "latency": "latency (ms, lookup table)"}
NOT_MEASURED = "not measured"
NAME_WIDTH = 12  # a method name longer than this is folded onto more lines in a narrow terminal


def selection_metric(methods: list["Method"]) -> str:
    """The test figure the table ranks on: the tasks' selection metric, which must agree."""
    metrics = {m.name: REGISTRIES["training_agent"].get(m.config.task.name).selection_metric for m in methods}
    if len(set(metrics.values())) > 1:
        raise OsnasError(f"the configs select on different metrics ({metrics}); compare configs of one task")
    return next(iter(metrics.values()))


def run_figures(results: dict[str, Any], metric: str) -> dict[str, float | None]:
    """The figures of one finished run, in table units; None where a figure was not measured.

    A run that loaded a shared supernet is charged that supernet's training time.
    """
    seconds = results.get("seconds", {})
    supernet = results.get("supernet_seconds")
    latency = results.get("latency_ms")
    return {
        f"test_{metric}": float(results[f"test_{metric}"]),
        "macs_m": results["macs"] / 1e6,
        "params_m": results["params"] / 1e6,
        "latency_ms": None if latency is None else float(latency),
        "supernet_s": float(seconds.get("supernet", 0.0) if supernet is None else supernet),
        "search_s": float(seconds.get("search", 0.0)),
    }


def column_titles(metric: str) -> dict[str, str]:
    return {f"test_{metric}": f"test {metric}", "macs_m": "MACs (M)", "params_m": "params (M)",
            "latency_ms": "latency (ms)", "supernet_s": "supernet training (s)", "search_s": "search (s)"}


def method_runs(method: str, results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in results.values() if r["method"] == method]


def aggregate(methods: list["Method"], results: dict[str, dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """One row per method: mean and sample std over seeds of every figure (None if a run lacks it)."""
    rows = []
    for method in methods:
        runs = method_runs(method.name, results)
        figures = [run_figures(r, metric) for r in runs]
        row: dict[str, Any] = {"method": method.name, "runs": len(runs), "seeds": " ".join(str(r["seed"]) for r in runs)}
        for key in figures[0]:
            measured = [f[key] for f in figures]
            values = np.array(measured if None not in measured else [], dtype=np.float64)
            row[f"{key}_mean"] = float(values.mean()) if values.size else None
            row[f"{key}_std"] = (float(values.std(ddof=1)) if values.size > 1 else 0.0) if values.size else None
        rows.append(row)
    return rows


def kendall_tau(run_dir: Path) -> float | None:
    """The supernet-vs-standalone rank correlation of ``osnas audit`` (audit.json), if audited."""
    path = Path(run_dir) / "audit.json"
    if not path.is_file():
        return None
    try:
        tau = read_json(path).get("kendall_tau")
    except Exception:  # an unreadable audit is reported as absent, never as a figure
        return None
    return float(tau) if isinstance(tau, (int, float)) and not isinstance(tau, bool) else None


def supernet_origin(result: dict[str, Any]) -> str:
    return f"reused ({result['supernet_from']})" if result.get("supernet_from") else "trained"


def run_rows(results: dict[str, dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """One row per run, in plan order: its figures, where its supernet came from, its audit's Kendall tau."""
    rows = []
    for name, result in results.items():
        row: dict[str, Any] = {"run": name, "method": result["method"], "seed": result["seed"]}
        row.update(run_figures(result, metric))
        row["supernet"] = supernet_origin(result)
        row["kendall_tau"] = kendall_tau(Path(result["run_dir"]))
        rows.append(row)
    return rows


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: round(v, 6) if isinstance(v, float) else ("" if v is None else v) for k, v in row.items()})
    atomic_write_text(path, buffer.getvalue())
    return path


def spread(mean: float | None, std: float | None) -> str:
    return NOT_MEASURED if mean is None else f"{mean:.2f} ± {std:.2f}"


def formatted(rows: list[dict[str, Any]], metric: str) -> tuple[list[str], list[list[str]]]:
    """Header and cells ``mean ± std`` of the comparison table (markdown and terminal)."""
    titles = column_titles(metric)
    header = ["method", "runs", *titles.values()]
    cells = [[row["method"], str(row["runs"]), *[spread(row[f"{k}_mean"], row[f"{k}_std"]) for k in titles]]
             for row in rows]
    return header, cells


def formatted_runs(rows: list[dict[str, Any]], metric: str) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the per-run table; the Kendall tau cell is blank for an unaudited run."""
    titles = column_titles(metric)
    header = ["run", "method", "seed", *titles.values(), "supernet", "Kendall tau"]
    cells = []
    for row in rows:
        figures = [NOT_MEASURED if row[k] is None else f"{row[k]:.2f}" for k in titles]
        tau = "" if row["kendall_tau"] is None else f"{row['kendall_tau']:.3f}"
        cells.append([row["run"], row["method"], str(row["seed"]), *figures, row["supernet"], tau])
    return header, cells


def markdown_table(header: list[str], cells: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(c) + " |" for c in cells]


def write_markdown(rows: list[dict[str, Any]], per_run: list[dict[str, Any]], metric: str, path: Path) -> Path:
    """The mean ± std table, then one row per run."""
    lines = markdown_table(*formatted(rows, metric)) + ["", "Runs:", ""] + markdown_table(*formatted_runs(per_run, metric))
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def rich_table(rows: list[dict[str, Any]], metric: str, title: str) -> Table:
    """The terminal table: mean above std, and names folded onto more lines when narrow, never cut.

    The run counts stay in comparison.csv/.md: without that column the table fits 80 columns.
    """
    header, cells = formatted(rows, metric)
    table = Table(title=title, title_justify="left", box=box.MINIMAL, padding=(0, 0))
    longest = max(len(c[0]) for c in cells)
    table.add_column(header[0], justify="left", overflow="fold", min_width=min(longest, NAME_WIDTH))
    for name in header[2:]:
        table.add_column(name, justify="right", overflow="fold")
    for c in cells:
        table.add_row(c[0], *[text.replace(" ± ", "\n± ") for text in c[2:]])
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


def plot_pareto(methods: list["Method"], results: dict[str, dict[str, Any]], score: str, path: Path) -> Path:
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


def supernet_source(path: Path, results: dict[str, Any], names: dict[str, str], out_dir: Path) -> dict[str, Any]:
    """Where a run's supernet came from: ``from`` (None: trained by the run itself), its key and training time.

    ``from`` is a run name when ``names`` (resolved run directory -> run name) knows the trainer,
    its path relative to ``out_dir`` when inside it, else its path; runs made before the store
    existed keep their ``supernet_from``.
    """
    if not (path / SUPERNET_SOURCE).is_file():
        return {"from": results.get("supernet_from"), "seconds": None, "key": None}
    source = read_json(path / SUPERNET_SOURCE)
    trainer = source.get("trained_by") if source.get("reused") else None
    if trainer is not None:
        resolved, root = Path(trainer).resolve(), Path(out_dir).resolve()
        trainer = names.get(str(resolved)) or (str(resolved.relative_to(root)) if resolved.is_relative_to(root)
                                               else trainer)
    return {"from": trainer, "seconds": source.get("seconds"), "key": source.get("key")}


def load_comparison(out_dir: Path) -> tuple[list["Method"], dict[str, dict[str, Any]]]:
    """The methods and finished results of a comparison directory, from its index.json and run directories."""
    from osnas.compare import Method  # the comparison runner imports this module
    from osnas.config import read_yaml, validate_config

    out_dir = Path(out_dir)
    index_path = out_dir / "index.json"
    index = read_json(index_path) if index_path.is_file() else None
    if not isinstance(index, dict) or not isinstance(index.get("runs"), dict):
        raise OsnasError(f"{out_dir} is neither a run directory (no config.yaml) nor a comparison directory "
                         "(no valid index.json)")
    entries = {name: e for name, e in index["runs"].items() if isinstance(e, dict)
               and (out_dir / str(e.get("run_dir")) / RESULTS).is_file()}
    if not entries:
        raise OsnasError(f"{index_path}: no finished run yet (no results.json in the listed run directories)")
    names = {str((out_dir / e["run_dir"]).resolve()): name for name, e in entries.items()}
    methods: dict[str, Method] = {}
    results = {}
    for name, entry in entries.items():
        path = out_dir / entry["run_dir"]
        if entry["method"] not in methods:
            config_path = path / CONFIG
            methods[entry["method"]] = Method(entry["method"], validate_config(read_yaml(config_path),
                                                                               str(config_path)))
        done = read_json(path / RESULTS)
        source = supernet_source(path, done, names, out_dir)
        results[name] = {**done, "method": entry["method"], "seed": entry["seed"], "run_dir": str(path),
                         "supernet_from": source["from"], "supernet_seconds": source["seconds"],
                         "supernet_key": source["key"] or entry.get("supernet_key")}
    return list(methods.values()), results


def plot_accuracy(methods: list["Method"], results: dict[str, dict[str, Any]], score: str, path: Path) -> Path:
    """Each run's test score per method, with the method's mean ± std."""
    figure = Figure(figsize=(max(4.0, 1.5 * len(methods) + 2), 4))
    ax = figure.subplots()
    for i, method in enumerate(methods):
        values = np.array([r[f"test_{score}"] for r in method_runs(method.name, results)], dtype=np.float64)
        ax.scatter(np.full(values.shape, i, dtype=np.float64), values, color=f"C{i}", zorder=3)
        std = values.std(ddof=1) if values.size > 1 else 0.0
        ax.errorbar(i + 0.15, values.mean(), yerr=std, fmt="D", color="k", capsize=4)
    ax.set_xticks(range(len(methods)), [m.name for m in methods], rotation=20, ha="right")
    ax.set_ylabel(f"test {score}")
    ax.grid(alpha=0.3, axis="y")
    return save_figure(figure, path)


def sharing_lines(results: dict[str, dict[str, Any]]) -> list[str]:
    """One line per supernet: who trained it, who reused it."""
    groups: dict[str, dict[str, list[str]]] = {}
    for name, result in results.items():
        group = groups.setdefault(str(result.get("supernet_key") or "?"), {"trained": [], "reused": [], "from": []})
        if result.get("supernet_from"):
            group["reused"].append(name)
            group["from"].append(str(result["supernet_from"]))
        else:
            group["trained"].append(name)
    lines = []
    for key, group in groups.items():
        trainers = group["trained"] or sorted(set(group["from"]) - set(group["reused"]))
        trained = ", ".join(trainers) + ("" if group["trained"] else " (an earlier run, through the store)")
        lines.append(f"- supernet `{key}`: trained by {trained}; reused by {', '.join(group['reused']) or 'none'}")
    return lines


def latency_lines(results: dict[str, dict[str, Any]]) -> list[str]:
    """What the latency figures are worth: not measured, or the runs whose measurement was disturbed."""
    unmeasured = [name for name, r in results.items() if r.get("latency_ms") is None]
    lines = [f"- not measured (lookup_table.latency: false) in: {', '.join(unmeasured)}"] if unmeasured else []
    for name, result in results.items():
        stats = result.get("latency")
        if isinstance(stats, dict) and stats.get("warning"):
            lines.append(f"- {name}: {stats['warning']}")
    return lines or ["- measured in every run without a load warning"]


def write_report(out_dir: Path, methods: list["Method"], results: dict[str, dict[str, Any]], metric: str) -> Path:
    """OUT_DIR/report.md with pareto.png and accuracy.png beside it."""
    out_dir = Path(out_dir)
    rows, per_run = aggregate(methods, results, metric), run_rows(results, metric)
    plot_pareto(methods, results, metric, out_dir / "pareto.png")
    plot_accuracy(methods, results, metric, out_dir / "accuracy.png")
    seeds = sorted({r["seed"] for r in results.values()})
    lines = [f"# Comparison: {out_dir.name}", "",
             f"{len(results)} finished run(s) of {len(methods)} method(s), seeds {' '.join(map(str, seeds))}.", "",
             "## Per method (mean ± std over seeds)", "", *markdown_table(*formatted(rows, metric)), "",
             "## Per run", "", *markdown_table(*formatted_runs(per_run, metric)), "",
             "Supernet training time is charged to every run that used the supernet; Kendall tau (supernet "
             "against stand-alone ranking) comes from `osnas audit` (blank: not audited).", "",
             "## Supernet sharing", "", *sharing_lines(results), "",
             "## Latency", "", *latency_lines(results), "",
             "## Figures", "", "![accuracy against cost](pareto.png)", "", "![test score per method](accuracy.png)", ""]
    path = out_dir / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path
