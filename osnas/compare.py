"""``osnas compare``: run several configs over several seeds and tabulate them like OSNASLib.

Layout of the output directory::

    DIR/index.json            one entry per (method, seed), written atomically after each change
    DIR/runs/<method>-seed<s> an ordinary run directory (resumable, reportable); a later comparison
                              with a changed config gets ``<method>-seed<s>-<config hash>`` beside it
    DIR/comparison.csv|.md    mean +- std per method, then one row per run
    DIR/pareto.png            accuracy against the constraint metric

Supernets come from the supernet store (:mod:`osnas.store`): runs whose configs agree on
everything the supernet depends on train it once, in this comparison or any earlier run.
Runs are independent jobs, executed in this process, in parallel processes or on a cluster
(:mod:`osnas.launch`); a job whose supernet another job is training waits for it. A finished
run (results.json) is reused and an unfinished one resumed, so an interrupted comparison
continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from rich.table import Table

from osnas import artifacts, distributed
from osnas.agent import MainAgent
from osnas.api import Launch
from osnas.compare_report import (aggregate, plot_pareto, rich_table, run_rows, selection_metric, supernet_source,
                                  write_csv, write_markdown)
from osnas.config import Config, load_config, read_yaml, validate_config
from osnas.errors import OsnasError
from osnas.launch import InlineLauncher, LaunchOptions, join_job_tasks, make_launcher
from osnas.plugins import load_builtins, load_plugins
from osnas.run_dir import RunDir, atomic_write_json, read_json
from osnas.store import CHECKPOINT, SupernetStore, supernet_key

POLL_SECONDS = 0.2
PLANS = {"own": "its own supernet", "store": "supernet from the store", "train": "training its supernet"}


@dataclass
class Method:
    """One config of the comparison."""

    name: str
    config: Config


@dataclass
class RunSpec:
    """One (method, seed) run."""

    method: str
    seed: int
    config: Config

    @property
    def name(self) -> str:
        return f"{self.method}-seed{self.seed}"


@dataclass
class Job:
    """What a worker process needs to run one run: plain data only (it is pickled)."""

    config: dict[str, Any]
    source: str
    run_path: str
    quiet: bool
    threads: int | None = None
    plugins: list[str] = field(default_factory=list)
    tasks: int = 1  # processes of the run: more than one makes it a distributed run (a submitit job's tasks)


def load_methods(paths: list[Path], overrides: list[str]) -> list[Method]:
    """The configs named by file stem (by ``output.name`` where stems clash)."""
    if not paths:
        raise OsnasError("osnas compare needs at least one config file")
    configs = [load_config(p, overrides) for p in paths]
    names = [Path(p).stem for p in paths]
    if len(set(names)) < len(names):
        names = [c.output.name for c in configs]
    if len(set(names)) < len(names):
        raise OsnasError("the configs need distinct file names or distinct output.name values to tell the "
                         f"methods apart (got {', '.join(map(str, paths))})")
    return [Method(n, c) for n, c in zip(names, configs)]


def check_batches(methods: list[Method], tasks: int) -> None:
    """The processes of a job split each global batch: refuse a batch they cannot share before anything is written."""
    for method in methods:
        batch = getattr(method.config.dataflow.options, "batch_size", None)
        if isinstance(batch, int) and batch % tasks:
            raise OsnasError(f"{method.config.source}: dataflow.batch_size ({batch}) is the global batch of a job's "
                             f"processes and must be a multiple of --tasks-per-job ({tasks})")


def plan(methods: list[Method], seeds: int, out_dir: Path) -> list[RunSpec]:
    """Every method for every seed, seed-major (so a supernet is trained before its sharers run).

    The supernet store stays where each config puts it (default: its own ``output.dir``), so
    comparisons and single runs of the same configs share supernets.
    """
    specs = []
    for i in range(seeds):
        for method in methods:
            data = method.config.dump()
            data["seed"] = method.config.seed + i
            if data["store"]["dir"] is None:
                data["store"]["dir"] = str((Path(method.config.output.dir) / "supernets").resolve())
            data["output"] = {"dir": str(out_dir / "runs"), "name": f"{method.name}-seed{data['seed']}"}
            if data["lookup_table"]["cache_dir"] is None:
                data["lookup_table"]["cache_dir"] = str(out_dir / artifacts.LOOKUP_TABLES)
            specs.append(RunSpec(method.name, data["seed"], validate_config(data, method.config.source)))
    return specs


def config_hash(config: Config) -> str:
    return hashlib.sha256(json.dumps(config.dump(), sort_keys=True).encode()).hexdigest()[:8]


def run_job(job: Job) -> dict[str, Any] | None:
    """Run (or resume) one run of a comparison in this process; returns its results.

    Used in place (``--jobs 1``) and in worker processes, which start with empty registries.
    A job of several tasks runs in each of them as one distributed run, as ``osnas search`` under
    torchrun: rank 0 alone writes the run and returns its results, the other ranks return None.
    """
    if job.tasks > 1:
        join_job_tasks()
    if job.threads:
        torch.set_num_threads(job.threads)
    load_builtins()
    load_plugins([Path(p) for p in job.plugins])
    config = validate_config(job.config, job.source)
    run = distributed.rank_view(RunDir.open(job.run_path))
    run.lock()
    results = Launch(MainAgent(config, quiet=job.quiet), run).execute()  # the supernet: its own, stored or trained
    main = distributed.is_main()
    distributed.leave()  # not shutdown(): submitit stores the result after this returns
    return results if main else None


class Comparison:
    """Runs (or reuses) every planned run, in dependency order, and collects their results."""

    def __init__(self, specs: list[RunSpec], out_dir: Path, quiet: bool = True,
                 say: Callable[[str], None] = lambda message: None, options: LaunchOptions | None = None,
                 plugins: list[Path] | None = None) -> None:
        self.specs = specs
        self.out_dir = Path(out_dir)
        self.runs_dir = self.out_dir / "runs"
        self.quiet = quiet
        self.say = say
        self.options = options or LaunchOptions()
        self.plugins = [str(Path(p).resolve()) for p in plugins or []]
        self.index_path = self.out_dir / "index.json"
        self.index: dict[str, Any] = {"runs": {}}
        if self.index_path.is_file():
            index = read_json(self.index_path)
            if not isinstance(index, dict) or not isinstance(index.get("runs"), dict):
                raise OsnasError(f"{self.index_path} is not an osnas comparison index")
            self.index = index

    def save_index(self) -> None:
        atomic_write_json(self.index_path, self.index)

    def run_path(self, spec: RunSpec) -> Path:
        """``runs/<name>`` unless it holds a run of another config; then ``runs/<name>-<config hash>``."""
        plain = self.runs_dir / spec.name
        if not (plain / artifacts.CONFIG).is_file() or read_yaml(plain / artifacts.CONFIG) == spec.config.dump():
            return plain
        return self.runs_dir / f"{spec.name}-{config_hash(spec.config)}"

    def job(self, spec: RunSpec, path: Path) -> Job:
        local_pool = self.options.launcher == "local" and self.options.jobs > 1  # the processes share this machine
        threads = max(1, (os.cpu_count() or 1) // self.options.jobs) if local_pool else self.options.cpus_per_job
        return Job(spec.config.dump(), spec.config.source, str(path), self.quiet, threads, self.plugins,
                   self.options.tasks_per_job)

    def supernet_plan(self, spec: RunSpec, path: Path) -> str:
        """What the run will do for its supernet: "own" (it has one), "store" (an entry exists) or "train"."""
        if any((path / f).is_file() for f in (CHECKPOINT, artifacts.ARCHITECTURE)):
            return "own"
        store = SupernetStore.for_config(spec.config)
        return "store" if store is not None and store.lookup(spec.config) is not None else "train"

    def run_all(self) -> dict[str, dict[str, Any]]:
        """Results of every run, keyed by run name, running only what is not done yet."""
        paths = {spec.name: self.run_path(spec) for spec in self.specs}
        # the index describes this comparison: runs of other seeds or methods stay on disk, unlisted
        self.index["runs"] = {name: e for name, e in self.index["runs"].items() if name in paths}
        waiting = []
        for number, spec in enumerate(self.specs, 1):
            self.open_run(spec, paths[spec.name])
            if (paths[spec.name] / artifacts.RESULTS).is_file():
                self.say(f"[{number}/{len(self.specs)}] {spec.name}: finished earlier, reused")
                if self.index["runs"].get(spec.name, {}).get("run_dir") != self.relative(paths[spec.name]):
                    self.record(spec, paths[spec.name], "done")  # an index lost, from elsewhere or of another config
            else:
                waiting.append(spec)
        launcher = make_launcher(self.options, self.out_dir / "jobs")
        try:
            failures = self.schedule(waiting, paths, launcher)
        except BaseException:
            launcher.cancel()
            raise
        if failures:
            listed = "; ".join(f"{name}: {message}" for name, message in failures.items())
            raise OsnasError(f"{len(failures)} run(s) of the comparison failed ({listed}); the finished runs are "
                             f"kept, run the same command again to retry the others")
        return {spec.name: self.collect(spec, paths[spec.name]) for spec in self.specs}

    def schedule(self, waiting: list[RunSpec], paths: dict[str, Path], launcher: Any) -> dict[str, str]:
        """Start runs as slots free up, never two that would train the same supernet; their failures."""
        training: dict[str, str] = {}  # supernet key -> the run training it now
        running: dict[str, tuple[RunSpec, Any]] = {}
        failures: dict[str, str] = {}
        total = len(self.specs)
        while waiting or running:
            for spec in list(waiting):
                if len(running) >= launcher.slots:
                    break
                key = supernet_key(spec.config)
                if key in training:
                    continue  # its supernet is being trained by another run: it will reuse it
                path = paths[spec.name]
                supernet = self.supernet_plan(spec, path)
                if supernet == "train" and spec.config.store.enabled:
                    training[key] = spec.name
                waiting.remove(spec)
                previous = self.index["runs"].get(spec.name) or {}
                self.record(spec, path, "running", previous.get("started"))
                what = PLANS[supernet]
                verb = "resuming" if (path / artifacts.METRICS).is_file() else "running"
                self.say(f"[{self.specs.index(spec) + 1}/{total}] {spec.name}: {verb} ({what})")
                running[spec.name] = (spec, launcher.submit(run_job, self.job(spec, path)))
            done = [name for name, (_, handle) in running.items() if handle.done()]
            if not done:
                time.sleep(POLL_SECONDS)
            for name in done:
                spec, handle = running.pop(name)
                training = {k: v for k, v in training.items() if v != name}
                try:
                    handle.result()
                except Exception as exc:
                    failures[name] = str(exc) or type(exc).__name__
                    self.record(spec, paths[name], "failed", error=failures[name])
                    self.say(f"{name}: failed: {failures[name]}")
                    if isinstance(launcher, InlineLauncher):
                        raise  # one run at a time: stop at the first failure, traceback kept for --debug
                    continue
                self.finish(spec, paths[name])
        return failures

    def finish(self, spec: RunSpec, path: Path) -> None:
        """Note in results.json and in the index where the run's supernet came from."""
        results = finished_results(path)
        source = self.supernet_source(path, results)["from"]
        artifacts.write_results(RunDir(path), {**results, "supernet_from": source})
        self.record(spec, path, "done", (self.index["runs"].get(spec.name) or {}).get("started"))
        self.say(f"{spec.name}: done ({f'supernet of {source}' if source else 'trained its supernet'})")

    def supernet_source(self, path: Path, results: dict[str, Any]) -> dict[str, Any]:
        names = {str(self.run_path(spec).resolve()): spec.name for spec in self.specs}
        return supernet_source(path, results, names, self.out_dir)

    def relative(self, path: Path) -> str:
        return str(Path(path).relative_to(self.out_dir)) if Path(path).is_relative_to(self.out_dir) else str(path)

    def collect(self, spec: RunSpec, path: Path) -> dict[str, Any]:
        """A finished run's results with its method, seed and supernet origin."""
        done = finished_results(path)
        source = self.supernet_source(path, done)
        return {**done, "method": spec.method, "seed": spec.seed, "run_dir": str(path),
                "supernet_from": source["from"], "supernet_seconds": source["seconds"],
                "supernet_key": source["key"] or supernet_key(spec.config)}

    def record(self, spec: RunSpec, path: Path, status: str, started: float | None = None,
               error: str | None = None) -> dict[str, Any]:
        """Write the index entry of a run (atomically, with the whole index)."""
        source = self.supernet_source(path, finished_results(path)) if status == "done" else {"from": None}
        entry = {"method": spec.method, "seed": spec.seed, "run_dir": self.relative(path),
                 "supernet_key": supernet_key(spec.config), "supernet_from": source["from"], "status": status,
                 "started": started or time.time(), "finished": time.time() if status == "done" else None}
        if error:
            entry["error"] = error
        self.index["runs"][spec.name] = entry
        self.save_index()
        return entry

    def open_run(self, spec: RunSpec, path: Path) -> RunDir:
        """The run's directory: made with its config, or reopened if its config is unchanged."""
        if (path / artifacts.CONFIG).is_file():
            saved, wanted = read_yaml(path / artifacts.CONFIG), spec.config.dump()
            changed = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
            if changed:
                raise OsnasError(f"{path} was run with a different config (changed: {', '.join(changed)}); "
                                 "use another --output or delete that run directory")
            return RunDir.open(path)
        path.mkdir(parents=True, exist_ok=True)
        run = RunDir(path)
        artifacts.write_config(run, spec.config)
        return run


