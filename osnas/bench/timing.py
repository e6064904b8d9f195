"""Timing helpers: interleaved repeats and medians, so shared-machine noise hits both sides alike."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

from osnas.profiling import synchronize


def time_call(fn: Callable[[], object], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def interleaved(fns: dict[str, Callable[[], object]], device: torch.device, repeats: int, warmup: int = 2
                ) -> dict[str, float]:
    """Median seconds per call of each function, calls alternating between them."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            samples[name].append(time_call(fn, device))
    return {name: statistics.median(values) for name, values in samples.items()}
