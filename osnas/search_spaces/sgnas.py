"""SGNAS (Huang & Chu, "Searching by Generating", CVPR 2021): the unified block and its supernet.

A unified block splits an inverted bottleneck into ``slots`` (6) depthwise
sub-blocks. Each sub-block owns an ``in``-channel slice of the expanded tensor and
is a k3, k5 or k7 depthwise conv, or zero; the expansion ratio is the number of
non-zero sub-blocks, so one layer covers kernel mixes x expansions 1..6. The
supernet keeps one output BN per expansion (the BN is chosen by the number of
zeros); a child has just the one BN of its expansion. ``MinActive`` rules keep at
least ``min_expansion`` sub-blocks per layer (the official release uses 2).

Macro-architecture of the official release: stem conv 32 s2, MBConv e1 k3 16, 19
unified layers of (out, n, stride) 32x2 s2, 40x4 s2, 80x4 s2, 96x4 s1, 192x4 s2,
320x1 s1, conv1x1 1280, classifier. Unlike the official stand-alone model, a child
keeps its 1x1 expansion conv at expansion 1, so the child is exactly the supernet
path and costs add up per sub-block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import Field

from osnas.errors import ArchitectureError
from osnas.registry import register
from osnas.search_spaces.base import Item, Measure, MinActive, SearchSpace, SpaceDefinition
from osnas.search_spaces.blocks import activation_for, conv_bn
from osnas.search_spaces.stages import (ScalableOptions, Stage, build_stages, classifier_head, layout_strides,
                                        mobilenet_stem)

SLOTS = 6
KERNELS = (3, 5, 7)
# the stages of the 19 searchable layers, ImageNet layout (official release config)
STAGES = [Stage(32, 2, 2), Stage(40, 4, 2), Stage(80, 4, 2), Stage(96, 4, 1), Stage(192, 4, 2), Stage(320, 1, 1)]


@dataclass(frozen=True)
class UnifiedBlock(Item):
    """One SGNAS layer: ``slots`` entries, each a depthwise kernel of ``kernels`` or zero (the last choice)."""

    in_ch: int
    out_ch: int
    stride: int = 1
    kernels: tuple[int, ...] = KERNELS
    slots: int = SLOTS
    act: str = "relu6"

    @property
    def zero(self) -> int:
        """Index of the zero choice in every entry."""
        return len(self.kernels)

    def entries(self) -> list[list[str]]:
        return [[f"k{k}" for k in self.kernels] + ["zero"] for _ in range(self.slots)]

    def supernet_module(self) -> nn.Module:
        return UnifiedSuperBlock(self)

    def child_module(self, sub_arch: Sequence[int]) -> nn.Module:
        kernels = [self.kernels[int(i)] for i in sub_arch if int(i) != self.zero]
        if not kernels:
            raise ArchitectureError("an SGNAS unified block needs at least one non-zero sub-block")
        return UnifiedChild(self.in_ch, self.out_ch, self.stride, kernels, self.act)

    def cost_rows(self, measure: Measure) -> tuple[np.ndarray, list[np.ndarray]]:
        """Per-sub-block costs by differencing children: c(k) = (cost(k x slots) - cost(k alone)) / (slots - 1).

        A child's cost is ``fixed + sum of its sub-blocks' c(k)`` exactly (expand,
        depthwise, BN and project weights all scale with the sub-block count), so
        the LUT sum equals thop on the child; the wide difference also steadies latency.
        """
        if self.slots < 2:
            raise ValueError("a unified block needs at least 2 slots to price its sub-blocks")
        alone = np.stack([measure(self.child_module([k] + [self.zero] * (self.slots - 1)))
                          for k in range(len(self.kernels))])
        full = np.stack([measure(self.child_module([k] * self.slots)) for k in range(len(self.kernels))])
        per_slot = (full - alone) / (self.slots - 1)
        fixed = (alone - per_slot).mean(axis=0)
        row = np.vstack([per_slot, np.zeros(3)])
        return fixed, [row.copy() for _ in range(self.slots)]


class UnifiedChild(nn.Module):
    """A unified block with fixed sub-blocks: 1x1 expand to e*in, one kxk depthwise per in-slice, BN, 1x1 project."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, kernels: Sequence[int], act: str = "relu6") -> None:
        super().__init__()
        mid = in_ch * len(kernels)
        self.slice = in_ch
        self.expand = conv_bn(in_ch, mid, 1, act=act)
        self.depthwise = nn.ModuleList(
            nn.Conv2d(in_ch, in_ch, k, stride, k // 2, groups=in_ch, bias=False) for k in kernels
        )
        self.norm = nn.Sequential(nn.BatchNorm2d(mid), activation_for(act, mid))
        self.project = conv_bn(mid, out_ch, 1, act="none")
        self.use_residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = torch.split(self.expand(x), self.slice, dim=1)
        y = torch.cat([conv(part) for conv, part in zip(self.depthwise, parts)], dim=1)
        out = self.project(self.norm(y))
        return x + out if self.use_residual else out


class UnifiedSuperBlock(nn.Module):
    """Every sub-block candidate of a :class:`UnifiedBlock` and one output BN per expansion 1..slots.

    ``forward(x, sub_arch)``: ``sub_arch`` is ``slots`` candidate indices (one
    path: only the non-zero sub-blocks run) or a (slots, K) float tensor of mixing
    weights (each slot outputs the weighted sum of its kernels; zero adds 0; the
    BN is the one of the expected expansion, the rounded sum of non-zero weights).
    ``active`` ((slots, K) bools) limits which candidates run in a mixed forward.
    """

    def __init__(self, spec: UnifiedBlock) -> None:
        super().__init__()
        c = spec.in_ch
        self.slots, self.zero, self.slice = spec.slots, spec.zero, c
        # one expand conv per slot: together the in -> slots*in 1x1 conv, but a path computes only its slices
        self.expand = nn.ModuleList(conv_bn(c, c, 1, act=spec.act) for _ in range(spec.slots))
        self.depthwise = nn.ModuleList(
            nn.ModuleList(conv_bn(c, c, k, spec.stride, groups=c, act=spec.act) for k in spec.kernels)
            for _ in range(spec.slots)
        )
        self.project = nn.Conv2d(c * spec.slots, spec.out_ch, 1, bias=False)
        self.norms = nn.ModuleList(nn.BatchNorm2d(spec.out_ch) for _ in range(spec.slots))
        self.use_residual = spec.stride == 1 and spec.in_ch == spec.out_ch

    def forward(self, x: torch.Tensor, sub_arch: Any, active: Any = None) -> torch.Tensor:
        if isinstance(sub_arch, torch.Tensor) and sub_arch.is_floating_point():
            parts, expansion = self._mixed(x, sub_arch, active)
        else:
            parts = [(j, self.depthwise[j][int(k)](self.expand[j](x)))
                     for j, k in enumerate(sub_arch) if int(k) != self.zero]
            expansion = len(parts)
        if not parts:
            raise ArchitectureError("an SGNAS unified block needs at least one non-zero sub-block")
        out = self.norms[expansion - 1](self._project(parts))
        return x + out if self.use_residual else out

    def entry_candidates(self, slot: int) -> list[nn.Module]:
        """What each candidate of entry ``slot`` alone trains: its depthwise conv (zero: nothing).

        The fairness strategy scales these gradients when the rules' repair repeats a candidate.
        """
        return [*self.depthwise[slot], nn.Identity()]

    def _project(self, parts: list[tuple[int, torch.Tensor]]) -> torch.Tensor:
        """The 1x1 projection restricted to the input slices of the given slots."""
        index = [j for j, _ in parts]
        weight = self.project.weight
        weight = weight.view(weight.shape[0], self.slots, self.slice, 1, 1)[:, index].flatten(1, 2)
        return F.conv2d(torch.cat([t for _, t in parts], dim=1), weight)

    def _mixed(self, x: torch.Tensor, weights: torch.Tensor, active: Any) -> tuple[list[tuple[int, torch.Tensor]], int]:
        parts: list[tuple[int, torch.Tensor]] = []
        expected = weights.new_zeros(())
        for j in range(self.slots):
            ks = [k for k in range(self.zero) if active is None or bool(active[j][k])]
            if not ks:
                continue
            hidden = self.expand[j](x)
            out = sum(weights[j, k] * self.depthwise[j][k](hidden) for k in ks)
            parts.append((j, out))
            expected = expected + weights[j, ks].sum()
        expansion = min(self.slots, max(1, int(round(float(expected.detach())))))
        return parts, expansion


class SGNASOptions(ScalableOptions):
    min_expansion: int = Field(2, ge=1, le=SLOTS, description="fewest non-zero sub-blocks per layer")


@register("search_space", "sgnas")
class SGNAS(SearchSpace):
    """SGNAS unified space: 19 layers of 6 depthwise sub-blocks, each k3/k5/k7/zero; expansion = non-zero count."""

    Options = SGNASOptions

    def define(self, input_size: int, in_channels: int, num_outputs: int) -> SpaceDefinition:
        w = self.options.width_mult
        stem_stride, strides = layout_strides(STAGES, input_size)
        body, ch = mobilenet_stem(in_channels, w, stem_stride)
        layers, ch = build_stages(ch, STAGES, strides, w, lambda at: UnifiedBlock(at.in_ch, at.out_ch, at.stride))
        body += layers + classifier_head(ch, self.options.head_width(1280), num_outputs, "relu6",
                                         self.options.dropout)
        return SpaceDefinition("sgnas", input_size, in_channels, num_outputs, tuple(body), self.rules(body))

    def rules(self, body: Sequence[Item]) -> tuple[MinActive, ...]:
        """At least ``min_expansion`` non-zero sub-blocks in every unified block."""
        rules, entry = [], 0
        for item in body:
            count = len(item.entries())
            if isinstance(item, UnifiedBlock):
                rules.append(MinActive(tuple(range(entry, entry + count)), item.zero, self.options.min_expansion))
            entry += count
        return tuple(rules)
