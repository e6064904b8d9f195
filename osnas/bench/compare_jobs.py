"""Benchmark section ``compare_jobs``: one comparison run with ``--jobs 1`` and with ``--jobs 2``.

Both runs do the same work (fresh output directory and supernet store each): one method over
``seeds`` seeds, every run training its own supernet, so all runs are independent jobs. The
ratio is jobs-1 wall time over jobs-2 wall time. Every run computes with the same number of
torch threads in both modes (``cpus // 2``, what each of the two workers gets), so the ratio
measures running two at once, not a change of thread count (on a loaded machine a process with
more OpenMP threads than free cores slows down many times over). The load average around each
measurement is reported with it, because on a shared machine the other processes take the cores too.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

SECTION = "compare_jobs"


def tiny_config(root: Path, epochs: int, input_size: int) -> Path:
    """A digits config whose runs take seconds (its runs are what the two launchers share out)."""
    path = root / "method.yaml"
    path.write_text(yaml.safe_dump({
        "device": "cpu",
        "dataflow": {"name": "digits", "input_size": input_size, "batch_size": 32, "val_fraction": 0.5, "test_fraction": 0.5},
        "search_space": {"name": "proxylessnas", "width_mult": 0.25},
        "search_strategy": {"name": "evolution", "population": 4, "generations": 2, "top_k": 2},
        "constraint": {"metric": "macs", "max": 3.0},
        "supernet": {"epochs": epochs}, "final": {"epochs": epochs},
        "evaluation": {"bn_batches": 1, "val_batches": 1},
        "lookup_table": {"latency": False, "cache_dir": str(root / "luts")},
        "logging": {"progress": False},
        "output": {"dir": str(root / "runs")},
    }))
    return path


def load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def compare_jobs(quick: bool = False) -> dict[str, Any]:
    """Wall seconds of the same comparison with 1 and 2 jobs, and the load averages around them."""
    from osnas.compare import compare
    from osnas.launch import LaunchOptions

    seeds, epochs, size = (2, 1, 8) if quick else (4, 2, 16)
    figures: dict[str, Any] = {"seeds": seeds, "epochs": epochs, "input_size": size, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = tiny_config(root, epochs, size)
        threads = torch.get_num_threads()
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))  # as each worker of --jobs 2
        try:
            for jobs in (1, 2):
                before = load()
                start = time.perf_counter()
                compare([config], seeds, [f"store.dir={root / f'store{jobs}'}"], root / f"cmp{jobs}",
                        options=LaunchOptions(jobs=jobs))
                figures[f"jobs{jobs}_s"] = time.perf_counter() - start
                figures[f"jobs{jobs}_load"] = (before, load())
        finally:
            torch.set_num_threads(threads)
    return figures


def add_figures(report: Any, echo: Any, quick: bool) -> None:
    """The section's figure in the suite's report (registered in osnas/bench/suite.py)."""
    from osnas.bench.suite import Figure

    m = compare_jobs(quick)
    ratio = m["jobs1_s"] / m["jobs2_s"]
    loads = ", ".join(f"--jobs {j}: {m[f'jobs{j}_load'][0]:.1f} -> {m[f'jobs{j}_load'][1]:.1f}" for j in (1, 2))
    report.add(Figure(SECTION, f"comparison of {m['seeds']} independent runs ({m['input_size']}x{m['input_size']} digits, "
                      f"{m['epochs']} epoch(s) per phase), --jobs 1 vs --jobs 2",
                      f"{m['jobs1_s']:.1f} s vs {m['jobs2_s']:.1f} s on {m['cpus']} CPUs (load average {loads})",
                      ratio, "> 1", ratio > 1), echo)
