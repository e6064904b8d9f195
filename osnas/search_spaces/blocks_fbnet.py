"""The FBNet TBS block: 1x1 (group) conv, kxk depthwise, 1x1 (group) conv, residual when the shape is kept.

Unlike MobileNetV2's inverted residual, the first 1x1 convolution is always there
(also at expansion 1), as in the paper's block figure and the ``IRFBlock`` of Facebook's
first FBNet builder (maskrcnn-benchmark ``fbnet_builder.py``: ``ir_k3_e1``, ``ir_k3_s2``);
the paper's MACs of FBNet-A/B count it. mobile_cv's later ``IRFBlock`` drops it when the
expanded width equals the input's (figures in ``fbnet.py``). With two groups a channel
shuffle follows the first 1x1 conv so that the two halves mix before the second grouped
1x1 conv.
"""

from __future__ import annotations

import torch.nn as nn

from osnas.search_spaces.blocks import Residual, block, conv_bn
from osnas.search_spaces.blocks_shufflenet import ChannelShuffle


@block("fbnet_ir")
def _fbnet_ir(in_ch: int, out_ch: int, stride: int, kernel: int = 3, expansion: int = 1, groups: int = 1,
              act: str = "relu") -> nn.Module:
    mid = in_ch * expansion
    if in_ch % groups or out_ch % groups:
        raise ValueError(f"fbnet_ir with {groups} groups needs channel counts divisible by it ({in_ch}->{out_ch})")
    layers: list[nn.Module] = [conv_bn(in_ch, mid, 1, 1, groups, act)]
    if groups > 1:
        layers.append(ChannelShuffle(groups))
    layers += [conv_bn(mid, mid, kernel, stride, mid, act), conv_bn(mid, out_ch, 1, 1, groups, "none")]
    body = nn.Sequential(*layers)
    return Residual(body) if stride == 1 and in_ch == out_ch else body
