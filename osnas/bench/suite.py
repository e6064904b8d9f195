"""The benchmark suite of ``python -m benchmarks`` / ``osnas bench``.

1. framework overhead: supernet step on one path vs the same static child
2. cost queries: pricing 100,000 architectures with the lookup table
3. candidate evaluation: architectures/s during search, and the cache speed-up
4. input pipeline: batched on-device augmentation vs a per-sample DataLoader
5. end to end: quickstart wall time per phase
6. training strategies: step time and peak memory against a single path
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn

from osnas.bench import SECTIONS  # noqa: F401  (re-exported for the drivers)
from osnas.bench.timing import interleaved, time_call
from osnas.config import validate_config
from osnas.dataflows.cifar import CIFAR10
from osnas.registry import REGISTRIES
from osnas.search_spaces.child import build_child
from osnas.search_spaces.lookup_table import LookupTable
from osnas.search_spaces.supernet import Supernet


@dataclass
class Figure:
    """One measured figure, the ratio it is judged by, and the target."""

    section: str
    name: str
    value: str
    ratio: float | None = None
    target: str = ""
    passed: bool | None = None


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def add(self, figure: Figure, echo: Callable[[Figure], None] | None = None) -> None:
        self.figures.append(figure)
        if echo:
            echo(figure)


def machine_info(device: torch.device) -> dict[str, Any]:
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
    }
    return info


def _sgd(params: Any) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=4e-5)


# ----------------------------------------------------------------------------- 1. overhead
def framework_overhead(space: str, device: torch.device, input_size: int, batch: int, repeats: int,
                       options: dict[str, Any] | None = None) -> tuple[float, float]:
    """(supernet step seconds, child step seconds) on the same architecture, batch and optimizer."""
    cls = REGISTRIES["search_space"].get(space)
    definition = cls(cls.Options(**(options or {}))).define(input_size, 3, 10)
    torch.manual_seed(0)
    arch = definition.sample(np.random.default_rng(0), 1)[0]
    supernet = Supernet(definition).to(device).train()
    child = build_child(definition, arch).to(device).train()
    x = torch.randn(batch, 3, input_size, input_size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    loss_fn = nn.CrossEntropyLoss()
    opt_super, opt_child = _sgd(supernet.parameters()), _sgd(child.parameters())

    def super_step() -> None:
        opt_super.zero_grad(set_to_none=True)
        loss_fn(supernet(x, arch), y).backward()
        opt_super.step()

    def child_step() -> None:
        opt_child.zero_grad(set_to_none=True)
        loss_fn(child(x), y).backward()
        opt_child.step()

    times = interleaved({"supernet": super_step, "child": child_step}, device, repeats)
    return times["supernet"], times["child"]


# ----------------------------------------------------------------------------- 2. cost queries
def cost_queries(n: int = 100_000) -> tuple[float, float]:
    """(seconds to price n architectures vectorized, estimated seconds of a per-architecture loop)."""
    cls = REGISTRIES["search_space"].get("proxylessnas")
    definition = cls(cls.Options(width_mult=0.5)).define(32, 3, 10)
    lut = LookupTable.build(definition, latency=False)
    archs = definition.sample(np.random.default_rng(0), n)
    lut.cost(archs[:10], "macs")
    start = time.perf_counter()
    lut.cost(archs, "macs")
    vectorized = time.perf_counter() - start
    table = lut.unit_table("macs")
    subset = archs[:2000]
    start = time.perf_counter()
    for arch in subset:
        sum(table[layer, int(k)] for layer, k in enumerate(arch))
    loop = (time.perf_counter() - start) / len(subset) * n
    return vectorized, loop


# ----------------------------------------------------------------------------- 3. evaluation
def timed_search(make_evaluator: Callable[[], Any], cfg: Any, comp: Any, device: torch.device) -> dict[str, Any]:
    """The config's search strategy scored by a fresh ``make_evaluator()``, as the search phase runs it;
    seconds, scores, cache."""
    from osnas.search_strategies.base import SearchContext

    evaluator = make_evaluator()
    strategy = REGISTRIES["search_strategy"].get(cfg.search_strategy.name)(cfg.search_strategy.options)
    context = SearchContext(comp.definition, comp.lut, comp.constraint, evaluator, np.random.default_rng([cfg.seed, 1]))
    seconds = time_call(lambda: context.extras.update(result=strategy.search(context)), device)
    stats = evaluator.cache_stats()
    evaluator.release_activations()  # as the search phase does: held, they would slow the runs timed after
    return {"seconds": seconds, "evaluated": evaluator.num_evaluated, "scores": dict(evaluator.cache),
            "best": [int(i) for i in context.extras["result"].best], "cache": stats, "evaluator": evaluator}


def compare_searches(supernet: Supernet, cfg: Any, comp: Any, device: torch.device) -> dict[str, dict[str, Any]]:
    """The search four ways, taking turns twice, the faster of each:

    - ``issue17``: the evaluator when issue 17 was filed (:mod:`osnas.bench.reference_evaluator`), the
      baseline of its targets;
    - ``plain``: today's evaluator in the default layout with the prefix cache and merged validation
      forwards off (inference mode, folded BN and path-only mode switches stay: they cannot be turned off);
    - ``cached``: the same with the prefix cache (scores and result checked identical to ``plain``);
    - ``default``: what the search phase runs now (the supernet phase's layout, prefix cache, merging).
    """
    import copy

    from osnas.bench.reference_evaluator import EvaluatorAtIssue17
    from osnas.search_strategies.evaluator import Evaluator
    from osnas.training import in_layout

    ev, mb = cfg.evaluation, cfg.evaluation.prefix_cache_mb
    default_net = in_layout(copy.deepcopy(supernet), cfg.supernet.channels_last, cfg.supernet.amp, device)

    def factory(net: Supernet, cls: type = Evaluator, **options: Any) -> Callable[[], Any]:
        def make() -> Any:
            train, val = comp.dataflow.search_split()
            return cls(copy.deepcopy(net), comp.training_agent, train, val, ev.bn_batches, ev.val_batches, **options)
        return make

    variants = {"issue17": factory(supernet, EvaluatorAtIssue17),
                "plain": factory(supernet, prefix_cache_mb=0.0, merge_positions=0),
                "cached": factory(supernet, prefix_cache_mb=mb, merge_positions=0),
                "default": factory(default_net, prefix_cache_mb=mb)}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for order in (list(variants), list(variants)[::-1]):
        for name in order:
            runs[name].append(timed_search(variants[name], cfg, comp, device))
    best = {name: min(r, key=lambda run: run["seconds"]) for name, r in runs.items()}
    if best["plain"]["scores"] != best["cached"]["scores"] or best["plain"]["best"] != best["cached"]["best"]:
        raise RuntimeError("the prefix-cached search differs from the uncached one")
    return best


def candidate_evaluation(device: torch.device, quick: bool = False) -> dict[str, Any]:
    """The quickstart's evolution search on its supernet (untrained: same work), without and with the prefix cache."""
    from osnas.components import build_components
    from osnas.config import load_config

    root = Path(__file__).resolve().parents[2]
    small = ["search_strategy.population=6", "search_strategy.generations=2", "search_strategy.top_k=3"] if quick else []
    cfg = load_config(root / "configs" / "quickstart.yaml", ["lookup_table.latency=false", "device=" + device.type, *small])
    comp = build_components(cfg, device, None)
    torch.manual_seed(0)
    supernet = Supernet(comp.definition).to(device)
    runs = compare_searches(supernet, cfg, comp, device)
    cached = runs["cached"]
    archs = np.array([list(k) for k in cached["scores"]], dtype=np.int64)
    again = time_call(lambda: cached["evaluator"].evaluate(archs), device)
    per_s = {name: run["evaluated"] / run["seconds"] for name, run in runs.items()}
    return {"per_s": per_s, "evaluated": cached["evaluated"], "cache": cached["cache"],
            "hit_speedup": cached["seconds"] / max(again, 1e-9),
            "label": f"{cfg.search_strategy.name} {cfg.search_strategy.options.population}x"
                     f"{cfg.search_strategy.options.generations}"}


# ----------------------------------------------------------------------------- 4. input pipeline
class _PerSamplePIL(torch.utils.data.Dataset):
    """The usual torchvision-style recipe, one image at a time: PIL pad + random crop + flip, to tensor, normalise."""

    def __init__(self, images_hwc: np.ndarray, labels: torch.Tensor, padding: int) -> None:
        self.images, self.labels, self.padding = images_hwc, labels, padding
        self.mean = torch.tensor(CIFAR10.mean).view(3, 1, 1)
        self.std = torch.tensor(CIFAR10.std).view(3, 1, 1)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image, ImageOps

        img = ImageOps.expand(Image.fromarray(self.images[i]), border=self.padding, fill=0)
        h, w = self.images.shape[1:3]
        dy, dx = np.random.randint(0, 2 * self.padding + 1, 2)
        img = img.crop((dx, dy, dx + w, dy + h))
        if np.random.rand() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).float().div_(255.0)
        return (x - self.mean) / self.std, self.labels[i]


