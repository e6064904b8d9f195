"""The generic supernet: every candidate of every searchable layer of a definition."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn

from osnas.search_spaces.base import SpaceDefinition


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

    def forward(self, x: torch.Tensor, arch: Any, active: np.ndarray | None = None) -> torch.Tensor:
        mixed = isinstance(arch, torch.Tensor) and arch.is_floating_point()
        if not mixed:
            arch = [int(i) for i in np.asarray(arch).reshape(-1)]
        for module, (start, stop) in zip(self.items, self._slices):
            if start == stop:
                x = module(x)
            elif mixed:
                x = module(x, arch[start:stop], None if active is None else active[start:stop])
            else:
                x = module(x, arch[start:stop])
        return x

    def path_modules(self, arch: Any) -> list[nn.Module]:
        """The modules a single-path forward of ``arch`` uses (for BN recalibration)."""
        arch = [int(i) for i in np.asarray(arch).reshape(-1)]
        out: list[nn.Module] = []
        for module, (start, stop) in zip(self.items, self._slices):
            if start == stop:
                out.append(module)
            elif hasattr(module, "candidates") and stop - start == 1:
                out.append(module.candidates[arch[start]])
            else:
                out.append(module)
        return out
