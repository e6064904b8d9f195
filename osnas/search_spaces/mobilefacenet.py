"""MobileFaceNet (Chen et al., CCBR 2018) as a face-embedding search space.

Macro-architecture of the paper (Table 1, 112x112 input): conv3x3 s2 64, depthwise
conv3x3 64, bottlenecks (t, c, n, s) = (2,64,5,2) (4,128,1,2) (2,128,6,1) (4,128,1,2)
(2,128,2,1), conv1x1 512, linear global depthwise conv (GDC) over the whole final
map, linear 1x1 conv to the embedding, BN. PReLU everywhere a non-linearity is used.
Each bottleneck is searched over kernel {3,5,7} x expansion {2,4,6}, plus zero where
the block keeps its shape; the paper's net is the preset ``mobilefacenet``.

MACs are conv + linear multiply-accumulates (``osnas.profiling`` counts BN and PReLU
as 0), which is how the paper's 221M MAdds are counted.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from pydantic import Field

from osnas.registry import register
from osnas.search_spaces.base import Fixed, SearchSpace, SearchSpaceOptions, SpaceDefinition, op
from osnas.search_spaces.blocks import block
from osnas.search_spaces.macro import make_divisible
from osnas.search_spaces.proxylessnas import mbconv_candidates
from osnas.search_spaces.stages import Stage, build_stages, choice_of, layout_strides

# the paper's bottleneck stages at 112x112, and the expansion t of each (its preset)
STAGES = [Stage(64, 5, 2), Stage(128, 1, 2), Stage(128, 6, 1), Stage(128, 1, 2), Stage(128, 2, 1)]
PAPER_EXPANSIONS = (2, 4, 2, 4, 2)
KERNELS = (3, 5, 7)
EXPANSIONS = (2, 4, 6)


class GDC(nn.Module):
    """Linear global depthwise conv: a depthwise kxk conv without padding over the whole map, then BN."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel, groups=channels, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class Embedding(nn.Module):
    """Linear 1x1 conv to the embedding, BN, flattened to (N, dim)."""

    def __init__(self, in_ch: int, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, dim, 1, bias=False)
        self.bn = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.bn(self.conv(x)), 1)


@block("gdc")
def _gdc(in_ch: int, out_ch: int, stride: int, kernel: int = 7) -> nn.Module:
    return GDC(in_ch, kernel)


@block("embedding")
def _embedding(in_ch: int, out_ch: int, stride: int) -> nn.Module:
    return Embedding(in_ch, out_ch)


def final_map_size(input_size: int, strides: list[int]) -> int:
    """Side of the last feature map: every stride-2 conv (padding k//2) maps n to ceil(n / 2)."""
    size = input_size
    for s in strides:
        size = -(-size // s)
    return size


class MobileFaceNetOptions(SearchSpaceOptions):
    width_mult: float = Field(1.0, gt=0.0, le=4.0)


@register("search_space", "mobilefacenet")
class MobileFaceNet(SearchSpace):
    """MobileFaceNet face-embedding space: 15 bottlenecks, kernel {3,5,7} x expansion {2,4,6}, zero where shapes allow."""

    Options = MobileFaceNetOptions
    # the paper's net: every bottleneck k3 with its stage's expansion t
    presets = {"mobilefacenet": [f"k3_e{t}" for t, stage in zip(PAPER_EXPANSIONS, STAGES) for _ in range(stage.layers)]}

    def define(self, input_size: int, in_channels: int, num_outputs: int) -> SpaceDefinition:
        """The paper's strides at 112 (total 16, a 7x7 final map); small inputs drop the earliest."""
        w = self.options.width_mult
        stem_stride, strides = layout_strides(STAGES, input_size)
        stem = make_divisible(64 * w)
        body: list = [
            Fixed(op("conv_bn_act", kernel=3, act="prelu"), in_channels, stem, stem_stride),
            Fixed(op("conv_bn_act", kernel=3, groups=stem, act="prelu"), stem, stem, 1),
        ]
        layers, ch = build_stages(stem, STAGES, strides, w,
                                  choice_of(lambda keep: mbconv_candidates(KERNELS, EXPANSIONS, "prelu", keep)))
        last = make_divisible(512 * w)
        body += layers + [
            Fixed(op("conv_bn_act", kernel=1, act="prelu"), ch, last),
            Fixed(op("gdc", kernel=final_map_size(input_size, [stem_stride, *strides])), last, last),
            Fixed(op("embedding"), last, num_outputs),
        ]
        return SpaceDefinition("mobilefacenet", input_size, in_channels, num_outputs, tuple(body))
