"""MACs (thop), exact parameter counts and measured latency of a module."""

from __future__ import annotations

import copy
import statistics
import time
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
from thop import profile as thop_profile

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


def measure_latency(
    module: nn.Module,
    input_shape: tuple[int, ...],
    device: torch.device | str = "cpu",
    runs: int = 10,
    warmup: int = 3,
    dtype: torch.dtype = torch.float32,
) -> float:
    """Median forward time in ms over ``runs`` timed calls after ``warmup`` calls, synchronising the device."""
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
    return float(statistics.median(times))


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
        latency = measure_latency(child.to(torch_device), shape, torch_device, runs=runs)
    return {"macs": count_macs(child, shape), "params": count_params(child), "latency_ms": latency}
