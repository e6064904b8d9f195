"""MobileNetV2 backbone (Sandler et al., CVPR 2018) with every inverted residual searchable (ModularNAS setting).

At 224x224 the macro-architecture is the paper's Table 2: 3x3 conv 32 stride 2, a fixed
inverted residual (k3, e1, 16 channels), 16 searchable blocks in stages of 2/3/4/3/3/1
with 24/32/64/96/160/320 channels and strides 2/2/2/1/2/1, 1x1 conv 1280, global
pooling, classifier. Candidates: kernel {3,5,7} x expansion {1,3,6}, plus zero (the
block is left out) where the block keeps its shape.
"""

from __future__ import annotations

from osnas.registry import register
from osnas.search_spaces.base import SearchSpace, SpaceDefinition
from osnas.search_spaces.proxylessnas import mbconv_candidates
from osnas.search_spaces.stages import (ScalableOptions, Stage, build_stages, choice_of, classifier_head,
                                        layout_strides, mobilenet_stem)

# the searchable stages, ImageNet layout
STAGES = [Stage(24, 2, 2), Stage(32, 3, 2), Stage(64, 4, 2), Stage(96, 3, 1), Stage(160, 3, 2), Stage(320, 1, 1)]
KERNELS = (3, 5, 7)
EXPANSIONS = (1, 3, 6)


@register("search_space", "mobilenetv2")
class MobileNetV2(SearchSpace):
    """MobileNetV2 backbone: 16 inverted residuals, kernel {3,5,7} x expansion {1,3,6}, zero where shapes allow."""

    Options = ScalableOptions
    # the original network: every searchable block k3, e6
    presets = {"mobilenetv2": lambda definition: ["k3_e6"] * definition.num_layers}

    def define(self, input_size: int, in_channels: int, num_outputs: int) -> SpaceDefinition:
        w = self.options.width_mult
        stem_stride, strides = layout_strides(STAGES, input_size)
        body, ch = mobilenet_stem(in_channels, w, stem_stride)
        layers, ch = build_stages(ch, STAGES, strides, w,
                                  choice_of(lambda keep: mbconv_candidates(KERNELS, EXPANSIONS, "relu6", keep)))
        body += layers + classifier_head(ch, self.options.head_width(1280), num_outputs, "relu6",
                                         self.options.dropout)
        return SpaceDefinition("mobilenetv2", input_size, in_channels, num_outputs, tuple(body))
