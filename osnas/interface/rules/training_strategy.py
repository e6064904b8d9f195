"""Training-strategy rules, on the probe space with random batches and the default task."""

from __future__ import annotations

import copy

import numpy as np
import torch

from osnas.interface import probes
from osnas.interface.contract import CPU, Broken, Subject, finite_scalar, rule, saved_and_loaded
from osnas.search_spaces.supernet import Supernet
from osnas.training import Updater
from osnas.training_strategies.base import TrainingStrategy


def strategy_step(s: Subject, strategy: TrainingStrategy, supernet: Supernet) -> torch.Tensor:
    updater = Updater(torch.optim.SGD(supernet.parameters(), lr=0.05), None, CPU)
    torch.manual_seed(1)  # a strategy may also draw from torch's RNG, which checkpoints save separately
    return strategy.step(supernet.train(), probes.batch(), probes.classification_agent(), updater)


@rule("training_strategy", "step() trains the supernet on the batch and returns the detached finite loss")
def check_step(s: Subject) -> None:
    strategy = s.cls(s.options, probes.training_context(s))
    strategy.on_epoch_start(0)
    supernet = Supernet(s.shared("probe", probes.probe_space))
    before = [p.detach().clone() for p in supernet.parameters()]
    loss = finite_scalar(strategy_step(s, strategy, supernet), "step()'s return value")
    if loss.requires_grad:
        raise Broken("step() returns a loss attached to the graph; return loss.detach()")
    if all(torch.equal(a, b) for a, b in zip(before, supernet.parameters())):
        raise Broken("step() left every supernet weight unchanged (call updater.backward(loss) and updater.step())")


@rule("training_strategy", "on_epoch_start(epoch) works for successive epochs and epoch_metrics(), if defined, "
                           "gives finite numbers")
def check_epochs(s: Subject) -> None:
    strategy = s.cls(s.options, probes.training_context(s))
    supernet = Supernet(s.shared("probe", probes.probe_space))
    for epoch in range(2):
        strategy.on_epoch_start(epoch)
        strategy_step(s, strategy, supernet)
        metrics = getattr(strategy, "epoch_metrics", lambda: {})()
        if not isinstance(metrics, dict) or not all(
                isinstance(v, (int, float)) and np.isfinite(v) for v in metrics.values()):
            raise Broken(f"epoch_metrics() returns {metrics!r}; expected {{name: finite number}}")


@rule("training_strategy", "state_dict() survives a checkpoint, and a strategy restored from it trains exactly like "
                           "the original (resume)")
def check_state(s: Subject) -> None:
    original = s.cls(s.options, probes.training_context(s))
    original.on_epoch_start(0)
    supernet = Supernet(s.shared("probe", probes.probe_space))
    strategy_step(s, original, supernet)
    restored = s.cls(s.options, probes.training_context(s))
    restored.load_state_dict(saved_and_loaded(original.state_dict(), "state_dict()"))
    twins = [copy.deepcopy(supernet) for _ in range(2)]
    strategy_step(s, original, twins[0])
    strategy_step(s, restored, twins[1])
    for (name, a), b in zip(twins[0].named_parameters(), twins[1].parameters()):
        if not torch.allclose(a, b):
            raise Broken(f"after the same step the original and the restored strategy leave {name} different; "
                         "put every random state and parameter the strategy uses in state_dict()")
