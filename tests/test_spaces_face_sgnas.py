"""MobileFaceNet and SGNAS spaces: LUT == thop on children, published figures, rules, strides, forwards."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from osnas.profiling import count_macs, count_params
from osnas.registry import REGISTRIES
from osnas.search_spaces.base import Fixed, MinActive, SpaceDefinition, op
from osnas.search_spaces.child import build_child
from osnas.search_spaces.lookup_table import LookupTable
from osnas.search_spaces.mobilefacenet import GDC
from osnas.search_spaces.sgnas import UnifiedBlock
from osnas.search_spaces.supernet import Supernet




def define(name: str, input_size: int, num_outputs: int = 10, in_channels: int = 3, **options):
    cls = REGISTRIES["search_space"].get(name)
    space = cls(cls.Options(**options))
    return space, space.define(input_size, in_channels, num_outputs)


def assert_lut_matches_children(definition: SpaceDefinition, n: int = 20) -> None:
    lut = LookupTable.build(definition, latency=False)
    shape = (1, definition.in_channels, definition.input_size, definition.input_size)
    for arch in definition.sample(np.random.default_rng(0), n):
        child = build_child(definition, arch)
        assert lut.raw_cost(arch, "params") == count_params(child)
        macs = count_macs(child, shape)
        assert abs(lut.raw_cost(arch, "macs") - macs) <= 0.005 * macs


def input_sizes_seen(model: torch.nn.Module, module_type: type, input_size: int, in_channels: int = 3) -> list[tuple]:
    """Spatial size of the input of every ``module_type`` module during one forward."""
    seen: list[tuple] = []
    hooks = [m.register_forward_hook(lambda mod, args, out: seen.append((mod, tuple(args[0].shape[2:]))))
             for m in model.modules() if isinstance(m, module_type)]
    with torch.no_grad():
        model.eval()(torch.zeros(2, in_channels, input_size, input_size))
    for h in hooks:
        h.remove()
    return seen


# ---------------------------------------------------------------------------------------------- MobileFaceNet
def test_mobilefacenet_preset_reproduces_the_paper_at_112():
    space, d = define("mobilefacenet", 112, num_outputs=128)
    arch = space.preset("mobilefacenet", d)
    child = build_child(d, arch)
    macs, params = count_macs(child, (1, 3, 112, 112)), count_params(child)
    # published: 221M MAdds (conv + linear), 0.99M params
    assert abs(macs / 221e6 - 1) < 0.03, macs
    assert abs(params / 0.99e6 - 1) < 0.03, params
    # the LUT prices the preset the same way
    lut = LookupTable.build(d, latency=False)
    assert lut.raw_cost(arch, "params") == params
    assert abs(lut.raw_cost(arch, "macs") - macs) <= 0.005 * macs
    assert child(torch.zeros(2, 3, 112, 112)).shape == (2, 128)


def test_mobilefacenet_paper_blocks_and_zero_placement():
    _, d = define("mobilefacenet", 112, num_outputs=128)
    # 15 bottlenecks; zero only where stride 1 keeps the channels: the first block of each stage cannot be skipped
    has_zero = ["zero" in names for names in d.entry_names]
    assert has_zero == [False, True, True, True, True, False] + [True] * 6 + [False, True, True]
    assert all({"k3_e2", "k3_e4", "k7_e6"} <= set(names) for names in d.entry_names)


def test_mobilefacenet_lut_matches_thop_on_random_children():
    _, d = define("mobilefacenet", 32, num_outputs=16, width_mult=0.25)
    assert_lut_matches_children(d)


@pytest.mark.parametrize("input_size,final", [(112, 7), (224, 14), (64, 4), (32, 4), (16, 4)])
def test_mobilefacenet_gdc_covers_the_final_map(input_size, final):
    _, d = define("mobilefacenet", input_size, num_outputs=8, width_mult=0.25)
    child = build_child(d, d.sample(np.random.default_rng(1), 1)[0])
    [(gdc, size)] = input_sizes_seen(child, GDC, input_size)
    assert size == (final, final)
    assert gdc.conv.kernel_size == (final, final)
    assert child(torch.zeros(3, 3, input_size, input_size)).shape == (3, 8)


def test_mobilefacenet_supernet_single_and_mixed():
    _, d = define("mobilefacenet", 16, num_outputs=8, width_mult=0.25)
    net = Supernet(d)
    x = torch.randn(2, 3, 16, 16)
    assert net(x, d.sample(np.random.default_rng(2), 1)[0]).shape == (2, 8)
    weights = torch.softmax(torch.randn(d.num_layers, d.max_choices), dim=1)
    assert net(x, weights).shape == (2, 8)


# ---------------------------------------------------------------------------------------------- SGNAS
def test_sgnas_layout_and_strides_follow_input_size():
    _, d = define("sgnas", 224, num_outputs=1000)
    layers = [item for item in d.body if isinstance(item, UnifiedBlock)]
    assert len(layers) == 19 and d.num_layers == 19 * 6
    assert [la.out_ch for la in layers] == [32] * 2 + [40] * 4 + [80] * 4 + [96] * 4 + [192] * 4 + [320]
    assert [la.stride for la in layers if la.stride == 2] == [2, 2, 2, 2]
    assert all(names == ["k3", "k5", "k7", "zero"] for names in d.entry_names)
    for size, final in [(224, 7), (32, 4)]:
        _, d = define("sgnas", size, width_mult=0.25)
        child = build_child(d, d.sample(np.random.default_rng(0), 1)[0])
        head_conv = d.body[-3]
        assert isinstance(head_conv, Fixed)
        sizes = [s for m, s in input_sizes_seen(child, torch.nn.Conv2d, size) if m.out_channels == head_conv.out_ch]
        assert sizes == [(final, final)]


def test_sgnas_lut_matches_thop_on_random_children():
    _, d = define("sgnas", 32, width_mult=0.25)
    assert_lut_matches_children(d)


def test_sgnas_sub_block_costs_are_per_slot():
    _, d = define("sgnas", 32, width_mult=0.25)
    lut = LookupTable.build(d, latency=False)
    macs = lut.unit_table("macs").reshape(19, 6, 4)
    assert np.all(macs[:, :, 3] == 0)  # zero costs nothing
    assert np.all(macs == macs[:, :1, :])  # every slot of a layer prices its kernels alike
    assert np.all(np.diff(macs[:, 0, :3], axis=1) > 0)  # k3 < k5 < k7


@pytest.mark.parametrize("min_expansion", [1, 2])
def test_sgnas_samples_never_have_an_all_zero_layer(min_expansion):
    _, d = define("sgnas", 32, width_mult=0.25, min_expansion=min_expansion)
    archs = d.sample(np.random.default_rng(3), 2000)
    active = (archs.reshape(-1, 19, 6) != 3).sum(axis=2)
    assert active.min() == min_expansion  # the rule holds and binds (uniform draws hit it)
    all_zero = np.full(d.num_layers, 3)
    assert not d.valid(all_zero[None])[0]
    repaired = d.repair_rules(all_zero[None], np.random.default_rng(0))
    assert d.valid(repaired).all()
    assert ((repaired.reshape(19, 6) != 3).sum(axis=1) == min_expansion).all()


def test_sgnas_bounds_respect_the_min_expansion_rule():
    layers = [UnifiedBlock(4, 4, 1, slots=3), UnifiedBlock(4, 8, 2, slots=3)]
    rules = (MinActive((0, 1, 2), 3, 2), MinActive((3, 4, 5), 3, 1))
    body = (Fixed(op("conv_bn_act", kernel=3), 3, 4, 1), *layers)
    d = SpaceDefinition("tiny_sgnas", 8, 3, 8, body, rules)
    lut = LookupTable.build(d, latency=False)
    archs = np.array(list(itertools.product(range(4), repeat=d.num_layers)))
    archs = archs[d.valid(archs)]
    for metric in ("macs", "params"):
        costs = lut.cost(archs, metric)
        lo, hi = lut.bounds(metric, d)
        assert lo == pytest.approx(costs.min(), rel=1e-12)
        assert hi == pytest.approx(costs.max(), rel=1e-12)
        # without the rule the cheapest network would drop every sub-block
        assert lo > lut.cost(np.full(d.num_layers, 3), metric)


def test_sgnas_mixed_forward_matches_single_path_for_one_hot_weights():
    _, d = define("sgnas", 16, width_mult=0.25)
    net = Supernet(d).eval()
    x = torch.randn(2, 3, 16, 16)
    arch = d.sample(np.random.default_rng(4), 1)[0]
    one_hot = torch.nn.functional.one_hot(torch.as_tensor(arch), d.max_choices).float()
    with torch.no_grad():
        assert torch.allclose(net(x, one_hot), net(x, arch), atol=1e-5)
    weights = torch.softmax(torch.randn(d.num_layers, d.max_choices), dim=1).requires_grad_()
    active = np.random.default_rng(5).random((d.num_layers, d.max_choices)) < 0.5
    active[:, 0] = True
    out = net.train()(x, weights, active)
    out.sum().backward()
    assert out.shape == (2, 10)
    runs = torch.as_tensor(active) & (torch.arange(d.max_choices) < 3)  # the zero choice adds nothing
    assert torch.all(weights.grad[~runs] == 0)
    assert weights.grad[runs].abs().min() > 0
