"""ProxylessNAS (Cai et al., ICLR 2019): MBConv k{3,5,7} x e{3,6} + zero on the ProxylessNAS macro-architecture."""

from __future__ import annotations

from typing import Optional

from pydantic import Field, PositiveInt

from osnas.registry import register
from osnas.search_spaces.base import Choice, Fixed, SearchSpace, SearchSpaceOptions, SpaceDefinition, op
from osnas.search_spaces.macro import adapt_strides, make_divisible

# (out channels, blocks, stride) of the searchable stages, ImageNet layout
STAGES = [(24, 4, 2), (40, 4, 2), (80, 4, 2), (96, 4, 1), (192, 4, 2), (320, 1, 1)]
KERNELS = (3, 5, 7)
EXPANSIONS = (3, 6)


def mbconv_candidates(kernels: tuple[int, ...], expansions: tuple[int, ...], act: str, with_zero: bool) -> tuple:
    cands = [op("mbconv", f"k{k}_e{e}", kernel=k, expansion=e, act=act) for e in expansions for k in kernels]
    if with_zero:
        cands.append(op("skip", "zero"))
    return tuple(cands)


class ProxylessOptions(SearchSpaceOptions):
    width_mult: float = Field(1.0, gt=0.0, le=4.0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    max_blocks_per_stage: Optional[PositiveInt] = Field(
        None, description="cap on searchable blocks per stage (a shallower space for small data and quick runs)"
    )


@register("search_space", "proxylessnas")
class ProxylessNAS(SearchSpace):
    """ProxylessNAS space: 21 MBConv layers, kernel {3,5,7} x expansion {3,6}, zero where shapes allow."""

    Options = ProxylessOptions
    # ProxylessNAS-Mobile (the paper's searched GPU/mobile model, official release config).
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
        w = self.options.width_mult
        strides = adapt_strides([2] + [s for _, _, s in STAGES], input_size)
        stem_ch = make_divisible(32 * w)
        first_ch = make_divisible(16 * w)
        body: list = [
            Fixed(op("conv_bn_act", kernel=3, act="relu6"), in_channels, stem_ch, strides[0]),
            Fixed(op("mbconv", kernel=3, expansion=1, act="relu6"), stem_ch, first_ch, 1),
        ]
        ch = first_ch
        for (out, n, _), stride in zip(STAGES, strides[1:]):
            out = make_divisible(out * w)
            for i in range(min(n, self.options.max_blocks_per_stage or n)):
                s = stride if i == 0 else 1
                zero = s == 1 and ch == out
                body.append(Choice(mbconv_candidates(KERNELS, EXPANSIONS, "relu6", zero), ch, out, s))
                ch = out
        last = make_divisible(1280 * max(w, 1.0))
        body += [
            Fixed(op("conv_bn_act", kernel=1, act="relu6"), ch, last),
            Fixed(op("global_pool"), last, last),
            Fixed(op("linear", dropout=self.options.dropout), last, num_outputs),
        ]
        return SpaceDefinition("proxylessnas", input_size, in_channels, num_outputs, tuple(body))
