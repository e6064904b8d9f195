"""ProxylessNAS (Cai et al., ICLR 2019): MBConv k{3,5,7} x e{3,6} + zero on the ProxylessNAS macro-architecture.

At 224x224 (official ProxylessNAS code): 3x3 conv 32 stride 2, a fixed MBConv k3 e1 to
16 channels, 21 searchable MBConv layers in stages of 4/4/4/4/4/1 with strides
2/2/2/1/2/1, a 1x1 "feature mix" conv to 1280, global pooling, classifier. The stage
widths default to those of the released ProxylessNAS-Mobile model (32/40/80/96/192/320);
the official search script's default is 24/40/80/96/192/320 (``stage_widths``).
"""

from __future__ import annotations

from typing import Optional

from pydantic import Field, PositiveInt

from osnas.registry import register
from osnas.search_spaces.base import SearchSpace, SpaceDefinition, op
from osnas.search_spaces.stages import (ScalableOptions, Stage, build_stages, choice_of, classifier_head,
                                        layout_strides, mobilenet_stem)

# the searchable stages, ImageNet layout (the widths are the option stage_widths' defaults)
STAGES = [Stage(32, 4, 2), Stage(40, 4, 2), Stage(80, 4, 2), Stage(96, 4, 1), Stage(192, 4, 2), Stage(320, 1, 1)]
KERNELS = (3, 5, 7)
EXPANSIONS = (3, 6)


def mbconv_candidates(kernels: tuple[int, ...], expansions: tuple[int, ...], act: str, with_zero: bool) -> tuple:
    cands = [op("mbconv", f"k{k}_e{e}", kernel=k, expansion=e, act=act) for e in expansions for k in kernels]
    if with_zero:
        cands.append(op("skip", "zero"))
    return tuple(cands)


class ProxylessOptions(ScalableOptions):
    stage_widths: tuple[PositiveInt, PositiveInt, PositiveInt, PositiveInt, PositiveInt, PositiveInt] = Field(
        (32, 40, 80, 96, 192, 320), strict=False,  # a YAML list is a tuple here
        description="channels of the six searchable stages at width_mult 1.0"
    )
    max_blocks_per_stage: Optional[PositiveInt] = Field(
        None, description="cap on searchable blocks per stage (a shallower space for small data and quick runs)"
    )


@register("search_space", "proxylessnas")
class ProxylessNAS(SearchSpace):
    """ProxylessNAS space: 21 MBConv layers, kernel {3,5,7} x expansion {3,6}, zero where shapes allow."""

    Options = ProxylessOptions
    # ProxylessNAS-Mobile (official release proxyless_mobile.config): 320M MACs, 4.08M params at 224
    presets = {
        "proxyless_mobile": [
            "k5_e3", "k3_e3", "zero", "zero",
            "k7_e3", "k3_e3", "k5_e3", "k5_e3",
            "k7_e6", "k5_e3", "k5_e3", "k5_e3",
            "k5_e6", "k5_e3", "k5_e3", "k5_e3",
            "k7_e6", "k7_e6", "k7_e3", "k7_e3",
            "k7_e6",
        ],
    }

    def define(self, input_size: int, in_channels: int, num_outputs: int) -> SpaceDefinition:
        w, cap = self.options.width_mult, self.options.max_blocks_per_stage
        table = [Stage(width, min(s.layers, cap or s.layers), s.stride)
                 for width, s in zip(self.options.stage_widths, STAGES)]
        stem_stride, strides = layout_strides(table, input_size)
        body, ch = mobilenet_stem(in_channels, w, stem_stride)
        layers, ch = build_stages(ch, table, strides, w,
                                  choice_of(lambda keep: mbconv_candidates(KERNELS, EXPANSIONS, "relu6", keep)))
        body += layers + classifier_head(ch, self.options.head_width(1280), num_outputs, "relu6",
                                         self.options.dropout)
        return SpaceDefinition("proxylessnas", input_size, in_channels, num_outputs, tuple(body))
