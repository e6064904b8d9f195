"""The criterion contract: an ``nn.Module`` ``forward(outputs, targets) -> scalar loss``.

A criterion may own parameters (the class weights of a margin-softmax head); the
training agent optimises them with the model and they are never part of the
exported network.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn as nn

from osnas.config import ComponentOptions


class CriterionOptions(ComponentOptions):
    """Options every criterion accepts."""


class Criterion(nn.Module):
    """Base class: built with its options, the number of classes and the network's output width."""

    name: ClassVar[str]  # the registered name, set by @register
    Options: ClassVar[type[ComponentOptions]] = CriterionOptions
    # what the network must output: class logits (output_dim == num_classes) or an embedding
    expects: ClassVar[Literal["logits", "embeddings"]] = "logits"

    def __init__(self, options: ComponentOptions, num_classes: int, output_dim: int) -> None:
        super().__init__()
        self.options = options
        self.num_classes = num_classes
        self.output_dim = output_dim


def full_precision(x: torch.Tensor) -> torch.autocast:
    """Turn autocast off: cosines scaled by s=64 or squared distances lose too much in fp16/bf16."""
    return torch.autocast(x.device.type, enabled=False)
