"""``osnas search``, ``osnas train`` and ``osnas evaluate``: the run commands."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from osnas import distributed, tb
from osnas.agent import MainAgent
from osnas.cli.app import app, out
from osnas.config import Config, load_config, read_yaml, validate_config
from osnas.errors import OsnasError
from osnas.run_dir import RunDir, load_checkpoint
from osnas.summary import summary_table

SetOption = typer.Option(None, "--set", help="Override a config key: KEY.PATH=VALUE (e.g. supernet.epochs=3). Repeatable.")


def start_run(agent: MainAgent, config: Config) -> RunDir:
    """Create the run directory (only once the config and components are known good) and its log."""
    run = distributed.create_run_dir(config.output.dir, config.output.name)
    run.write_text("config.yaml", config.to_yaml())
    attach_log(run)
    tb.attach(run, config)
    agent.run = run
    return run


def attach_log(run: RunDir) -> None:
    if not distributed.is_main():
        return
    handler = logging.FileHandler(run.file("log.txt"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("osnas")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)


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
        run = distributed.rank_view(RunDir.open(resume))
        cfg = validate_config(read_yaml(run.file("config.yaml")), source=str(run.file("config.yaml")))
        agent = MainAgent(cfg, run, quiet=quiet)
        agent.setup()
        attach_log(run)
        tb.attach(run, cfg)
    else:
        if config is None:
            raise OsnasError("osnas search needs --config CONFIG (or --resume RUN_DIR)")
        cfg = load_config(config, set_ or [])
        agent = MainAgent(cfg, quiet=quiet)
        agent.setup()
        run = start_run(agent, cfg)
    try:
        results = agent.run_search(supernet)
    except KeyboardInterrupt:
        raise OsnasError(f"interrupted; the last checkpoint is kept. Resume with: osnas search --resume {run.path}") from None
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
    agent = MainAgent(cfg, quiet=quiet)
    vector = agent.load_architecture(arch)
    run = start_run(agent, cfg)
    child, metrics = agent.train_child(vector)
    finish(agent.results(vector, child, metrics), run, quiet)


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

    child = build_child(comp.definition, state["indices"]).to(agent.device)
    try:
        child.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise OsnasError(f"{checkpoint} does not match the network of this config: {str(exc).splitlines()[0]}") from None
    child.eval()
    _, test_loader = comp.dataflow.final_split()
    metrics = comp.agent.evaluate(child, test_loader)
    for key, value in metrics.items():
        out.print(f"{key}: {value:.4f}")
