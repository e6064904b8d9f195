"""The search-space contract: a declarative :class:`SpaceDefinition` and the :class:`SearchSpace` component.

A space is data: an ordered body of items (fixed layers, searchable choices,
SGNAS-style unified blocks). One generic supernet, child builder and lookup
table (``supernet.py``, ``child.py``, ``lookup_table.py``) serve every space.
An architecture is an int vector with one candidate index per searchable entry.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import torch.nn as nn

from osnas.config import ComponentOptions
from osnas.errors import ArchitectureError

# Costs of one module: [MACs (count), params (count), latency (ms)].
Measure = Callable[[nn.Module], np.ndarray]


@dataclass(frozen=True)
class Op:
    """A block to build: a kind from ``blocks.BLOCKS`` plus its keyword arguments."""

    kind: str
    args: tuple[tuple[str, Any], ...] = ()
    name: str = ""

    def kwargs(self) -> dict[str, Any]:
        return dict(self.args)


def op(kind: str, name: str = "", **args: Any) -> Op:
    """Shorthand: ``op("mbconv", "k3_e6", kernel=3, expansion=6)``."""
    return Op(kind, tuple(sorted(args.items())), name or kind)


class Item(ABC):
    """One element of a space body. Searchable items consume entries of the architecture vector."""

    in_ch: int
    out_ch: int
    stride: int

    @abstractmethod
    def entries(self) -> list[list[str]]:
        """Candidate names for each architecture entry this item consumes (empty when fixed)."""

    @abstractmethod
    def supernet_module(self) -> nn.Module:
        """The module holding every candidate; ``forward(x)`` when fixed, else ``forward(x, sub_arch)``."""

    @abstractmethod
    def child_module(self, sub_arch: Sequence[int]) -> nn.Module:
        """The static module for the chosen candidates only."""

    def cost_rows(self, measure: Measure) -> tuple[np.ndarray, list[np.ndarray]]:
        """(base cost, one (K, 3) cost array per entry); costs must add up to ``measure(child_module)``."""
        rows: list[np.ndarray] = []
        for names in self.entries():
            rows.append(np.stack([measure(self.child_module([k])) for k in range(len(names))]))
        if not rows:
            return measure(self.child_module([])), rows
        return np.zeros(3), rows


@dataclass(frozen=True)
class Fixed(Item):
    """A layer that is not searched (stem, head, fixed blocks)."""

    op: Op
    in_ch: int
    out_ch: int
    stride: int = 1

    def entries(self) -> list[list[str]]:
        return []

    def supernet_module(self) -> nn.Module:
        from osnas.search_spaces.blocks import build_block

        return build_block(self.op, self.in_ch, self.out_ch, self.stride)

    def child_module(self, sub_arch: Sequence[int]) -> nn.Module:
        return self.supernet_module()


@dataclass(frozen=True)
class Choice(Item):
    """A searchable layer: exactly one of ``candidates`` is used."""

    candidates: tuple[Op, ...]
    in_ch: int
    out_ch: int
    stride: int = 1

    def entries(self) -> list[list[str]]:
        return [[c.name for c in self.candidates]]

    def supernet_module(self) -> nn.Module:
        from osnas.search_spaces.blocks import ChoiceBlock

        return ChoiceBlock(self)

    def child_module(self, sub_arch: Sequence[int]) -> nn.Module:
        from osnas.search_spaces.blocks import build_block

        return build_block(self.candidates[int(sub_arch[0])], self.in_ch, self.out_ch, self.stride)


@dataclass(frozen=True)
class MinActive:
    """Rule: among ``entries``, at least ``count`` must differ from choice ``zero`` (SGNAS min expansion)."""

    entries: tuple[int, ...]
    zero: int
    count: int = 1


@dataclass(frozen=True)
class SpaceDefinition:
    """A whole search space as data; see the module docstring."""

    name: str
    input_size: int
    in_channels: int
    num_outputs: int
    body: tuple[Item, ...]
    rules: tuple[MinActive, ...] = field(default=())

    @cached_property
    def entry_names(self) -> list[list[str]]:
        return [names for item in self.body for names in item.entries()]

    @cached_property
    def item_slices(self) -> list[tuple[int, int]]:
        out, start = [], 0
        for item in self.body:
            stop = start + len(item.entries())
            out.append((start, stop))
            start = stop
        return out

    @property
    def num_layers(self) -> int:
        """L: the length of an architecture vector."""
        return len(self.entry_names)

    @cached_property
    def choices(self) -> np.ndarray:
        """(L,) number of candidates per entry."""
        return np.array([len(n) for n in self.entry_names], dtype=np.int64)

    @property
    def max_choices(self) -> int:
        return int(self.choices.max()) if self.num_layers else 0

    @cached_property
    def choice_mask(self) -> np.ndarray:
        """(L, K) True where candidate k exists in entry l."""
        return np.arange(self.max_choices)[None, :] < self.choices[:, None]

    def fingerprint(self) -> str:
        """Stable hash of the whole definition (invalidates cached lookup tables)."""
        return hashlib.sha256(repr(self).encode()).hexdigest()

    def candidate_names(self, arch: Sequence[int]) -> list[str]:
        return [self.entry_names[i][int(k)] for i, k in enumerate(arch)]

    def validate_arch(self, arch: Any) -> np.ndarray:
        """Check length and index ranges and rules; return an int64 vector or raise ArchitectureError."""
        try:
            vec = np.asarray(arch, dtype=np.int64).reshape(-1)
        except (TypeError, ValueError):
            raise ArchitectureError(f"architecture for space {self.name!r} must be a list of integers, got {arch!r}") from None
        if vec.shape[0] != self.num_layers:
            raise ArchitectureError(
                f"architecture has {vec.shape[0]} entries but space {self.name!r} has {self.num_layers} searchable layers"
            )
        bad = np.flatnonzero((vec < 0) | (vec >= self.choices))
        if bad.size:
            i = int(bad[0])
            raise ArchitectureError(
                f"architecture layer {i} has index {int(vec[i])}; valid range for space {self.name!r} "
                f"is 0..{int(self.choices[i]) - 1} ({', '.join(self.entry_names[i])})"
            )
        if not self.valid(vec[None])[0]:
            raise ArchitectureError(f"architecture breaks a rule of space {self.name!r}: {self.rules}")
        return vec

    def valid(self, archs: np.ndarray) -> np.ndarray:
        """(N,) bool: the rules hold (vectorized)."""
        archs = np.atleast_2d(archs)
        ok = np.ones(archs.shape[0], dtype=bool)
        for rule in self.rules:
            active = (archs[:, list(rule.entries)] != rule.zero).sum(axis=1)
            ok &= active >= rule.count
        return ok

    def repair_rules(self, archs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Make rule-breaking rows valid by activating random entries of the broken groups."""
        archs = np.atleast_2d(np.array(archs, dtype=np.int64, copy=True))
        for rule in self.rules:
            idx = np.array(rule.entries)
            for row in np.flatnonzero((archs[:, idx] != rule.zero).sum(axis=1) < rule.count):
                while (archs[row, idx] != rule.zero).sum() < rule.count:
                    zeros = idx[archs[row, idx] == rule.zero]
                    entry = int(rng.choice(zeros))
                    options = [k for k in range(int(self.choices[entry])) if k != rule.zero]
                    archs[row, entry] = int(rng.choice(options))
        return archs

    def sample(self, rng: np.random.Generator, n: int = 1) -> np.ndarray:
        """(n, L) uniformly drawn architectures (rule-breaking draws repaired)."""
        archs = np.floor(rng.random((n, self.num_layers)) * self.choices[None, :]).astype(np.int64)
        return self.repair_rules(archs, rng) if self.rules else archs


class SearchSpaceOptions(ComponentOptions):
    """Options every search space accepts."""


class SearchSpace(ABC):
    """A registered search space: turns options and data shape into a :class:`SpaceDefinition`."""

    name: ClassVar[str]  # the registered name, set by @register
    Options: ClassVar[type[ComponentOptions]] = SearchSpaceOptions
    presets: ClassVar[dict[str, Any]] = {}

    def __init__(self, options: ComponentOptions) -> None:
        self.options = options

    @abstractmethod
    def define(self, input_size: int, in_channels: int, num_outputs: int) -> SpaceDefinition:
        """Build the definition for this input size (strides follow it) and output width."""

    def preset(self, name: str, definition: SpaceDefinition) -> np.ndarray:
        """A named reference architecture (e.g. a paper's model) as an index vector."""
        if name not in self.presets:
            raise ArchitectureError(
                f"unknown preset {name!r} for search space {self.name!r}; presets: "
                f"{', '.join(sorted(self.presets)) or '(none)'}"
            )
        value = self.presets[name]
        value = value(definition) if callable(value) else value
        if value and isinstance(value[0], str):
            value = [definition.entry_names[i].index(n) for i, n in enumerate(value)]
        return definition.validate_arch(value)
