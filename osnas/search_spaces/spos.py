"""Single Path One-Shot (Guo et al., ECCV 2020): ShuffleNetV2 units k3/k5/k7 and Xception on the SPOS supernet.

Macro-architecture of the official SPOS supernet at 224x224: 3x3 conv 16 stride 2,
four stages of 4/4/8/4 searchable units (64/160/320/640 channels at 1.0x, the first
unit of each stage downsamples with a projection branch), 1x1 conv 1024, global
pooling, classifier. Five stride-2 steps take 224 to 7x7 (the official network has no
max-pool; ShuffleNetV2's max-pool is replaced by the extra stage).
"""

from __future__ import annotations

from osnas.registry import register
from osnas.search_spaces import blocks_shufflenet  # noqa: F401  (registers the ShuffleNetV2 block kinds)
from osnas.search_spaces.base import Fixed, SearchSpace, SpaceDefinition, op
from osnas.search_spaces.macro import make_divisible
from osnas.search_spaces.stages import ScalableOptions, Stage, build_stages, choice_of, classifier_head, layout_strides

# the searchable stages at 1.0x; every stage starts with a stride-2 unit
STAGES = [Stage(64, 4, 2), Stage(160, 4, 2), Stage(320, 8, 2), Stage(640, 4, 2)]
# candidate order = the official SPOS indices (0: Shuffle3x3, 1: Shuffle5x5, 2: Shuffle7x7, 3: Xception)
CANDIDATES = (
    op("shufflenet", "shuffle3", kernel=3),
    op("shufflenet", "shuffle5", kernel=5),
    op("shufflenet", "shuffle7", kernel=7),
    op("shuffle_xception", "xception"),
)


@register("search_space", "spos")
class SPOS(SearchSpace):
    """SPOS space: 20 ShuffleNetV2 units, each Shuffle 3x3/5x5/7x7 or Xception-like (3 stacked dw 3x3)."""

    Options = ScalableOptions
    presets = {
        # block-only search result listed in the official repo (megvii-model/SinglePathOneShot README):
        # 323M FLOPs, 3.5M params at 224x224 (the paper's Table reports 319M / 3.3M for its block search)
        "spos_block": [2, 1, 0, 1, 2, 0, 2, 0, 2, 0, 2, 3, 0, 0, 0, 0, 3, 2, 3, 3],
    }

    def define(self, input_size: int, in_channels: int, num_outputs: int) -> SpaceDefinition:
        w = self.options.width_mult
        stem_stride, strides = layout_strides(STAGES, input_size)
        ch = make_divisible(16 * w)
        body: list = [Fixed(op("conv_bn_act", kernel=3, act="relu"), in_channels, ch, stem_stride)]
        layers, ch = build_stages(ch, STAGES, strides, w, choice_of(lambda keep: CANDIDATES))
        body += layers + classifier_head(ch, self.options.head_width(1024), num_outputs, "relu",
                                         self.options.dropout)
        return SpaceDefinition("spos", input_size, in_channels, num_outputs, tuple(body))
