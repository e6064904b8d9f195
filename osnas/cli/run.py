"""``osnas search``, ``osnas train`` and ``osnas evaluate``: the run commands."""

from __future__ import annotations

import contextlib
import io
import logging
import signal
import threading
from pathlib import Path
from typing import Any, Iterator, Optional

import typer
from rich.console import Console

from osnas import distributed, tb
from osnas.agent import MainAgent
from osnas.cli.app import app, err, out
from osnas.config import Config, load_config, read_yaml, validate_config
from osnas.console import labelled
from osnas.errors import OsnasError
from osnas.run_dir import RunDir, check_free_space, load_checkpoint, read_json, read_supernet
from osnas.summary import summary_table

SetOption = typer.Option(None, "--set", help="Override a config key: KEY.PATH=VALUE (e.g. supernet.epochs=3). Repeatable.")


def start_run(agent: MainAgent, config: Config, needed_bytes: int, backlog: Backlog | None = None) -> RunDir:
    """Create the run directory (only once the config and components are known good) and its log."""
    check_free_space(Path(config.output.dir), needed_bytes, "the checkpoints of this run")
    run = distributed.create_run_dir(config.output.dir, config.output.name)
    run.lock()
    run.write_text("config.yaml", config.to_yaml())
    attach_log(run, backlog)
    tb.attach(run, config)
    agent.run = run
    return run


class Backlog(logging.Handler):
    """Holds what is logged before the run directory exists, for its log.txt."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def keep_backlog() -> Backlog:
    """Start recording the run's messages before its directory can be created (setup, lookup table)."""
    backlog = Backlog()
    logger = logging.getLogger("osnas")
    logger.setLevel(logging.INFO)
    logger.addHandler(backlog)
    return backlog


def attach_log(run: RunDir, backlog: Backlog | None = None) -> None:
    """log.txt gets every message of the run (phases, epochs, results), the ones before it existed first."""
    logger = logging.getLogger("osnas")
    if backlog is not None:
        logger.removeHandler(backlog)
    if not distributed.is_main():
        return
    handler = logging.FileHandler(run.file("log.txt"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    for record in backlog.records if backlog else ():
        handler.handle(record)
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)


def preflight(agent: MainAgent, supernet: Path | None) -> None:
    """Check every input a run reads later (``--supernet``) before its run directory is created."""
    if supernet is not None:
        read_supernet(supernet, agent.setup().definition)


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
    table = summary_table(results)
    text = Console(file=io.StringIO(), width=120, color_system=None)
    text.print(table)
    logging.getLogger("osnas").info("results:\n%s", text.file.getvalue().rstrip())
    if not quiet:
        out.print(table)
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
        run = distributed.rank_view(RunDir.open(resume))
        if run.exists("results.json"):  # finished: a resume would redo the test and overwrite its figures
            out.print(f"run {run.path} is finished (results.json is there); nothing to resume, nothing changed. "
                      f"See: osnas report {run.path}", markup=False, highlight=False, soft_wrap=True)
            return
        run.lock()
        cfg = validate_config(read_yaml(run.file("config.yaml")), source=str(run.file("config.yaml")))
        backlog = keep_backlog()
        agent = MainAgent(cfg, run, quiet=quiet)
        agent.setup()
        stale = run.remove_temporaries()
        superseded = run.remove_superseded()
        saved = sum(p.stat().st_size for p in run.path.glob("*.pt"))  # replaced by the new ones
        check_free_space(run.path, agent.needed_disk_bytes() - saved, "the checkpoints of this run")
        attach_log(run, backlog)
        tb.attach(run, cfg)
        if stale:
            logging.getLogger("osnas").info("removed unfinished writes of the interrupted run: %s", ", ".join(stale))
        if superseded:
            logging.getLogger("osnas").info("removed per-epoch checkpoints of finished phases: %s",
                                            ", ".join(superseded))
    else:
        if config is None:
            raise OsnasError("osnas search needs --config CONFIG (or --resume RUN_DIR)")
        cfg = load_config(config, set_ or [])
        backlog = keep_backlog()
        agent = MainAgent(cfg, quiet=quiet)
        agent.setup()
        preflight(agent, supernet)
        run = start_run(agent, cfg, agent.needed_disk_bytes(), backlog)
    with resumable(run):
        results = agent.run_search(supernet)
    finish(results, run, quiet)


@app.command()
def train(
    config: Path = typer.Option(..., "--config", "-c", help="YAML config file."),
    arch: Path = typer.Option(..., "--arch", help="architecture.json from a search run."),
    set_: Optional[list[str]] = SetOption,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars; print only the run directory."),
) -> None:
    """Train an architecture from scratch and evaluate it on the test split (phases 5-6 only)."""
    cfg = load_config(config, set_ or [])
    backlog = keep_backlog()
    agent = MainAgent(cfg, quiet=quiet)
    vector = agent.load_architecture(arch)
    run = start_run(agent, cfg, agent.needed_disk_bytes(vector), backlog)
    # the run keeps its architecture (without the search's timings), so --resume continues its training
    source = {k: v for k, v in read_json(arch).items() if k not in ("supernet_seconds", "search_seconds")}
    run.write_json("architecture.json", source)
    with resumable(run):
        results = agent.run_search()
    finish(results, run, quiet)


@app.command()
def evaluate(
    config: Path = typer.Option(..., "--config", "-c", help="YAML config file (data, task and space)."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A trained child: RUN/model.pt."),
    set_: Optional[list[str]] = SetOption,
) -> None:
    """Evaluate a trained child network on the test split and print its metrics."""
    cfg = load_config(config, set_ or [])
    agent = MainAgent(cfg, quiet=True)
    comp = agent.setup()
    state = load_checkpoint(checkpoint)
    if not isinstance(state, dict) or "indices" not in state or "model" not in state:
        raise OsnasError(f"{checkpoint} is not an osnas model checkpoint (expected RUN/model.pt)")
    if state.get("space") != comp.definition.name:
        raise OsnasError(f"{checkpoint} holds a {state.get('space')!r} network but the config uses {comp.definition.name!r}")
    from osnas.search_spaces.child import build_child
    from osnas.training import DTYPES, compute_in

    child = compute_in(build_child(comp.definition, state["indices"]).to(agent.device), DTYPES[cfg.dtype])
    try:
        child.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise OsnasError(f"{checkpoint} does not match the network of this config: {str(exc).splitlines()[0]}") from None
    child.eval()
    _, test_loader = comp.dataflow.final_split()
    metrics = comp.agent.evaluate(child, test_loader)
    for key, value in metrics.items():
        out.print(f"{key}: {value:.4f}")
