"""Lookup table: prices equal thop on the built child, vectorized pricing, caching and bounds."""

import json

import numpy as np
import pytest
import torch

from osnas.profiling import count_macs, count_params
from osnas.search_spaces.child import build_child
from osnas.search_spaces.lookup_table import LookupTable
from osnas.search_spaces.proxylessnas import ProxylessNAS
from osnas.search_spaces.supernet import Supernet


@pytest.fixture(scope="module")
def space():
    definition = ProxylessNAS(ProxylessNAS.Options(width_mult=0.25)).define(16, 1, 10)
    return definition, LookupTable.build(definition, latency=False)


def test_lut_equals_thop_on_child(space):
    definition, lut = space
    rng = np.random.default_rng(0)
    shape = (1, definition.in_channels, definition.input_size, definition.input_size)
    for arch in definition.sample(rng, 20):
        child = build_child(definition, arch)
        assert lut.raw_cost(arch, "params") == count_params(child)
        macs = count_macs(child, shape)
        assert abs(lut.raw_cost(arch, "macs") - macs) <= 0.005 * macs


def test_cost_is_vectorized_and_consistent(space):
    definition, lut = space
    archs = definition.sample(np.random.default_rng(1), 100)
    batch = lut.cost(archs, "macs")
    single = np.array([lut.cost(a, "macs") for a in archs])
    assert batch.shape == (100,)
    np.testing.assert_allclose(batch, single)


def test_expected_cost_is_softmax_weighted(space):
    definition, lut = space
    logits = torch.zeros(definition.num_layers, definition.max_choices, requires_grad=True)
    mask = torch.as_tensor(definition.choice_mask)
    probs = torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=1)
    cost = lut.expected_cost(probs, "macs")
    table = lut.unit_table("macs")
    mean_per_layer = [table[l, : definition.choices[l]].mean() for l in range(definition.num_layers)]
    assert cost.item() == pytest.approx(sum(mean_per_layer) + lut.base[0] * 1e-6)
    cost.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_expected_cost_of_a_batch_is_each_ones_cost(space):
    definition, lut = space
    mask = torch.as_tensor(definition.choice_mask)
    logits = torch.randn(5, definition.num_layers, definition.max_choices, generator=torch.Generator().manual_seed(0))
    probs = torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)
    batch = lut.expected_cost(probs, "params")
    assert batch.shape == (5,)
    assert torch.equal(batch, torch.stack([lut.expected_cost(p, "params") for p in probs]))


def test_bounds_are_achieved(space):
    definition, lut = space
    lo, hi = lut.bounds("macs", definition)
    table = lut.unit_table("macs")
    cheapest = np.array([np.argmin(table[l, : definition.choices[l]]) for l in range(definition.num_layers)])
    dearest = np.array([np.argmax(table[l, : definition.choices[l]]) for l in range(definition.num_layers)])
    assert lut.cost(cheapest, "macs") == pytest.approx(lo)
    assert lut.cost(dearest, "macs") == pytest.approx(hi)
    costs = lut.cost(definition.sample(np.random.default_rng(2), 500), "macs")
    assert costs.min() >= lo - 1e-9 and costs.max() <= hi + 1e-9


def test_cache_reuse_stale_and_corrupt(tmp_path):
    definition = ProxylessNAS(ProxylessNAS.Options(width_mult=0.25)).define(16, 1, 10)
    lut, note = LookupTable.load_or_build(definition, tmp_path, latency=False)
    assert note == "built"
    _, note = LookupTable.load_or_build(definition, tmp_path, latency=False)
    assert note.startswith("reused")
    # a different definition (another input size) never reuses the table
    other = ProxylessNAS(ProxylessNAS.Options(width_mult=0.25)).define(32, 1, 10)
    _, note = LookupTable.load_or_build(other, tmp_path / "other", latency=False)
    assert note == "built"
    # a stale table under the same key is rebuilt
    (path,) = list(tmp_path.glob("proxylessnas-*.json"))
    data = json.loads(path.read_text())
    data["meta"]["torch"] = "0.0.1"
    path.write_text(json.dumps(data))
    _, note = LookupTable.load_or_build(definition, tmp_path, latency=False)
    assert "does not match" in note
    path.write_text("{ not json")
    rebuilt, note = LookupTable.load_or_build(definition, tmp_path, latency=False)
    assert "corrupt" in note
    np.testing.assert_allclose(rebuilt.table, lut.table)


def test_supernet_single_path_matches_child_structure(space):
    definition, _ = space
    supernet = Supernet(definition).eval()
    arch = definition.sample(np.random.default_rng(3), 1)[0]
    child = build_child(definition, arch).eval()
    # copy the chosen path's weights into the child: identical outputs prove the child is that path
    path = supernet.path_modules(arch)
    for dst, src in zip(child, path):
        dst.load_state_dict(src.state_dict())
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(supernet(x, arch), child(x))


FACTORY = '''
import torch.nn as nn


class Widened(nn.Module):
    def __init__(self, in_ch, out_ch, stride):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch * {mult}, 3, stride, 1)
        self.project = nn.Conv2d(out_ch * {mult}, out_ch, 1)

    def forward(self, x):
        return self.project(self.conv(x))


def factory(in_ch, out_ch, stride):
    return Widened(in_ch, out_ch, stride)
'''


def load_factory(tmp_path, name: str, mult: int):
    """A block factory from its own file, as a user's plugin would define it."""
    import importlib.util

    path = tmp_path / f"{name}.py"
    path.write_text(FACTORY.format(mult=mult))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.factory


def test_cache_key_follows_the_block_code(tmp_path, monkeypatch):
    from osnas.search_spaces.base import Choice, Fixed, SpaceDefinition, op
    from osnas.search_spaces.blocks import BLOCKS

    body = (Fixed(op("conv_bn_act", kernel=3), 1, 4, 1),
            Choice((op("test_widened", "w"), op("skip", "zero")), 4, 4),
            Fixed(op("global_pool"), 4, 4), Fixed(op("linear"), 4, 10))
    definition = SpaceDefinition("toy_code", 8, 1, 10, body)
    meta = {}
    for mult in (1, 4):  # same kind, same definition, another implementation
        monkeypatch.setitem(BLOCKS, "test_widened", load_factory(tmp_path, f"widened_{mult}", mult))
        lut, note = LookupTable.load_or_build(definition, tmp_path / "cache", latency=False)
        meta[mult] = (LookupTable.cache_key(lut.meta), float(lut.cost(np.array([0]), "macs")), note)
    assert meta[1][0] != meta[4][0] and meta[4][2] == "built"  # the old table is not reused
    assert meta[4][1] > meta[1][1]
    _, note = LookupTable.load_or_build(definition, tmp_path / "cache", latency=False)
    assert note.startswith("reused")  # the same code again: the cache still works
    assert {"code_hash", "osnas", "thop"} <= set(lut.meta)
