"""``osnas audit``: how well a run's supernet ranks architectures against stand-alone training."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from osnas import artifacts, distributed
from osnas.api import logging_to
from osnas.cli.app import app, out
from osnas.cli.run import resumable
from osnas.run_dir import RunDir


@app.command()
def audit(
    run_dir: Path = typer.Option(..., "--run", help="A finished search run directory (with supernet.pt and "
                                 "architecture.json)."),
    k: Optional[int] = typer.Option(None, "--k", help="Random feasible architectures, one per cost bin, besides "
                                    "the found one (default: the run's audit.k, 8)."),
    proxy_epochs: Optional[int] = typer.Option(None, "--proxy-epochs", help="Epochs of stand-alone training "
                                               "(default: the run's audit.proxy_epochs, else final.epochs)."),
    top_k: Optional[int] = typer.Option(None, "--top-k", help="k of the top-k overlap (default: audit.top_k, 3)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the architecture draw (default: audit.seed)."),
    repeats: Optional[int] = typer.Option(None, "--repeats", help="Stand-alone trainings per architecture from "
                                          "different initialisations; the mean is ranked (default: audit.repeats, 1)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Train K cost-stratified architectures and the found one from scratch on the search split; write
    audit.json and audit.png with Kendall tau, Spearman rho and the top-k overlap against the supernet's scores.
    Rerunning the same command continues an interrupted audit."""
    from osnas.audit import Audit, AuditSettings

    run = distributed.rank_view(RunDir.open(run_dir))
    config = artifacts.read_config(run)
    saved = config.audit
    settings = AuditSettings(
        k=saved.k if k is None else k,
        proxy_epochs=saved.proxy_epochs if proxy_epochs is None else proxy_epochs,
        top_k=saved.top_k if top_k is None else top_k,
        seed=saved.seed if seed is None else seed,
        repeats=saved.repeats if repeats is None else repeats,
    )
    job = Audit(run, settings, quiet=quiet, say=lambda message: out.print(message, highlight=False, soft_wrap=True))
    run.lock()
    try:
        with logging_to(run, config), resumable(run, f"osnas audit --run {run.path}"):
            result = job.run_all()
    finally:
        run.unlock()
    if not distributed.is_main():
        return
    out.print(audit_table(result))
    out.print(f"written: {run.file(artifacts.AUDIT)}, {run.file('audit.png')}", highlight=False, soft_wrap=True)


def audit_table(result: dict) -> Table:
    """The audit's figures: rank agreement with p-values, and the found architecture against random ones."""

    def fmt(value: float | None, digits: int = 3) -> str:
        return "undefined (constant scores)" if value is None else f"{value:.{digits}f}"

    runs = f", mean of {result['repeats']} runs each" if result["repeats"] > 1 else ""
    table = Table(title=f"ranking audit: {result['k']} random + found, {result['proxy_epochs']} epochs stand-alone{runs}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("Kendall tau (p)", f"{fmt(result['kendall_tau'])} ({fmt(result['kendall_p'], 4)})")
    table.add_row("Spearman rho (p)", f"{fmt(result['spearman_rho'])} ({fmt(result['spearman_p'], 4)})")
    table.add_row(f"top-{result['top_k']} overlap", f"{result['top_k_overlap']:.2f}")
    supernet = [a["supernet_score"] for a in result["archs"]]
    table.add_row("supernet scores (min-max)", f"{min(supernet):.4f}-{max(supernet):.4f}")
    if result["repeats"] > 1:
        table.add_row("spread of one architecture's runs (std, mean)", f"{result['repeat_std_mean']:.4f}")
    table.add_row(f"found: stand-alone {result['metric']}", f"{result['found_standalone']:.4f}")
    table.add_row("median of the random ones", f"{result['median_random']:.4f}")
    table.add_row("found's rank (1 = best)", f"{result['found_rank']} of {len(result['archs'])}")
    return table
