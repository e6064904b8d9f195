"""``osnas bench``: the benchmark suite (same as ``python -m benchmarks``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from osnas.bench import SECTIONS
from osnas.cli.app import app


@app.command()
def bench(
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N."),
    quick: bool = typer.Option(False, "--quick", help="Small sizes and few repeats (a smoke run)."),
    only: Optional[list[str]] = typer.Option(None, "--only", help=f"Sections to run, repeatable: {', '.join(SECTIONS)}."),
    spaces: Optional[list[str]] = typer.Option(None, "--space", help="Overhead section: only this search space, repeatable."),
    record: Optional[Path] = typer.Option(None, "--record", help="Prepend the figures to this markdown file."),
) -> None:
    """Measure framework overhead, cost queries, evaluation, input pipeline, strategies and end-to-end time."""
    from osnas.bench.cli import run

    args = (["osnas bench", f"--device {device}"] + (["--quick"] if quick else []) + [f"--only {s}" for s in only or []]
            + [f"--space {s}" for s in spaces or []])
    raise typer.Exit(run(device, quick, only, record, " ".join(args), spaces))
