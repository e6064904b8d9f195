"""Small stand-ins the contract checks run a component against: a tiny space, random batches, a fake scorer.

They are deliberately cheap (8x8 inputs, three searchable layers) so that
checking a strategy takes seconds and does not depend on other components.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from osnas.constraint import Constraint
from osnas.criteria.base import Criterion
from osnas.dataflows.memory import TensorLoader
from osnas.interface.contract import CPU, Subject
from osnas.registry import REGISTRIES
from osnas.search_spaces.base import Choice, Fixed, SpaceDefinition, op
from osnas.search_spaces.lookup_table import LookupTable
from osnas.search_strategies.base import arch_key
from osnas.training_agents.base import TrainingAgent
from osnas.training_strategies.base import TrainingContext

CLASSES = 5
CHANNELS = 3
SIZE = 8
PROBE_ARCHITECTURES = 18  # 3 x 2 x 3 candidates


def probe_space() -> SpaceDefinition:
    """Three searchable layers (one with a zero candidate, one downsampling) on 8x8 inputs."""
    wide = (op("mbconv", "e1", kernel=3, expansion=1), op("mbconv", "e3", kernel=3, expansion=3))
    body = (
        Fixed(op("conv_bn_act", kernel=3), CHANNELS, 8),
        Choice((op("conv_bn_act", "c3", kernel=3), op("conv_bn_act", "c5", kernel=5), op("skip", "zero")), 8, 8),
        Choice(wide, 8, 16, 2),
        Choice((*wide, op("skip", "zero")), 16, 16),
        Fixed(op("global_pool"), 16, 16),
        Fixed(op("linear"), 16, CLASSES),
    )
    return SpaceDefinition("osnas_check_probe", SIZE, CHANNELS, CLASSES, body)


def probe_lut(s: Subject) -> LookupTable:
    """The probe space's lookup table (MACs and params), built once per subject."""
    return s.shared("probe_lut", lambda: LookupTable.build(s.shared("probe", probe_space), CPU, latency=False))


def budget(lut: LookupTable, definition: SpaceDefinition, fraction: float) -> Constraint:
    """A MACs budget ``fraction`` of the way from the cheapest to the dearest architecture."""
    lo, hi = lut.bounds("macs", definition)
    return Constraint("macs", lo + fraction * (hi - lo), None, lut, definition)


def batch(n: int = 8, seed: int = 0, classes: int = CLASSES) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, CHANNELS, SIZE, SIZE, generator=gen), torch.randint(0, classes, (n,), generator=gen)


def loader(n: int = 21, batch_size: int = 8, classes: int = CLASSES) -> TensorLoader:
    """An unshuffled loader whose last batch is short (21 = 8 + 8 + 5)."""
    x, y = batch(n, seed=1, classes=classes)
    return TensorLoader(x, y, batch_size)


@dataclass
class ProbeEvaluator:
    """Scores like the real evaluator (higher is better, cached) without a supernet: bigger nets score higher."""

    lut: LookupTable

    def __post_init__(self) -> None:
        self.cache: dict[tuple[int, ...], float] = {}

    @property
    def num_evaluated(self) -> int:
        return len(self.cache)

    def evaluate(self, archs: np.ndarray) -> np.ndarray:
        archs = np.atleast_2d(np.asarray(archs, dtype=np.int64))
        scores = self.lut.cost(archs, "params") * 1e3 + (archs * np.arange(1, archs.shape[1] + 1)).sum(axis=1) * 1e-3
        for arch, score in zip(archs, scores):
            self.cache[arch_key(arch)] = float(score)
        return np.asarray(scores, dtype=np.float64)

    # the SupernetScorer side: a loss that, like the scores, prefers candidates with more parameters
    @property
    def num_train_batches(self) -> int:
        return 1

    @property
    def device(self) -> torch.device:
        return CPU

    def frozen(self) -> AbstractContextManager[None]:
        return nullcontext()

    def mixed_loss(self, weights: torch.Tensor, active: np.ndarray, step: int) -> torch.Tensor:
        table = torch.as_tensor(self.lut.unit_table("params"), dtype=weights.dtype, device=weights.device)
        return -(weights * table).sum() / table.sum().clamp_min(1e-12)


def training_context(s: Subject) -> TrainingContext:
    """What a training strategy gets: the probe space, its prices, a budget half-way up its range."""
    definition, lut = s.shared("probe", probe_space), probe_lut(s)
    return TrainingContext(definition, lut, budget(lut, definition, 0.5), loader(), CPU, seed=0, total_epochs=2)


def cross_entropy(output_dim: int = CLASSES) -> Criterion:
    """The default criterion for the probe's classes."""
    return criterion_for("logits", output_dim)


def criterion_for(expects: str, output_dim: int) -> Criterion:
    """A built-in criterion that trains on ``expects`` (a task's ``expects``): cross-entropy for logits."""
    criteria = REGISTRIES["criterion"]
    name = next(n for n in ["cross_entropy", *criteria.names()] if criteria.get(n).expects == expects)
    criterion = criteria.get(name)
    return criterion(criterion.Options(), CLASSES, output_dim)


def classification_agent() -> TrainingAgent:
    """The default task with the default criterion, for the probe's classes."""
    task = REGISTRIES["training_agent"].get("classification")
    return task(task.Options(), cross_entropy(), CLASSES)
