"""SGNAS architecture generator (Huang & Chu, CVPR 2021): one network maps a hardware target to an architecture.

A small MLP takes the target cost, normalised to the space's achievable range
[cheapest, dearest] (``lut.bounds``), and outputs (L, K) logits over the
candidates. It is trained with the supernet frozen, over targets drawn uniformly
from ``[target_min, target_max]``: each iteration samples a hard architecture by
straight-through gumbel-softmax, runs only its candidates on a validation batch
(the evaluator's fixed ``evaluation.val_batches`` batches, cycled, as in the
paper and OSNASLib: the generator is selected on held-out data, like every other
search strategy) and minimises
``task loss + penalty * |cost - target| / target``. The cost is the lookup
table's ``expected_cost`` of the straight-through weights: its value is the
sampled architecture's exact cost and its gradient that of the relaxation, so
the sampled architectures themselves are pulled onto the target rather than
only an average over candidates. The architecture the generator hands out is
the argmax, not a sample, so ``argmax_weight`` of the cost term (0.3) measures
the argmax's cost (straight-through too) instead; 0 is the paper's sampled-only
term. The cost term needs no supernet pass, so each iteration averages it over
``cost_targets`` targets (the first one also drives the task loss): with one
target per iteration, as in the paper, a few hundred iterations calibrate the
generator poorly (argmax costs 10-30% off target on the tiny test space, against
about 5%). The defaults (128 targets per iteration, gumbel temperature 0.5,
targets drawn over the whole achievable range, argmax weight 0.3) were measured
on that space, 9 targets over the range x 32 seeds at 300 iterations: 286 of 288
argmax costs within 10 % of their target (max 11.2 %, mean 2.5 %), against 278
(max 20.2 %, mean 3.6 %) with the sampled cost alone; see docs/strategies.md.

Afterwards any target gets its architecture in one forward pass, without
retraining (``osnas generate``); the search result is the generator's
architecture for the constraint (its max, or the midpoint of [min, max]).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn as nn
from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from osnas.config import ComponentOptions
from osnas.constraint import UNIT_NAMES, Constraint
from osnas.errors import OsnasError
from osnas.registry import register
from osnas.search_spaces.base import SpaceDefinition
from osnas.search_spaces.lookup_table import LookupTable
from osnas.search_strategies.base import (SearchContext, SearchResult, SearchStrategy, SearchStrategyOptions,
                                          SupernetScorer)

GENERATOR_FILE = "generator.pt"
MASKED = -1e9  # logit of a candidate that does not exist in an entry


class GeneratorOptions(SearchStrategyOptions):
    iterations: PositiveInt = 300
    lr: PositiveFloat = 0.01
    penalty: PositiveFloat = 5.0
    tau: PositiveFloat = 0.5
    hidden: PositiveInt = 64
    cost_targets: PositiveInt = 128
    argmax_weight: float = Field(0.3, ge=0.0, le=1.0)
    target_min: Optional[PositiveFloat] = None
    target_max: Optional[PositiveFloat] = None
    save_every: PositiveInt = 50

    @model_validator(mode="after")
    def _ordered(self) -> "GeneratorOptions":
        if self.target_min is not None and self.target_max is not None and self.target_min >= self.target_max:
            raise ValueError(f"target_min ({self.target_min}) must be smaller than target_max ({self.target_max})")
        return self


class ArchitectureGenerator(nn.Module):
    """MLP: normalised target cost (0 = cheapest, 1 = dearest architecture) -> (L, K) candidate logits."""

    def __init__(self, mask: np.ndarray, bounds: tuple[float, float], hidden: int = 64) -> None:
        super().__init__()
        self.register_buffer("mask", torch.as_tensor(np.asarray(mask, dtype=bool)))
        self.register_buffer("bounds", torch.tensor(bounds, dtype=torch.float64))
        layers, choices = self.mask.shape
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, layers * choices))

    def forward(self, targets: Any) -> torch.Tensor:
        """(L, K) logits for one target cost, (B, L, K) for a sequence of B targets (constraint units)."""
        lo, hi = (float(b) for b in self.bounds)
        t = torch.as_tensor(np.asarray(targets, dtype=np.float64), dtype=torch.float32, device=self.mask.device)
        logits = self.net(((t - lo) / max(hi - lo, 1e-12)).reshape(-1, 1)).view(-1, *self.mask.shape)
        logits = logits.masked_fill(~self.mask, MASKED)
        return logits if t.ndim else logits[0]


def decode(logits: torch.Tensor, definition: SpaceDefinition) -> np.ndarray:
    """The most likely architecture; a broken space rule is fixed with the next most likely candidates."""
    scores = logits.detach().cpu().double().numpy()
    arch = scores.argmax(axis=1).astype(np.int64)
    for rule in definition.rules:
        entries = np.array(rule.entries)
        while (arch[entries] != rule.zero).sum() < rule.count:
            options = scores[entries].copy()
            options[:, rule.zero] = -np.inf
            options[~definition.choice_mask[entries]] = -np.inf
            options[arch[entries] != rule.zero] = -np.inf  # only switch entries that are still zero
            row, choice = np.unravel_index(np.argmax(options), options.shape)
            arch[entries[row]] = choice
    return arch


def straight_through(soft: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(one-hot of ``soft``'s argmax forward with ``soft``'s gradient backward, the one-hot itself)."""
    hard = torch.zeros_like(soft).scatter_(-1, soft.argmax(dim=-1, keepdim=True), 1.0)
    return hard - soft.detach() + soft, hard


