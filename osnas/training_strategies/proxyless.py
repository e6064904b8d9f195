"""ProxylessNAS (Cai et al., ICLR 2019): binarized paths, two sampled candidates per layer, memory of about one path.

The defaults follow the official search code (mit-han-lab/proxylessnas,
``search/imagenet_arch_search.py`` and ``modules/mix_op.py``, binary mode ``two``):
alpha by Adam with betas (0, 0.999), eps 1e-8 and no weight decay, one alpha
update every 5 weight steps on a fresh pair of candidates per layer, the two
updated logits shifted afterwards so that their log-sum-exp is unchanged (every
unsampled candidate keeps its probability), and no update of a layer whose open
gate is the ``zero`` candidate. The weight steps train one path drawn from
softmax(alpha).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import Field, PositiveInt

from osnas.registry import register
from osnas.search_spaces.base import SpaceDefinition
from osnas.search_spaces.supernet import Supernet
from osnas.training import Updater
from osnas.training_agents.base import TrainingAgent
from osnas.training_strategies.arch_params import ArchOptions, ArchStrategy, masked_softmax
from osnas.training_strategies.base import Batch, train_weights


class ProxylessOptions(ArchOptions):
    arch_weight_decay: float = Field(0.0, ge=0.0)
    arch_betas: tuple[float, float] = Field((0.0, 0.999), description="Adam betas of alpha (official: 0, 0.999)")
    arch_update_every: PositiveInt = Field(5, description="weight steps per alpha step (official: 5)")
    rescale: bool = Field(True, description="keep the log-sum-exp of the two updated logits (official: true)")
    skip_zero_paths: bool = Field(True, description="no alpha step in a layer whose open gate is `zero`")


def zero_candidates(definition: SpaceDefinition) -> np.ndarray:
    """(L, K) bool: the candidates that drop a layer (named ``zero``, or a rule's zero choice)."""
    zero = np.zeros((definition.num_layers, definition.max_choices), dtype=bool)
    for layer, names in enumerate(definition.entry_names):
        zero[layer, [k for k, name in enumerate(names) if name == "zero"]] = True
    for rule in definition.rules:
        zero[list(rule.entries), rule.zero] = True
    return zero


@register("training_strategy", "proxyless")
class Proxyless(ArchStrategy):
    """ProxylessNAS: weights on one path drawn from softmax(alpha); alpha by the two-path binary-gate estimator."""

    Options = ProxylessOptions

    def __init__(self, options: ProxylessOptions, context: Any) -> None:
        super().__init__(options, context)
        self.zero = zero_candidates(context.definition)
        self.steps = 0

    def sample_path(self) -> np.ndarray:
        """One candidate per layer drawn from softmax(alpha), a broken rule repaired."""
        definition = self.context.definition
        cum = self.arch_probabilities().astype(np.float64).cumsum(axis=1)
        u = self.rng.random(definition.num_layers) * cum[:, -1]
        path = np.minimum((u[:, None] > cum).sum(axis=1), definition.choices - 1).astype(np.int64)
        if definition.rules and not definition.valid(path[None])[0]:
            path = definition.repair_rules(path[None], self.rng)[0]
        return path

    def binarize(self) -> tuple[np.ndarray, np.ndarray]:
        """Per layer, two candidates drawn from softmax(alpha) and the one whose gate opens.

        Returns ``pair`` ((L, K) bool, the two sampled candidates) and ``path`` ((L,)
        ints, the open gate: one of the pair, drawn by their renormalised
        probabilities). If ``path`` breaks a rule of the space it is repaired and a
        repaired layer keeps only its new candidate (no alpha gradient there this step).
        """
        probs = np.maximum(self.arch_probabilities().astype(np.float64), 1e-12)  # two distinct draws stay possible
        definition = self.context.definition
        pair = np.zeros(probs.shape, dtype=bool)
        path = np.zeros(definition.num_layers, dtype=np.int64)
        for layer, n in enumerate(definition.choices):
            p = probs[layer, :n] / probs[layer, :n].sum()
            drawn = self.rng.choice(n, size=min(2, int(n)), replace=False, p=p)
            pair[layer, drawn] = True
            path[layer] = self.rng.choice(drawn, p=p[drawn] / p[drawn].sum())
        if definition.rules and not definition.valid(path[None])[0]:
            fixed = definition.repair_rules(path[None], self.rng)[0]
            for layer in np.flatnonzero(fixed != path):
                pair[layer] = False
                pair[layer, fixed[layer]] = True
            path = fixed
        return pair, path

    def gate_weights(self, pair: np.ndarray, path: np.ndarray) -> torch.Tensor:
        """(L, K) weights whose value is the one-hot gate and whose gradient is ProxylessNAS' estimator.

        ``onehot + (p2 - p2.detach())`` with ``p2`` the softmax over the two sampled
        logits: the forward sees only the open path, and ``dL/dp2_k = <dL/dout, o_k>``
        equals ``dL/dg_k``, so autograd gives ``sum_j dL/dg_j p_j (delta_ij - p_i)``.
        """
        pair_t = torch.as_tensor(pair, device=self.alpha.device)
        p2 = masked_softmax(self.alpha, pair_t)
        onehot = torch.zeros_like(p2)
        onehot[torch.arange(len(path), device=onehot.device), torch.as_tensor(path, device=onehot.device)] = 1.0
        return onehot + (p2 - p2.detach())  # exactly the one-hot in value

    def rescale(self, before: torch.Tensor, pair: np.ndarray) -> None:
        """Shift each layer's sampled logits so their log-sum-exp is what it was before the update."""
        pair_t = torch.as_tensor(pair, device=self.alpha.device)
        with torch.no_grad():
            old = before.masked_fill(~pair_t, float("-inf")).logsumexp(dim=1, keepdim=True)
            new = self.alpha.masked_fill(~pair_t, float("-inf")).logsumexp(dim=1, keepdim=True)
            self.alpha.sub_(torch.where(pair_t, new - old, torch.zeros_like(self.alpha)))

    def arch_step(self, supernet: Supernet, agent: TrainingAgent, updater: Updater) -> None:
        """One alpha update on a validation batch through a freshly drawn pair of candidates per layer."""
        pair, path = self.binarize()
        x_val, y_val = self.val.next()
        with updater.autocast():
            task_loss = agent.loss(supernet(x_val, self.gate_weights(pair, path), active=pair), y_val)
        frozen = self.zero[np.arange(len(path)), path] if self.options.skip_zero_paths else None
        before = self.alpha.detach().clone()
        if self.arch_update(self.arch_loss(task_loss, self.probabilities()), updater, frozen) and self.options.rescale:
            self.rescale(before, pair if frozen is None else pair & ~frozen[:, None])

    def step(self, supernet: Supernet, batch: Batch, agent: TrainingAgent, updater: Updater) -> torch.Tensor:
        loss = train_weights(supernet, self.sample_path(), batch, agent, updater)
        self.steps += 1
        if self.arch_training and self.steps % self.options.arch_update_every == 0:
            self.arch_step(supernet, agent, updater)
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.steps = state["steps"]
