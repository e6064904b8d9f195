"""Search strategies, the constraint and the evaluator on the tiny ProxylessNAS space (16x16, width 0.25).

Most tests need no training: a fake evaluator scores an architecture by how many
entries it shares with a hidden feasible architecture (known optimum: all of them).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from osnas.constraint import Constraint
from osnas.errors import InfeasibleConstraintError
from osnas.registry import REGISTRIES
from osnas.run_dir import atomic_torch_save, load_checkpoint
from osnas.search_spaces.base import MinActive
from osnas.search_spaces.lookup_table import LookupTable
from osnas.search_spaces.supernet import Supernet
from osnas.search_strategies.architecture_generator import (GENERATOR_FILE, argmax_straight_through, decode,
                                                            load_generator)
from osnas.search_strategies.base import SearchContext, SearchResult
from osnas.search_strategies.evaluator import Evaluator
from osnas.search_strategies.nsga2 import crowding_distance, dominance, non_dominated_ranks
from tests.conftest import run_osnas

DISCRETE = ("random", "evolution", "regularized_evolution", "nsga2")
# small settings: about 40 evaluations each
SMALL = {
    "random": {"num_samples": 40},
    "evolution": {"population": 10, "generations": 4, "top_k": 5},
    "regularized_evolution": {"population": 10, "sample": 3, "cycles": 30},
    "nsga2": {"population": 10, "generations": 3},
}


# tiny tensors: a second thread only adds synchronisation (up to x50 slower when the cores are busy)
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="session")
def lut_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Lookup-table cache shared by every test and by the CLI runs (same metadata as the tiny configs)."""
    return tmp_path_factory.mktemp("luts")


@pytest.fixture(scope="session")
def tiny(lut_dir: Path) -> tuple[Any, LookupTable]:
    space_cls = REGISTRIES["search_space"].get("proxylessnas")
    definition = space_cls(space_cls.Options(width_mult=0.25)).define(16, 1, 10)
    lut, _ = LookupTable.load_or_build(definition, lut_dir, "cpu", latency=False, latency_batch=1, latency_runs=10)
    return definition, lut


class FakeEvaluator:
    """Score = number of entries equal to a hidden target architecture; counts distinct evaluations."""

    def __init__(self, target: np.ndarray) -> None:
        self.target = np.asarray(target)
        self.seen: set[tuple[int, ...]] = set()

    def evaluate(self, archs: np.ndarray) -> np.ndarray:
        archs = np.atleast_2d(archs)
        self.seen.update(tuple(int(i) for i in a) for a in archs)
        return (archs == self.target[None]).sum(axis=1).astype(np.float64)


def budget(tiny: tuple, name: str) -> Constraint:
    definition, lut = tiny
    lo, hi = lut.bounds("macs", definition)
    limits = {"tight": (lo * 1.1, None), "medium": (10.0, None), "loose": (hi, None),
              "window": (11.0, 10.0), "tight_window": (lo + 1.0, lo + 0.5)}[name]
    return Constraint("macs", limits[0], limits[1], lut, definition)


def run_strategy(name: str, constraint: Constraint, evaluator: Any, seed: int, options: dict | None = None,
                 resume: dict | None = None, states: list | None = None, run_dir: Path | None = None) -> SearchResult:
    cls = REGISTRIES["search_strategy"].get(name)
    strategy = cls(cls.Options(**(SMALL.get(name, {}) if options is None else options)))
    if resume is not None:
        strategy.load_state_dict(resume)

    def save_file(file: str, payload: dict) -> Path | None:
        if run_dir is None:
            return None
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(run_dir / file, payload)
        return run_dir / file

    context = SearchContext(constraint.definition, constraint.lut, constraint, evaluator, np.random.default_rng(seed),
                            save_state=(states.append if states is not None else lambda state: None),
                            save_file=save_file)
    return strategy.search(context)


