"""``osnas compare``: several configs over several seeds, tabulated and plotted."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from osnas.cli.app import State, app, err, out
from osnas.console import labelled
from osnas.launch import LAUNCHERS, LaunchOptions
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
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Runs at once (parallel processes, or jobs queued on "
                             "the cluster); a run waits while another trains the supernet it will reuse."),
    launcher: str = typer.Option("local", "--launcher", help=f"Where runs execute: {' or '.join(LAUNCHERS)} "
                                 "(SLURM through submitit, the optional extra 'slurm')."),
    cluster: Optional[str] = typer.Option(None, "--cluster", help="submitit cluster: slurm, local or debug "
                                          "(default: SLURM when available)."),
    partition: Optional[str] = typer.Option(None, "--partition", help="SLURM partition (submitit)."),
    timeout_min: int = typer.Option(24 * 60, "--timeout-min", min=1, help="Time limit of each job in minutes "
                                    "(submitit)."),
    gpus_per_job: Optional[int] = typer.Option(None, "--gpus-per-job", min=0, help="GPUs per job (submitit)."),
    cpus_per_job: Optional[int] = typer.Option(None, "--cpus-per-job", min=1, help="CPUs per task (submitit)."),
    tasks_per_job: int = typer.Option(1, "--tasks-per-job", help="Processes per job, one distributed run as under "
                                      "torchrun (submitit; on SLURM one per GPU: --tasks-per-job 4 "
                                      "--gpus-per-job 4)."),
) -> None:
    """Run every config for every seed; write comparison.csv, comparison.md and pareto.png."""
    options = LaunchOptions(launcher, jobs, cluster, partition, timeout_min, gpus_per_job, cpus_per_job,
                            tasks_per_job)
    check_output_dir(output)
    try:
        from osnas.compare import compare as run_comparison  # matplotlib: imported only when used

        _, table = run_comparison(configs, seeds, set_ or [], output, quiet,
                                  say=lambda message: err.print(message, highlight=False),
                                  options=options, plugins=State.plugin_dirs)
    except KeyboardInterrupt:
        labelled("interrupted;", "yellow", f"run the same command again to resume (finished runs in {output} are kept)")
        raise SystemExit(130)
    out.print(table)
    out.print(f"written: {output / 'comparison.csv'}, {output / 'comparison.md'}, {output / 'pareto.png'}")
