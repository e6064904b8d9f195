"""``osnas search``, ``osnas train`` and ``osnas evaluate``: the run commands."""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path
from typing import Any, Iterator, Optional

import typer

from osnas import api, artifacts, distributed
from osnas.cli.app import app, err, out
from osnas.components import build_components
from osnas.config import load_config
from osnas.console import labelled
from osnas.errors import OsnasError
from osnas.run_dir import RunDir
from osnas.runtime import resolve_device
from osnas.search_spaces.child import build_child
from osnas.summary import summary_table
from osnas.training import DTYPES, compute_in

SetOption = typer.Option(None, "--set", help="Override a config key: KEY.PATH=VALUE (e.g. supernet.epochs=3). Repeatable.")


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def resumable(run: RunDir, again: str | None = None) -> Iterator[None]:
    """Ctrl-C or SIGTERM (a scheduler's preemption) ends the run with a hint on how to continue it.

    ``again``: the command that continues it (default ``osnas search --resume RUN``).

    A checkpoint being written is finished first (see ``run_dir.deferred_interrupts``);
    the exit code is 130, as for any interrupted command.
    """
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if main else None
    try:
        yield
    except KeyboardInterrupt:
        labelled("interrupted;", "yellow", "the checkpoints of the last completed epoch or search step are kept. "
                 f"Continue with: {again or f'osnas search --resume {run.path}'}")
        raise SystemExit(130) from None
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def finish(results: dict, run: RunDir, quiet: bool) -> None:
    if not distributed.is_main():
        return
    results = {**results, "run_dir": str(run.path)}
    if not quiet:
        out.print(summary_table(results))
    else:
        typer.echo(str(run.path))


@app.command()
def search(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config file."),
    set_: Optional[list[str]] = SetOption,
    supernet: Optional[Path] = typer.Option(None, "--supernet", help="Reuse a trained supernet (RUN/supernet.pt)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue an interrupted run directory."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars; print only the run directory."),
) -> None:
    """Train the supernet, search it under the constraint, train the found network and test it."""
    if resume is not None:
        if config is not None or set_ or supernet is not None:
            raise OsnasError(f"--resume continues {resume} with the config.yaml saved in it; "
                             "drop --config, --set and --supernet")
        if api.is_finished(resume):
            out.print(f"run {resume} is finished (results.json is there); nothing to resume, nothing changed. "
                      f"See: osnas report {resume}", markup=False, highlight=False, soft_wrap=True)
            return
        launch = api.reopen_run(resume, quiet)
    else:
        if config is None:
            raise OsnasError("osnas search needs --config CONFIG (or --resume RUN_DIR)")
        launch = api.start_run(load_config(config, set_ or []), quiet, supernet=supernet)
    with resumable(launch.run):
        results = launch.execute(supernet)
    finish(results, launch.run, quiet)


@app.command()
def train(
    config: Path = typer.Option(..., "--config", "-c", help="YAML config file."),
    arch: Path = typer.Option(..., "--arch", help="architecture.json from a search run, or its run directory."),
    set_: Optional[list[str]] = SetOption,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars; print only the run directory."),
) -> None:
    """Train an architecture from scratch and evaluate it on the test split (phases 5-6 only)."""
    launch = api.start_run(load_config(config, set_ or []), quiet, arch)
    with resumable(launch.run):
        results = launch.execute()
    finish(results, launch.run, quiet)


@app.command()
def evaluate(
    config: Path = typer.Option(..., "--config", "-c", help="YAML config file (data, task and space)."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A trained child: RUN/model.pt."),
    set_: Optional[list[str]] = SetOption,
) -> None:
    """Evaluate a trained child network on the test split and print its metrics."""
    cfg = load_config(config, set_ or [])
    device = resolve_device(cfg.device)
    comp = build_components(cfg, device, artifacts.lookup_table_dir(cfg))
    state = artifacts.read_model(checkpoint, comp.definition.name)
    child = compute_in(build_child(comp.definition, state["indices"]).to(device), DTYPES[cfg.dtype])
    try:
        child.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise OsnasError(f"{checkpoint} does not match the network of this config: {str(exc).splitlines()[0]}") from None
    child.eval()
    _, test_loader = comp.dataflow.final_split()
    metrics = comp.training_agent.evaluate(child, test_loader)
    for key, value in metrics.items():
        out.print(f"{key}: {value:.4f}")
