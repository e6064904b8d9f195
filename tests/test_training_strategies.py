"""Training strategies (fairness, differentiable, proxyless) and the differentiable search, on a tiny space."""

from __future__ import annotations

import copy
import io
import json
from collections import defaultdict
from dataclasses import replace

import numpy as np
import pytest
import torch

from osnas.constraint import Constraint
from osnas.criteria.cross_entropy import CrossEntropy
from osnas.dataflows.memory import TensorLoader
from osnas.config import validate_config
from osnas.errors import ConfigError, OsnasError
from osnas.registry import REGISTRIES
from osnas.search_spaces.base import Choice, MinActive, SpaceDefinition, op
from osnas.search_spaces.lookup_table import LookupTable
from osnas.search_spaces.proxylessnas import ProxylessNAS
from osnas.search_spaces.supernet import Supernet
from osnas.search_strategies.base import SearchContext
from osnas.search_strategies.differentiable import DifferentiableSearch
from osnas.training import Updater
from osnas.training_agents.classification import Classification
from osnas.training_strategies.base import TrainingContext
from osnas.training_strategies.fairness import fair_paths, repair_fairly
from tests.conftest import run_osnas


@pytest.fixture(scope="module")
def space():
    """ProxylessNAS at width 0.25 on 16x16 inputs: 21 layers, 6 or 7 candidates each; MACs-only LUT."""
    definition = ProxylessNAS(ProxylessNAS.Options(width_mult=0.25)).define(16, 1, 10)
    return definition, LookupTable.build(definition, latency=False)


def make_context(space, max_cost: float = 1e6, total_epochs: int = 3, seed: int = 0) -> TrainingContext:
    definition, lut = space
    gen = torch.Generator().manual_seed(1)
    val = TensorLoader(torch.randn(16, 1, 16, 16, generator=gen), torch.randint(0, 10, (16,), generator=gen), 8)
    constraint = Constraint("macs", max_cost, None, lut, definition)
    return TrainingContext(definition, lut, constraint, val, torch.device("cpu"), seed, total_epochs)


def make_strategy(name: str, context: TrainingContext, **options):
    cls = REGISTRIES["training_strategy"].get(name)
    return cls(cls.Options(**options), context)


def make_run(definition, lr: float = 0.1):
    torch.manual_seed(0)
    supernet = Supernet(definition)
    agent = Classification(Classification.Options(), CrossEntropy(CrossEntropy.Options(), 10, 10), 10)
    updater = Updater(torch.optim.SGD(supernet.parameters(), lr=lr), None, torch.device("cpu"))
    gen = torch.Generator().manual_seed(2)
    batch = (torch.randn(8, 1, 16, 16, generator=gen), torch.randint(0, 10, (8,), generator=gen))
    return supernet, agent, updater, batch


def candidate_calls(supernet: Supernet) -> dict[tuple[int, int], int]:
    """Forward-call counter per (choice layer, candidate), filled by hooks."""
    calls: dict[tuple[int, int], int] = defaultdict(int)
    layer = 0
    for module in supernet.items:
        if hasattr(module, "candidates"):
            for k, candidate in enumerate(module.candidates):
                candidate.register_forward_hook(lambda *_, key=(layer, k): calls.__setitem__(key, calls[key] + 1))
            layer += 1
    return calls


