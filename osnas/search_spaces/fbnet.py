"""FBNet (Wu et al., CVPR 2019): 22 searchable TBS layers, 9 candidates, on the FBNet macro-architecture.

Macro-architecture (FBNet paper, Table 1) at 224x224: 3x3 conv 16 stride 2; TBS stages
of 1/4/4/4/4/4/1 layers with 16/24/32/64/112/184/352 channels and strides 1/2/2/2/1/2/1;
1x1 conv (1984 channels for FBNet-B/C, 1504 for FBNet-A); global pooling; classifier.
Candidates (Table 2): kernel {3, 5} x expansion {1, 1 with 2 groups, 3, 6}, plus skip
where the layer keeps its shape.
"""

from __future__ import annotations

from typing import ClassVar

from osnas.registry import register
from osnas.search_spaces import blocks_fbnet  # noqa: F401  (registers the fbnet_ir block kind)
from osnas.search_spaces.base import Fixed, SearchSpace, SpaceDefinition, op
from osnas.search_spaces.macro import make_divisible
from osnas.search_spaces.stages import ScalableOptions, Stage, build_stages, choice_of, classifier_head, layout_strides

# the TBS stages, ImageNet layout
STAGES = [Stage(16, 1, 1), Stage(24, 4, 2), Stage(32, 4, 2), Stage(64, 4, 2), Stage(112, 4, 1), Stage(184, 4, 2),
          Stage(352, 1, 1)]


def fbnet_candidates(with_skip: bool) -> tuple:
    """The nine FBNet candidates in the paper's order (skip only where the shape is kept)."""
    cands = []
    for k in (3, 5):
        cands.append(op("fbnet_ir", f"k{k}_e1", kernel=k, expansion=1))
        cands.append(op("fbnet_ir", f"k{k}_e1_g2", kernel=k, expansion=1, groups=2))
        cands += [op("fbnet_ir", f"k{k}_e{e}", kernel=k, expansion=e) for e in (3, 6)]
    if with_skip:
        cands.append(op("skip", "skip"))
    return tuple(cands)


class FBNetSpace(SearchSpace):
    """Shared definition of the FBNet spaces; subclasses fix the width of the last 1x1 conv."""

    Options = ScalableOptions
    last_channels: ClassVar[int]

    def define(self, input_size: int, in_channels: int, num_outputs: int) -> SpaceDefinition:
        w = self.options.width_mult
        stem_stride, strides = layout_strides(STAGES, input_size)
        ch = make_divisible(16 * w)
        body: list = [Fixed(op("conv_bn_act", kernel=3, act="relu"), in_channels, ch, stem_stride)]
        layers, ch = build_stages(ch, STAGES, strides, w, choice_of(fbnet_candidates))
        body += layers + classifier_head(ch, make_divisible(self.last_channels * max(w, 1.0)), num_outputs, "relu",
                                         self.options.dropout)
        return SpaceDefinition(self.name, input_size, in_channels, num_outputs, tuple(body))


@register("search_space", "fbnet_l")
class FBNetL(FBNetSpace):
    """FBNet space with the 1984-wide last conv of FBNet-B/C (width_mult 1.0 = the paper's); presets fbnet_b/c."""

    last_channels = 1984
    # The paper's searched models (Figure 4), as listed by the official FBNet builder (mobile_cv)
    presets = {
        "fbnet_b": [
            "k3_e1",
            "k3_e6", "k5_e1", "k3_e1", "k3_e1",
            "k5_e6", "k5_e3", "k3_e6", "k5_e6",
            "k5_e6", "k5_e1", "skip", "k5_e3",
            "k5_e6", "k3_e1", "k5_e1", "k5_e3",
            "k5_e6", "k5_e1", "k5_e6", "k5_e6",
            "k3_e6",
        ],
        "fbnet_c": [
            "k3_e1",
            "k3_e6", "skip", "k3_e1", "k3_e1",
            "k5_e6", "k5_e3", "k5_e6", "k3_e6",
            "k5_e6", "k5_e3", "k5_e6", "k5_e6",
            "k5_e6", "k5_e6", "k5_e6", "k5_e3",
            "k5_e6", "k5_e6", "k5_e6", "k5_e6",
            "k3_e6",
        ],
    }


@register("search_space", "fbnet_s")
class FBNetS(FBNetSpace):
    """FBNet space with the narrower 1504-wide last conv of FBNet-A (about 0.76x the head); preset fbnet_a."""

    last_channels = 1504
    presets = {
        "fbnet_a": [
            "skip",
            "k3_e3", "k3_e1", "skip", "skip",
            "k5_e6", "k3_e3", "k5_e1", "k3_e3",
            "k5_e6", "k5_e3", "k5_e1_g2", "k5_e6",
            "k3_e6", "k5_e1_g2", "k5_e3", "k3_e1_g2",
            "k5_e6", "k5_e6", "k5_e3", "k5_e6",
            "k5_e6",
        ],
    }
