"""The main agent: runs the phases of a one-shot NAS run, nothing task-specific.

1. data splits  2. search space, supernet and lookup table  3. supernet training
4. search under the constraint  5. child training from scratch  6. test evaluation
7. results. Every phase reads and writes through the run directory, so a run can
be resumed (``--resume``) or a phase skipped (``--supernet``, ``osnas train``).
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn

from osnas import distributed
from osnas.config import Config, PhaseConfig
from osnas.constraint import Constraint
from osnas.dataflows.base import Dataflow, Loader
from osnas.errors import OsnasError, TrainingDivergedError
from osnas.input_check import check_input_size
from osnas.profiling import count_macs, count_params, measure_latency
from osnas.progress import progress
from osnas.registry import REGISTRIES
from osnas.run_dir import RunDir, read_json, read_supernet
from osnas.search_spaces.base import SearchSpace, SpaceDefinition
from osnas.search_spaces.child import build_child
from osnas.search_spaces.lookup_table import LookupTable
from osnas.search_spaces.supernet import Supernet
from osnas.search_strategies.base import SearchContext, SearchResult
from osnas.search_strategies.evaluator import Evaluator
from osnas.training import DTYPES, Updater, build_optimizer, build_scheduler, compute_in, resolve_amp
from osnas.training_agents.base import TrainingAgent
from osnas.training_strategies.base import TrainingContext, TrainingStrategy

log = logging.getLogger("osnas")
# what a per-epoch checkpoint holds to continue training exactly where it stopped
RESUME_KEYS = ("model", "criterion", "updater", "loader", "rng", "epoch", "seconds")


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without it is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise OsnasError(f"device: {name} was requested but CUDA is not available here; use device: cpu or auto")
        index = torch.device(name).index
        if index is not None and index >= torch.cuda.device_count():
            raise OsnasError(f"device: {name} does not exist; this machine has {torch.cuda.device_count()} GPU(s)")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def rng_state() -> dict[str, Any]:
    """The global RNG states in types that ``torch.load(weights_only=True)`` accepts (no numpy arrays)."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"]["key"] = numpy_state["state"]["key"].tolist()
    return {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    numpy_state = dict(state["numpy"])
    numpy_state["state"] = {**numpy_state["state"], "key": np.asarray(numpy_state["state"]["key"], dtype=np.uint32)}
    np.random.set_state(numpy_state)
    torch.set_rng_state(state["torch"])


@dataclass
class Components:
    """Everything built from a config before training starts."""

    dataflow: Dataflow
    agent: TrainingAgent
    space: SearchSpace
    definition: SpaceDefinition
    lut: LookupTable
    constraint: Constraint
    lut_note: str = ""


@dataclass
class PhaseTimer:
    """Seconds per phase, and ``total``: the time of every process of the run up to now (saved with each state)."""

    seconds: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    earlier: float = 0.0  # total of the processes before this one, up to their last saved state

    def add(self, phase: str, start: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start
        self.seconds["total"] = self.total()

    def total(self) -> float:
        return self.earlier + time.perf_counter() - self.started

    def restore(self, saved: dict[str, float], own_setup: float) -> None:
        """Continue the accounting of a resumed run: saved phases, plus this process's own setup time."""
        for phase, seconds in saved.items():
            if phase == "total":
                self.earlier = max(self.earlier, float(seconds))
            else:
                self.seconds[phase] = float(seconds) + (own_setup if phase == "lookup_table" else 0.0)
        self.seconds["total"] = self.total()


def build_components(config: Config, device: torch.device, cache_dir: Path | None) -> Components:
    """Data, task, space definition, lookup table and constraint for a config."""
    space: SearchSpace = REGISTRIES["search_space"].get(config.search_space.name)(config.search_space.options)
    data = config.dataflow.options
    check_input_size(space, data.input_size, data.batch_size, device, "dataflow.input_size")
    dataflow_cls = REGISTRIES["dataflow"].get(config.dataflow.name)
    dataflow: Dataflow = dataflow_cls(config.dataflow.options, config.seed, device)
    agent_cls = REGISTRIES["training_agent"].get(config.task.name)
    output_dim = agent_cls.output_dim(config.task.options, dataflow.num_classes)
    criterion_cls = REGISTRIES["criterion"].get(config.criterion.name)
    criterion = criterion_cls(config.criterion.options, dataflow.num_classes, output_dim).to(device, DTYPES[config.dtype])
    agent: TrainingAgent = agent_cls(config.task.options, criterion, dataflow.num_classes)
    definition = space.define(dataflow.input_size, dataflow.in_channels, output_dim)
    lt = config.lookup_table
    lut, note = distributed.from_main(lambda: LookupTable.load_or_build(
        definition, cache_dir, device, lt.latency, lt.latency_batch, lt.latency_runs))
    c = config.constraint
    constraint = Constraint(c.metric, c.max, c.min, lut, definition)
    if c.metric == "latency" and not lt.latency:
        raise OsnasError("constraint.metric is latency but lookup_table.latency is false; set lookup_table.latency: true")
    return Components(dataflow, agent, space, definition, lut, constraint, note)


class NonFiniteGuard:
    """Tracks the first non-finite loss of an epoch on the device (no per-step host sync)."""

    def __init__(self, device: torch.device) -> None:
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)

    def update(self, loss: torch.Tensor, step: int) -> None:
        bad = ~torch.isfinite(loss)
        self.first_bad = torch.where(bad & (self.first_bad < 0), torch.full_like(self.first_bad, step), self.first_bad)

    def check(self, phase: str, epoch: int) -> None:
        step = int(distributed.maximum(self.first_bad).item())
        if step >= 0:
            raise TrainingDivergedError(
                f"the {phase} loss became NaN or infinite at epoch {epoch + 1}, step {step + 1}; "
                "the last good checkpoint is kept (lower the learning rate or enable grad_clip)"
            )


class MainAgent:
    """Orchestrates one ``osnas search`` (or ``osnas train``) run."""

    def __init__(self, config: Config, run: RunDir | None = None, quiet: bool = False,
                 on_epoch: Callable[[str, int], None] | None = None) -> None:
        self.config = config
        self.run: RunDir = run  # type: ignore[assignment]  # set by the CLI once setup() succeeded
        self.strategy: TrainingStrategy | None = None
        self.quiet = quiet or not distributed.is_main()
        self.device = distributed.setup(resolve_device(config.device))
        self.timer = PhaseTimer()
        self.on_epoch = on_epoch
        cache = config.lookup_table.cache_dir
        self.cache_dir = Path(cache) if cache else Path(config.output.dir) / "lookup_tables"
        self.components: Components | None = None
        self.amp: dict[str, str] = {}
        self.setup_seconds = 0.0

    # ------------------------------------------------------------------ helpers
    def say(self, message: str) -> None:
        log.info(message)
        if not self.quiet:
            from osnas.progress import console

            console.print(message)

    def setup(self) -> Components:
        if self.components is None:
            seed_everything(self.config.seed, self.config.deterministic)
            start = time.perf_counter()
            self.components = build_components(self.config, self.device, self.cache_dir)
            # building the table draws from the torch RNG and a cached table does not: reseed so the cache
            # cannot change the run
            seed_everything(self.config.seed, self.config.deterministic)
            self.timer.add("lookup_table", start)
            self.setup_seconds = self.timer.seconds["lookup_table"]
            self.say(f"lookup table: {self.components.lut_note}")
            self.components.constraint.check_satisfiable()
        return self.components

    def restore_seconds(self, saved: dict[str, float]) -> None:
        self.timer.restore(saved, self.setup_seconds)

    def needed_disk_bytes(self, arch: np.ndarray | None = None) -> int:
        """Disk space the checkpoints of this run need at their peak, estimated before training starts.

        A checkpoint holds the weights plus the optimizer's per-weight buffers; an
        atomic write keeps the old and the new file side by side, and the finished
        phase's weights (``supernet.pt``) stay for the rest of the run. ``arch``:
        only a child is trained (``osnas train``).
        """
        comp = self.setup()
        with torch.device("meta"):
            model = Supernet(comp.definition) if arch is None else build_child(comp.definition, arch)
        weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
        opt = (self.config.supernet if arch is None else self.config.final).optimizer
        slots = 2 if opt.name in ("adam", "adamw") else int(opt.momentum > 0)
        return 2 * weights * (1 + slots) + weights + 2**20

    def _updater(self, phase: str, cfg: PhaseConfig, params: Any, steps: int) -> Updater:
        amp, why = resolve_amp(cfg.amp, self.device)
        if why and phase not in self.amp:
            self.say(f"{phase}: {why}")
        self.amp[phase] = amp
        optimizer = build_optimizer(cfg.optimizer, params)
        updater_cls = distributed.updater_type()
        return updater_cls(optimizer, build_scheduler(cfg, optimizer, steps), self.device, amp, cfg.grad_clip)

    def _to_memory_format(self, module: nn.Module, cfg: PhaseConfig, phase: str) -> nn.Module:
        if cfg.channels_last:
            if self.device.type != "cuda":
                self.say(f"{phase}: channels_last only helps on CUDA; keeping the default layout on {self.device.type}")
            else:
                module = module.to(memory_format=torch.channels_last)
        return module

    def _resume_training(self, phase: str, model: nn.Module, updater: Updater, loader: Loader,
                         extra_keys: tuple[str, ...] = ()) -> tuple[int, dict[str, Any]]:
        """Restore a training phase from ``<phase>_last.pt``; returns the epoch to start at and the state."""
        name = f"{phase}_last.pt"
        state = self.run.load_checkpoint(name, RESUME_KEYS + extra_keys)
        self.run.check_resume_state(name, state, getattr(self.config, phase).epochs)
        with self.run.restoring(name):
            model.load_state_dict(state["model"])
            self.setup().agent.criterion.load_state_dict(state["criterion"])
            updater.load_state_dict(state["updater"])
            loader.load_state_dict(state["loader"])
            set_rng_state(state["rng"])
            self.restore_seconds(state["seconds"])
        start_epoch = state["epoch"] + 1
        self.say(f"{phase}: resuming after epoch {start_epoch}")
        return start_epoch, state

    # ------------------------------------------------------------------ phases
    def train_supernet(self) -> Supernet:
        """Phase 3, resumable per epoch from ``supernet_last.pt``."""
        comp = self.setup()
        cfg = self.config.supernet
        train_loader, val_loader = comp.dataflow.search_split()
        train_loader = distributed.shard(train_loader)
        supernet = compute_in(Supernet(comp.definition).to(self.device), DTYPES[self.config.dtype])
        supernet = distributed.prepare(self._to_memory_format(supernet, cfg, "supernet"))
        ctx = TrainingContext(comp.definition, comp.lut, comp.constraint, val_loader, self.device,
                              self.config.seed, cfg.epochs)
        strategy_cls = REGISTRIES["training_strategy"].get(self.config.training_strategy.name)
        strategy: TrainingStrategy = strategy_cls(self.config.training_strategy.options, ctx)
        params = list(supernet.parameters()) + list(comp.agent.criterion.parameters())
        updater = self._updater("supernet", cfg, params, len(train_loader))
        start_epoch = 0
        if self.run.exists("supernet.pt"):
            state = self.run.load_checkpoint("supernet.pt", ("model", "strategy"))
            with self.run.restoring("supernet.pt"):
                supernet.load_state_dict(state["model"])
                strategy.load_state_dict(state["strategy"])
                self.restore_seconds(state.get("seconds", {}))
            self.say("supernet: reusing the trained supernet of this run")
            self.strategy = strategy
            return supernet
        if self.run.exists("supernet_last.pt"):
            start_epoch, state = self._resume_training("supernet", supernet, updater, train_loader, ("strategy",))
            with self.run.restoring("supernet_last.pt"):
                strategy.load_state_dict(state["strategy"])
        self.run.prune_metrics("supernet", start_epoch)
        with progress(self.config.logging.progress and not self.quiet) as bar:
            task = bar.add_task("supernet", total=cfg.epochs * len(train_loader), info="",
                                completed=start_epoch * len(train_loader))
            for epoch in range(start_epoch, cfg.epochs):
                begin = time.perf_counter()
                strategy.on_epoch_start(epoch)
                supernet.train()
                guard = NonFiniteGuard(self.device)
                loss_sum = torch.zeros((), device=self.device)
                for step, batch in enumerate(train_loader):
                    loss = strategy.step(supernet, batch, comp.agent, updater)
                    guard.update(loss, step)
                    loss_sum += loss.float()
                    bar.advance(task)
                guard.check("supernet", epoch)
                train_loss = float(distributed.average(loss_sum).item()) / max(1, len(train_loader))
                self.timer.add("supernet", begin)
                record = {"phase": "supernet", "epoch": epoch + 1, "loss": train_loss,
                          "lr": updater.param_groups[0]["lr"], "seconds": round(self.timer.seconds["supernet"], 3)}
                record.update(getattr(strategy, "epoch_metrics", lambda: {})())
                self.run.log_metrics(record)
                bar.update(task, info=f"loss {train_loss:.3f}")
                self.run.save_checkpoint("supernet_last.pt", {
                    "model": supernet.state_dict(), "criterion": comp.agent.criterion.state_dict(),
                    "updater": updater.state_dict(), "strategy": strategy.state_dict(),
                    "loader": train_loader.state_dict(), "rng": rng_state(), "epoch": epoch,
                    "seconds": dict(self.timer.seconds),
                })
                if self.on_epoch:
                    self.on_epoch("supernet", epoch)
        self.run.save_checkpoint("supernet.pt", {"model": supernet.state_dict(), "strategy": strategy.state_dict(),
                                                 "space": comp.definition.name,
                                                 "space_hash": comp.definition.fingerprint(),
                                                 "seconds": dict(self.timer.seconds)})
        self.run.file("supernet_last.pt").unlink(missing_ok=True)
        self.strategy = strategy
        return supernet

    def load_supernet(self, path: Path) -> Supernet:
        """Reuse a supernet trained by an earlier run (``--supernet RUN/supernet.pt``)."""
        comp = self.setup()
        state = read_supernet(path, comp.definition)
        supernet = compute_in(Supernet(comp.definition).to(self.device), DTYPES[self.config.dtype])
        supernet.load_state_dict(state["model"])
        _, val_loader = comp.dataflow.search_split()
        ctx = TrainingContext(comp.definition, comp.lut, comp.constraint, val_loader, self.device,
                              self.config.seed, self.config.supernet.epochs)
        strategy_cls = REGISTRIES["training_strategy"].get(self.config.training_strategy.name)
        self.strategy = strategy_cls(self.config.training_strategy.options, ctx)
        self.strategy.load_state_dict(state["strategy"])
        # the time spent on it belongs to the run that trained it
        self.run.save_checkpoint("supernet.pt", {k: v for k, v in state.items() if k != "seconds"})
        return supernet

    def search(self, supernet: Supernet) -> SearchResult:
        """Phase 4: the search strategy under the constraint, resumable from ``search_state.pt``."""
        comp = self.setup()
        begin = time.perf_counter()
        ev = self.config.evaluation
        train_loader, val_loader = comp.dataflow.search_split()
        evaluator = distributed.ShardedEvaluator(supernet, comp.agent, train_loader, val_loader, ev.bn_batches,
                                                 ev.val_batches)
        strategy_cls = REGISTRIES["search_strategy"].get(self.config.search_strategy.name)
        strategy = strategy_cls(self.config.search_strategy.options)
        logged = [0]  # search records in metrics.jsonl, so a resumed search logs each evaluation once
        if self.run.exists("search_state.pt"):
            saved = self.run.load_checkpoint("search_state.pt", ("strategy", "evaluator", "seconds", "logged"))
            with self.run.restoring("search_state.pt"):
                strategy.load_state_dict(saved["strategy"])
                evaluator.load_state_dict(saved["evaluator"])
                self.restore_seconds(saved["seconds"])
                logged[0] = int(saved["logged"])
            self.say(f"search: resuming with {evaluator.num_evaluated} candidates already scored")
        self.run.prune_metrics("search", logged[0])
        resumed_seconds = self.timer.seconds.get("search", 0.0)
        rng = np.random.default_rng([self.config.seed, 1])

        def save_state(state: dict[str, Any]) -> None:
            seconds = {**self.timer.seconds, "search": resumed_seconds + time.perf_counter() - begin,
                       "total": self.timer.total()}
            self.run.save_checkpoint("search_state.pt", {"strategy": state, "evaluator": evaluator.state_dict(),
                                                         "seconds": seconds, "logged": logged[0]})
            if self.on_epoch:
                self.on_epoch("search", evaluator.num_evaluated)

        with progress(self.config.logging.progress and not self.quiet) as bar:
            task = bar.add_task("search", total=None, info="")

            def log_record(record: dict[str, Any]) -> None:
                self.run.log_metrics(record)
                logged[0] += 1
                bar.update(task, completed=record.get("eval", 0), info=f"best {record.get('best_score', 0):.2f}")

            context = SearchContext(comp.definition, comp.lut, comp.constraint, evaluator, rng,
                                    training_strategy=self.strategy, log=log_record,
                                    save_state=save_state, save_file=self.run.save_checkpoint)
            result = strategy.search(context)
        if not comp.constraint.feasible(result.best):
            raise OsnasError(f"search strategy {self.config.search_strategy.name!r} returned an architecture "
                             f"that breaks {comp.constraint.describe()}")
        self.timer.seconds["search"] = resumed_seconds + time.perf_counter() - begin
        self.write_architecture(result, evaluator)
        if result.pareto is not None:
            self.run.write_json("pareto.json", result.pareto)
        self.run.file("search_state.pt").unlink(missing_ok=True)
        return result

    def write_architecture(self, result: SearchResult, evaluator: Evaluator | None = None) -> None:
        comp = self.setup()
        arch = [int(i) for i in result.best]
        self.run.write_json("architecture.json", {
            "space": comp.definition.name,
            "space_hash": comp.definition.fingerprint(),
            "input_size": comp.definition.input_size,
            "indices": arch,
            "candidates": comp.definition.candidate_names(arch),
            "costs": comp.lut.costs(result.best),
            "score": result.score,
            "repaired": result.repaired,
            "evaluated": None if evaluator is None else evaluator.num_evaluated,
            "search_seconds": round(self.timer.seconds.get("search", 0.0), 3),
            "supernet_seconds": round(self.timer.seconds.get("supernet", 0.0), 3),
            **({"info": result.info} if result.info else {}),
        })

    def load_architecture(self, path: Path) -> np.ndarray:
        """An ``architecture.json`` checked against this config's space (name, length, index ranges)."""
        comp = self.setup()
        data = read_json(path)
        if not isinstance(data, dict) or "indices" not in data:
            raise OsnasError(f"{path}: not an architecture file (expected keys space, indices)")
        indices = data["indices"]
        if not isinstance(indices, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
            raise OsnasError(f"{path}: 'indices' must be a list of integers (one candidate index per searchable "
                             f"layer), got {indices!r}")
        if data.get("space") != comp.definition.name:
            raise OsnasError(f"{path}: architecture is for space {data.get('space')!r}, "
                             f"but the config uses {comp.definition.name!r}")
        try:
            return comp.definition.validate_arch(data["indices"])
        except OsnasError as exc:
            raise OsnasError(f"{path}: {exc}") from None

    def train_child(self, arch: np.ndarray) -> tuple[nn.Module, dict[str, float]]:
        """Phases 5-6: train ``arch`` from scratch on the full training split, then evaluate on test."""
        comp = self.setup()
        cfg = self.config.final
        train_loader, test_loader = comp.dataflow.final_split()
        train_loader = distributed.shard(train_loader)
        torch.manual_seed(self.config.seed + 17)
        child = compute_in(build_child(comp.definition, arch).to(self.device), DTYPES[self.config.dtype])
        child = distributed.prepare(self._to_memory_format(child, cfg, "final"))
        criterion = comp.agent.criterion
        # a fresh head for margin losses, trained with the child and never exported with it
        for module in criterion.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        updater = self._updater("final", cfg, list(child.parameters()) + list(criterion.parameters()),
                                len(train_loader))
        start_epoch = 0
        if self.run.exists("final_last.pt"):
            start_epoch, _ = self._resume_training("final", child, updater, train_loader)
        forward_model = self._compiled(child) if cfg.compile else child
        if not self.run.exists("model.pt"):
            self.run.prune_metrics("final", start_epoch)
            with progress(self.config.logging.progress and not self.quiet) as bar:
                task = bar.add_task("final", total=cfg.epochs * len(train_loader), info="",
                                    completed=start_epoch * len(train_loader))
                for epoch in range(start_epoch, cfg.epochs):
                    begin = time.perf_counter()
                    child.train()
                    guard = NonFiniteGuard(self.device)
                    loss_sum = torch.zeros((), device=self.device)
                    for step, (x, y) in enumerate(train_loader):
                        updater.zero_grad()
                        with updater.autocast():
                            loss = comp.agent.loss(forward_model(x), y)
                        updater.backward(loss)
                        updater.step()
                        guard.update(loss.detach(), step)
                        loss_sum += loss.detach().float()
                        bar.advance(task)
                    guard.check("final training", epoch)
                    train_loss = float(distributed.average(loss_sum).item()) / max(1, len(train_loader))
                    self.timer.add("final", begin)
                    self.run.log_metrics({"phase": "final", "epoch": epoch + 1, "loss": train_loss,
                                          "lr": updater.param_groups[0]["lr"],
                                          "seconds": round(self.timer.seconds["final"], 3)})
                    bar.update(task, info=f"loss {train_loss:.3f}")
                    self.run.save_checkpoint("final_last.pt", {
                        "model": child.state_dict(), "criterion": criterion.state_dict(),
                        "updater": updater.state_dict(), "loader": train_loader.state_dict(),
                        "rng": rng_state(), "epoch": epoch, "seconds": dict(self.timer.seconds)})
                    if self.on_epoch:
                        self.on_epoch("final", epoch)
            self.run.save_checkpoint("model.pt", {"model": child.state_dict(), "space": comp.definition.name,
                                                  "indices": [int(i) for i in arch],
                                                  "seconds": dict(self.timer.seconds)})
            self.run.file("final_last.pt").unlink(missing_ok=True)
        else:
            state = self.run.load_checkpoint("model.pt", ("model",))
            with self.run.restoring("model.pt"):
                child.load_state_dict(state["model"])
                self.restore_seconds(state.get("seconds", {}))
        begin = time.perf_counter()
        child.eval()
        metrics = comp.agent.evaluate(lambda x: forward_model(x), test_loader)
        self.timer.add("test", begin)
        return child, metrics

    def _compiled(self, child: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        try:
            return torch.compile(child)
        except Exception as exc:  # compile support depends on platform and toolchain
            self.say(f"final: torch.compile unavailable ({type(exc).__name__}: {exc}); running eagerly")
            return child

    def results(self, arch: np.ndarray, child: nn.Module, metrics: dict[str, float]) -> dict[str, Any]:
        comp = self.setup()
        d = comp.definition
        shape = (1, d.in_channels, d.input_size, d.input_size)
        latency = measure_latency(child, shape, self.device, runs=self.config.lookup_table.latency_runs)
        results = {
            "space": d.name,
            "indices": [int(i) for i in arch],
            "candidates": d.candidate_names(arch),
            "test": metrics,
            "test_" + comp.agent.selection_metric: metrics[comp.agent.selection_metric],
            "macs": count_macs(child, shape),
            "params": count_params(child),
            "latency_ms": latency,
            "lut_costs": comp.lut.costs(arch),
            "constraint": self.config.constraint.model_dump(),
            "device": str(self.device),
            "seconds": {k: round(v, 3) for k, v in self.timer.seconds.items() if k != "total"},  # total: at the end
            "search_seconds": round(self.timer.seconds.get("supernet", 0.0) + self.timer.seconds.get("search", 0.0), 3),
        }
        self.run.write_json("results.json", results)
        return results

    def run_search(self, supernet_path: Path | None = None) -> dict[str, Any]:
        """All phases; each skipped when the run directory already holds its output."""
        self.setup()
        if self.run.exists("architecture.json"):
            arch = self.load_architecture(self.run.file("architecture.json"))
            saved = read_json(self.run.file("architecture.json"))
            self.restore_seconds({phase: saved[f"{phase}_seconds"] for phase in ("supernet", "search")
                                  if f"{phase}_seconds" in saved})
            self.say("search: reusing architecture.json of this run")
        else:
            supernet = self.load_supernet(supernet_path) if supernet_path else self.train_supernet()
            result = self.search(supernet)
            arch = result.best
        child, metrics = self.train_child(arch)
        results = self.results(arch, child, metrics)
        results["seconds"]["total"] = round(self.timer.total(), 3)  # every process of the run, this one included
        self.run.write_json("results.json", results)
        if self.config.audit.enabled:
            self.audit()
        return results

    def audit(self) -> dict[str, Any]:
        """Optional last phase: the ranking audit of this run (``audit:`` in the config; see osnas/audit.py)."""
        from osnas.audit import AuditSettings, run_audit

        return run_audit(self.run, AuditSettings.from_config(self.config.audit), self.quiet, self.say)
