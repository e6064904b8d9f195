"""The Python API: search, reopen a run, build a space, profile a network, list components.

The ``osnas`` commands are a thin layer over these functions; see README "From
Python". Everything here works on the same run files as the CLI (``osnas.artifacts``).
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence, Union

import numpy as np
import torch
import yaml

from osnas import artifacts, distributed, tb
from osnas.config import Config, apply_overrides, load_config, validate_config, with_overrides
from osnas.errors import OsnasError
from osnas.plugins import load_builtins
from osnas.registry import KINDS, REGISTRIES
from osnas.run_dir import RunDir, check_free_space

if TYPE_CHECKING:
    import torch.nn as nn

    from osnas.agent import MainAgent
    from osnas.search_spaces.base import SpaceDefinition
    from osnas.search_spaces.lookup_table import LookupTable
    from osnas.search_spaces.supernet import Supernet

ConfigLike = Union[str, Path, dict, Config]
DEFAULT_SHAPE = {"input_size": 224, "in_channels": 3, "num_outputs": 1000}


# ----------------------------------------------------------------------------- configs


def override_items(overrides: dict[str, Any]) -> list[str]:
    """``supernet={"epochs": 3}`` or ``**{"supernet.epochs": 3}`` as ``--set`` items (``supernet.epochs=3``)."""
    items: list[str] = []
    for key, value in overrides.items():
        if isinstance(value, dict) and value:
            items += override_items({f"{key}.{k}": v for k, v in value.items()})
        else:
            text = yaml.safe_dump(value, default_flow_style=True, width=2**30)
            items.append(f"{key}={text.removesuffix(chr(10) + '...' + chr(10)).strip()}")
    return items


def make_config(config: ConfigLike, **overrides: Any) -> Config:
    """A validated config from a YAML file, a mapping or a Config, with overrides applied like ``--set``."""
    load_builtins()
    items = override_items(overrides)
    if isinstance(config, Config):
        return with_overrides(config, items) if items else config
    if isinstance(config, dict):
        data = apply_overrides(copy.deepcopy(config), items)
        return validate_config(data, source="<dict>", overrides=tuple(items))
    return load_config(config, items)


# ----------------------------------------------------------------------------- runs


class Backlog(logging.Handler):
    """Holds what is logged before the run directory exists (setup, lookup table), for its log.txt."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def info_logged(handler: logging.Handler) -> Iterator[None]:
    """The osnas log at INFO goes to ``handler`` while the block runs."""
    logger = logging.getLogger("osnas")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@contextlib.contextmanager
def logging_to(run: RunDir, config: Config, backlog: Backlog | None = None) -> Iterator[None]:
    """While a run executes, the osnas log goes to its log.txt (``backlog`` first) and its metrics to
    TensorBoard (when enabled)."""
    if not distributed.is_main():
        yield
        return
    handler = logging.FileHandler(run.file(artifacts.LOG))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    for record in backlog.records if backlog else ():
        handler.handle(record)
    board = tb.attach(run, config)
    try:
        with info_logged(handler):
            yield
    finally:
        if board is not None:
            run.sinks.remove(board)
            board.close()
        handler.close()


def results_text(results: dict[str, Any]) -> str:
    """The results table as plain text (as the terminal shows it), for log.txt."""
    from rich.console import Console

    from osnas.summary import summary_table

    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(summary_table(results))
    return console.file.getvalue().rstrip()


@dataclass
class Launch:
    """A run ready to execute: components checked, directory and config written."""

    agent: MainAgent
    run: RunDir
    backlog: Backlog = field(default_factory=Backlog)  # for log.txt: what was logged before it was opened

    def execute(self, reuse_supernet: Path | None = None) -> dict[str, Any]:
        """Every phase not done yet; returns the content of results.json (its table also goes to log.txt)."""
        try:
            with logging_to(self.run, self.agent.config, self.backlog):
                results = self.agent.run(self.run, reuse_supernet)
                logging.getLogger("osnas").info("results:\n%s", results_text({**results, "run_dir": str(self.run.path)}))
                return results
        finally:
            self.run.unlock()


