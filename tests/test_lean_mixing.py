"""The memory-lean mixed step (recompute candidates in backward) computes the same step as the stored one."""

from __future__ import annotations

import copy

import torch

from osnas.cli.profile import load_space
from osnas.search_spaces.supernet import Supernet


def mixed_step(supernet: Supernet, alpha: torch.Tensor, x: torch.Tensor, recompute: bool) -> tuple[dict, torch.Tensor]:
    mask = torch.as_tensor(supernet.definition.choice_mask)
    weights = torch.softmax(alpha.masked_fill(~mask, -1e9), dim=1)
    supernet(x, weights, recompute=recompute).square().mean().backward()
    grads = {name: p.grad.clone() for name, p in supernet.named_parameters() if p.grad is not None}
    return grads, alpha.grad.clone()


def test_recompute_gives_the_stored_step_and_updates_bn_once():
    _, definition = load_space("spos", ["width_mult=0.25"], 16, 3, 10)
    torch.manual_seed(0)
    stored = Supernet(definition).train()
    lean = copy.deepcopy(stored)
    x = torch.randn(4, 3, 16, 16)
    alpha_a = torch.randn(definition.choice_mask.shape, requires_grad=True)
    alpha_b = alpha_a.detach().clone().requires_grad_(True)
    grads_a, arch_a = mixed_step(stored, alpha_a, x, recompute=False)
    grads_b, arch_b = mixed_step(lean, alpha_b, x, recompute=True)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 0
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, rtol=1e-5, atol=1e-6, msg=name)
    torch.testing.assert_close(arch_b, arch_a, rtol=1e-5, atol=1e-6)
    # running stats and batch counters moved once, as in the stored step (not again during recomputation)
    buffers_b = dict(lean.named_buffers())
    for name, value in stored.named_buffers():
        assert torch.equal(buffers_b[name], value), name
