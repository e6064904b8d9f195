"""The components a config names, built without running anything: data, task, space, lookup table, constraint.

Commands that only need components (``osnas lookup-table``, ``osnas generate``,
``osnas compare``, the benchmarks, the Python API) call :func:`build_components`
directly; :class:`osnas.agent.MainAgent` calls it once to start a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from osnas import distributed
from osnas.config import Config, validate_config
from osnas.constraint import Constraint
from osnas.dataflows.base import Dataflow
from osnas.errors import OsnasError
from osnas.input_check import check_input_size
from osnas.registry import REGISTRIES
from osnas.search_spaces.base import SearchSpace, SpaceDefinition
from osnas.search_spaces.lookup_table import LookupTable
from osnas.training import DTYPES
from osnas.training_agents.base import TrainingAgent


@dataclass
class Components:
    """Everything built from a config before training starts."""

    dataflow: Dataflow
    training_agent: TrainingAgent
    space: SearchSpace
    definition: SpaceDefinition
    lut: LookupTable
    constraint: Constraint
    lut_note: str = ""


def make_space(name: str, options: dict[str, Any], source: str = "search_space") -> SearchSpace:
    """The registered space ``name`` with ``options`` validated like a config's ``search_space`` section."""
    REGISTRIES["search_space"].get(name)  # an unknown name is reported with the registered ones
    config = validate_config({"search_space": {**options, "name": name}}, source=source)
    return REGISTRIES["search_space"].get(name)(config.search_space.options)


def define_space(name: str, options: dict[str, Any], input_size: int, in_channels: int, num_outputs: int,
                 source: str = "search_space") -> SpaceDefinition:
    """The definition of space ``name`` with ``options`` for an input shape and output width."""
    return make_space(name, options, source).define(input_size, in_channels, num_outputs)


def task_shape(config: Config, dataflow: Dataflow) -> int:
    """The network's output width: the task's, given the data's number of classes."""
    return REGISTRIES["training_agent"].get(config.task.name).output_dim(config.task.options, dataflow.num_classes)


def make_dataflow(config: Config, device: torch.device) -> Dataflow:
    return REGISTRIES["dataflow"].get(config.dataflow.name)(config.dataflow.options, config.seed, device)


def config_definition(config: Config) -> SpaceDefinition:
    """The space definition of a config: data shape from its dataflow, output width from its task."""
    dataflow = make_dataflow(config, torch.device("cpu"))
    space = REGISTRIES["search_space"].get(config.search_space.name)(config.search_space.options)
    return space.define(dataflow.input_size, dataflow.in_channels, task_shape(config, dataflow))


def build_components(config: Config, device: torch.device, cache_dir: Path | None) -> Components:
    """Data, task, space definition, lookup table and constraint for a config."""
    space: SearchSpace = REGISTRIES["search_space"].get(config.search_space.name)(config.search_space.options)
    data = config.dataflow.options
    check_input_size(space, data.input_size, data.batch_size, device, "dataflow.input_size")  # before loading data
    dataflow = make_dataflow(config, device)
    output_dim = task_shape(config, dataflow)
    criterion_cls = REGISTRIES["criterion"].get(config.criterion.name)
    criterion = criterion_cls(config.criterion.options, dataflow.num_classes, output_dim).to(device, DTYPES[config.dtype])
    agent_cls = REGISTRIES["training_agent"].get(config.task.name)
    training_agent: TrainingAgent = agent_cls(config.task.options, criterion, dataflow.num_classes)
    definition = space.define(dataflow.input_size, dataflow.in_channels, output_dim)
    lt = config.lookup_table
    lut, note = distributed.from_main(lambda: LookupTable.load_or_build(
        definition, cache_dir, device, lt.latency, lt.latency_batch, lt.latency_runs))
    c = config.constraint
    constraint = Constraint(c.metric, c.max, c.min, lut, definition)
    if c.metric == "latency" and not lt.latency:
        raise OsnasError("constraint.metric is latency but lookup_table.latency is false; set lookup_table.latency: true")
    return Components(dataflow, training_agent, space, definition, lut, constraint, note)
