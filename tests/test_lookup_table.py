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
