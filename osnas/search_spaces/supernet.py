"""The generic supernet: every candidate of every searchable layer of a definition."""

from __future__ import annotations

from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import partial
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from osnas.search_spaces.base import SpaceDefinition


@contextmanager
def buffers_restored(module: nn.Module) -> Iterator[None]:
    """BatchNorm buffers of ``module`` as they were on entry, whatever ran inside."""
    saved = [(b, b.clone()) for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
             for b in m.buffers()]
    try:
        yield
    finally:
        for buffer, value in saved:
            buffer.copy_(value)


def bn_untouched_on_recompute(module: nn.Module) -> tuple[AbstractContextManager, AbstractContextManager]:
    """Checkpoint contexts: the first forward updates BN running stats once; the recomputation must not."""
    return nullcontext(), buffers_restored(module)


class Supernet(nn.Module):
    """``forward(x, arch)``: ``arch`` is an index vector (one path) or an (L, K) float tensor of mixing weights.

    ``active`` (an (L, K) bool array) restricts a mixed forward to some candidates,
    e.g. the two sampled paths of ProxylessNAS. No hidden state decides the path.
    """

    def __init__(self, definition: SpaceDefinition) -> None:
        super().__init__()
        self.definition = definition
        self.items = nn.ModuleList(item.supernet_module() for item in definition.body)
        self._slices = definition.item_slices

    def forward(self, x: torch.Tensor, arch: Any, active: np.ndarray | None = None,
                recompute: bool = False) -> torch.Tensor:
        """``recompute`` (mixed forwards): keep only each searchable item's input for the backward pass
        and run its candidates again there, instead of storing every candidate's activations."""
        mixed = isinstance(arch, torch.Tensor) and arch.is_floating_point()
        if not mixed:
            path = [int(i) for i in np.asarray(arch).reshape(-1)]
            for index in range(len(self.items)):
                x = self.item_forward(index, x, path)
            return x
        lean = recompute and torch.is_grad_enabled()
        for module, (start, stop) in zip(self.items, self._slices):
            if start == stop:
                x = module(x)
                continue
            mask = None if active is None else active[start:stop]
            if lean:
                x = checkpoint(module, x, arch[start:stop], mask, use_reentrant=False,
                               context_fn=partial(bn_untouched_on_recompute, module))
            else:
                x = module(x, arch[start:stop], mask)
        return x

    def path_modules(self, arch: Any) -> list[nn.Module]:
        """The modules a single-path forward of ``arch`` uses (for BN recalibration)."""
        arch = [int(i) for i in np.asarray(arch).reshape(-1)]
        return [self.item_path_module(i, arch) for i in range(len(self.items))]

    def item_path_module(self, index: int, arch: list[int]) -> nn.Module:
        """The module item ``index`` runs in a single-path forward of ``arch`` (the whole item if multi-entry)."""
        module, (start, stop) = self.items[index], self._slices[index]
        if start != stop and hasattr(module, "candidates") and stop - start == 1:
            return module.candidates[arch[start]]
        return module

    def item_forward(self, index: int, x: torch.Tensor, arch: list[int]) -> torch.Tensor:
        """Item ``index`` of a single-path forward of ``arch``: ``forward`` is these applied in order."""
        module, (start, stop) = self.items[index], self._slices[index]
        return module(x) if start == stop else module(x, arch[start:stop])
