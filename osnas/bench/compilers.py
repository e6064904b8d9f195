"""Benchmark section ``compilers``: torch.compile and channels_last for a training step.

Measured, taking turns, on the final child (one static network) and on the single-path
supernet with every candidate block compiled once in place (``nn.Module.compile``: the
state-dict keys stay, and a new path reuses the compiled blocks instead of compiling itself).
Compile time is reported apart from the step time. The channels_last figures decide the
``channels_last: auto`` default of the training phases (osnas/training.py ``use_channels_last``).
"""

from __future__ import annotations

import copy
import time
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn

from osnas.bench.suite import Figure, _sgd
from osnas.bench.timing import interleaved
from osnas.registry import REGISTRIES
from osnas.search_spaces.child import build_child
from osnas.search_spaces.supernet import Supernet


def step_fn(model: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
            y: torch.Tensor) -> Callable[[], None]:
    opt, loss_fn = _sgd(model.parameters()), nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(forward(x), y).backward()
        opt.step()

    return step


def compile_blocks(supernet: Supernet) -> None:
    """Compile every candidate block (and fixed item) once, in place."""
    for item in supernet.items:
        for block in getattr(item, "candidates", [item]):
            block.compile()


def warm(step: Callable[[], None]) -> float:
    """Seconds of the first two steps (compilation happens here)."""
    start = time.perf_counter()
    step()
    step()
    return time.perf_counter() - start


def compiler_steps(device: torch.device, input_size: int = 32, batch: int = 32, repeats: int = 10) -> dict[str, Any]:
    cls = REGISTRIES["search_space"].get("proxylessnas")
    definition = cls(cls.Options(width_mult=0.5, max_blocks_per_stage=2)).define(input_size, 3, 10)
    torch.manual_seed(0)
    arch = definition.sample(np.random.default_rng(0), 1)[0]
    x = torch.randn(batch, 3, input_size, input_size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    child = build_child(definition, arch).to(device).train()
    last = copy.deepcopy(child).to(memory_format=torch.channels_last)
    compiled_child = copy.deepcopy(child)
    x_last = x.contiguous(memory_format=torch.channels_last)
    supernet = Supernet(definition).to(device).train()
    last_super = copy.deepcopy(supernet).to(memory_format=torch.channels_last)
    compiled_super = copy.deepcopy(supernet)
    compile_blocks(compiled_super)
    paths = definition.sample(np.random.default_rng(1), 4)
    turn = {"eager": 0, "channels_last": 0, "compiled": 0}

    def path_forward(net: Supernet, key: str) -> Callable[[torch.Tensor], torch.Tensor]:
        def forward(inp: torch.Tensor) -> torch.Tensor:  # a new path each step, as in supernet training
            turn[key] += 1
            return net(inp, paths[turn[key] % len(paths)])
        return forward

    steps = {
        "child eager": step_fn(child, child, x, y),
        "child channels_last": step_fn(last, last, x_last, y),
        "child compiled": step_fn(compiled_child, torch.compile(compiled_child), x, y),
        "supernet eager": step_fn(supernet, path_forward(supernet, "eager"), x, y),
        "supernet channels_last": step_fn(last_super, path_forward(last_super, "channels_last"), x_last, y),
        "supernet blocks compiled": step_fn(compiled_super, path_forward(compiled_super, "compiled"), x, y),
    }
    warmup = {name: warm(step) for name, step in steps.items()}
    # every path once more, so the compiled blocks have seen each shape they will see
    for _ in range(len(paths)):
        steps["supernet blocks compiled"]()
    return {"step_s": interleaved(steps, device, repeats), "warmup_s": warmup}


def compiler_figures(device: torch.device, quick: bool = False) -> list[Figure]:
    m = compiler_steps(device, repeats=3 if quick else 10)
    t, w = m["step_s"], m["warmup_s"]
    figures = []
    for base, names in (("child eager", ("child channels_last", "child compiled")),
                        ("supernet eager", ("supernet channels_last", "supernet blocks compiled"))):
        figures.append(Figure("compilers", f"{base} step (proxylessnas w0.5, 32x32, batch 32)",
                              f"{t[base] * 1e3:.1f} ms", 1.0))
        for name in names:
            figures.append(Figure("compilers", f"{name} vs eager",
                                  f"{t[name] * 1e3:.1f} ms/step (first two steps {w[name]:.1f} s)",
                                  t[name] / t[base]))
    return figures
