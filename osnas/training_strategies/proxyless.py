"""ProxylessNAS (Cai et al.): binarized paths, two sampled candidates per layer, memory of about one path."""

from __future__ import annotations

import numpy as np
import torch

from osnas.registry import register
from osnas.search_spaces.supernet import Supernet
from osnas.training import Updater
from osnas.training_agents.base import TrainingAgent
from osnas.training_strategies.arch_params import ArchStrategy, masked_softmax
from osnas.training_strategies.base import Batch, train_weights


@register("training_strategy", "proxyless")
class Proxyless(ArchStrategy):
    """ProxylessNAS: weights on one path drawn from softmax(alpha); alpha by the two-path binary-gate estimator."""

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

    def step(self, supernet: Supernet, batch: Batch, agent: TrainingAgent, updater: Updater) -> torch.Tensor:
        pair, path = self.binarize()
        loss = train_weights(supernet, path, batch, agent, updater)
        if self.arch_training:  # the same two candidates per layer, on a val batch
            x_val, y_val = self.val.next()
            with updater.autocast():
                task_loss = agent.loss(supernet(x_val, self.gate_weights(pair, path), active=pair), y_val)
            self.arch_update(self.arch_loss(task_loss, self.probabilities()), updater)
        return loss
