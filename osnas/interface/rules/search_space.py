"""Search-space rules, checked at 32x32 inputs with 3 channels and 10 outputs."""

from __future__ import annotations

import numpy as np
import torch

from osnas.errors import OsnasError
from osnas.interface.contract import CPU, Broken, Subject, rule, run_module, shape
from osnas.profiling import count_macs, count_params
from osnas.search_spaces.base import SearchSpace, SpaceDefinition
from osnas.search_spaces.child import build_child
from osnas.search_spaces.lookup_table import LookupTable
from osnas.search_spaces.supernet import Supernet

SPACE_SHAPE = (32, 3, 10)  # input size, channels, outputs


def space(s: Subject) -> SearchSpace:
    return s.shared("space", lambda: s.cls(s.options))


def definition(s: Subject) -> SpaceDefinition:
    return s.shared("definition", lambda: space(s).define(*SPACE_SHAPE))


def architectures(s: Subject) -> np.ndarray:
    """A few random architectures of the space plus its presets."""

    def build() -> np.ndarray:
        archs = list(definition(s).sample(np.random.default_rng(0), 4))
        archs += [space(s).preset(name, definition(s)) for name in sorted(space(s).presets)]
        return np.stack(archs)

    return s.shared("architectures", build)


@rule("search_space", "define() returns a deterministic SpaceDefinition named after the component, of the requested "
                      "shape, with at least one searchable layer")
def check_definition(s: Subject) -> None:
    d = definition(s)
    if not isinstance(d, SpaceDefinition):
        raise Broken(f"define() returned {type(d).__name__}, not a SpaceDefinition")
    if d.name != s.name:
        raise Broken(f"the definition is named {d.name!r}; name it {s.name!r} (architecture files and cached "
                     "lookup tables are matched by it)")
    if (d.input_size, d.in_channels, d.num_outputs) != SPACE_SHAPE:
        raise Broken(f"define{SPACE_SHAPE} gave input_size, in_channels, num_outputs = "
                     f"{(d.input_size, d.in_channels, d.num_outputs)}")
    if d.num_layers == 0:
        raise Broken("the space has no searchable layer (no Choice in its body)")
    if space(s).define(*SPACE_SHAPE).fingerprint() != d.fingerprint():
        raise Broken("two define() calls with the same arguments give different definitions; cached lookup tables "
                     "and supernet reuse rely on it being deterministic")


@rule("search_space", "every candidate of a searchable layer maps the layer's input to the same output shape, and "
                      "the network ends in (N, num_outputs)")
def check_candidate_shapes(s: Subject) -> str:
    d = definition(s)
    x = torch.zeros(1, d.in_channels, d.input_size, d.input_size)
    layer = 0
    for position, item in enumerate(d.body):
        entries = item.entries()
        for j, names in enumerate(entries):
            reference: tuple[str, torch.Size] | None = None
            for k, candidate in enumerate(names):
                sub = [0] * len(entries)
                sub[j] = k
                out = run_module(item.child_module(sub), x, f"candidate {candidate!r} of searchable layer {layer + j}")
                if reference is None:
                    reference = (candidate, out.shape)
                elif out.shape != reference[1]:
                    raise Broken(f"searchable layer {layer + j}: candidate {candidate!r} outputs {tuple(out.shape)} "
                                 f"but {reference[0]!r} outputs {tuple(reference[1])} (input {tuple(x.shape)})")
        if not entries:
            out = run_module(item.child_module([]), x, f"fixed layer {position} ({type(item).__name__})")
        x = out
        layer += len(entries)
    if tuple(x.shape) != (1, d.num_outputs):
        raise Broken(f"the network outputs {tuple(x.shape)} for one input; expected {(1, d.num_outputs)}")
    return f"{d.num_layers} searchable layers, {int(d.choices.sum())} candidates"


@rule("search_space", "the supernet (one path) and the child network of random architectures and presets map "
                      "(N, C, S, S) to finite (N, num_outputs)")
def check_forward(s: Subject) -> None:
    d = definition(s)
    supernet = Supernet(d).eval()
    x = torch.randn(2, d.in_channels, d.input_size, d.input_size, generator=torch.Generator().manual_seed(0))
    for arch in architectures(s):
        with torch.no_grad():
            for what, out in (("supernet", supernet(x, arch)), ("child network", build_child(d, arch).eval()(x))):
                if tuple(out.shape) != (2, d.num_outputs) or not torch.isfinite(out).all():
                    raise Broken(f"the {what} of architecture {arch.tolist()} gives {shape(out)}"
                                 f"{'' if torch.isfinite(out).all() else ' with non-finite values'}; "
                                 f"expected finite {(2, d.num_outputs)}")


@rule("search_space", "the supernet accepts (L, K) mixing weights over the candidates (differentiable training "
                      "strategies use them)")
def check_mixed_forward(s: Subject) -> None:
    d = definition(s)
    weights = torch.tensor(d.choice_mask / d.choices[:, None], dtype=torch.float32)
    with torch.no_grad():
        out = Supernet(d).eval()(torch.randn(2, d.in_channels, d.input_size, d.input_size), weights)
    if tuple(out.shape) != (2, d.num_outputs):
        raise Broken(f"a mixed forward gives {shape(out)}; expected {(2, d.num_outputs)}")


@rule("search_space", "lookup-table MACs and params equal thop's count on the child network, for random "
                      "architectures and presets")
def check_costs(s: Subject) -> str:
    d = definition(s)
    lut = LookupTable.build(d, CPU, latency=False)
    input_shape = (1, d.in_channels, d.input_size, d.input_size)
    for arch in architectures(s):
        child = build_child(d, arch)
        for metric, counted in (("macs", count_macs(child, input_shape)), ("params", count_params(child))):
            priced = float(lut.raw_cost(arch, metric))
            if abs(priced - counted) > 1e-6 * max(1.0, counted):
                raise Broken(f"architecture {arch.tolist()}: the lookup table prices {metric} at {priced:.0f} but "
                             f"the child network has {counted}; every item's cost_rows must add up to its child module")
    lo, hi = lut.bounds("macs", d)
    return f"MACs from {lo:.3g}M to {hi:.3g}M at {d.input_size}x{d.input_size}"


@rule("search_space", "sample() draws valid architectures and every preset is a valid architecture")
def check_sampling(s: Subject) -> None:
    d = definition(s)
    archs = d.sample(np.random.default_rng(1), 64)
    if archs.shape != (64, d.num_layers) or archs.dtype.kind != "i":
        raise Broken(f"sample(rng, 64) gives a {archs.dtype} array of shape {archs.shape}; expected int (64, "
                     f"{d.num_layers})")
    for arch in archs:
        d.validate_arch(arch)
    for name in sorted(space(s).presets):
        try:
            space(s).preset(name, d)
        except OsnasError as exc:
            raise Broken(f"preset {name!r}: {exc}") from None
