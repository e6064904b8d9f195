"""Body fragments that several space definitions share: searchable stages and the classifier head."""

from __future__ import annotations

from typing import Callable, Sequence

from pydantic import Field

from osnas.search_spaces.base import Choice, Fixed, Item, Op, SearchSpaceOptions, op
from osnas.search_spaces.macro import make_divisible


class ScalableOptions(SearchSpaceOptions):
    """Options of a space with a width multiplier and classifier dropout."""

    width_mult: float = Field(1.0, gt=0.0, le=4.0, description="scales every width (the last conv only when > 1)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout before the classifier")


def searchable_stages(
    in_ch: int,
    stages: Sequence[tuple[int, int]],
    strides: Sequence[int],
    width_mult: float,
    candidates: Callable[[bool], tuple[Op, ...]],
) -> tuple[list[Item], int]:
    """One :class:`Choice` per layer of ``stages`` ((channels at 1.0x, layers) each).

    The first layer of a stage takes the stage's stride; ``candidates(keeps_shape)``
    gives that layer's candidates, so skip/zero is offered only where it fits.
    Returns the items and the output channel count.
    """
    items: list[Item] = []
    ch = in_ch
    for (out, n), stride in zip(stages, strides, strict=True):
        out = make_divisible(out * width_mult)
        for i in range(n):
            s = stride if i == 0 else 1
            items.append(Choice(candidates(s == 1 and ch == out), ch, out, s))
            ch = out
    return items, ch


def classifier_head(in_ch: int, last_ch: int, num_outputs: int, act: str, dropout: float) -> list[Item]:
    """1x1 conv to ``last_ch``, global average pooling and the linear classifier."""
    return [
        Fixed(op("conv_bn_act", kernel=1, act=act), in_ch, last_ch),
        Fixed(op("global_pool"), last_ch, last_ch),
        Fixed(op("linear", dropout=dropout), last_ch, num_outputs),
    ]
