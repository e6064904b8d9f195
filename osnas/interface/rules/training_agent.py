"""Training-agent rules, with a criterion of the task's kind (cross-entropy for logits) and a fixed linear model
on random 8x8 images."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from osnas.interface import probes
from osnas.interface.contract import Broken, Subject, finite_scalar, rule, shape
from osnas.training_agents.base import TrainingAgent


@rule("training_agent", "output_dim(options, num_classes) is a positive int")
def check_output_dim(s: Subject) -> str:
    dim = s.cls.output_dim(s.options, probes.CLASSES)
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise Broken(f"output_dim(options, {probes.CLASSES}) is {dim!r}")
    return f"{dim} outputs for {probes.CLASSES} classes"


def agent_with_model(s: Subject) -> tuple[TrainingAgent, nn.Module]:
    """The agent with a criterion it trains with, and a fixed linear model from probe images to its output width."""
    dim = s.cls.output_dim(s.options, probes.CLASSES)
    agent = s.cls(s.options, probes.criterion_for(s.cls.expects, dim), probes.CLASSES)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(probes.CHANNELS * probes.SIZE ** 2, dim))
    return agent, model


@rule("training_agent", "loss(outputs, targets) is a finite scalar with gradients, and batch_metrics gives 0-dim "
                        "tensors (no host sync)")
def check_loss(s: Subject) -> None:
    agent, model = agent_with_model(s)
    x, y = probes.batch()
    outputs = model(x)
    loss = finite_scalar(agent.loss(outputs, y), "loss(outputs, targets)")
    loss.backward()
    if any(p.grad is None or not torch.isfinite(p.grad).all() for p in model.parameters()):
        raise Broken("the loss gives no finite gradient to the model")
    metrics = agent.batch_metrics(outputs.detach(), y)
    if not isinstance(metrics, dict):
        raise Broken(f"batch_metrics returns {type(metrics).__name__}, not a dict")
    for key, value in metrics.items():
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            raise Broken(f"batch_metrics[{key!r}] is {shape(value)}; return 0-dim tensors (a float forces a host "
                         "sync every step)")


@rule("training_agent", "evaluate(forward, batches) returns finite floats including selection_metric, the same on "
                        "a loader and on a list of (x, y) batches (the search passes a list)")
def check_evaluate(s: Subject) -> str:
    agent, model = agent_with_model(s)
    loader = probes.loader()
    with torch.no_grad():
        results = [agent.evaluate(model, loader), agent.evaluate(model, list(loader))]
    first = results[0]
    if not isinstance(first, dict):
        raise Broken(f"evaluate returns {type(first).__name__}, not a dict")
    if agent.selection_metric not in first:
        raise Broken(f"evaluate's result has no {agent.selection_metric!r} (selection_metric); keys: "
                     f"{', '.join(first)}")
    for key, value in first.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not np.isfinite(value):
            raise Broken(f"evaluate's {key!r} is {value!r}; return finite Python floats")
    if results[1] != first:
        raise Broken(f"evaluate gives {first} on the loader but {results[1]} on the same batches as a list")
    return f"{agent.selection_metric} = {first[agent.selection_metric]:.4g} on random data"
