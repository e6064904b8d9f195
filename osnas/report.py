"""``osnas report``: a run's summary and its training and search curves (curves.png).

Reads only the run directory (results.json, metrics.jsonl, architecture.json), so it
works on a finished run, an interrupted one and one still running.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from rich.table import Table

from osnas import artifacts
from osnas.run_dir import RunDir, atomic_write_bytes

log = logging.getLogger("osnas")

TRAINING_PHASES = ("supernet", "final")
ACCURACY_HINTS = ("top1", "top5", "acc")


def save_figure(figure: Figure, path: Path) -> Path:
    """Write a figure as PNG atomically (no half-written image if interrupted)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())
    return path


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl; damaged lines are skipped with a warning."""
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            log.warning("%s line %d is not valid JSON; skipped", path, number)
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def latest_per_step(records: list[dict[str, Any]], phase: str, step: str) -> list[dict[str, Any]]:
    """One record per step of a phase, the last one written (a resumed run may repeat a step)."""
    by_step = {r[step]: r for r in records if r.get("phase") == phase and isinstance(r.get(step), (int, float))}
    return [by_step[k] for k in sorted(by_step)]


def _numeric_keys(records: list[dict[str, Any]], hints: tuple[str, ...]) -> list[str]:
    keys = {k for r in records for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return sorted(k for k in keys if any(h in k.lower() for h in hints))


def plot_training(ax: Axes, records: list[dict[str, Any]], hints: tuple[str, ...], ylabel: str) -> bool:
    """Per-epoch curves of the keys matching ``hints`` for each training phase; False if none."""
    drawn = False
    for phase in TRAINING_PHASES:
        epochs = latest_per_step(records, phase, "epoch")
        for key in _numeric_keys(epochs, hints):
            points = [(r["epoch"], r[key]) for r in epochs if key in r]
            ax.plot(*zip(*points), marker="o", label=f"{phase} {key}")
            drawn = True
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    if drawn:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, f"no {ylabel} logged", ha="center", va="center", transform=ax.transAxes)
    return drawn


def plot_search(ax: Axes, records: list[dict[str, Any]]) -> bool:
    evals = latest_per_step(records, "search", "eval")
    evals = [r for r in evals if isinstance(r.get("score"), (int, float))]
    if evals:
        ax.scatter([r["eval"] for r in evals], [r["score"] for r in evals], s=10, alpha=0.4, label="candidate")
        best = [(r["eval"], r["best_score"]) for r in evals if r.get("best_score", float("-inf")) > float("-inf")]
        if best:
            ax.step(*zip(*best), where="post", color="C3", label="best feasible")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no search evaluations yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("evaluated candidates")
    ax.set_ylabel("score (supernet)")
    return bool(evals)


def write_curves(run_dir: Path) -> Path:
    """curves.png of a run: training loss, accuracy where logged, search progress."""
    records = read_metrics(Path(run_dir) / artifacts.METRICS)
    figure = Figure(figsize=(15, 4))
    loss_ax, acc_ax, search_ax = figure.subplots(1, 3)
    plot_training(loss_ax, records, ("loss",), "training loss")
    loss_ax.set_title("loss per epoch")
    plot_training(acc_ax, records, ACCURACY_HINTS, "accuracy (%)")
    acc_ax.set_title("accuracy per epoch")
    plot_search(search_ax, records)
    search_ax.set_title("search progress")
    figure.suptitle(Path(run_dir).name)
    return save_figure(figure, Path(run_dir) / artifacts.CURVES)


def progress_table(run: RunDir) -> Table:
    """What an unfinished run holds so far, phase by phase."""
    records = read_metrics(run.file(artifacts.METRICS))
    table = Table(title=f"{run.path.name} (no results yet)", title_justify="left", show_header=False)
    table.add_column("phase", style="bold")
    table.add_column("state")
    for phase in TRAINING_PHASES:
        epochs = latest_per_step(records, phase, "epoch")
        if epochs:
            last = epochs[-1]
            table.add_row(phase, f"epoch {last['epoch']} logged, loss {last.get('loss', float('nan')):.4f}")
        else:
            table.add_row(phase, "no epoch logged")
    evals = latest_per_step(records, "search", "eval")
    if evals:
        table.add_row("search", f"{len(evals)} candidates scored, best {evals[-1].get('best_score', float('nan')):.2f}")
    if run.exists(artifacts.SUPERNET):
        table.add_row(artifacts.SUPERNET, "present")
    if run.exists(artifacts.ARCHITECTURE):
        arch = artifacts.read_architecture(run.file(artifacts.ARCHITECTURE))
        table.add_row("architecture", " ".join(arch.candidates or []))
    table.add_row("run directory", str(run.path))
    return table
