"""Prefix-cached (incremental) candidate evaluation gives bit-identical scores to full evaluation."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from osnas.cli.profile import load_space
from osnas.registry import REGISTRIES
from osnas.search_spaces.supernet import Supernet
from osnas.search_strategies.evaluator import Evaluator, FoldedConv, folded, merge_batches, regrouped
from osnas.search_strategies.prefix_cache import PrefixCache, PrefixState
from osnas.training import compute_in


def agent():
    from osnas.training_agents.classification import Classification

    criterion_cls = REGISTRIES["criterion"].get("cross_entropy")
    return Classification(Classification.Options(), criterion_cls(criterion_cls.Options(), 10, 10), 10)


def batches(count: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(4, 3, 16, 16, generator=gen), torch.randint(0, 10, (4,), generator=gen))
            for _ in range(count)]


def candidates(definition, seed: int) -> np.ndarray:
    """Random archs, mutants of them at random depths (shared prefixes), and exact repeats."""
    rng = np.random.default_rng(seed)
    base = definition.sample(rng, 3)
    mutants = []
    for arch in base:
        child = arch.copy()
        layer = int(rng.integers(1, definition.num_layers))
        child[layer:] = definition.sample(rng, 1)[0][layer:]
        mutants.append(child)
    archs = np.concatenate([base, np.stack(mutants), base[:1]])
    valid = definition.valid(archs)
    return archs[valid]


def evaluator(supernet: Supernet, cache_mb: float, bn_batches: int = 2) -> Evaluator:
    return Evaluator(supernet, agent(), batches(bn_batches, 0), batches(2, 1), bn_batches, 2, prefix_cache_mb=cache_mb)


def bn_buffers(supernet: Supernet) -> dict[str, torch.Tensor]:
    return {k: v for k, v in supernet.state_dict().items() if "running" in k or "num_batches" in k}


@pytest.mark.parametrize("name, layout", [("proxylessnas", torch.contiguous_format), ("sgnas", torch.contiguous_format),
                                          ("proxylessnas", torch.channels_last)])  # one entry per item, several; NHWC
def test_cached_scores_equal_full_evaluation_bit_for_bit(name, layout):
    _, definition = load_space(name, ["width_mult=0.25"], 16, 3, 10)
    torch.manual_seed(0)
    net = Supernet(definition).to(memory_format=layout)
    with torch.no_grad():  # distinct BN affine parameters, so a wrong stat would change the logits
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    archs = candidates(definition, 0)
    plain, cached = evaluator(copy.deepcopy(net), 0), evaluator(copy.deepcopy(net), 64)
    assert plain.prefix_cache is None
    for part in np.array_split(archs, 2):  # several batches: later ones resume from earlier prefixes
        assert np.array_equal(plain.evaluate(part), cached.evaluate(part))
        # the supernet is left as a full recalibration of the last scored candidate leaves it
        left = bn_buffers(cached.supernet)
        assert all(torch.equal(v, left[k]) for k, v in bn_buffers(plain.supernet).items())
    assert plain.metrics == cached.metrics  # loss and top-5 too, bit for bit
    assert list(plain.cache) == list(cached.cache)  # same cache order (resume states stay comparable)
    stats = cached.cache_stats()
    assert stats["hits"] > 0 and stats["misses"] > 0 and 0 < stats["bytes"] <= 64 * 2**20

    shuffled = evaluator(copy.deepcopy(net), 64)
    order = np.random.default_rng(1).permutation(len(archs))
    scores = shuffled.evaluate(archs[order])
    assert np.array_equal(scores, plain.evaluate(archs)[order])


def test_released_activations_free_the_cache_and_keep_scores_exact():
    """The search phase frees the prefix cache after searching; scores stay, later candidates stay exact."""
    _, definition = load_space("proxylessnas", ["width_mult=0.25"], 16, 3, 10)
    torch.manual_seed(4)
    net = Supernet(definition)
    archs = candidates(definition, 5)
    first, later = archs[:3], archs[3:]
    plain, cached = evaluator(copy.deepcopy(net), 0), evaluator(copy.deepcopy(net), 64)
    scores = cached.evaluate(first)
    assert cached.cache_stats()["bytes"] > 0
    cached.release_activations()
    stats = cached.cache_stats()
    assert stats["bytes"] == stats["entries"] == 0 and stats["misses"] > 0  # counters kept
    assert np.array_equal(cached.evaluate(first), scores)  # from the score cache
    assert np.array_equal(plain.evaluate(archs), cached.evaluate(archs))
    assert len(later) and cached.cache_stats()["bytes"] > 0  # the cache fills again


def test_tight_cap_evicts_and_stays_exact():
    _, definition = load_space("proxylessnas", ["width_mult=0.25"], 16, 3, 10)
    torch.manual_seed(1)
    net = Supernet(definition)
    archs = candidates(definition, 3)
    plain = evaluator(copy.deepcopy(net), 0, bn_batches=1)
    one_layer = 2 * 4 * 16 * 16 * 16 * 4 * 2  # about two entries of the widest activations
    tight = evaluator(copy.deepcopy(net), one_layer / 2**20, bn_batches=1)
    assert np.array_equal(plain.evaluate(archs), tight.evaluate(archs))
    stats = tight.cache_stats()
    assert stats["evictions"] > 0 and stats["peak_bytes"] <= one_layer


@pytest.mark.parametrize("bn_batches, dtype", [(0, torch.float32), (1, torch.float64)])
def test_no_recalibration_or_float64_is_exact_too(bn_batches, dtype):
    _, definition = load_space("spos", ["width_mult=0.25"], 16, 3, 10)
    torch.manual_seed(2)
    net = compute_in(Supernet(definition), dtype)  # float64 casts the float32 batches on entry
    archs = candidates(definition, 5)[:5]
    plain = evaluator(copy.deepcopy(net), 0, bn_batches=bn_batches)
    cached = evaluator(copy.deepcopy(net), 16, bn_batches=bn_batches)
    assert np.array_equal(plain.evaluate(archs), cached.evaluate(archs))


def test_validation_batches_merge_in_order_within_the_limit_and_never_split():
    xs = [torch.zeros(n, 3, 4, 4) for n in (4, 4, 8, 2, 4)]  # 16 positions per image
    groups = merge_batches(xs, limit=16 * 8)
    assert [[len(x) for x in g] for g in groups] == [[4, 4], [8], [2, 4]]
    assert [x for g in groups for x in g] == xs  # the same tensors, in order
    assert [len(g) for g in merge_batches(xs, limit=0)] == [1] * 5  # 0: one forward per batch
    assert [[len(x) for x in g] for g in merge_batches([torch.zeros(9, 3, 4, 4)], limit=16)] == [[9]]


def test_chunks_merge_anew_where_the_resolution_falls():
    chunks = [torch.zeros(4, 3, 8, 8) for _ in range(3)]  # 256 positions each
    assert all(a is b for a, b in zip(regrouped(chunks, 256), chunks, strict=True))  # none fit: nothing copied
    smaller = [torch.arange(4 * 16.0).reshape(4, 1, 4, 4) + i for i in range(3)]  # 64 positions each: two fit
    merged = regrouped(smaller, 128)
    assert [len(x) for x in merged] == [8, 4] and torch.equal(torch.cat(merged), torch.cat(smaller))


@pytest.mark.parametrize("limit, chunks", [(2**20, 1), (4 * 64, 3), (0, 3)])  # one forward; merged at 4x4; none
def test_merged_validation_scores_as_one_forward_per_batch(limit, chunks):
    _, definition = load_space("proxylessnas", ["width_mult=0.25"], 16, 3, 10)
    torch.manual_seed(4)
    net = compute_in(Supernet(definition), torch.float64)  # no float32 rounding between batch sizes
    archs = candidates(definition, 7)[:4]
    data = batches(3, 1)  # three batches of 4 images at 16x16: 1024 positions each
    merged, apart = (Evaluator(copy.deepcopy(net), agent(), batches(2, 0), data, 2, 3, 16, merge_positions=cap)
                     for cap in (limit, 0))
    assert len(merged.val_inputs) == chunks
    assert np.array_equal(merged.evaluate(archs), apart.evaluate(archs))
    for key, metrics in apart.metrics.items():
        assert merged.metrics[key] == pytest.approx(metrics, rel=1e-12)


@pytest.mark.parametrize("cache_mb", [0, 16])
def test_scoring_leaves_every_module_in_its_own_mode(cache_mb):
    _, definition = load_space("proxylessnas", ["width_mult=0.25"], 16, 3, 10)
    net = Supernet(definition).train()
    modules = list(net.modules())
    for m in modules[::3]:  # a mix, as inside a frozen supernet (eval, BN in train mode)
        m.training = False
    before = [m.training for m in modules]
    scorer = evaluator(net, cache_mb)
    scorer.evaluate(candidates(definition, 9)[:3])
    assert [m.training for m in modules] == before


def test_lru_keeps_recent_entries_within_the_cap():
    t = torch.zeros(256)  # 1 KiB
    cache = PrefixCache(2 * 2048)
    for key in [(0,), (1,), (2,)]:
        cache.put(key, PrefixState((t,), (t,), ()))
    assert cache.lookup((0,)) is None and cache.lookup((1,)) is not None
    cache.put((3,), PrefixState((t,), (t,), ()))  # (2,) is now the least recently used
    assert cache.lookup((2,)) is None and cache.lookup((1,)) is not None
    cache.put((4,), PrefixState((torch.zeros(4096),), (), ()))  # larger than the cap: not kept
    assert cache.lookup((4,)) is None and cache.bytes == 2 * 2048 and cache.evictions == 2


def test_folded_batchnorm_gives_the_plain_forward_and_is_undone():
    _, definition = load_space("proxylessnas", ["width_mult=0.25"], 16, 3, 10)
    torch.manual_seed(3)
    net = Supernet(definition).eval()
    with torch.no_grad():  # BN statistics and affine far from identity, so a wrong fold shows
        for name, buffer in net.named_buffers():
            if "running_mean" in name:
                buffer.normal_()
            elif "running_var" in name:
                buffer.uniform_(0.5, 2.0)
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    arch = definition.sample(np.random.default_rng(0), 1)[0]
    x = torch.randn(4, 3, 16, 16)
    with torch.inference_mode():
        plain = net(x, arch)
        with folded(net.path_modules(arch)):
            convs = sum(isinstance(m, FoldedConv) for m in net.modules())
            fused = net(x, arch)
        again = net(x, arch)
    assert convs > 5 and not any(isinstance(m, FoldedConv) for m in net.modules())
    torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-4)
    assert torch.equal(again, plain)
