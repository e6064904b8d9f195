"""FairNAS strict fairness (Chu et al.): every candidate of every layer trained once per step, one update."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn as nn
from pydantic import Field

from osnas.errors import OsnasError
from osnas.registry import register
from osnas.search_spaces.base import SpaceDefinition
from osnas.search_spaces.supernet import Supernet
from osnas.training import Updater
from osnas.training_agents.base import TrainingAgent
from osnas.training_strategies.base import Batch, TrainingStrategy, TrainingStrategyOptions


class FairnessOptions(TrainingStrategyOptions):
    # a layer with fewer candidates than K repeats some of them in a step (docs/strategies.md)
    duplicates: Literal["average", "sum"] = Field(
        "average", description="gradient of a candidate trained c > 1 times in a step: average (divided by c, "
        "every candidate updated with one path's weight, strict fairness) or sum (c paths' weight)")


def fair_paths(definition: SpaceDefinition, rng: np.random.Generator) -> np.ndarray:
    """(K, L) paths, K the largest candidate count: column l is a random permutation of layer l's candidates.

    A layer with n < K candidates is filled with fresh permutations cut to K, so each
    of its candidates appears at least once and the counts differ by at most one.
    """
    k = definition.max_choices
    columns = []
    for n in definition.choices:
        n = int(n)
        column = np.concatenate([rng.permutation(n) for _ in range(-(-k // n))])[:k]
        columns.append(column)
    return np.stack(columns, axis=1).astype(np.int64)


def repair_fairly(definition: SpaceDefinition, paths: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Make every path satisfy the space's rules, by swaps within a layer wherever possible.

    A swap exchanges two paths' candidates at one layer, so each layer's multiset of
    candidates (the fairness) is kept. A path that no swap can fix is repaired by
    ``definition.repair_rules``, which breaks exact fairness for that layer only.
    """
    paths = paths.copy()
    for rule in definition.rules:
        idx = list(rule.entries)

        def active(row: int) -> int:
            return int((paths[row, idx] != rule.zero).sum())

        for row in range(len(paths)):
            for layer in idx:
                if active(row) >= rule.count:
                    break
                if paths[row, layer] != rule.zero:
                    continue
                donors = [r for r in rng.permutation(len(paths))
                          if paths[r, layer] != rule.zero and active(r) > rule.count]
                if donors:
                    other = donors[0]
                    paths[[row, other], layer] = paths[[other, row], layer]
    bad = ~definition.valid(paths)
    if bad.any():
        paths[bad] = definition.repair_rules(paths[bad], rng)
    return paths


def candidate_module(supernet: Supernet, item: int, offset: int, k: int) -> nn.Module:
    """The module that only candidate ``k`` of entry ``offset`` of item ``item`` runs.

    A single-entry item's module lists its candidates (``candidates``); a multi-entry
    one must say which part of it belongs to one entry's candidate (``entry_candidates``).
    """
    module = supernet.items[item]
    start, stop = supernet.definition.item_slices[item]
    if stop - start == 1 and hasattr(module, "candidates"):
        return module.candidates[k]
    if hasattr(module, "entry_candidates"):
        return module.entry_candidates(offset)[k]
    raise OsnasError(
        f"training_strategy 'fairness' (duplicates: average) trained candidate {k} of entry {start + offset} "
        f"more than once in one step but cannot tell which parameters of its item ({type(module).__name__}) belong to "
        "that candidate; set training_strategy.duplicates to 'sum', or give the item's supernet module an "
        "entry_candidates(offset) method")


def average_duplicates(supernet: Supernet, paths: np.ndarray) -> None:
    """Divide the gradient of each candidate that ``c > 1`` of ``paths`` trained by ``c``.

    Only the candidate's own parameters: layers that several candidates or every path
    share keep the sum over the paths, as in FairNAS. Linear in the gradient, so it
    holds for loss-scaled (AMP) gradients and before the ranks' all-reduce alike.
    """
    definition = supernet.definition
    for item, (start, stop) in enumerate(definition.item_slices):
        for entry in range(start, stop):
            counts = np.bincount(paths[:, entry], minlength=int(definition.choices[entry]))
            for k in np.flatnonzero(counts > 1):
                for param in candidate_module(supernet, item, entry - start, int(k)).parameters():
                    if param.grad is not None:
                        param.grad.div_(int(counts[k]))


@register("training_strategy", "fairness")
class Fairness(TrainingStrategy):
    """FairNAS: K paths covering every candidate of every layer; gradients accumulated, one update."""

    Options = FairnessOptions
    last_paths: np.ndarray | None = None

    def step(self, supernet: Supernet, batch: Batch, agent: TrainingAgent, updater: Updater) -> torch.Tensor:
        definition = self.context.definition
        paths = fair_paths(definition, self.rng)
        if definition.rules:
            paths = repair_fairly(definition, paths, self.rng)
        x, y = batch
        updater.zero_grad()
        total = torch.zeros((), device=x.device)
        for path in paths:  # one backward per path frees its graph; the gradients add up
            with updater.autocast():
                loss = agent.loss(supernet(x, path), y)
            updater.backward(loss)
            total = total + loss.detach().float()
        if self.options.duplicates == "average":
            average_duplicates(supernet, paths)
        updater.step()
        self.last_paths = paths
        return total / len(paths)
