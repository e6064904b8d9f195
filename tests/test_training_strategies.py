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
from osnas.search_spaces.sgnas import SGNAS
from osnas.search_spaces.supernet import Supernet
from osnas.search_strategies.base import SearchContext
from osnas.search_strategies.differentiable import DifferentiableSearch
from osnas.training import Updater
from osnas.training_agents.classification import Classification
from osnas.training_strategies.base import TrainingContext
from osnas.training_strategies.fairness import average_duplicates, fair_paths, repair_fairly
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


@pytest.mark.parametrize("duplicates", ["average", "sum"])
def test_fairness_trains_each_candidate_once_with_one_update(space, duplicates):
    definition, _ = space
    strategy = make_strategy("fairness", make_context(space), duplicates=duplicates)
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
    # the same K paths by hand, each path's gradients apart; a candidate's parameters get one from
    # each path through it: summed, or (average) their mean; shared layers always summed; one SGD update
    per_path = []
    for path in paths:
        reference.zero_grad()
        agent.loss(reference(batch[0], path), batch[1]).backward()
        per_path.append({n: p.grad.clone() for n, p in reference.named_parameters() if p.grad is not None})
    repeated = 0
    with torch.no_grad():
        for name, p in reference.named_parameters():
            grads = torch.stack([g[name] for g in per_path if name in g])
            mean = duplicates == "average" and ".candidates." in name
            repeated += int(len(grads) > 1 and ".candidates." in name)
            p -= 0.1 * (grads.mean(0) if mean else grads.sum(0))
    assert repeated > 0  # padded layers did train some candidate twice
    for (name, got), want in zip(supernet.state_dict().items(), reference.state_dict().values()):
        assert torch.allclose(got, want, atol=1e-6), name


def test_fairness_averages_repeated_candidates_of_a_multi_entry_item():
    # SGNAS with 5 of 6 sub-blocks required: the repair cannot keep each slot's candidates once per step
    definition = SGNAS(SGNAS.Options(width_mult=0.25, min_expansion=5)).define(16, 1, 10)
    rng = np.random.default_rng(0)
    paths = repair_fairly(definition, fair_paths(definition, rng), rng)
    supernet = Supernet(definition)
    for p in supernet.parameters():
        p.grad = torch.ones_like(p)
    average_duplicates(supernet, paths)
    seen = set()
    for item, (start, stop) in enumerate(definition.item_slices):
        block = supernet.items[item]
        if stop - start <= 1:
            assert all((p.grad == 1).all() for p in block.parameters())
            continue
        for p in [*block.expand.parameters(), *block.project.parameters(), *block.norms.parameters()]:
            assert (p.grad == 1).all()  # shared by the slot's (or every) candidate: the sum stays
        for slot in range(stop - start):
            counts = np.bincount(paths[:, start + slot], minlength=block.zero + 1)
            for kernel, conv in enumerate(block.depthwise[slot]):
                seen.add(int(counts[kernel]))
                assert all((p.grad == 1 / max(1, counts[kernel])).all() for p in conv.parameters())
    assert max(seen) > 1
    supernet.items[2] = torch.nn.Sequential(*supernet.items[2].children())  # an item that names no candidates
    with pytest.raises(OsnasError, match="duplicates to 'sum'"):
        average_duplicates(supernet, np.zeros((2, definition.num_layers), dtype=np.int64))


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


@pytest.mark.parametrize("penalty", ["excess", "fbnet", "proxyless"])
def test_penalty_uses_softmax_expected_cost(space, penalty):
    definition, lut = space
    ctx = make_context(space)
    expected_uniform = float(lut.expected_cost(torch.as_tensor(definition.choice_mask / definition.choices[:, None])))
    ctx.constraint = replace(ctx.constraint, max=0.5 * expected_uniform)
    strategy = make_strategy("differentiable", ctx, penalty=penalty, penalty_weight=2.0, penalty_cost="expected")
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
    if penalty == "excess":
        want, dwant = 1.5 + 2.0 * (r - 1), 2.0 / m * dexp
    else:  # FBNet: CE * w * log(E) ** beta; ProxylessNAS: CE * w * (log E / log T) ** beta; MACs counted, not M
        beta, ref = (0.6, 1.0) if penalty == "fbnet" else (0.3, np.log(m * 1e6))
        log_e = np.log(expected * 1e6) / ref
        want = 1.5 * 2.0 * log_e ** beta
        dwant = 1.5 * 2.0 * beta * log_e ** (beta - 1) / ref / expected * dexp
    assert float(loss.detach()) == pytest.approx(want, rel=1e-5)
    np.testing.assert_allclose(grad.numpy(), dwant, rtol=1e-4, atol=1e-7)
    assert (grad.numpy()[~mask] == 0).all()


