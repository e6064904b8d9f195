"""Helpers shared by space definitions: width rounding and input-size dependent strides."""

from __future__ import annotations

from typing import Sequence


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor`` without dropping more than 10% (MobileNet rule)."""
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def adapt_strides(strides: Sequence[int], input_size: int, min_final: int = 4) -> list[int]:
    """The paper's strides (ImageNet layout), with the earliest downsamplings dropped for small inputs.

    At 224x224 nothing changes (final map 7x7); at 32x32 the stem and the first
    stride-2 stage keep stride 1 (CIFAR style), so the final map stays ``min_final``.
    """
    out = list(strides)
    total = 1
    for s in out:
        total *= s
    i = 0
    while input_size / total < min_final and i < len(out):
        if out[i] > 1:
            total //= out[i]
            out[i] = 1
        i += 1
    return out