def finished_results(path: Path) -> dict[str, Any]:
    """A run's results.json, validated; a key written as null (latency_ms not measured) stays."""
    return artifacts.read_results(path).model_dump(exclude_unset=True)


def compare(config_paths: list[Path], seeds: int, overrides: list[str], out_dir: Path, quiet: bool = True,
            say: Callable[[str], None] = lambda message: None, options: LaunchOptions | None = None,
            plugins: list[Path] | None = None) -> tuple[list[dict[str, Any]], Table]:
    """Run the comparison (reusing what is done) and write comparison.csv, comparison.md and pareto.png."""
    if seeds < 1:
        raise OsnasError(f"--seeds must be at least 1 (got {seeds})")
    if distributed.launched():
        raise OsnasError("osnas compare starts its runs itself; start it without torchrun")
    options = options or LaunchOptions()
    options.check()
    out_dir = Path(out_dir)
    methods = load_methods(config_paths, overrides)
    check_batches(methods, options.tasks_per_job)
    metric = selection_metric(methods)
    comparison = Comparison(plan(methods, seeds, out_dir.resolve()), out_dir.resolve(), quiet, say, options, plugins)
    results = comparison.run_all()
    rows = aggregate(methods, results, metric)
    write_csv(rows, out_dir / "comparison.csv")
    write_markdown(rows, run_rows(results, metric), metric, out_dir / "comparison.md")
    plot_pareto(methods, results, metric, out_dir / "pareto.png")
    return rows, rich_table(rows, metric, f"comparison over {seeds} seed(s): {out_dir}")