def start_run(config: Config, quiet: bool = True, arch: Path | None = None, supernet: Path | None = None) -> Launch:
    """A new run of ``config``: components built and checked, then its directory and config written.

    ``arch``: an architecture file to train (``osnas train``); it is copied into the run
    (without the search's timings), so a resumed run continues its training.
    ``supernet``: a trained supernet the run will reuse, checked before the directory is created.
    """
    from osnas.agent import MainAgent
    from osnas.runtime import needed_disk_bytes

    backlog = Backlog()
    with info_logged(backlog):
        agent = MainAgent(config, quiet=quiet)
        comp = agent.setup()
    if supernet is not None:
        artifacts.read_supernet(supernet, comp.definition)
    record = None
    if arch is not None:
        record = artifacts.read_architecture(arch)
        vector = record.vector(comp.definition, str(artifacts.architecture_path(arch)))
        needed = needed_disk_bytes(config, comp.definition, vector)
    else:
        needed = needed_disk_bytes(config, comp.definition)
    check_free_space(Path(config.output.dir), needed, "the checkpoints of this run")
    run = distributed.create_run_dir(config.output.dir, config.output.name)
    run.lock()
    artifacts.write_config(run, config)
    if record is not None:
        artifacts.write_architecture(run, record.model_copy(update={"supernet_seconds": None, "search_seconds": None}))
    return Launch(agent, run, backlog)


def is_finished(path: str | Path) -> bool:
    """Whether the run at ``path`` has its results (a resume would redo the test and overwrite its figures)."""
    return RunDir.open(path).exists(artifacts.RESULTS)


def reopen_run(path: str | Path, quiet: bool = True) -> Launch:
    """An interrupted run, ready to continue with the config saved in it."""
    from osnas.agent import MainAgent
    from osnas.runtime import needed_disk_bytes

    load_builtins()
    run = distributed.rank_view(RunDir.open(path))
    run.lock()
    config = artifacts.read_config(run)
    backlog = Backlog()
    with info_logged(backlog):
        agent = MainAgent(config, quiet=quiet)
        comp = agent.setup()
        stale = run.remove_temporaries()
        superseded = run.remove_superseded()
        saved = sum(p.stat().st_size for p in run.path.glob("*.pt"))  # replaced by the new ones
        check_free_space(run.path, needed_disk_bytes(config, comp.definition) - saved, "the checkpoints of this run")
        log = logging.getLogger("osnas")
        if stale:
            log.info("removed unfinished writes of the interrupted run: %s", ", ".join(stale))
        if superseded:
            log.info("removed per-epoch checkpoints of finished phases: %s", ", ".join(superseded))
    return Launch(agent, run, backlog)


def search(config: ConfigLike, reuse_supernet: str | Path | None = None, quiet: bool = True, **overrides: Any
           ) -> Run:
    """Run every phase of a search (supernet, search, final training, test) and return the finished run.

    ``overrides`` change config keys as nested mappings (``supernet={"epochs": 3}``) or
    dotted keys (``**{"supernet.epochs": 3}``); ``reuse_supernet`` loads a trained ``supernet.pt``.
    """
    supernet = Path(reuse_supernet) if reuse_supernet else None
    launch = start_run(make_config(config, **overrides), quiet, supernet=supernet)
    launch.execute(supernet)
    return Run(launch.run.path)


def resume(path: str | Path, quiet: bool = True) -> Run:
    """Continue an interrupted run where its last checkpoint left it (a finished run is left as it is)."""
    if is_finished(path):
        return Run(path)
    launch = reopen_run(path, quiet)
    launch.execute()
    return Run(launch.run.path)


