"""The stage grammar of the MobileNet-family spaces and the one builder that decodes it.

A body is a stem, stages of searchable layers and a head. A space writes its stages
as a table of :class:`Stage` rows, in the paper's 224x224 layout::

    STAGES = [Stage(out=24, layers=2, stride=2), Stage(32, 3, 2), ...]

and :func:`build_stages` decodes it, the same way for every space:

* a stage's width is ``make_divisible(out * width_mult)``;
* the stem's and the stages' strides are adapted to the input size together
  (:func:`layout_strides`: the earliest downsamplings are dropped for small inputs);
* the first layer of a stage takes the stage's stride, the others stride 1;
* each position becomes one body item through ``layer(Layer)``: usually
  :func:`choice_of` (a :class:`Choice` whose candidates may include a zero/skip
  only where the layer keeps its shape), or a space's own item (SGNAS's unified block).

A space's code is then its table, its candidates, a stem and a head
(:func:`mobilenet_stem` and :func:`classifier_head` are the common ones).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from pydantic import Field, PositiveInt

from osnas.search_spaces.base import Choice, Fixed, Item, Op, SearchSpaceOptions, op
from osnas.search_spaces.macro import adapt_strides, make_divisible


class ScalableOptions(SearchSpaceOptions):
    """Options of a space with a width multiplier and classifier dropout."""

    width_mult: float = Field(1.0, gt=0.0, le=4.0, description="scales every width (the last conv only when > 1)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout before the classifier")
    head_channels: Optional[PositiveInt] = Field(
        None, description="channels of the last 1x1 conv before pooling (default: the paper's, scaled only when "
                          "width_mult > 1); a narrow head leaves the searched layers as the network's capacity limit"
    )

    def head_width(self, paper: int) -> int:
        """The last conv's channels: ``head_channels`` when set, else the paper's ``paper`` at this width."""
        return self.head_channels or make_divisible(paper * max(self.width_mult, 1.0))


@dataclass(frozen=True)
class Stage:
    """One row of a stage table: output channels at width 1.0, searchable layers, stride of the first layer."""

    out: int
    layers: int
    stride: int


@dataclass(frozen=True)
class Layer:
    """One decoded position of a stage table: what ``layer(...)`` turns into a body item."""

    in_ch: int
    out_ch: int
    stride: int

    @property
    def keeps_shape(self) -> bool:
        """Stride 1 and as many channels out as in: only here can the layer be skipped (a zero candidate)."""
        return self.stride == 1 and self.in_ch == self.out_ch


def layout_strides(table: Sequence[Stage], input_size: int, stem_stride: int = 2) -> tuple[int, list[int]]:
    """(stem stride, one stride per stage) for this input size (see :func:`~osnas.search_spaces.macro.adapt_strides`)."""
    strides = adapt_strides([stem_stride] + [stage.stride for stage in table], input_size)
    return strides[0], strides[1:]


def build_stages(in_ch: int, table: Sequence[Stage], strides: Sequence[int], width_mult: float,
                 layer: Callable[[Layer], Item]) -> tuple[list[Item], int]:
    """The body items of every searchable layer of ``table`` (strides from :func:`layout_strides`) and the
    output channel count."""
    items: list[Item] = []
    ch = in_ch
    for stage, stride in zip(table, strides, strict=True):
        out = make_divisible(stage.out * width_mult)
        for i in range(stage.layers):
            items.append(layer(Layer(ch, out, stride if i == 0 else 1)))
            ch = out
    return items, ch


def choice_of(candidates: Callable[[bool], tuple[Op, ...]]) -> Callable[[Layer], Item]:
    """The usual searchable layer: a :class:`Choice` of ``candidates(keeps_shape)``."""
    return lambda at: Choice(candidates(at.keeps_shape), at.in_ch, at.out_ch, at.stride)


def mobilenet_stem(in_channels: int, width_mult: float, stride: int) -> tuple[list[Item], int]:
    """3x3 conv 32 and the fixed MBConv k3 e1 to 16 channels that start MobileNetV2, ProxylessNAS and SGNAS."""
    stem_ch, first_ch = make_divisible(32 * width_mult), make_divisible(16 * width_mult)
    return [
        Fixed(op("conv_bn_act", kernel=3, act="relu6"), in_channels, stem_ch, stride),
        Fixed(op("mbconv", kernel=3, expansion=1, act="relu6"), stem_ch, first_ch, 1),
    ], first_ch


def classifier_head(in_ch: int, last_ch: int, num_outputs: int, act: str, dropout: float) -> list[Item]:
    """1x1 conv to ``last_ch``, global average pooling and the linear classifier."""
    return [
        Fixed(op("conv_bn_act", kernel=1, act=act), in_ch, last_ch),
        Fixed(op("global_pool"), last_ch, last_ch),
        Fixed(op("linear", dropout=dropout), last_ch, num_outputs),
    ]
