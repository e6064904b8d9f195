"""``osnas compare``: several configs over several seeds, tabulated and plotted."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from osnas.cli.app import app, err, out
from osnas.console import labelled
from osnas.output_dir import check_output_dir


@app.command()
def compare(
    configs: list[Path] = typer.Argument(..., help="Config files, one per method (method name = file stem)."),
    seeds: int = typer.Option(3, "--seeds", min=1, help="Runs per config, with seeds config.seed + 0..N-1."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Override a key in every config: KEY.PATH=VALUE. "
                                             "Repeatable."),
    output: Path = typer.Option(Path("comparison"), "--output", "-o", help="Output directory; re-running with "
                                "the same one reuses finished runs and resumes unfinished ones."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars inside the runs."),
) -> None:
    """Run every config for every seed; write comparison.csv, comparison.md and pareto.png."""
    check_output_dir(output)
    try:
        from osnas.compare import compare as run_comparison  # matplotlib: imported only when used

        _, table = run_comparison(configs, seeds, set_ or [], output, quiet,
                                  say=lambda message: err.print(message, highlight=False))
    except KeyboardInterrupt:
        labelled("interrupted;", "yellow", f"run the same command again to resume (finished runs in {output} are kept)")
        raise SystemExit(130)
    out.print(table)
    out.print(f"written: {output / 'comparison.csv'}, {output / 'comparison.md'}, {output / 'pareto.png'}")