def train(config: ConfigLike, arch: str | Path, quiet: bool = True, **overrides: Any) -> Run:
    """Train an architecture (architecture.json or a run directory) from scratch and test it."""
    launch = start_run(make_config(config, **overrides), quiet, Path(arch))
    launch.execute()
    return Run(launch.run.path)


class Run:
    """A run directory: its config, architecture, results, and the networks it holds."""

    def __init__(self, path: str | Path) -> None:
        load_builtins()
        self.path = RunDir.open(path).path

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @cached_property
    def config(self) -> Config:
        return artifacts.read_config(self.path / artifacts.CONFIG)

    @property
    def architecture(self) -> artifacts.Architecture | None:
        """The searched architecture, or None before the search finished."""
        path = self.path / artifacts.ARCHITECTURE
        return artifacts.read_architecture(path) if path.is_file() else None

    @property
    def results(self) -> artifacts.Results | None:
        """Test metrics and costs, or None before the run finished."""
        path = self.path / artifacts.RESULTS
        return artifacts.read_results(path) if path.is_file() else None

    @cached_property
    def definition(self) -> SpaceDefinition:
        """The run's space definition, from architecture.json when it records it, else from the config."""
        record = self.architecture
        if record is not None and record.is_complete():
            return record.definition(str(self.path / artifacts.ARCHITECTURE))
        from osnas.components import config_definition

        return config_definition(self.config)

    def _indices(self) -> list[int]:
        record = self.architecture
        if record is None:
            raise OsnasError(f"{self.path} has no {artifacts.ARCHITECTURE} yet (its search has not finished)")
        return record.indices

    def child(self) -> nn.Module:
        """The searched network, untrained (fresh weights)."""
        from osnas.search_spaces.child import build_child

        return build_child(self.definition, self._indices())

    def model(self) -> nn.Module:
        """The trained network of ``model.pt``, in eval mode on the CPU."""
        from osnas.export import load_trained_child

        if not (self.path / artifacts.MODEL).is_file():
            raise OsnasError(f"{self.path} has no {artifacts.MODEL} yet (its final training has not finished)")
        return load_trained_child(self.definition, self.path / artifacts.MODEL)

    def supernet(self) -> Supernet:
        """The trained supernet of ``supernet.pt``, in eval mode on the CPU."""
        from osnas.search_spaces.supernet import Supernet

        definition = self.definition
        state = artifacts.read_supernet(self.path / artifacts.SUPERNET, definition)
        net = Supernet(definition)
        net.load_state_dict(state["model"])
        return net.eval()


def load_run(path: str | Path) -> Run:
    """Open a run directory (finished or not) written by ``osnas search``/``train`` or :func:`search`."""
    return Run(path)


# ----------------------------------------------------------------------------- spaces and profiling


@dataclass(frozen=True)
class Space:
    """A search space built for one input shape: make its supernet, children and lookup table."""

    definition: SpaceDefinition
    options: dict[str, Any]

    @property
    def name(self) -> str:
        return self.definition.name

    def preset(self, name: str) -> np.ndarray:
        """A named reference architecture of the space (e.g. a paper's network)."""
        from osnas.components import make_space

        return make_space(self.name, self.options).preset(name, self.definition)

    def sample(self, n: int = 1, seed: int = 0) -> np.ndarray:
        """``n`` uniformly drawn architectures, one per row."""
        return self.definition.sample(np.random.default_rng(seed), n)

    def supernet(self) -> Supernet:
        from osnas.search_spaces.supernet import Supernet

        return Supernet(self.definition)

    def child(self, arch: Sequence[int] | str) -> nn.Module:
        """The network of ``arch`` (indices or a preset name), with fresh weights."""
        from osnas.search_spaces.child import build_child

        return build_child(self.definition, self.preset(arch) if isinstance(arch, str) else arch)

    def lookup_table(self, device: str = "cpu", latency: bool = False, cache_dir: str | Path | None = None
                     ) -> LookupTable:
        """Per-layer MACs and params (and latency when ``latency``) of every candidate."""
        from osnas.search_spaces.lookup_table import LookupTable

        return LookupTable.load_or_build(self.definition, cache_dir, torch.device(device), latency)[0]