def hidden_target(constraint: Constraint, seed: int) -> np.ndarray:
    return constraint.sample_feasible(np.random.default_rng(1000 + seed), 1)[0]


# ----------------------------------------------------------------------------- constraint


@pytest.mark.parametrize("window", ["tight", "medium", "loose", "window", "tight_window"])
def test_sample_feasible_and_repair_land_inside_the_window(tiny, window):
    constraint = budget(tiny, window)
    rng = np.random.default_rng(0)
    archs = constraint.sample_feasible(rng, 30)
    assert archs.shape == (30, constraint.definition.num_layers)
    assert constraint.feasible(archs).all()
    # repair from both sides: from the cheapest and from the dearest architectures, and from random ones
    table = np.where(constraint.definition.choice_mask, constraint.lut.unit_table("macs"), np.nan)
    starts = np.concatenate([np.nanargmin(table, 1)[None], np.nanargmax(table, 1)[None],
                             constraint.definition.sample(rng, 20)])
    repaired = np.stack([constraint.repair(a, rng) for a in starts])
    assert constraint.feasible(repaired).all()


def test_repair_keeps_as_much_budget_as_a_single_step_allows(tiny):
    """Coming down from above, the last change is the smallest that lands: no needless overshoot below max."""
    constraint = budget(tiny, "medium")
    table = np.where(constraint.definition.choice_mask, constraint.lut.unit_table("macs"), np.nan)
    dearest = np.nanargmax(table, 1)
    repaired = constraint.repair(dearest, np.random.default_rng(0))
    steps = np.nanmax(table, 1) - np.nanmin(table, 1)
    assert constraint.max - steps.max() <= float(constraint.cost(repaired)) <= constraint.max


def test_repair_and_sampling_respect_min_active_rules(tiny):
    definition, lut = tiny
    zero = definition.choices[1] - 1  # the "zero" candidate of layers 1-3
    ruled = dataclasses.replace(definition, rules=(MinActive(entries=(1, 2, 3), zero=int(zero), count=2),))
    lo, _ = lut.bounds("macs", ruled)
    assert lo > lut.bounds("macs", definition)[0]  # the rule forbids the cheapest architecture
    constraint = Constraint("macs", lo * 1.05, None, lut, ruled)
    constraint.check_satisfiable()
    rng = np.random.default_rng(0)
    archs = constraint.sample_feasible(rng, 20)
    assert ruled.valid(archs).all() and constraint.feasible(archs).all()
    broken = definition.sample(rng, 1)[0]
    broken[[1, 2, 3]] = zero
    assert not ruled.valid(broken[None])[0]
    assert constraint.feasible(constraint.repair(broken))


def test_infeasible_constraint_reports_cheapest_and_dearest(tiny):
    definition, lut = tiny
    lo, hi = lut.bounds("macs", definition)
    for constraint in (Constraint("macs", lo * 0.5, None, lut, definition),
                       Constraint("macs", hi * 3, hi * 2, lut, definition)):
        with pytest.raises(InfeasibleConstraintError) as info:
            constraint.check_satisfiable()
        assert f"{lo:.4g}" in str(info.value) and f"{hi:.4g}" in str(info.value)
    # inside [cheapest, dearest] but narrower than any cost step near the top: found before searching
    table = np.where(definition.choice_mask, lut.unit_table("macs"), -np.inf)
    top = table.max(axis=1)
    smallest_step = (top - np.where(table < top[:, None], table, -np.inf).max(axis=1)).min()
    gap = Constraint("macs", hi - smallest_step * 0.2, hi - smallest_step * 0.8, lut, definition)
    with pytest.raises(InfeasibleConstraintError, match="widen the window"):
        gap.check_satisfiable()
    assert budget(tiny, "tight").check_satisfiable() == pytest.approx((lo, hi))