class _PerSampleTensor(_PerSamplePIL):
    """The same recipe with tensor ops per image (no PIL), on CHW uint8 tensors."""

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = torch.from_numpy(self.images[i]).permute(2, 0, 1)
        p = self.padding
        padded = torch.nn.functional.pad(img, (p, p, p, p))
        dy, dx = np.random.randint(0, 2 * p + 1, 2)
        img = padded[:, dy: dy + img.shape[1], dx: dx + img.shape[2]]
        if np.random.rand() < 0.5:
            img = img.flip(-1)
        return (img.float().div_(255.0) - self.mean) / self.std, self.labels[i]


def input_pipeline(device: torch.device, n: int = 10_000, batch: int = 64, repeats: int = 5) -> dict[str, float]:
    """Samples/s of the batched in-memory loader and of two per-sample DataLoader pipelines, same data.

    Each figure is the median of ``repeats`` full passes, the pipelines taking turns.

    The data is CIFAR-shaped uint8 (as the archives store it); every pipeline pads by 4, crops,
    flips, converts to float and normalises, and delivers batches on ``device``.
    """
    from osnas.dataflows.memory import TensorLoader

    rng = np.random.default_rng(0)
    hwc = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = torch.from_numpy(rng.integers(0, 10, n))
    batched = TensorLoader(torch.from_numpy(hwc).permute(0, 3, 1, 2).contiguous(), labels, batch, shuffle=True,
                           drop_last=True, crop_padding=4, hflip=True, device=device,
                           mean=CIFAR10.mean, std=CIFAR10.std)

    def per_sample(dataset: torch.utils.data.Dataset) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True, num_workers=0,
                                           pin_memory=device.type == "cuda")

    def consume(loader: Any) -> None:
        for x, _ in loader:
            x.to(device, non_blocking=True)

    pil, tensor = per_sample(_PerSamplePIL(hwc, labels, 4)), per_sample(_PerSampleTensor(hwc, labels, 4))
    seconds = interleaved({"batched": lambda: consume(batched), "pil": lambda: consume(pil),
                           "tensor": lambda: consume(tensor)}, device, repeats, warmup=1)
    done = (n // batch) * batch
    return {name: done / s for name, s in seconds.items()}


# ----------------------------------------------------------------------------- 5. end to end
def end_to_end(config: Path, device: torch.device, overrides: tuple[str, ...] = (),
               inspect: Callable[[Any, Path], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Seconds per phase of a full run of ``config`` (in a temporary output directory).

    ``inspect(config, run_path)`` may measure more on the finished run before it is deleted."""
    from osnas.api import start_run
    from osnas.config import load_config

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(config, [f"output.dir={tmp}", "logging.progress=false", "device=" + device.type, *overrides])
        launch = start_run(cfg, quiet=True)
        results = launch.execute()
        extra = inspect(cfg, launch.run.path) if inspect else {}
    return {**results["seconds"], "test_top1": results["test_top1"], "macs_m": results["macs"] / 1e6, **extra}


# ----------------------------------------------------------------------------- 6. strategies
# label -> (training_strategy options, channels_last): "auto" is the supernet phase's own layout
# (channels_last on CPU); the NCHW cases are the mixed steps as they ran before issue 17 (their baseline)
STRATEGY_CASES: dict[str, tuple[dict[str, Any], bool | str]] = {
    "single path (uniform)": ({"name": "uniform"}, "auto"),
    "fairness (K paths)": ({"name": "fairness"}, "auto"),
    "softmax-mixed": ({"name": "differentiable"}, "auto"),
    "softmax-mixed, recompute (memory-lean)": ({"name": "differentiable", "recompute": True}, "auto"),
    "softmax-mixed, NCHW (before issue 17)": ({"name": "differentiable"}, False),
    "gumbel": ({"name": "differentiable", "gumbel": True}, "auto"),
    "gumbel, recompute (memory-lean)": ({"name": "differentiable", "gumbel": True, "recompute": True}, "auto"),
    "gumbel, NCHW (before issue 17)": ({"name": "differentiable", "gumbel": True}, False),
    "proxyless (two paths)": ({"name": "proxyless"}, "auto"),
}
# memory-lean case -> (the stored step in the same layout, the stored step before issue 17)
LEAN_CASES = {"softmax-mixed, recompute (memory-lean)": ("softmax-mixed", "softmax-mixed, NCHW (before issue 17)"),
              "gumbel, recompute (memory-lean)": ("gumbel", "gumbel, NCHW (before issue 17)")}


def strategy_step(case: dict[str, Any], device_name: str, input_size: int, batch: int, steps: int,
                  channels_last: bool | str = "auto") -> dict[str, float]:
    """Median step time and peak memory of one training strategy; run in a fresh process per case."""
    code = f"""
import json, statistics, time, torch, numpy as np
from osnas.plugins import load_builtins; load_builtins()
from osnas.bench.suite import _strategy_worker
print(json.dumps(_strategy_worker({case!r}, {device_name!r}, {input_size}, {batch}, {steps}, {channels_last!r})))
"""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "worker failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB.

    Linux keeps ``ru_maxrss`` across fork and exec, so a worker started by a big parent would
    report at least the parent's resident size; ``VmHWM`` belongs to the worker's own address space.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / 2**20 if sys.platform == "darwin" else maxrss / 1024  # bytes on macOS, KiB elsewhere


def _strategy_worker(case: dict[str, Any], device_name: str, input_size: int, batch: int, steps: int,
                     channels_last: bool | str) -> dict[str, float]:
    from osnas.components import build_components
    from osnas.training import Updater, build_optimizer, build_scheduler, in_layout
    from osnas.training_strategies.base import TrainingContext

    device = torch.device(device_name)
    cfg = validate_config({
        "device": device.type,
        "dataflow": {"name": "digits", "input_size": input_size, "batch_size": batch},
        "search_space": {"name": "proxylessnas", "width_mult": 0.5},
        "training_strategy": case,
        "constraint": {"metric": "macs", "max": 1e6},
        "lookup_table": {"latency": False},
    })
    comp = build_components(cfg, device, None)
    train, val = comp.dataflow.search_split()
    supernet = in_layout(Supernet(comp.definition).to(device), channels_last, cfg.supernet.amp, device)
    ctx = TrainingContext(comp.definition, comp.lut, comp.constraint, val, device, 0, 1)
    strategy = REGISTRIES["training_strategy"].get(cfg.training_strategy.name)(cfg.training_strategy.options, ctx)
    optimizer = build_optimizer(cfg.supernet.optimizer, supernet.parameters())
    updater = Updater(optimizer, build_scheduler(cfg.supernet, optimizer, len(train)), device)
    batches = list(train)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    base_mb = peak_rss_mb()
    times = []
    for i in range(steps + 1):
        seconds = time_call(lambda: strategy.step(supernet, batches[i % len(batches)], comp.training_agent, updater), device)
        if i:
            times.append(seconds)
    peak = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
            else peak_rss_mb())
    return {"step_s": float(np.median(times)), "peak_mb": float(peak), "base_mb": base_mb}


def strategy_figures(report: Report, echo: Callable[[Figure], None] | None, device: torch.device, batch: int,
                     quick: bool) -> dict[str, float] | None:
    """One step figure per case (ratio to the single path), then the memory-lean targets; the single path's figures."""
    steps: dict[str, dict[str, float]] = {}
    for label, (case, channels_last) in STRATEGY_CASES.items():
        if case["name"] not in REGISTRIES["training_strategy"]:
            continue
        try:
            m = strategy_step(case, str(device), 32, batch, 3 if quick else 8, channels_last)
        except RuntimeError as exc:
            report.add(Figure("strategies", label, f"failed: {exc}"), echo)
            continue
        steps[label] = m
        base = next(iter(steps.values()))
        report.add(Figure("strategies", label, f"{m['step_s'] * 1e3:.0f} ms/step, peak {m['peak_mb']:.0f} MB "
                          f"({m['base_mb']:.0f} MB before the first step)", m["step_s"] / base["step_s"]), echo)
    single = steps.get("single path (uniform)")
    for lean, (stored, before) in LEAN_CASES.items():
        if single is None or not {lean, stored, before} <= steps.keys():
            continue
        m = steps[lean]
        memory = m["peak_mb"] / single["peak_mb"]
        report.add(Figure("strategies", f"{lean}: peak vs single path", f"{m['peak_mb']:.0f} vs {single['peak_mb']:.0f} MB",
                          memory, "<= 2x", memory <= 2), echo)
        vs_before = m["step_s"] / steps[before]["step_s"]
        report.add(Figure("strategies", f"{lean}: step vs {before}",
                          f"{m['step_s']:.2f} vs {steps[before]['step_s']:.2f} s (vs {stored}, stored, same layout: "
                          f"{steps[stored]['step_s']:.2f} s, {m['step_s'] / steps[stored]['step_s']:.2f}x)",
                          vs_before, "<= 1.3x", vs_before <= 1.3), echo)
    return single


# ----------------------------------------------------------------------------- driver
def run_suite(device: torch.device, quick: bool = False, sections: set[str] | None = None,
              echo: Callable[[Figure], None] | None = None, spaces: list[str] | None = None) -> Report:
    """Measure every section; ``quick`` shrinks repeats and sizes (for smoke runs); ``spaces``: overhead only for these."""
    report = Report(meta=machine_info(device))
    want = (lambda s: sections is None or s in sections)
    repeats = 5 if quick else 20
    batch = 16 if quick else 64
    if want("overhead"):
        target = 1.05 if device.type == "cuda" else 1.10
        for space in spaces or REGISTRIES["search_space"].names():
            size = 112 if space == "mobilefacenet" else 32
            try:
                t_super, t_child = framework_overhead(space, device, size, batch, repeats)
            except Exception as exc:  # a plugin space may not fit the benchmark's assumptions
                report.add(Figure("overhead", space, f"skipped: {exc}"), echo)
                continue
            ratio = t_super / t_child
            report.add(Figure("overhead", f"{space} ({size}x{size}, batch {batch})",
                              f"supernet {t_super * 1e3:.1f} ms vs child {t_child * 1e3:.1f} ms", ratio,
                              f"<= {target:.2f}", ratio <= target), echo)
    if want("cost"):
        vec, loop = cost_queries(10_000 if quick else 100_000)
        n = "10,000" if quick else "100,000"
        report.add(Figure("cost", f"price {n} architectures", f"{vec * 1e3:.2f} ms (loop {loop:.2f} s)",
                          loop / vec, "< 50 ms", vec < 0.05), echo)
    if want("evaluation"):
        m = candidate_evaluation(device, quick)
        rate, cache = m["per_s"], m["cache"]
        report.add(Figure("evaluation", f"architectures/s, quickstart {m['label']} search ({m['evaluated']} "
                          "evaluations, identical scores): prefix cache vs none, same layout",
                          f"{rate['cached']:.2f} vs {rate['plain']:.2f} /s", rate["cached"] / rate["plain"]), echo)
        gain = rate["default"] / rate["issue17"]
        report.add(Figure("evaluation", "architectures/s, the search phase's evaluator now (supernet phase's layout: "
                          "channels_last on CPU; prefix cache; merged forwards) vs when issue 17 was filed",
                          f"{rate['default']:.2f} vs {rate['issue17']:.2f} /s", gain, ">= 2x", gain >= 2), echo)
        report.add(Figure("evaluation", "architectures/s, now vs today's evaluator with prefix cache, layout and "
                          "merging off (folded BN, inference mode, path-only mode switches kept)",
                          f"{rate['default']:.2f} vs {rate['plain']:.2f} /s", rate["default"] / rate["plain"]), echo)
        report.add(Figure("evaluation", "prefix cache: layers reused / computed, memory held",
                          f"{cache['hits']} / {cache['misses']} ({cache['hit_rate']:.0%}), "
                          f"{cache['peak_bytes'] / 2**20:.0f} MB peak of {cache['max_bytes'] / 2**20:.0f} MB"), echo)
        report.add(Figure("evaluation", "score cache speed-up (the same architectures again)",
                          f"{m['hit_speedup']:.0f}x", m["hit_speedup"]), echo)
    if want("input"):
        rates = input_pipeline(device, 2_000 if quick else 10_000, batch, 2 if quick else 5)
        fast = rates["batched"]
        report.add(Figure("input", "batched augmentation vs per-sample PIL DataLoader",
                          f"{fast:,.0f} vs {rates['pil']:,.0f} samples/s", fast / rates["pil"], ">= 5x",
                          fast / rates["pil"] >= 5), echo)
        report.add(Figure("input", "batched augmentation vs per-sample tensor-op DataLoader",
                          f"{fast:,.0f} vs {rates['tensor']:,.0f} samples/s", fast / rates["tensor"]), echo)
    base = None
    if want("strategies"):
        base = strategy_figures(report, echo, device, batch, quick)
    if want("input") and base is not None:
        share = batch / fast / base["step_s"]
        report.add(Figure("input", f"batched input time per batch of {batch} / single-path supernet step",
                          f"{batch / fast * 1e3:.2f} ms vs {base['step_s'] * 1e3:.0f} ms ({share:.3%})", share, "< 0.05",
                          share < 0.05), echo)
    if want("compilers"):
        from osnas.bench.compilers import compiler_figures

        for figure in compiler_figures(device, quick):
            report.add(figure, echo)
    if want("job") and not quick:
        from osnas.bench.job import job_figures

        for figure in job_figures(device):
            report.add(figure, echo)
    if want("e2e") and not quick:
        root = Path(__file__).resolve().parents[2]
        phases = end_to_end(root / "configs" / "quickstart.yaml", device)
        text = ", ".join(f"{k} {v:.1f}" + ("" if k in ("test_top1", "macs_m") else " s") for k, v in phases.items())
        report.add(Figure("e2e", "quickstart phases", text), echo)
    if want("compare_jobs"):
        from osnas.bench import compare_jobs

        compare_jobs.add_figures(report, echo, quick)
    return report


def to_markdown(report: Report, command: str) -> str:
    meta = report.meta
    lines = [
        f"## {meta['date']} — {meta['device']}",
        "",
        f"Command: `{command}`  ",
        f"Machine: {meta['machine']}, {meta['cpus']} CPUs, torch {meta['torch']} ({meta['torch_threads']} threads), "
        f"Python {meta['python']}",
        "",
        "| section | figure | measured | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for f in report.figures:
        ratio = "" if f.ratio is None else f"{f.ratio:.2f}"
        met = "" if f.passed is None else ("yes" if f.passed else "**no**")
        lines.append(f"| {f.section} | {f.name} | {f.value} | {ratio} | {f.target} | {met} |")
    return "\n".join(lines) + "\n"