def roundtrip(state: dict) -> dict:
    """Through torch.save / load(weights_only=True), as in a checkpoint."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


# ----------------------------------------------------------------------------- fairness


def test_fairness_trains_each_candidate_once_with_one_update(space):
    definition, _ = space
    strategy = make_strategy("fairness", make_context(space))
    supernet, agent, updater, batch = make_run(definition)
    reference = copy.deepcopy(supernet)
    steps = []
    optimizer_step = updater.optimizer.step
    updater.optimizer.step = lambda *a, **k: steps.append(1) or optimizer_step(*a, **k)

    strategy.step(supernet, batch, agent, updater)

    paths, k = strategy.last_paths, definition.max_choices
    assert paths.shape == (k, definition.num_layers) and len(steps) == 1
    for layer, n in enumerate(definition.choices):
        counts = np.bincount(paths[:, layer], minlength=n)
        if n == k:
            assert (counts == 1).all(), (layer, counts)
        else:
            assert counts.min() >= 1 and counts.max() - counts.min() <= 1, (layer, counts)
    # the same K paths by hand: gradients summed over the paths, then a single SGD update
    reference.zero_grad()
    for path in paths:
        agent.loss(reference(batch[0], path), batch[1]).backward()
    with torch.no_grad():
        for p in reference.parameters():
            if p.grad is not None:
                p -= 0.1 * p.grad
    for (name, got), want in zip(supernet.state_dict().items(), reference.state_dict().values()):
        assert torch.allclose(got, want, atol=1e-6), name


def test_fairness_repair_keeps_rules_and_fairness():
    cands = (op("skip", "zero"), op("conv_bn_act", "a", kernel=1), op("conv_bn_act", "b", kernel=3))
    body = tuple(Choice(cands, 4, 4) for _ in range(3))
    definition = SpaceDefinition("toy", 8, 4, 4, body, rules=(MinActive((0, 1, 2), zero=0, count=2),))
    broken = 0
    for seed in range(30):
        rng = np.random.default_rng(seed)
        paths = fair_paths(definition, rng)
        broken += int((~definition.valid(paths)).sum())
        fixed = repair_fairly(definition, paths, rng)
        assert definition.valid(fixed).all()
        assert all(sorted(fixed[:, layer]) == [0, 1, 2] for layer in range(3))
    assert broken > 0  # the raw permutations do break the rule, so the repair was exercised


# ----------------------------------------------------------------------------- differentiable


@pytest.mark.parametrize("penalty", ["relative", "fbnet"])
def test_penalty_uses_softmax_expected_cost(space, penalty):
    definition, lut = space
    ctx = make_context(space)
    expected_uniform = float(lut.expected_cost(torch.as_tensor(definition.choice_mask / definition.choices[:, None])))
    ctx.constraint = replace(ctx.constraint, max=0.5 * expected_uniform)
    strategy = make_strategy("differentiable", ctx, penalty=penalty, penalty_weight=2.0)
    with torch.no_grad():
        strategy.alpha.copy_(torch.randn(strategy.alpha.shape, generator=torch.Generator().manual_seed(3)) * 2)
    task = torch.tensor(1.5)
    loss = strategy.arch_loss(task, strategy.probabilities())
    (grad,) = torch.autograd.grad(loss, strategy.alpha)

    # by hand: softmax over each layer's real candidates, expected MACs, penalty and its gradient
    a, mask, table = strategy.alpha.detach().double().numpy(), definition.choice_mask, lut.unit_table("macs")
    p = np.where(mask, np.exp(a - a.max(axis=1, keepdims=True)), 0.0)
    p /= p.sum(axis=1, keepdims=True)
    expected = (p * table).sum() + lut.base[0] * 1e-6
    r, m = expected / ctx.constraint.max, ctx.constraint.max
    assert r > 1
    dexp = p * (table - (p * table).sum(axis=1, keepdims=True))  # d expected / d alpha
    if penalty == "relative":
        want, dwant = 1.5 + 2.0 * (r - 1), 2.0 / m * dexp
    else:
        want = 1.5 * 2.0 * np.log1p(r) ** 0.6
        dwant = 1.5 * 2.0 * 0.6 * np.log1p(r) ** -0.4 / (1 + r) / m * dexp
    assert float(loss.detach()) == pytest.approx(want, rel=1e-5)
    np.testing.assert_allclose(grad.numpy(), dwant, rtol=1e-4, atol=1e-7)
    assert (grad.numpy()[~mask] == 0).all()


def test_gumbel_temperature_anneals_and_weights_are_masked(space):
    definition, _ = space
    strategy = make_strategy("differentiable", make_context(space, total_epochs=4), gumbel=True, tau_start=5.0,
                             tau_end=0.5)
    taus = []
    for epoch in range(4):
        strategy.on_epoch_start(epoch)
        taus.append(strategy.tau)
        assert strategy.epoch_metrics()["tau"] == taus[-1]
    assert taus[0] == pytest.approx(5.0) and taus[-1] == pytest.approx(0.5)
    ratios = np.array(taus[1:]) / np.array(taus[:-1])
    np.testing.assert_allclose(ratios, ratios[0]) and np.testing.assert_array_less(ratios, 1.0)
    w1, w2 = strategy.mixing_weights().detach(), strategy.mixing_weights().detach()
    assert not torch.equal(w1, w2)  # sampled
    assert torch.allclose(w1.sum(dim=1), torch.ones(len(w1))) and (w1[~strategy.mask] == 0).all()


def test_differentiable_updates_alpha_on_val_batches_after_warmup(space):
    definition, _ = space
    strategy = make_strategy("differentiable", make_context(space), warmup_epochs=1, arch_lr=0.05)
    supernet, agent, updater, batch = make_run(definition)
    strategy.on_epoch_start(0)
    weights_before = [p.detach().clone() for p in supernet.parameters()]
    strategy.step(supernet, batch, agent, updater)
    assert (strategy.alpha == 0).all() and strategy.val.position == 0  # warm-up: weights only
    assert any(not torch.equal(a, b) for a, b in zip(weights_before, supernet.parameters()))
    strategy.on_epoch_start(1)
    for _ in range(3):
        strategy.step(supernet, batch, agent, updater)
    assert strategy.val.position == 1  # 3 batches from a 2-batch val loader: one pass, then around again
    assert (strategy.alpha.detach()[strategy.mask] != 0).any()
    assert torch.isfinite(torch.tensor(list(strategy.epoch_metrics().values()), dtype=torch.float64)).all()


class ScoreByCost:
    """A stand-in evaluator: higher score for cheaper architectures; records what it scored."""

    def __init__(self, constraint: Constraint) -> None:
        self.constraint, self.seen = constraint, []

    def evaluate(self, archs: np.ndarray) -> np.ndarray:
        archs = np.atleast_2d(archs)
        self.seen.extend(a.tolist() for a in archs)
        return -self.constraint.cost(archs)


def test_tight_budget_derived_architecture_is_repaired(space):
    definition, lut = space
    ctx = make_context(space)
    lo, hi = lut.bounds("macs", definition)
    ctx.constraint = replace(ctx.constraint, max=lo + 0.3 * (hi - lo))
    strategy = make_strategy("proxyless", ctx)
    table = np.where(definition.choice_mask, lut.unit_table("macs"), -np.inf)
    with torch.no_grad():  # alpha prefers the dearest candidates, more strongly in later layers
        strategy.alpha.copy_(torch.as_tensor(np.where(np.isfinite(table), table, 0.0) * 20, dtype=torch.float32))
    derived = strategy.derive()
    assert (derived == table.argmax(axis=1)).all() and not ctx.constraint.feasible(derived)

    evaluator = ScoreByCost(ctx.constraint)
    search = SearchContext(definition, lut, ctx.constraint, evaluator, np.random.default_rng(0),
                           training_strategy=strategy)
    result = DifferentiableSearch(DifferentiableSearch.Options()).search(search)
    assert result.repaired and ctx.constraint.feasible(result.best)
    assert result.info["derived"] == derived.tolist() and result.info["derived_cost"] > ctx.constraint.max
    assert evaluator.seen == [result.best.tolist()] and result.score == pytest.approx(-ctx.constraint.cost(result.best))
    # no single change towards a more probable candidate would still fit: nothing was given up needlessly
    with np.errstate(divide="ignore"):
        logp = np.log(strategy.arch_probabilities())
    for layer in range(definition.num_layers):
        for k in np.flatnonzero(logp[layer] > logp[layer, result.best[layer]] + 1e-9):
            trial = result.best.copy()
            trial[layer] = k
            assert not ctx.constraint.feasible(trial), (layer, k)
    with pytest.raises(OsnasError, match="repair: true"):
        DifferentiableSearch(DifferentiableSearch.Options(repair=False)).search(search)


def test_differentiable_search_needs_architecture_parameters(space):
    definition, lut = space
    ctx = make_context(space)
    search = SearchContext(definition, lut, ctx.constraint, ScoreByCost(ctx.constraint), np.random.default_rng(0),
                           training_strategy=make_strategy("uniform", ctx))
    with pytest.raises(OsnasError, match="set training_strategy to differentiable or proxyless"):
        DifferentiableSearch(DifferentiableSearch.Options()).search(search)
    # a config pairing them is refused when it is read, before any training
    with pytest.raises(ConfigError, match="cannot use training_strategy 'fairness'; set training_strategy to one of: "
                                          "differentiable, proxyless"):
        validate_config({"training_strategy": "fairness", "search_strategy": "differentiable"})
    assert validate_config({"training_strategy": "proxyless", "search_strategy": "differentiable"})


def test_bad_arch_options_are_clear_errors(space):
    with pytest.raises(OsnasError, match="warmup_epochs \\(3\\) must be smaller than supernet.epochs \\(3\\)"):
        make_strategy("proxyless", make_context(space, total_epochs=3), warmup_epochs=3)
    with pytest.raises(ConfigError, match="tau_end .* must not exceed tau_start"):
        validate_config({"training_strategy": {"name": "differentiable", "gumbel": True, "tau_start": 1.0,
                                               "tau_end": 2.0}})


# ----------------------------------------------------------------------------- proxyless


def test_proxyless_runs_two_candidates_per_layer(space):
    definition, _ = space
    strategy = make_strategy("proxyless", make_context(space), penalty="none", arch_lr=0.05)
    supernet, agent, updater, batch = make_run(definition)
    calls = candidate_calls(supernet)
    strategy.step(supernet, batch, agent, updater)
    grad = strategy.alpha.grad.numpy()
    assert np.abs(grad).sum() > 0 and (strategy.alpha.detach() != 0).any()
    for layer in range(definition.num_layers):
        ran = sorted(calls[(layer, k)] for k in range(definition.choices[layer]) if calls[(layer, k)])
        assert ran == [1, 2], (layer, ran)  # two candidates on the val batch, one of them on the train batch too
        silent = [k for k in range(definition.max_choices) if calls[(layer, k)] == 0]
        assert (grad[layer, silent] == 0).all()  # only the two sampled logits get a gradient


def test_proxyless_gate_gradient_is_the_two_path_estimator(space):
    definition, _ = space
    strategy = make_strategy("proxyless", make_context(space))
    with torch.no_grad():
        strategy.alpha.copy_(torch.randn(strategy.alpha.shape, generator=torch.Generator().manual_seed(4)))
    pair, path = strategy.binarize()
    weights = strategy.gate_weights(pair, path)
    assert torch.equal(weights.detach(), torch.nn.functional.one_hot(torch.as_tensor(path), definition.max_choices)
                       .float())
    s = torch.randn(weights.shape, generator=torch.Generator().manual_seed(5))  # plays dL/dg
    (grad,) = torch.autograd.grad((weights * s).sum(), strategy.alpha)
    a = strategy.alpha.detach()
    for layer in range(definition.num_layers):
        idx = np.flatnonzero(pair[layer])
        p = torch.softmax(a[layer, idx], dim=0)
        want = [sum(s[layer, j] * p[jj] * (float(ii == jj) - p[ii]) for jj, j in enumerate(idx)) for ii in range(len(idx))]
        torch.testing.assert_close(grad[layer, idx], torch.stack(want))
        assert (grad[layer, ~pair[layer]] == 0).all()


# ----------------------------------------------------------------------------- state


@pytest.mark.parametrize("name,options", [("uniform", {}), ("fairness", {}), ("differentiable", {"gumbel": True}),
                                          ("proxyless", {})])
def test_state_survives_a_checkpoint(space, name, options):
    definition, _ = space
    supernet, agent, updater, batch = make_run(definition)
    first = make_strategy(name, make_context(space), **options)
    first.on_epoch_start(1)
    first.step(supernet, batch, agent, updater)
    second = make_strategy(name, make_context(space, seed=7), **options)
    second.load_state_dict(roundtrip(first.state_dict()))
    assert first.rng.random() == second.rng.random()
    if name == "fairness":
        assert (fair_paths(definition, first.rng) == fair_paths(definition, second.rng)).all()
    if name in ("differentiable", "proxyless"):
        assert (first.alpha != 0).any() and torch.equal(first.alpha, second.alpha)
        assert torch.equal(first.val.next()[0], second.val.next()[0])
        if name == "differentiable":
            assert first.tau == second.tau and torch.equal(first.mixing_weights(), second.mixing_weights())
        else:
            assert all((a == b).all() for a, b in zip(first.binarize(), second.binarize()))
        for strategy in (first, second):  # same Adam state: the same next alpha
            strategy.arch_update(strategy.arch_loss(torch.zeros(()), strategy.probabilities()) +
                                 (strategy.alpha ** 2).sum(), updater)
        assert torch.equal(first.alpha, second.alpha)


# ----------------------------------------------------------------------------- end to end


def test_differentiable_end_to_end_through_the_cli(tiny_config, tmp_path):
    # a mixed step runs every candidate: val_fraction 0.95 leaves one supernet step per epoch
    proc = run_osnas("search", "--config", str(tiny_config), "--quiet", "--set", "training_strategy=differentiable",
                     "--set", "training_strategy.arch_lr=0.01", "--set", "search_strategy=differentiable",
                     "--set", "dataflow.val_fraction=0.95", env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    run_dir = next((tmp_path / "runs").iterdir())
    arch = json.loads((run_dir / "architecture.json").read_text())
    assert arch["costs"]["macs"] <= 3.0 and arch["repaired"] == (arch["info"]["derived_cost"] > 3.0)
    supernet_records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
                        if '"supernet"' in line]
    assert supernet_records and 0.0 < supernet_records[-1]["arch_entropy"] <= 1.0 + 1e-9
    assert "arch_expected_cost" in supernet_records[-1]
    assert json.loads((run_dir / "results.json").read_text())["macs"] / 1e6 <= 3.0


def test_uniform_feasible_only_trains_only_feasible_paths(space):
    """Under a budget that few paths meet, feasible_only draws each step's path inside it; plain SPOS does not."""
    definition, lut = space
    draws = definition.sample(np.random.default_rng(0), 2000)
    budget = float(np.quantile(lut.cost(draws, "macs"), 0.05))
    ctx = make_context(space, max_cost=budget)
    lean = make_strategy("uniform", ctx, feasible_only=True)
    plain = make_strategy("uniform", ctx)
    lean_paths = np.array([lean.sample() for _ in range(40)])
    plain_paths = np.array([plain.sample() for _ in range(40)])
    assert ctx.constraint.feasible(lean_paths).all()
    assert not ctx.constraint.feasible(plain_paths).all()
    assert len({tuple(p) for p in lean_paths}) > 30  # uniform over the feasible set, not one repaired path
