"""Static child networks: only the chosen blocks, no branching, a plain state dict."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from osnas.search_spaces.base import SpaceDefinition


def build_child(definition: SpaceDefinition, arch: Any) -> nn.Sequential:
    """The stand-alone network of ``arch`` (validated against the definition)."""
    vec = definition.validate_arch(arch)
    modules = [item.child_module(vec[start:stop]) for item, (start, stop) in zip(definition.body, definition.item_slices)]
    return nn.Sequential(*modules)
