"""``osnas report``: the summary of a run and its curves, or the report of a comparison."""

from __future__ import annotations

from pathlib import Path

import typer

from osnas.cli.app import app, out
from osnas import artifacts
from osnas.run_dir import RUN_MARKER, RunDir
from osnas.summary import summary_table


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="A run directory (finished, interrupted or still running), or the "
                                   "output directory of osnas compare."),
) -> None:
    """Print a run's summary (or its progress so far) and write RUN_DIR/curves.png; for a comparison
    directory, write report.md, pareto.png and accuracy.png there."""
    from osnas.report import progress_table, write_curves  # matplotlib: imported only when used

    if not (run_dir / RUN_MARKER).is_file() and (run_dir / "index.json").is_file():
        report_comparison(run_dir)
        return
    run = RunDir.open(run_dir)
    if run.exists(artifacts.RESULTS):
        results = artifacts.read_results(run.file(artifacts.RESULTS))
        out.print(summary_table({**results.to_dict(), "run_dir": str(run.path)},
                                title=f"osnas result: {run.path.name}"))
    else:
        out.print(progress_table(run))
    out.print(f"curves: {write_curves(run.path)}", highlight=False)


def report_comparison(cmp_dir: Path) -> None:
    from osnas.compare_report import aggregate, load_comparison, rich_table, selection_metric, write_report

    methods, results = load_comparison(cmp_dir)
    metric = selection_metric(methods)
    path = write_report(cmp_dir, methods, results, metric)
    out.print(rich_table(aggregate(methods, results, metric), metric, f"comparison: {cmp_dir}"))
    out.print(f"written: {path}, {cmp_dir / 'pareto.png'}, {cmp_dir / 'accuracy.png'}", highlight=False)
