"""MACs (thop), exact parameter counts and measured latency of a module."""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn as nn
from thop import profile as thop_profile

NOT_MEASURED = "not measured"
LOADED = 0.5  # load average per CPU above which a timing is flagged
SPREAD = 0.25  # IQR / median above which a timing is flagged

if TYPE_CHECKING:
    from osnas.search_spaces.base import SpaceDefinition

# BatchNorm is folded into the convolution at inference and PReLU is a per-element
# activation (thop counts ReLU as 0 but PReLU per element), so neither is counted as
# MACs, matching the published figures (conv + linear multiply-accumulates; e.g.
# MobileFaceNet's 221M at 112x112).
_ZERO = {nn.BatchNorm1d: None, nn.BatchNorm2d: None, nn.PReLU: None}


def _zero_ops(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
    module.total_ops += torch.zeros(1, dtype=torch.float64)


def count_macs(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    """MACs of one forward at ``input_shape`` (batch included) counted by thop on a copy.

    thop leaves ``total_ops``/``total_params`` buffers behind, so a deep copy is profiled.
    """
    clone = copy.deepcopy(module).cpu().float().eval()
    x = torch.zeros(input_shape)
    with torch.no_grad():
        macs, _ = thop_profile(clone, inputs=(x,), custom_ops={k: _zero_ops for k in _ZERO}, verbose=False)
    return int(round(float(macs)))


def count_params(module: nn.Module) -> int:
    """Exact trainable + frozen parameter count (thop reports 0 for a bare Conv2d/Linear)."""
    return sum(p.numel() for p in module.parameters())


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class LatencyStats:
    """Forward times of one timed measurement, and whether the machine was busy meanwhile."""

    median_ms: float
    iqr_ms: float
    std_ms: float
    runs: int
    load: float  # 1-minute load average at the end of the measurement (0.0 where the OS has none)
    cpus: int

    @property
    def warning(self) -> str | None:
        """Why the median may not be the network's own speed: a loaded machine or widely spread timings."""
        reasons = []
        if self.load > LOADED * self.cpus:
            reasons.append(f"machine loaded (load average {self.load:.1f} on {self.cpus} CPUs)")
        if self.iqr_ms > SPREAD * self.median_ms:
            reasons.append(f"timings spread widely (IQR {self.iqr_ms:.2f} ms around a median of {self.median_ms:.2f} ms)")
        return "; ".join(reasons) or None

    def to_dict(self) -> dict[str, Any]:
        return {"median_ms": round(self.median_ms, 4), "iqr_ms": round(self.iqr_ms, 4), "std_ms": round(self.std_ms, 4),
                "runs": self.runs, "load": round(self.load, 2), "cpus": self.cpus, "warning": self.warning}


def measure_latency(
    module: nn.Module,
    input_shape: tuple[int, ...],
    device: torch.device | str = "cpu",
    runs: int = 10,
    warmup: int = 3,
    dtype: torch.dtype = torch.float32,
) -> LatencyStats:
    """Forward times over ``runs`` timed calls after ``warmup`` calls, synchronising the device."""
    device = torch.device(device)
    was_training = module.training
    module.eval()
    x = torch.randn(input_shape, device=device, dtype=dtype)
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            module(x)
        synchronize(device)
        for _ in range(runs):
            start = time.perf_counter()
            module(x)
            synchronize(device)
            times.append((time.perf_counter() - start) * 1000.0)
    module.train(was_training)
    q1, median, q3 = np.percentile(times, [25, 50, 75])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return LatencyStats(float(median), float(q3 - q1), float(np.std(times, ddof=1)) if runs > 1 else 0.0, runs,
                        load, os.cpu_count() or 1)


def latency_fields(module: nn.Module, input_shape: tuple[int, ...], device: torch.device, measure: bool,
                   runs: int) -> dict[str, Any]:
    """The latency entries of results.json: the median and its spread, or "not measured" when switched off."""
    if not measure:
        return {"latency_ms": None, "latency": NOT_MEASURED}
    stats = measure_latency(module, input_shape, device, runs=runs)
    return {"latency_ms": stats.median_ms, "latency": stats.to_dict()}


def describe_latency(results: dict[str, Any]) -> str:
    """The latency of a results.json in words: median ± IQR and a warning, or why there is no figure."""
    stats = results.get("latency")
    if results.get("latency_ms") is None:
        return f"{NOT_MEASURED} (lookup_table.latency: false)"
    text = f"{results['latency_ms']:.2f} ms"
    if isinstance(stats, dict):
        text += f" (IQR {stats['iqr_ms']:.2f} ms over {stats['runs']} runs)"
        if stats.get("warning"):
            text += f"; warning: {stats['warning']}"
    return text


def profile_architecture(definition: SpaceDefinition, arch: Any, device: str = "cpu", runs: int = 10
                         ) -> dict[str, Any]:
    """MACs (thop, conv + linear), exact parameter count and median batch-1 latency of the child network.

    ``runs=0`` skips the timing (``latency_ms`` is then None), for callers that only need the counts.
    """
    from osnas.runtime import resolve_device
    from osnas.search_spaces.child import build_child

    child = build_child(definition, arch)
    shape = (1, definition.in_channels, definition.input_size, definition.input_size)
    latency = None
    if runs > 0:
        torch_device = resolve_device(device)
        latency = measure_latency(child.to(torch_device), shape, torch_device, runs=runs).median_ms
    return {"macs": count_macs(child, shape), "params": count_params(child), "latency_ms": latency}