def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """``osnas ARGS`` in this process (no interpreter start-up): exit code, stdout, stderr."""
    from osnas.cli import main

    monkeypatch.setattr(sys, "argv", ["osnas", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_infeasible_constraint_exits_2_through_the_cli(tiny_config, lut_dir, tiny, monkeypatch, capsys):
    code, _, err = cli(monkeypatch, capsys, "search", "--config", str(tiny_config), "--quiet",
                       "--set", "constraint.max=0.5", "--set", f"lookup_table.cache_dir={lut_dir}")
    assert code == 2, err
    assert "cheapest architecture costs" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- strategies


@pytest.mark.parametrize("window", ["tight", "medium", "loose", "window", "tight_window"])
@pytest.mark.parametrize("name", DISCRETE)
def test_every_evaluated_architecture_is_feasible(tiny, name, window):
    constraint = budget(tiny, window)
    evaluator = FakeEvaluator(hidden_target(constraint, 0))
    result = run_strategy(name, constraint, evaluator, seed=0)
    evaluated = np.array([r["arch"] for r in result.history])
    assert constraint.feasible(evaluated).all()
    assert constraint.feasible(result.best)
    assert len(evaluated) == len(evaluator.seen)  # nothing scored twice
    assert result.score == max(r["score"] for r in result.history)
    if name == "nsga2":
        assert result.pareto and constraint.feasible(np.array([p["arch"] for p in result.pareto])).all()


@pytest.mark.parametrize("name", ["evolution", "regularized_evolution"])
def test_evolution_beats_random_search_at_equal_evaluations(tiny, name):
    constraint = budget(tiny, "medium")
    options = {"evolution": {"population": 20, "generations": 10, "top_k": 10},
               "regularized_evolution": {"population": 20, "sample": 5, "cycles": 180}}[name]
    found = {name: [], "random": []}
    for seed in range(5):
        target = hidden_target(constraint, seed)
        evolved = FakeEvaluator(target)
        found[name].append(run_strategy(name, constraint, evolved, seed, options).score)
        drawn = FakeEvaluator(target)
        same = {"num_samples": len(evolved.seen)}
        found["random"].append(run_strategy("random", constraint, drawn, seed, same).score)
        assert len(drawn.seen) <= len(evolved.seen) <= 200
    # 21 entries with 6-7 candidates each: 200 random draws match about 9 entries at best; evolution climbs past
    assert np.mean(found[name]) >= np.mean(found["random"]) + 3, found


def test_nsga2_front_is_mutually_non_dominated(tiny):
    constraint = budget(tiny, "loose")
    result = run_strategy("nsga2", constraint, FakeEvaluator(hidden_target(constraint, 3)), seed=3,
                          options={"population": 16, "generations": 4})
    points = np.array([[-p["score"], p["costs"]["macs"]] for p in result.pareto])
    assert len(points) >= 2
    assert not dominance(points).any()
    assert all(set(p) >= {"arch", "candidates", "score", "costs"} for p in result.pareto)
    assert result.score == max(p["score"] for p in result.pareto)
    # no evaluated architecture dominates a front member
    evaluated = np.array([[-r["score"], r["cost"]] for r in result.history])
    assert not (dominance(np.concatenate([evaluated, points]))[: len(evaluated), len(evaluated):]).any()


def test_non_dominated_sorting_matches_brute_force():
    rng = np.random.default_rng(0)
    points = rng.integers(0, 6, size=(40, 2)).astype(float)  # ties and duplicates included
    ranks = non_dominated_ranks(points)
    remaining = list(range(len(points)))
    rank = 0
    while remaining:
        front = [i for i in remaining if not any(
            np.all(points[j] <= points[i]) and np.any(points[j] < points[i]) for j in remaining)]
        assert sorted(np.flatnonzero(ranks == rank)) == front
        remaining = [i for i in remaining if i not in front]
        rank += 1
    crowd = crowding_distance(np.array([[0.0, 4.0], [1.0, 2.0], [2.0, 1.0], [4.0, 0.0]]))
    assert np.isinf(crowd[[0, 3]]).all() and crowd[1] == pytest.approx(2 / 4 + 3 / 4)


# small settings on the 18-architecture probe space; a strategy not named here runs with its defaults
PROBE_OPTIONS = {
    "random": {"num_samples": 12, "batch": 3},
    "evolution": {"population": 4, "generations": 4, "top_k": 2},
    "regularized_evolution": {"population": 4, "sample": 2, "cycles": 12},
    "nsga2": {"population": 4, "generations": 3},
    "architecture_generator": {"iterations": 40, "save_every": 10, "cost_targets": 4},
}


def probe_search(name: str, resume: dict | None = None) -> tuple[SearchResult, list[dict], Any]:
    """The strategy on the ``osnas check`` probe space (half-way budget, seed 0); a restored ``resume``
    state is loaded into the fresh instance first."""
    from osnas.interface import probes
    from osnas.interface.contract import Subject
    from osnas.interface.rules.search_strategy import search

    subject = Subject("search_strategy", name, REGISTRIES["search_strategy"].get(name), PROBE_OPTIONS.get(name, {}))
    result, context, states = search(subject, 0.5, resume=resume)
    assert isinstance(context.evaluator, probes.ProbeEvaluator)
    return result, states, context.evaluator


@pytest.mark.parametrize("name", REGISTRIES["search_strategy"].names())
def test_every_strategy_resumes_from_its_state_dict_to_the_uninterrupted_result(tmp_path, name):
    """Run, snapshot mid-way (state_dict through the checkpoint format), restore into a fresh instance, continue."""
    full, states, _ = probe_search(name)
    assert states, f"{name} never saved its state"
    snapshot = states[(len(states) - 1) // 2]
    if len(states) > 1:  # a real interruption: the search had scored only part of its history
        assert len(snapshot["history"]["records"]) < len(full.history)
    atomic_torch_save(tmp_path / "state.pt", snapshot)
    state = load_checkpoint(tmp_path / "state.pt")  # weights_only, as a real resume reads it
    resumed, _, evaluator = probe_search(name, resume=state)
    assert resumed.best.tolist() == full.best.tolist() and resumed.score == full.score
    assert resumed.history == full.history and resumed.pareto == full.pareto and resumed.info == full.info
    # the continued search scored exactly what the uninterrupted one scored after the snapshot
    after = {tuple(r["arch"]) for r in full.history[len(state["history"]["records"]):]}
    assert set(evaluator.cache) == after


# ----------------------------------------------------------------------------- evaluator


def tiny_agent():
    from osnas.training_agents.classification import Classification

    criterion_cls = REGISTRIES["criterion"].get("cross_entropy")
    return Classification(Classification.Options(), criterion_cls(criterion_cls.Options(), 10, 10), 10)


def batches(count: int, size: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 1, 16, 16, generator=gen), torch.randint(0, 10, (size,), generator=gen))
            for _ in range(count)]


def test_bn_recalibration_once_per_candidate(tiny):
    definition, _ = tiny
    torch.manual_seed(0)
    supernet = Supernet(definition)
    bn_data = batches(2, 8, 0)
    evaluator = Evaluator(supernet, tiny_agent(), bn_data, batches(1, 8, 1), bn_batches=2, val_batches=1)
    stem_conv, stem_bn = supernet.items[0][0], supernet.items[0][1]
    assert torch.equal(stem_bn.running_mean, torch.zeros_like(stem_bn.running_mean))
    arch, other = definition.sample(np.random.default_rng(0), 2)
    first = evaluator.evaluate(arch)
    assert evaluator.recalibrations == 1
    with torch.no_grad():  # cumulative average over the two equal batches = the exact mean of the conv output
        expected = torch.cat([stem_conv(x) for x, _ in bn_data]).mean(dim=(0, 2, 3))
    torch.testing.assert_close(stem_bn.running_mean, expected, rtol=1e-4, atol=1e-5)
    stats = {k: v.clone() for k, v in supernet.state_dict().items() if "running" in k}
    assert evaluator.evaluate(arch) == first and evaluator.recalibrations == 1  # cache hit: no recalibration
    now = supernet.state_dict()
    assert all(torch.equal(v, now[k]) for k, v in stats.items())
    evaluator.evaluate(np.stack([other, arch]))
    assert evaluator.recalibrations == 2 and evaluator.num_evaluated == 2
    assert supernet.training  # mode restored


# ----------------------------------------------------------------------------- architecture generator


class GeneratorEvaluator(Evaluator):
    """The real evaluator on a frozen, untrained tiny supernet and random 16x16 batches of 8."""

    def __init__(self, definition: Any) -> None:
        torch.manual_seed(0)
        super().__init__(Supernet(definition), tiny_agent(), batches(2, 8, 0), batches(1, 8, 1), 2, 1)


@pytest.fixture(scope="module")
def trained_generator(tiny, tmp_path_factory):
    definition, lut = tiny
    constraint = Constraint("macs", 20.0, None, lut, definition)
    run_dir = tmp_path_factory.mktemp("generator_run")
    evaluator = GeneratorEvaluator(definition)
    before = copy.deepcopy(evaluator.supernet.state_dict())
    result = run_strategy("architecture_generator", constraint, evaluator, seed=0,
                          options={"iterations": 150, "save_every": 50}, run_dir=run_dir)
    return constraint, result, run_dir, before, evaluator


def test_generator_hits_targets_across_the_range(trained_generator):
    constraint, result, run_dir, before, evaluator = trained_generator
    lo, hi = constraint.lut.bounds("macs", constraint.definition)
    model, meta = load_generator(run_dir / GENERATOR_FILE)
    targets = np.linspace(lo + 0.1 * (hi - lo), hi - 0.1 * (hi - lo), 5)
    with torch.no_grad():
        costs = np.array([float(constraint.cost(decode(model(t), constraint.definition))) for t in targets])
    assert np.mean(np.abs(costs - targets) / targets) < 0.10, (targets, costs)
    assert np.all(np.diff(costs) >= 0) and costs[-1] > costs[0], costs
    # the search result: generated for constraint.max, feasible, scored once by the evaluator
    assert constraint.feasible(result.best) and len(result.history) == 1
    assert result.info["target"] == 20.0 and meta["metric"] == "macs"
    # the supernet stayed frozen: weights and BN statistics as before training
    after = evaluator.supernet.state_dict()
    weights = [k for k in before if "running" not in k and "num_batches" not in k]
    assert all(torch.equal(before[k], after[k]) for k in weights)


def test_argmax_cost_term_sees_the_decoded_architecture_and_the_softmax_gradient(tiny):
    """argmax_weight's term: forward = the architecture decode() hands out, backward = the tempered softmax."""
    definition, lut = tiny
    logits = torch.randn(definition.num_layers, definition.choice_mask.shape[1]).masked_fill(
        torch.as_tensor(~definition.choice_mask), -1e9).requires_grad_()
    weights = argmax_straight_through(logits, 0.5)
    assert weights.argmax(dim=-1).tolist() == decode(logits, definition).tolist()
    cost = lut.expected_cost(weights)
    assert float(cost.detach()) == pytest.approx(float(lut.cost(decode(logits, definition)[None])[0]), rel=1e-6)
    cost.backward()
    relaxed = logits.detach().clone().requires_grad_()
    lut.expected_cost(torch.softmax(relaxed / 0.5, dim=-1)).backward()
    assert torch.allclose(logits.grad, relaxed.grad)


def test_generator_resume_gives_the_uninterrupted_generator(tiny, tmp_path):
    definition, lut = tiny
    constraint = Constraint("macs", 12.0, 8.0, lut, definition)
    options = {"iterations": 20, "save_every": 5, "cost_targets": 8}
    states: list[dict] = []
    full = run_strategy("architecture_generator", constraint, GeneratorEvaluator(definition), 0, options,
                        states=states, run_dir=tmp_path / "full")
    atomic_torch_save(tmp_path / "state.pt", states[1])
    resumed = run_strategy("architecture_generator", constraint, GeneratorEvaluator(definition), 5, options,
                           resume=load_checkpoint(tmp_path / "state.pt"), run_dir=tmp_path / "resumed")
    assert resumed.best.tolist() == full.best.tolist() and resumed.info["target"] == 10.0
    a, b = (load_checkpoint(tmp_path / d / GENERATOR_FILE)["model"] for d in ("full", "resumed"))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def quick_run(tiny_config, lut_dir, tiny):
    """``osnas search`` on a very small slice of the digits data, sharing the session's lookup table."""

    def run(*overrides: str) -> Path:
        sets = ["dataflow.test_fraction=0.8", "dataflow.val_fraction=0.5", "dataflow.batch_size=32",
                f"lookup_table.cache_dir={lut_dir}", "constraint.max=8.0", *overrides]
        proc = run_osnas("search", "--config", str(tiny_config), "--quiet", *[a for s in sets for a in ("--set", s)],
                         env=ONE_THREAD)
        assert proc.returncode == 0, proc.stderr
        return Path(proc.stdout.strip().splitlines()[-1])

    return run


def test_nsga2_end_to_end_writes_pareto_json(quick_run):
    run_dir = quick_run("search_strategy={name: nsga2, population: 4, generations: 2}")
    pareto = json.loads((run_dir / "pareto.json").read_text())
    arch = json.loads((run_dir / "architecture.json").read_text())
    assert pareto and all(p["costs"]["macs"] <= 8.0 for p in pareto)
    points = np.array([[-p["score"], p["costs"]["macs"]] for p in pareto])
    assert not dominance(points).any()
    assert arch["indices"] in [p["arch"] for p in pareto]
    assert arch["score"] == max(p["score"] for p in pareto)


def test_generator_end_to_end_and_generate_command(quick_run, tmp_path, tiny, monkeypatch, capsys):
    definition, lut = tiny
    run_dir = quick_run("search_strategy={name: architecture_generator, iterations: 10, cost_targets: 8}")
    assert (run_dir / GENERATOR_FILE).is_file()
    code, out, err = cli(monkeypatch, capsys, "generate", "--run", str(run_dir), "--target", "6.0",
                         "--output", str(tmp_path / "arch.json"))
    assert code == 0, err
    written = json.loads((tmp_path / "arch.json").read_text())
    indices = definition.validate_arch(written["indices"])
    assert written["space"] == "proxylessnas" and written["target"] == 6.0
    assert written["costs"]["macs"] == pytest.approx(float(lut.cost(indices, "macs")))
    model, _ = load_generator(run_dir / GENERATOR_FILE)
    with torch.no_grad():
        assert indices.tolist() == decode(model(6.0), definition).tolist()  # one forward pass, no retraining
    assert f"indices: {indices.tolist()}" in out


def test_evolution_rejects_infeasible_children_as_spos_does(tiny, monkeypatch):
    definition, lut = tiny
    lo, hi = lut.bounds("macs", definition)
    constraint = Constraint("macs", lo + 0.3 * (hi - lo), None, lut, definition)
    options = {"population": 10, "generations": 3, "top_k": 5, "mutation_prob": 0.5}
    calls = []
    repair = Constraint.repair
    monkeypatch.setattr(Constraint, "repair", lambda self, *a, **k: calls.append(1) or repair(self, *a, **k))
    for mode in ("repair", "reject"):
        calls.clear()
        result = run_strategy("evolution", constraint, FakeEvaluator(hidden_target(constraint, 0)), 0,
                              options | {"infeasible": mode})
        assert len(result.history) == 30
        assert all(constraint.feasible(np.array(r["arch"])) for r in result.history)
        assert (len(calls) > 0) == (mode == "repair"), (mode, len(calls))
