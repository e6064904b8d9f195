"""ShuffleNetV2-style blocks (SPOS): channel split/shuffle units and the channel shuffle itself.

A unit either keeps half of its input untouched (stride 1, equal widths: the
ShuffleNetV2 split) or, when it downsamples or widens, runs a projection branch
on the whole input. Its output is ``cat(passed-through or projected, main branch)``;
the next unit's even/odd split of that concatenation is the channel shuffle.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from osnas.search_spaces.blocks import block, conv_bn


class ChannelShuffle(nn.Module):
    """Interleave ``groups`` channel groups so that grouped convolutions exchange information."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def dw_bn(channels: int, kernel: int, stride: int) -> nn.Sequential:
    """Depthwise convolution + BN without activation (ShuffleNetV2 places no ReLU after depthwise)."""
    return conv_bn(channels, channels, kernel, stride, groups=channels, act="none")


class ShuffleUnit(nn.Module):
    """``cat(left, main(right))``: left is the untouched half (split) or a projection of the whole input."""

    def __init__(self, main: nn.Module, proj: nn.Module | None) -> None:
        super().__init__()
        self.main = main
        self.proj = proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.proj is None:
            # even channels pass, odd channels are transformed: split after a 2-group shuffle
            return torch.cat((x[:, 0::2], self.main(x[:, 1::2])), 1)
        return torch.cat((self.proj(x), self.main(x)), 1)


def _unit(in_ch: int, out_ch: int, stride: int, kernel: int,
          main: Callable[[int, int], nn.Module]) -> ShuffleUnit:
    """Split when shape is kept, else project; ``main(main_in, main_out)`` builds the main branch."""
    if stride == 1 and in_ch == out_ch:
        if in_ch % 2:
            raise ValueError(f"a ShuffleNetV2 split needs an even channel count (got {in_ch})")
        return ShuffleUnit(main(in_ch // 2, out_ch - in_ch // 2), None)
    if out_ch <= in_ch:
        raise ValueError(f"a projecting ShuffleNetV2 unit needs out_ch > in_ch (got {in_ch}->{out_ch})")
    proj = nn.Sequential(dw_bn(in_ch, kernel, stride), conv_bn(in_ch, in_ch, 1))
    return ShuffleUnit(main(in_ch, out_ch - in_ch), proj)


@block("shufflenet")
def _shufflenet(in_ch: int, out_ch: int, stride: int, kernel: int = 3, mid_ratio: float = 0.5) -> nn.Module:
    """SPOS ``Shuffle{k}x{k}``: 1x1, kxk depthwise, 1x1 on the main branch (mid = out * mid_ratio)."""
    mid = max(1, int(out_ch * mid_ratio))

    def main(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(conv_bn(cin, mid, 1), dw_bn(mid, kernel, stride), conv_bn(mid, cout, 1))

    return _unit(in_ch, out_ch, stride, kernel, main)


@block("shuffle_xception")
def _shuffle_xception(in_ch: int, out_ch: int, stride: int, mid_ratio: float = 0.5) -> nn.Module:
    """SPOS ``Xception``: three (3x3 depthwise, 1x1) pairs on the main branch."""
    mid = max(1, int(out_ch * mid_ratio))

    def main(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(
            dw_bn(cin, 3, stride), conv_bn(cin, mid, 1),
            dw_bn(mid, 3, 1), conv_bn(mid, mid, 1),
            dw_bn(mid, 3, 1), conv_bn(mid, cout, 1),
        )

    return _unit(in_ch, out_ch, stride, 3, main)
