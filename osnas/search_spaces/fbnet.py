"""FBNet (Wu et al., CVPR 2019): 22 searchable TBS layers, 9 candidates, on the FBNet macro-architecture.

Macro-architecture (FBNet paper, Table 1) at 224x224: 3x3 conv 16 stride 2; TBS stages
of 1/4/4/4/4/4/1 layers with 16/24/32/64/112/184/352 channels and strides 1/2/2/2/1/2/1;
1x1 conv (1984 channels for FBNet-B/C, 1504 for FBNet-A); global pooling; classifier.
Candidates (Table 2): kernel {3, 5} x expansion {1, 1 with 2 groups, 3, 6}, plus skip
where the layer keeps its shape. The block (``blocks_fbnet.py``) is the ``IRFBlock`` of
Facebook's first FBNet builder (maskrcnn-benchmark, ``modeling/backbone/fbnet_builder.py``,
2019): a 1x1 expansion conv also at expansion 1, no conv bias.

Presets and published figures (224x224, 1000 classes; MACs in M, params in M):

========  ============  ===============  ===============  =========================
preset    paper         first release    mobile_cv zoo    osnas (``osnas profile``)
========  ============  ===============  ===============  =========================
fbnet_a   249 / 4.3     249.4 / 4.3      244.5 / 4.27     250.00 / 4.321
fbnet_b   295 / 4.5     295.6 / 4.8      291.1 / 4.77     296.71 / 4.813
fbnet_c   375 / 5.5     383.0 / 5.5      378.2 / 5.53     385.06 / 5.572
========  ============  ===============  ===============  =========================

Sources: paper, Table 3; first release, the Caffe2 models' table of the
facebookresearch/mobile-vision README; mobile_cv zoo, the README's model-zoo table and
``mobile_cv/model_zoo/models/model_info/fbnet_v2/model_info_fbnet.json`` (244.52636 /
4.27029, 291.10164 / 4.76667, 378.23344 / 5.52542), counted by mobile_cv's
``lut/lib/pt/flops_utils.py``: conv and linear weights times output positions plus the
globally pooled elements, and weights only (neither BN nor bias).

Layer by layer, fbnet_a and fbnet_c are mobile_cv's definitions
(``mobile_cv/arch/fbnet_v2/fbnet_modeldef_cls_fbnet.py``; ``ir_k5_g2`` with
``pwl_groups: 2`` is ``k5_e1_g2``). fbnet_b is the paper's Figure 4 as FBNet
re-implementations transcribe it (e.g. 103yiran/FBNet,
``fbnet_building_blocks/fbnet_modeldef.py``; JunrQ/NAS issue #19 lists the same layers):
its layer 10 (second of the 64-channel stage) is ``k5_e1`` where mobile_cv's fbnet_b
has ``ir_k5`` e6. It is kept because it
is the network the paper and the first release price: with this block it counts
296.71 M (paper 295, first release 295.6), mobile_cv's layer would make 306.31 M.

Where osnas's counts differ from mobile_cv's, exactly (``tests/test_spaces.py::
test_fbnet_presets_are_the_official_models_plus_the_e1_expansion_convs`` checks it):

* the 1x1 expansion conv of each expansion-1 layer, which mobile_cv's ``IRFBlock``
  (``irf_block.py``) omits when the expanded width equals the input's: fbnet_a 5.469 M
  MACs / 16,192 weights, fbnet_b 16.009 M / 65,024, fbnet_c 6.824 M / 1,408;
* the global pool: thop counts 50 per channel (kernel + 1), mobile_cv 49: osnas
  75,200 / 99,200 vs 73,696 / 97,216 (1504 / 1984 channels); osnas counts no BN MACs;
* params: osnas counts BN (fbnet_a 33,984, fbnet_b 33,408, fbnet_c 44,368) and the
  classifier bias (1,000); mobile_cv's figure counts weights only, and its models also
  carry conv biases (``use_bias``: 16,648 / 16,848 / 22,120 besides the classifier's);
* fbnet_b's layer 10 (above): mobile_cv's e6 block counts 10.399 M MACs more than
  ``k5_e1`` without its expansion conv (counted in the first item).

So osnas's fbnet_c minus its e1 expansion convs is 378,136,224 conv and linear MACs,
plus 97,216 pooled elements = 378,233,440, mobile_cv's 378.23344 M; its weights
5,526,832 - 1,408 = 5,525,424 (5.52542 M); likewise fbnet_a, and fbnet_b with layer 10
set to ``k5_e6``. The paper's own fbnet_c (375 M) and fbnet_b params (4.5 M) are met by
no released definition: mobile-vision issue #1 ("The reported FBNet-C FLOPS in the
paper does not match the number in the readme", then 383.0 M, 2019) is open, the
maintainers' one reply supposing a wrong config file.
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
        body += layers + classifier_head(ch, self.options.head_width(self.last_channels), num_outputs, "relu",
                                         self.options.dropout)
        return SpaceDefinition(self.name, input_size, in_channels, num_outputs, tuple(body))


@register("search_space", "fbnet_l")
class FBNetL(FBNetSpace):
    """FBNet space with the 1984-wide last conv of FBNet-B/C (width_mult 1.0 = the paper's); presets fbnet_b/c."""

    last_channels = 1984
    # The paper's searched models (Figure 4); fbnet_b differs from mobile_cv's at layer 10 (module docstring)
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
