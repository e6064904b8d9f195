"""A byte-capped LRU of evaluation state per architecture prefix.

A supernet layer's BN statistics after recalibration, and its outputs on the fixed
recalibration and validation batches, depend only on the candidates chosen up to that
layer. Candidates met in a search share long prefixes (mutants and crossover children of
the same parents), so the evaluator keeps that state per prefix and resumes a candidate
from its longest cached prefix.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

Key = tuple[int, ...]
BNState = tuple[torch.Tensor, ...]  # running_mean, running_var, num_batches_tracked of one BN


@dataclass(frozen=True)
class PrefixState:
    """Everything a candidate needs from its layers up to and including one supernet item."""

    recal: tuple[torch.Tensor, ...]  # the item's outputs on the recalibration batches (BN in train mode)
    val: tuple[torch.Tensor, ...]  # its outputs on the validation batches (recalibrated BN, eval mode)
    norms: tuple[BNState | None, ...]  # recalibrated BN buffers of every path BN up to this item

    @property
    def nbytes(self) -> int:
        """Bytes of the activations (BN buffers are shared with the parent prefix and negligible)."""
        return sum(t.numel() * t.element_size() for t in (*self.recal, *self.val))


class PrefixCache:
    """LRU of :class:`PrefixState` keyed by ``(item, arch prefix)``, evicting beyond ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.entries: OrderedDict[Key, PrefixState] = OrderedDict()
        self.bytes = 0
        self.peak_bytes = 0
        self.hits = 0  # items served from the cache
        self.misses = 0  # items computed
        self.evictions = 0

    def lookup(self, key: Key) -> PrefixState | None:
        """The state of ``key`` (marked recently used), or None; counts nothing."""
        state = self.entries.get(key)
        if state is not None:
            self.entries.move_to_end(key)
        return state

    def put(self, key: Key, state: PrefixState) -> None:
        """Store ``state``; least recently used entries go until it fits (one larger than the cap is not kept)."""
        size = state.nbytes
        if size > self.max_bytes or key in self.entries:
            return
        while self.entries and self.bytes + size > self.max_bytes:
            _, old = self.entries.popitem(last=False)
            self.bytes -= old.nbytes
            self.evictions += 1
        self.entries[key] = state
        self.bytes += size
        self.peak_bytes = max(self.peak_bytes, self.bytes)

    def clear(self) -> None:
        """Drop every entry (the counters stay): its activations are of no use once a search is over."""
        self.entries.clear()
        self.bytes = 0

    def stats(self) -> dict[str, int | float]:
        """Counters for logs and benchmarks."""
        total = self.hits + self.misses
        return {"hits": self.hits, "misses": self.misses, "hit_rate": self.hits / total if total else 0.0,
                "entries": len(self.entries), "bytes": self.bytes, "peak_bytes": self.peak_bytes,
                "max_bytes": self.max_bytes, "evictions": self.evictions}
