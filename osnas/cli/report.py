"""``osnas report``: the summary of a run and its curves."""

from __future__ import annotations

from pathlib import Path

import typer

from osnas.cli.app import app, out
from osnas import artifacts
from osnas.run_dir import RunDir
from osnas.summary import summary_table


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="A run directory (finished, interrupted or still running)."),
) -> None:
    """Print a run's summary (or its progress so far) and write RUN_DIR/curves.png."""
    from osnas.report import progress_table, write_curves  # matplotlib: imported only when used

    run = RunDir.open(run_dir)
    if run.exists(artifacts.RESULTS):
        results = artifacts.read_results(run.file(artifacts.RESULTS))
        out.print(summary_table({**results.to_dict(), "run_dir": str(run.path)},
                                title=f"osnas result: {run.path.name}"))
    else:
        out.print(progress_table(run))
    out.print(f"curves: {write_curves(run.path)}")