def test_paper_penalties_default_to_the_papers_constants():
    options = REGISTRIES["training_strategy"].get("differentiable").Options
    assert (options(penalty="fbnet").weight, options(penalty="fbnet").exponent) == (0.2, 0.6)  # FBNet sec. 4.1
    assert (options(penalty="proxyless").weight, options(penalty="proxyless").exponent) == (0.2, 0.3)  # official
    assert options().penalty == "budget" and options().weight == 1.0
    proxyless = REGISTRIES["training_strategy"].get("proxyless").Options()
    assert (proxyless.arch_betas, proxyless.arch_eps, proxyless.arch_weight_decay) == ((0.0, 0.999), 1e-8, 0.0)
    assert proxyless.arch_update_every == 5 and proxyless.rescale and proxyless.skip_zero_paths


@pytest.mark.parametrize("penalty", ["budget", "distance"])
def test_budget_penalty_is_the_derived_cost_with_the_expected_gradient(space, penalty):
    definition, lut = space
    ctx = make_context(space)
    lo, hi = lut.bounds("macs", definition)
    strategy = make_strategy("differentiable", ctx, penalty=penalty)
    with torch.no_grad():
        strategy.alpha.copy_(torch.randn(strategy.alpha.shape, generator=torch.Generator().manual_seed(3)))
    derived = float(ctx.constraint.cost(strategy.derive()))
    probs = strategy.probabilities()
    (dexp,) = torch.autograd.grad(strategy.expected_cost(probs), strategy.alpha)
    for budget, sign in ((derived / 0.9, -1.0), (derived * 0.8, 1.0)):  # under the band's floor / over the budget
        ctx.constraint = replace(ctx.constraint, max=budget)
        loss = strategy.arch_loss(torch.tensor(1.0), strategy.probabilities())
        (grad,) = torch.autograd.grad(loss, strategy.alpha)
        floor = 0.95 * budget
        if sign < 0:  # pulled up towards the floor
            assert float(loss) == pytest.approx(1.0 + 1.0 - derived / floor)
            torch.testing.assert_close(grad, -dexp / floor)
        else:
            over = derived / budget - 1.0 + (abs(derived / floor - 1.0) - (derived / budget - 1.0)
                                              if penalty == "distance" else 0.0)
            assert float(loss) == pytest.approx(1.0 + over)
            torch.testing.assert_close(grad, dexp / (floor if penalty == "distance" else budget))
    if penalty == "budget":  # inside [0.95, 1] x max: no pull at all
        ctx.constraint = replace(ctx.constraint, max=derived / 0.97)
        loss = strategy.arch_loss(torch.tensor(1.0), strategy.probabilities())
        assert float(loss) == 1.0


class CheapIsBetter(torch.nn.Module):
    """Stands in for a supernet whose loss falls the more cheap candidates it runs (what made the strategies flee
    the budget: early in training cheap paths fit first). ``forward`` returns the loss itself."""

    def __init__(self, table: np.ndarray, mask: np.ndarray) -> None:
        super().__init__()
        low = np.where(mask, table, np.inf).min(axis=1, keepdims=True)
        high = np.where(mask, table, -np.inf).max(axis=1, keepdims=True)
        self.register_buffer("cheapness", torch.as_tensor(np.where(mask, (high - table) / (high - low), 0.0),
                                                          dtype=torch.float32))
        self.offset = torch.nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor, arch, active=None, recompute: bool = False) -> torch.Tensor:
        weights = arch if torch.is_tensor(arch) else torch.nn.functional.one_hot(
            torch.as_tensor(arch), self.cheapness.shape[1]).float()
        return self.offset ** 2 + 2.0 - (weights * self.cheapness).sum() / len(weights)


class LossIsOutput:
    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return output


@pytest.mark.parametrize("name,options", [("differentiable", {}), ("differentiable", {"gumbel": True}),
                                          ("proxyless", {"arch_update_every": 1})])
