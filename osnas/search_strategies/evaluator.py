"""Scores candidate architectures on the trained supernet.

For each candidate: BN statistics on its path are reset and recomputed over a
fixed set of training batches (the shared running stats of a supernet do not
fit any single path), then it is scored on a fixed validation subset, with each
eval-mode BN folded into the convolution before it and the validation batches
run as a few large ones (eval-mode outputs do not depend on the batch). Scores
are cached, so no architecture is evaluated twice.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, contextmanager
from itertools import islice
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from osnas.dataflows.base import Loader
from osnas.search_spaces.supernet import Supernet
from osnas.search_strategies.base import arch_key
from osnas.search_strategies.prefix_cache import BNState, PrefixCache, PrefixState
from osnas.training_agents.base import TrainingAgent

Batch = tuple[torch.Tensor, torch.Tensor]


def take_batches(loader: Loader, count: int) -> list[Batch]:
    """The first ``count`` batches of a loader, kept so every candidate sees the same data."""
    return [(x, y) for x, y in islice(iter(loader), count)]


def batchnorms(modules: list[nn.Module]) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for module in modules for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextmanager
def recalibrating(norms: list[nn.modules.batchnorm._BatchNorm]) -> Iterator[None]:
    """Inside: ``norms`` are reset and in train mode with a cumulative average, so the forwards
    run in the block leave in their running mean/var the exact average over those batches."""
    saved = [(m, m.momentum, m.training) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
        m.train()
    try:
        yield
    finally:
        for m, momentum, training in saved:
            m.momentum = momentum
            m.train(training)


@contextmanager
def eval_mode(modules: list[nn.Module]) -> Iterator[None]:
    """``modules`` (a path's) in eval mode inside, each submodule's own mode restored after.

    Only the path: ``supernet.eval()`` walks every candidate of every layer, 12 % of the
    quickstart search's time when done per candidate.
    """
    flags = [(m, m.training) for module in modules for m in module.modules()]
    for m, _ in flags:
        m.training = False
    try:
        yield
    finally:
        for m, training in flags:
            m.training = training


@contextmanager
def frozen(supernet: Supernet) -> Iterator[None]:
    """Supernet weights fixed, BN on batch statistics; parameters, modes and BN buffers restored afterwards."""
    flags = [(p, p.requires_grad) for p in supernet.parameters()]
    buffers = {name: b.clone() for name, b in supernet.named_buffers()}
    was_training = supernet.training
    supernet.eval()
    for module in supernet.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.train()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        with torch.no_grad():
            for name, b in supernet.named_buffers():
                b.copy_(buffers[name])
        supernet.train(was_training)


class FoldedConv(nn.Module):
    """A ``Conv2d`` with the eval-mode affine of the ``BatchNorm2d`` after it folded into its weight and bias."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
        super().__init__()
        self.conv = conv
        scale = torch.rsqrt(bn.running_var + bn.eps)
        shift = -bn.running_mean * scale
        if bn.affine:
            scale, shift = scale * bn.weight, shift * bn.weight + bn.bias
        self.weight = conv.weight * scale.reshape(-1, 1, 1, 1)
        self.bias = shift if conv.bias is None else conv.bias * scale + shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        return F.conv2d(x, self.weight, self.bias, c.stride, c.padding, c.dilation, c.groups)


def foldable(first: nn.Module, second: nn.Module) -> bool:
    return (isinstance(first, nn.Conv2d) and first.padding_mode == "zeros" and isinstance(second, nn.BatchNorm2d)
            and not second.training and second.running_mean is not None)


@contextmanager
def folded(modules: list[nn.Module]) -> Iterator[None]:
    """Inside: every ``Conv2d`` directly followed by a ``BatchNorm2d`` in an ``nn.Sequential`` of ``modules``
    runs as one convolution (the BN's eval-mode affine folded in: one pass over the activations less).

    For scoring on the validation batches; the modules are put back on exit.
    """
    swaps = []
    for module in modules:
        for seq in module.modules():
            if isinstance(seq, nn.Sequential):
                names = list(seq._modules)
                swaps += [(seq, a, b) for a, b in zip(names, names[1:]) if foldable(seq._modules[a], seq._modules[b])]
    originals = [(seq._modules[a], seq._modules[b]) for seq, a, b in swaps]
    for (seq, a, b), (conv, bn) in zip(swaps, originals):
        seq._modules[a], seq._modules[b] = FoldedConv(conv, bn), nn.Identity()  # type: ignore[arg-type]
    try:
        yield
    finally:
        for (seq, a, b), (conv, bn) in zip(swaps, originals):
            seq._modules[a], seq._modules[b] = conv, bn


@torch.inference_mode()
def recalibrate_bn(forward: Callable[[torch.Tensor], torch.Tensor], norms: list[nn.Module], batches: list[Batch]) -> None:
    """Replace running mean/var of ``norms`` by their exact average over ``batches``."""
    if not batches or not norms:
        return
    with recalibrating(norms):  # type: ignore[arg-type]
        for x, _ in batches:
            forward(x)


def bn_buffers(norms: list[nn.modules.batchnorm._BatchNorm]) -> tuple[BNState | None, ...]:
    return tuple(None if m.running_mean is None else
                 (m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in norms)


def load_bn_buffers(norms: list[nn.modules.batchnorm._BatchNorm], states: tuple[BNState | None, ...]) -> None:
    for m, state in zip(norms, states):
        if state is not None:
            m.running_mean.copy_(state[0])
            m.running_var.copy_(state[1])
            m.num_batches_tracked.copy_(state[2])


def cast(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return x.to(dtype) if x.is_floating_point() else x


# merged validation chunks hold at most this many images x pixels: 32 images at 16x16, 128 at 8x8
MERGE_POSITIONS = 2**13


def merge_batches(inputs: list[torch.Tensor], limit: int = MERGE_POSITIONS) -> list[list[torch.Tensor]]:
    """Consecutive inputs grouped so each group's images x pixels stay within ``limit``; a batch is never split.

    Per-operator overhead dominates small batches on a CPU (quickstart: 9 batches of 32 cost 1.3x
    one batch of 288), and eval-mode outputs are the same whatever the batch, so scoring runs one
    forward per group. Groups stay small enough for a layer's activations to fit the CPU's cache:
    at 32x32 the issue-17 job's search took 11.9 s with all 288 images in one forward (2**20
    positions) and 8.2 s with 64 per forward (2**16). Merging anew wherever the resolution falls
    (:meth:`Evaluator._val_step`) lets the cap be lower still: with 2**13 the quickstart's search
    took 4.9-5.0 s against 5.3-5.8 s merged once to 2**16, the job's 8.9-9.4 s against 9.3-10.5 s.
    """
    groups: list[list[torch.Tensor]] = []
    size = 0
    for x in inputs:
        n = x.numel() // max(x.shape[1], 1) if x.dim() > 1 else x.numel()
        if groups and size + n <= limit:
            groups[-1].append(x)
            size += n
        else:
            groups.append([x])
            size = n
    return groups


def regrouped(chunks: list[torch.Tensor], limit: int) -> list[torch.Tensor]:
    """``chunks`` concatenated as :func:`merge_batches` groups them (the same list where no two fit together)."""
    return [group[0] if len(group) == 1 else torch.cat(group) for group in merge_batches(chunks, limit)]


class Evaluator:
    """``evaluate(archs) -> scores`` (higher is better) with BN recalibration and a cache.

    With ``prefix_cache_mb > 0`` a candidate resumes from its longest prefix evaluated before
    (:mod:`osnas.search_strategies.prefix_cache`): the same operations on the same tensors, so
    the scores are bit-identical to a full evaluation, at the cost of up to that many MB of
    activations. A batch of candidates is scored in lexicographic order, neighbours sharing
    the longest prefixes. The validation batches run merged up to ``merge_positions`` images x
    pixels per forward, merged further before each item where the resolution has fallen (0: one
    forward per batch, as before issue 17).

    It is also the search's :class:`~osnas.search_strategies.base.SupernetScorer`: the
    frozen supernet as a differentiable loss of mixing weights on its training batches.
    """

    def __init__(
        self,
        supernet: Supernet,
        agent: TrainingAgent,
        train_loader: Loader,
        val_loader: Loader,
        bn_batches: int = 4,
        val_batches: int = 4,
        prefix_cache_mb: float = 512.0,
        merge_positions: int = MERGE_POSITIONS,
    ) -> None:
        self.supernet = supernet
        self.agent = agent
        self.bn_data = take_batches(train_loader, bn_batches)
        self.val_data = take_batches(val_loader, val_batches)
        self.merge_positions = merge_positions
        self.val_inputs = regrouped([x for x, _ in self.val_data], merge_positions)  # what scoring runs
        self.cache: dict[tuple[int, ...], float] = {}
        self.metrics: dict[tuple[int, ...], dict[str, float]] = {}
        self.recalibrations = 0
        self.prefix_cache = PrefixCache(int(prefix_cache_mb * 2**20)) if prefix_cache_mb > 0 else None
        # item i's recalibration outputs are needed only while a later item may hold a BatchNorm
        items = list(supernet.items)
        self._recal_after = [bool(batchnorms(items[i + 1:])) for i in range(len(items))]

    @property
    def num_evaluated(self) -> int:
        """Distinct architectures scored so far (cache misses)."""
        return len(self.cache)

    def score(self, arch: np.ndarray) -> float:
        key = arch_key(arch)
        if key in self.cache:
            return self.cache[key]
        metrics = self._metrics(key)
        self.recalibrations += 1 if self.bn_data else 0
        value = float(metrics[self.agent.selection_metric])
        self.cache[key] = value
        self.metrics[key] = metrics
        return value

    def _metrics(self, key: tuple[int, ...]) -> dict[str, float]:
        """The task's metrics of ``key`` on the validation batches, its path's BN recalibrated first."""
        path = self.supernet.path_modules(key)
        with eval_mode(path):
            if self.prefix_cache is None:
                outputs = self._full_outputs(key, path)
            else:  # resumes from the longest prefix scored before
                outputs = self._incremental_outputs(key, path, self.prefix_cache)
            with torch.inference_mode():  # no autograd bookkeeping: nothing scored here is differentiated
                return self.agent.evaluate(self._answers(key, outputs), self.val_data)

    def _full_outputs(self, key: tuple[int, ...], path: list[nn.Module]) -> list[torch.Tensor]:
        """The path's BN recalibrated by whole forwards; its outputs on the validation chunks, BN folded."""

        def forward(x: torch.Tensor) -> torch.Tensor:
            return self.supernet(x, key)

        recalibrate_bn(forward, batchnorms(path), self.bn_data)
        with torch.inference_mode(), folded(path):
            outputs, arch = [cast(x, self._dtype) for x in self.val_inputs], list(key)
            for i in range(len(self.supernet.items)):
                outputs = self._val_step(i, outputs, arch)
            return outputs

    @property
    def _dtype(self) -> torch.dtype:
        """The input cast of :func:`osnas.training.compute_in`, which item calls skip."""
        return next(self.supernet.parameters()).dtype

    def _answers(self, key: tuple[int, ...], outputs: list[torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        """A forward that answers each fixed validation batch from the chunks' outputs (any other input runs the path)."""
        pieces = torch.cat(outputs).split([len(x) for x, _ in self.val_data])
        known = {id(x): out for (x, _), out in zip(self.val_data, pieces)}

        def forward(x: torch.Tensor) -> torch.Tensor:
            out = known.get(id(x))
            return self.supernet(x, key) if out is None else out

        return forward

    @torch.inference_mode()
    def _incremental_outputs(self, key: tuple[int, ...], path: list[nn.Module], cache: PrefixCache
                             ) -> list[torch.Tensor]:
        """Recalibrate and run the merged validation inputs from the longest cached prefix on (``path``: the
        modules of the path, one per supernet item).

        The recalibration batches go batch by batch through the remaining items, as a whole forward goes
        (so a batch's activations stay in the CPU cache), the validation chunks item by item (merged
        anew where the resolution falls); every item's outputs are kept for the prefix cache. Returns
        the path's outputs on the validation chunks.
        """
        supernet, arch = self.supernet, list(key)
        stops = [stop for _, stop in supernet.definition.item_slices]
        count = len(supernet.items)
        start, state = 0, None
        for i in range(count - 1, -1, -1):
            state = cache.lookup((i, *key[:stops[i]]))
            if state is not None:
                start = i + 1
                break
        cache.hits += start
        cache.misses += count - start
        recal = list(state.recal) if state else [cast(x, self._dtype) for x, _ in self.bn_data]
        val = list(state.val) if state else [cast(x, self._dtype) for x in self.val_inputs]
        norms = state.norms if state else ()
        if state:  # leave the supernet's BN buffers as a full recalibration would
            load_bn_buffers(batchnorms(path[:start]), norms)
        items = range(start, count)
        modules = path[start:]
        item_norms = [batchnorms([module]) for module in modules]
        # the recalibration batches go as far as a BN of this path or of any later candidate (for the cache)
        needed = [i for i, n in zip(items, item_norms) if n or self._recal_after[i]]
        with recalibrating([m for n in item_norms for m in n]):
            recal_out = self._sweep(recal, range(start, needed[-1] + 1) if needed else range(0), arch)
        with folded(modules):
            val_out = []
            for i in items:
                val = self._val_step(i, val, arch)
                val_out.append(val)
        for j, i in enumerate(items):
            norms = norms + bn_buffers(item_norms[j])
            if stops[i] < len(key):  # a prefix of the whole architecture only (the score cache holds the rest)
                kept = recal_out[j] if self._recal_after[i] else []
                cache.put((i, *key[:stops[i]]), PrefixState(tuple(kept), tuple(val_out[j]), norms))
        return val_out[-1] if val_out else val

    def _sweep(self, batches: list[torch.Tensor], items: range, arch: list[int]) -> list[list[torch.Tensor]]:
        """Each batch through ``items`` in turn; ``[item][batch]`` outputs."""
        outputs: list[list[torch.Tensor]] = [[] for _ in items]
        for x in batches:
            for j, i in enumerate(items):
                x = self.supernet.item_forward(i, x, arch)
                outputs[j].append(x)
        return outputs

    def _val_step(self, index: int, chunks: list[torch.Tensor], arch: list[int]) -> list[torch.Tensor]:
        """The validation chunks through item ``index``, merged anew first where the resolution has fallen.

        The grouping before an item depends only on the chunks that reach it, so a candidate resumed
        from a cached prefix runs the same forwards as a full evaluation.
        """
        return [self.supernet.item_forward(index, x, arch) for x in regrouped(chunks, self.merge_positions)]

    def evaluate(self, archs: np.ndarray) -> np.ndarray:
        """Scores of an (N, L) batch (or one (L,) vector) of architectures."""
        archs = np.atleast_2d(np.asarray(archs, dtype=np.int64))
        self.score_new([k for k in dict.fromkeys(arch_key(a) for a in archs) if k not in self.cache])
        return np.array([self.score(a) for a in archs], dtype=np.float64)

    # --------------------------------------------------------- SupernetScorer: training on the frozen supernet
    @property
    def num_val_batches(self) -> int:
        return len(self.val_data)

    @property
    def device(self) -> torch.device:
        return next(self.supernet.parameters()).device

    def frozen(self) -> AbstractContextManager[None]:
        return frozen(self.supernet)

    def mixed_loss(self, weights: torch.Tensor, active: np.ndarray, step: int) -> torch.Tensor:
        x, y = self.val_data[step % len(self.val_data)]
        return self.agent.loss(self.supernet(x, weights, active=active), y)

    def score_new(self, keys: list[tuple[int, ...]]) -> None:
        """Score ``keys`` in lexicographic order (shared prefixes adjacent); cache order stays that of ``keys``."""
        for key in sorted(keys):
            self.score(np.asarray(key))
        for key in keys:
            self.cache[key] = self.cache.pop(key)
            self.metrics[key] = self.metrics.pop(key)

    def cache_stats(self) -> dict[str, int | float]:
        """Prefix-cache counters (items reused vs computed, bytes held); empty when it is off."""
        return {} if self.prefix_cache is None else self.prefix_cache.stats()

    def release_activations(self) -> None:
        """Free the prefix cache's activations (up to ``prefix_cache_mb``); scores and counters stay."""
        if self.prefix_cache is not None:
            self.prefix_cache.clear()

    def describe_cache(self) -> str:
        """One line for the log: how much the prefix cache saved and held."""
        stats = self.cache_stats()
        if not stats:
            return "prefix cache off"
        return (f"prefix cache: {stats['hits']} of {stats['hits'] + stats['misses']} layer evaluations reused "
                f"({stats['hit_rate']:.0%}), peak {stats['peak_bytes'] / 2**20:.0f} MB of "
                f"{stats['max_bytes'] / 2**20:.0f} MB, {stats['evictions']} evictions")

    def state_dict(self) -> dict[str, object]:
        return {"cache": [[list(k), v] for k, v in self.cache.items()]}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.cache = {tuple(k): float(v) for k, v in state["cache"]}  # type: ignore[union-attr]