def build_space(name: str, input_size: int = 224, in_channels: int = 3, num_outputs: int = 1000,
                **options: Any) -> Space:
    """A registered space with ``options`` (validated as in a config) for an input shape and output width."""
    from osnas.components import define_space

    load_builtins()
    return Space(define_space(name, options, input_size, in_channels, num_outputs), options)


def _recorded_shape(record: artifacts.Architecture, path: Path) -> dict[str, Any]:
    """Input size, channels, outputs and space options of an architecture's run (file first, then config)."""
    if record.is_complete():
        return {"input_size": record.input_size, "in_channels": record.in_channels,
                "num_outputs": record.num_outputs, "options": record.space_options}
    run_dir = path if path.is_dir() else path.parent
    if not (run_dir / artifacts.CONFIG).is_file():
        return {}
    from osnas.components import config_definition

    config = artifacts.read_config(run_dir / artifacts.CONFIG)
    definition = config_definition(config)
    return {"input_size": definition.input_size, "in_channels": definition.in_channels,
            "num_outputs": definition.num_outputs, "options": config.search_space.options.model_dump()}


def resolve_network(arch: str | Path | Sequence[int], space: str | None = None, input_size: int | None = None,
                    in_channels: int | None = None, num_outputs: int | None = None,
                    options: dict[str, Any] | None = None) -> tuple[SpaceDefinition, np.ndarray]:
    """The definition and indices of ``arch``: a run directory or architecture.json (whose recorded shape and
    options apply unless given here), a preset name of ``space``, or an index list for ``space``."""
    from osnas.components import define_space, make_space

    load_builtins()
    given = {"input_size": input_size, "in_channels": in_channels, "num_outputs": num_outputs}
    path = Path(arch) if isinstance(arch, (str, Path)) else None
    if path is not None and (path.suffix == ".json" or path.exists()):
        record = artifacts.read_architecture(path)
        recorded = _recorded_shape(record, path) if space in (None, record.space) else {}
        shape = {k: v or recorded.get(k) or DEFAULT_SHAPE[k] for k, v in given.items()}
        definition = define_space(space or record.space, {**recorded.get("options", {}), **(options or {})},
                                  **shape, source="--set-space")
        return definition, record.vector(definition, str(artifacts.architecture_path(path)))
    if space is None:
        raise OsnasError(f"architecture {arch!r} is a preset or index list: name its search space")
    shape = {k: v or DEFAULT_SHAPE[k] for k, v in given.items()}
    built = make_space(space, options or {}, source="--set-space")
    definition = built.define(**shape)
    if isinstance(arch, str):
        return definition, built.preset(arch, definition)
    return definition, definition.validate_arch(list(arch))


def profile(arch: str | Path | Sequence[int], space: str | None = None, input_size: int | None = None,
            in_channels: int | None = None, num_outputs: int | None = None, options: dict[str, Any] | None = None,
            device: str = "cpu", runs: int = 10) -> dict[str, Any]:
    """MACs, parameters and median batch-1 latency (``runs=0``: not timed, None) of a network.

    ``arch`` is a run directory or architecture.json (profiled at the run's input size,
    channels, outputs and space options unless given), or a preset name or index list of ``space``.
    """
    from osnas.profiling import profile_architecture

    definition, vector = resolve_network(arch, space, input_size, in_channels, num_outputs, options)
    return profile_architecture(definition, vector, device, runs)


def list_components(kind: str | None = None) -> dict[str, list[str]]:
    """Registered component names per kind (only ``kind`` when given)."""
    load_builtins()
    if kind is not None and kind not in REGISTRIES:
        raise OsnasError(f"unknown component kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    return {k: REGISTRIES[k].names() for k in ([kind] if kind else KINDS)}
