"""CUDA-only checks (``pytest -m cuda``; skipped without a GPU). Run by benchmarks/gpu_check.sh."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn

from osnas.cli.profile import load_space
from osnas.search_spaces.child import build_child
from osnas.search_spaces.supernet import Supernet
from osnas.training import Updater

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
DEVICE = torch.device("cuda")


def space(name: str = "proxylessnas", size: int = 32):
    return load_space(name, ["width_mult=0.5"], size, 3, 10)[1]


def batch(n: int = 32, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return (torch.randn(n, 3, size, size, generator=gen).to(DEVICE),
            torch.randint(0, 10, (n,), generator=gen).to(DEVICE))


def train_steps(model: nn.Module, forward, amp: str = "none", steps: int = 3) -> list[float]:
    x, y = batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    updater = Updater(opt, None, DEVICE, amp)
    losses = []
    for _ in range(steps):
        updater.zero_grad()
        with updater.autocast():
            loss = nn.functional.cross_entropy(forward(x), y)
        updater.backward(loss)
        updater.step()
        losses.append(float(loss))
    return losses


def test_supernet_single_path_step_on_cuda():
    definition = space()
    torch.manual_seed(0)
    supernet = Supernet(definition).to(DEVICE).train()
    arch = definition.sample(np.random.default_rng(0), 1)[0]
    losses = train_steps(supernet, lambda x: supernet(x, arch))
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


@pytest.mark.parametrize("amp", ["none", "bf16"])
def test_child_step_on_cuda(amp):
    definition = space()
    torch.manual_seed(0)
    child = build_child(definition, definition.sample(np.random.default_rng(1), 1)[0]).to(DEVICE).train()
    losses = train_steps(child, child, amp)
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_bf16_autocast_stays_close_to_float32():
    definition = space()
    torch.manual_seed(0)
    child = build_child(definition, definition.sample(np.random.default_rng(2), 1)[0]).to(DEVICE).eval()
    x, _ = batch()
    with torch.no_grad():
        full = child(x)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            half = child(x)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), full, rtol=0.1, atol=0.1)


def test_channels_last_child_matches_the_default_layout():
    definition = space()
    torch.manual_seed(0)
    child = build_child(definition, definition.sample(np.random.default_rng(3), 1)[0]).to(DEVICE).eval()
    lean = copy.deepcopy(child).to(memory_format=torch.channels_last)
    x, _ = batch()
    with torch.no_grad():
        torch.testing.assert_close(lean(x.contiguous(memory_format=torch.channels_last)), child(x),
                                   rtol=1e-3, atol=1e-3)


def test_compiled_child_matches_eager():
    definition = space()
    torch.manual_seed(0)
    child = build_child(definition, definition.sample(np.random.default_rng(4), 1)[0]).to(DEVICE).eval()
    compiled = torch.compile(child)
    x, _ = batch()
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), child(x), rtol=1e-3, atol=1e-3)


def test_recompute_mixed_step_needs_less_memory_on_cuda():
    definition = space("proxylessnas", 32)
    torch.manual_seed(0)
    supernet = Supernet(definition).to(DEVICE).train()
    mask = torch.as_tensor(definition.choice_mask, device=DEVICE)
    x, y = batch(64)
    peaks = {}
    for recompute in (False, True):
        alpha = torch.zeros(mask.shape, device=DEVICE, requires_grad=True)
        weights = torch.softmax(alpha.masked_fill(~mask, -1e9), dim=1)
        supernet.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        nn.functional.cross_entropy(supernet(x, weights, recompute=recompute), y).backward()
        torch.cuda.synchronize()
        peaks[recompute] = torch.cuda.max_memory_allocated() - start
        assert torch.isfinite(alpha.grad).all()
    assert peaks[True] < 0.6 * peaks[False], peaks