def test_gradient_strategies_derive_an_architecture_that_uses_the_budget(space, name, options):
    definition, lut = space
    lo, hi = lut.bounds("macs", definition)
    budget = lo + 0.5 * (hi - lo)
    found = {}
    for penalty in ("budget", "fbnet"):
        ctx = make_context(space, max_cost=budget, total_epochs=3)
        strategy = make_strategy(name, ctx, penalty=penalty, arch_lr=0.05, **options)
        supernet = CheapIsBetter(lut.unit_table("macs"), definition.choice_mask)
        updater = Updater(torch.optim.SGD(supernet.parameters(), lr=0.01), None, torch.device("cpu"))
        batch = (torch.zeros(2, 1), torch.zeros(2))
        for epoch in range(3):
            strategy.on_epoch_start(epoch)
            for _ in range(60):
                strategy.step(supernet, batch, LossIsOutput(), updater)
        found[penalty] = strategy.derive()
    use = float(ctx.constraint.cost(found["budget"])) / budget
    assert ctx.constraint.feasible(found["budget"]) and use >= 0.9, use
    # the same run with FBNet's penalty keeps lowering the cost: the loss and the penalty both push down
    assert float(ctx.constraint.cost(found["fbnet"])) / budget < 0.9


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
    strategy = make_strategy("proxyless", make_context(space), penalty="none", arch_lr=0.05, arch_update_every=1)
    supernet, agent, updater, batch = make_run(definition)
    calls = candidate_calls(supernet)
    strategy.arch_step(supernet, agent, updater)
    grad = strategy.alpha.grad.numpy()
    assert np.abs(grad).sum() > 0 and (strategy.alpha.detach() != 0).any()
    for layer in range(definition.num_layers):
        ran = [k for k in range(definition.choices[layer]) if calls[(layer, k)]]
        assert len(ran) in (1, 2) and all(calls[(layer, k)] == 1 for k in ran), layer  # 1: a repaired layer
        silent = [k for k in range(definition.max_choices) if calls[(layer, k)] == 0]
        assert (grad[layer, silent] == 0).all()  # only the two sampled logits get a gradient


def test_proxyless_official_update_leaves_unsampled_candidates_alone(space):
    definition, _ = space
    strategy = make_strategy("proxyless", make_context(space), penalty="none", arch_lr=0.05)
    supernet, agent, updater, batch = make_run(definition)
    with torch.no_grad():
        strategy.alpha.copy_(torch.randn(strategy.alpha.shape, generator=torch.Generator().manual_seed(4)))
    drawn = []
    binarize = strategy.binarize
    strategy.binarize = lambda: drawn.append(binarize()) or drawn[-1]
    for _ in range(4):  # one alpha step every 5 weight steps (official grad_update_arch_param_every)
        strategy.step(supernet, batch, agent, updater)
    assert not drawn and strategy.val.position == 0
    changed = False
    for step in range(3):
        alpha, probs = strategy.alpha.detach().clone(), strategy.probabilities().detach()
        strategy.step(supernet, batch, agent, updater) if step == 0 else strategy.arch_step(supernet, agent, updater)
        pair, path = drawn[-1]
        zero = strategy.zero[np.arange(len(path)), path]
        new_alpha, new_probs = strategy.alpha.detach(), strategy.probabilities().detach()
        untouched = ~pair | zero[:, None]  # unsampled candidates, and every candidate of a layer whose gate is zero
        assert torch.equal(new_alpha[torch.as_tensor(untouched & definition.choice_mask)],
                           alpha[torch.as_tensor(untouched & definition.choice_mask)])
        torch.testing.assert_close(new_probs[torch.as_tensor(untouched)], probs[torch.as_tensor(untouched)])
        changed |= not torch.equal(new_alpha, alpha)
    assert changed  # the sampled logits did move
    # DARTS' optimiser (momentum 0.5, weight decay) without the rescaling moves unsampled logits too
    darts = make_strategy("proxyless", make_context(space), penalty="none", arch_lr=0.05, arch_betas=(0.5, 0.999),
                          arch_weight_decay=1e-3, rescale=False, arch_update_every=1)
    with torch.no_grad():
        darts.alpha.copy_(strategy.alpha)
    darts.arch_step(supernet, agent, updater)
    before = darts.alpha.detach().clone()
    darts.arch_step(supernet, agent, updater)
    moved = (darts.alpha.detach() != before) & torch.as_tensor(definition.choice_mask)
    assert moved.sum() > 2 * definition.num_layers  # more than the two sampled logits per layer


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
                                          ("proxyless", {"arch_update_every": 1})])
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
            assert first.steps == second.steps == 1
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