def straight_through_sample(logits: torch.Tensor, tau: float, generator: torch.Generator
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Gumbel-softmax hard sample: (one-hot forward / soft backward weights, the one-hot itself)."""
    uniform = torch.rand(logits.shape, generator=generator).clamp_(1e-10, 1.0 - 1e-7).to(logits.device)
    return straight_through(torch.softmax((logits - torch.log(-torch.log(uniform))) / tau, dim=-1))


def argmax_straight_through(logits: torch.Tensor, tau: float) -> torch.Tensor:
    """The most likely candidates (forward) with the tempered softmax's gradient (backward): what decode() picks."""
    return straight_through(torch.softmax(logits / tau, dim=-1))[0]


def cost_error(weights: torch.Tensor, targets: np.ndarray, lut: LookupTable, metric: str) -> torch.Tensor:
    """Mean relative distance of the architectures in ``weights`` (B, L, K) from their targets."""
    costs = lut.expected_cost(weights, metric)
    goals = torch.as_tensor(targets, dtype=costs.dtype, device=costs.device)
    return ((costs - goals).abs() / goals).mean()


def target_range(options: GeneratorOptions, constraint: Constraint, bounds: tuple[float, float]) -> tuple[float, float]:
    """Training targets: the options, else the whole achievable range, widened to the search target.

    The ends are trained too: leaving 5 % of the range out at each end left the lowest targets at the
    edge of what the generator saw (16 seeds x 9 targets on the test space: 137 of 144 within 10 %,
    max 20.1 %; the whole range: 140 of 144, max 12.6 %)."""
    lo, hi = bounds
    low = options.target_min if options.target_min is not None else lo
    high = options.target_max if options.target_max is not None else hi
    goal = search_target(constraint, bounds)
    return min(low, goal), max(high, goal)


def search_target(constraint: Constraint, bounds: tuple[float, float]) -> float:
    """The cost the search result is generated for: max, or the middle of [min, max], inside the achievable range."""
    goal = constraint.max if constraint.min is None else 0.5 * (constraint.min + constraint.max)
    return float(np.clip(goal, *bounds))


def load_generator(path: Path) -> tuple[ArchitectureGenerator, dict[str, Any]]:
    """A trained generator and its metadata from ``generator.pt``."""
    from osnas.run_dir import load_checkpoint

    state = load_checkpoint(path)
    if not isinstance(state, dict) or "model" not in state or "metric" not in state:
        raise OsnasError(f"{path} is not an osnas architecture generator (expected RUN/{GENERATOR_FILE})")
    model = ArchitectureGenerator(state["model"]["mask"].numpy(), tuple(state["bounds"]), state["hidden"])
    model.load_state_dict(state["model"])
    return model.eval(), state


@register("search_strategy", "architecture_generator")
class ArchitectureGeneratorSearch(SearchStrategy):
    """SGNAS: trains a generator (target cost -> architecture) on the frozen supernet; any target in one pass."""

    Options = GeneratorOptions

    def __init__(self, options: ComponentOptions) -> None:
        super().__init__(options)
        self.iteration = 0
        self.training: dict[str, Any] | None = None  # generator, optimizer and noise states; None: not started

    def search(self, context: SearchContext) -> SearchResult:
        """Train (resumable every ``save_every`` iterations), generate for the constraint, score, save generator.pt."""
        opts, constraint, definition, evaluator = self.options, context.constraint, context.definition, context.evaluator
        if not isinstance(evaluator, SupernetScorer):
            raise OsnasError("search_strategy architecture_generator trains on the supernet; this evaluator "
                             f"({type(evaluator).__name__}) cannot run it")
        if not evaluator.num_val_batches:
            raise OsnasError("search_strategy architecture_generator trains on the evaluator's validation batches; "
                             "set evaluation.val_batches >= 1")
        bounds = context.lut.bounds(constraint.metric, definition)
        low, high = target_range(opts, constraint, bounds)
        if not low < high:
            raise OsnasError(f"search_strategy: target_min ({low:g}) must be below target_max ({high:g}); the space "
                             f"costs {bounds[0]:.4g} to {bounds[1]:.4g} {UNIT_NAMES[constraint.metric]}")
        # the seeds are drawn before a restored rng state is applied, as in the uninterrupted search
        noise = torch.Generator().manual_seed(int(context.rng.integers(2**62)))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(context.rng.integers(2**62)))
            model = ArchitectureGenerator(definition.choice_mask, bounds, opts.hidden).to(evaluator.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=opts.lr)
        history = self.begin(context)
        if self.training is not None:
            model.load_state_dict(self.training["model"])
            optimizer.load_state_dict(self.training["optimizer"])
            noise.set_state(self.training["noise"])
        with evaluator.frozen():
            while self.iteration < opts.iterations:
                targets = context.rng.uniform(low, high, size=opts.cost_targets)
                logits = model(targets)
                weights, hard = straight_through_sample(logits, opts.tau, noise)
                task = evaluator.mixed_loss(weights[0], hard[0].bool().cpu().numpy(), self.iteration)
                error = cost_error(weights, targets, context.lut, constraint.metric)
                if opts.argmax_weight:  # the argmax is what the generator hands out: pull it onto the targets too
                    greedy = cost_error(argmax_straight_through(logits, opts.tau), targets, context.lut,
                                        constraint.metric)
                    error = (1.0 - opts.argmax_weight) * error + opts.argmax_weight * greedy
                loss = task + opts.penalty * error
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                self.iteration += 1
                if self.iteration % opts.save_every == 0 or self.iteration == opts.iterations:
                    context.log({"phase": "generator", "iteration": self.iteration,
                                 "task_loss": float(task.detach()), "cost_error": float(error.detach())})
                    # a snapshot: state_dict() hands out the live tensors
                    self.training = copy.deepcopy({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                                   "noise": noise.get_state()})
                    self.checkpoint()
        model.eval()
        goal = search_target(constraint, bounds)
        with torch.no_grad():
            logits = model(goal)
        arch = decode(logits, definition)
        repaired = not constraint.feasible(arch)
        if repaired:
            arch = constraint.repair(arch, context.rng, preference=logits.cpu().double().numpy())
        history.evaluate(arch[None], target=goal)
        info: dict[str, Any] = {"target": goal, "target_range": [low, high], "iterations": self.iteration,
                                "generated_cost": float(constraint.cost(arch))}
        path = context.save_file(GENERATOR_FILE, {
            "model": {k: v.cpu() for k, v in model.state_dict().items()}, "bounds": list(bounds),
            "hidden": opts.hidden, "metric": constraint.metric, "target_range": [low, high],
            "space": definition.name, "space_hash": definition.fingerprint()})
        if path is not None:
            info["generator"] = str(path)
        return history.result(repaired=repaired, info=info)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "iteration": self.iteration, "training": self.training}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.iteration = int(state["iteration"])
        self.training = state["training"]
