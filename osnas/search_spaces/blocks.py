"""Building blocks that space definitions refer to by kind, and the generic choice layer.

Every factory has the signature ``factory(in_ch, out_ch, stride, **args) -> nn.Module``
and is registered with ``@block("kind")``. Spaces may add blocks the same way.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from osnas.search_spaces.base import Choice, Op

BlockFactory = Callable[..., nn.Module]
BLOCKS: dict[str, BlockFactory] = {}


def block(kind: str) -> Callable[[BlockFactory], BlockFactory]:
    """Register a block factory under ``kind``."""

    def decorate(factory: BlockFactory) -> BlockFactory:
        if kind in BLOCKS and BLOCKS[kind] is not factory:
            raise ValueError(f"block kind {kind!r} registered twice")
        BLOCKS[kind] = factory
        return factory

    return decorate


def build_block(spec: Op, in_ch: int, out_ch: int, stride: int) -> nn.Module:
    try:
        factory = BLOCKS[spec.kind]
    except KeyError:
        raise ValueError(f"unknown block kind {spec.kind!r}; known: {', '.join(sorted(BLOCKS))}") from None
    return factory(in_ch, out_ch, stride, **spec.kwargs())


def in_place_is_cheaper(x: torch.Tensor) -> bool:
    """Whether a clamp-like activation should overwrite ``x``: only where autograd will not need it.

    For the backward pass an in-place ``hardtanh_``/``hardswish_`` clones its input, one pass
    over the activation more than the out-of-place op (20 CPU training steps of four proxylessnas
    children: 16.8 s with in-place ReLU6, 16.3 s without); without autograd, in place saves a fresh
    allocation (the quickstart search took 6.1 s with out-of-place ReLU6 against 5.0 s in place).
    """
    return not (torch.is_grad_enabled() and x.requires_grad)


class ReLU6(nn.ReLU6):
    """``nn.ReLU6`` in place where nothing is differentiated (:func:`in_place_is_cheaper`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardtanh(x, 0.0, 6.0, inplace=in_place_is_cheaper(x))


class Hardswish(nn.Hardswish):
    """``nn.Hardswish`` in place where nothing is differentiated (:func:`in_place_is_cheaper`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardswish(x, inplace=in_place_is_cheaper(x))


def activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU(inplace=True)  # threshold_ keeps its output for the backward pass: no copy
    if name == "relu6":
        return ReLU6()
    if name == "prelu":
        raise ValueError("prelu needs a channel count; use activation_for(name, channels)")
    if name == "hswish":
        return Hardswish()
    if name == "none":
        return nn.Identity()
    raise ValueError(f"unknown activation {name!r}")


def activation_for(name: str, channels: int) -> nn.Module:
    return nn.PReLU(channels) if name == "prelu" else activation(name)


def conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, act: str = "relu") -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if act != "none":
        layers.append(activation_for(act, out_ch))
    return nn.Sequential(*layers)


@block("conv_bn_act")
def _conv_bn_act(in_ch: int, out_ch: int, stride: int, kernel: int = 3, groups: int = 1, act: str = "relu") -> nn.Module:
    return conv_bn(in_ch, out_ch, kernel, stride, groups, act)


class Residual(nn.Module):
    """``x + body(x)``: a block whose input and output shapes match."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, kxk depthwise, 1x1 project (MobileNetV2 / ProxylessNAS / FBNet)."""

    def __init__(
        self, in_ch: int, out_ch: int, stride: int, kernel: int, expansion: float, act: str = "relu6", groups: int = 1
    ) -> None:
        super().__init__()
        mid = int(round(in_ch * expansion))
        layers: list[nn.Module] = []
        if mid != in_ch:
            layers.append(conv_bn(in_ch, mid, 1, 1, groups, act))
        layers.append(conv_bn(mid, mid, kernel, stride, mid, act))
        layers.append(conv_bn(mid, out_ch, 1, 1, groups, "none"))
        self.body = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_ch == out_ch
        if self.use_residual:
            # zero-init the last BN scale: a residual block starts as the identity, so at the start of
            # supernet training all paths compute nearly the same function and do not fight each other
            nn.init.zeros_(self.body[-1][1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.use_residual else out


@block("mbconv")
def _mbconv(in_ch: int, out_ch: int, stride: int, kernel: int = 3, expansion: float = 6, act: str = "relu6",
            groups: int = 1) -> nn.Module:
    return MBConv(in_ch, out_ch, stride, kernel, expansion, act, groups)


@block("skip")
def _skip(in_ch: int, out_ch: int, stride: int) -> nn.Module:
    """The zero/skip candidate: the layer is left out (identity)."""
    if stride != 1 or in_ch != out_ch:
        raise ValueError(f"skip needs stride 1 and equal channels (got {in_ch}->{out_ch}, stride {stride})")
    return nn.Identity()


class GlobalPool(nn.Module):
    """Global average pooling to a flat (N, C) tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(x), 1)


@block("global_pool")
def _global_pool(in_ch: int, out_ch: int, stride: int) -> nn.Module:
    return GlobalPool()


@block("linear")
def _linear(in_ch: int, out_ch: int, stride: int, dropout: float = 0.0) -> nn.Module:
    if dropout > 0:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_ch, out_ch))
    return nn.Linear(in_ch, out_ch)


class ChoiceBlock(nn.Module):
    """Holds every candidate of a :class:`Choice` layer.

    ``forward(x, sub_arch)`` runs one candidate when ``sub_arch`` is a sequence of
    ints, or the weighted sum of candidates when it is a (1, K) float tensor of
    mixing weights; ``active`` ((1, K) bools, the item's rows of the supernet mask)
    limits which candidates run.
    """

    def __init__(self, spec: Choice) -> None:
        super().__init__()
        self.candidates = nn.ModuleList(build_block(c, spec.in_ch, spec.out_ch, spec.stride) for c in spec.candidates)

    def forward(self, x: torch.Tensor, sub_arch: Any, active: Sequence[Sequence[bool]] | None = None) -> torch.Tensor:
        if isinstance(sub_arch, torch.Tensor) and sub_arch.is_floating_point():
            weights = sub_arch[0]
            out = None
            for k, candidate in enumerate(self.candidates):
                if active is not None and not active[0][k]:
                    continue
                term = weights[k] * candidate(x)
                out = term if out is None else out + term
            if out is None:
                raise ValueError("mixed forward with no active candidate")
            return out
        return self.candidates[int(sub_arch[0])](x)
