"""Criterion rules: a scalar loss that gradients flow through, on random outputs for 5 classes."""

from __future__ import annotations

import torch
import torch.nn as nn

from osnas.interface import probes
from osnas.interface.contract import Broken, Subject, finite_scalar, rule


def criterion_loss(s: Subject, n: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    criterion = s.cls(s.options, probes.CLASSES, probes.CLASSES)
    outputs = torch.randn(n, probes.CLASSES, generator=torch.Generator().manual_seed(n)).requires_grad_(True)
    targets = torch.arange(n) % probes.CLASSES
    return criterion, outputs, criterion(outputs, targets)


@rule("criterion", "forward(outputs (N, output_dim), targets (N,)) returns a finite scalar, for N = 8 and N = 1")
def check_scalar(s: Subject) -> None:
    for n in (8, 1):
        finite_scalar(criterion_loss(s, n)[2], f"the loss of a batch of {n}")


@rule("criterion", "gradients of the loss reach the outputs (finite, not all zero) and every own parameter")
def check_gradients(s: Subject) -> None:
    criterion, outputs, loss = criterion_loss(s, 8)
    if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
        raise Broken("the loss does not depend on the outputs through autograd (no gradient can flow)")
    loss.sum().backward()
    if outputs.grad is None or not torch.isfinite(outputs.grad).all() or not outputs.grad.abs().sum() > 0:
        raise Broken("the gradient of the loss with respect to the outputs is missing, zero or not finite")
    for name, param in criterion.named_parameters():
        if param.requires_grad and (param.grad is None or not torch.isfinite(param.grad).all()):
            raise Broken(f"parameter {name!r} of the criterion gets no finite gradient")
