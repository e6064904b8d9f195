"""The dataflow contract: data splits as iterables of ``(inputs, targets)`` batches on the device.

``search_split()`` carves train/val out of the training data with a seeded split;
``final_split()`` gives the full training data and the test split, which only the
final evaluation touches.

Targets are class indices (int64), except in verification splits: a pair batch
holds 2B images, the B first images of the pairs then the B second ones, and a
bool target per pair (same identity or not); see ``training_agents/face_recognition.py``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Iterator, Protocol

import torch
from pydantic import Field, PositiveInt

from osnas.config import ComponentOptions


class Loader(Protocol):
    """What every split is: re-iterable batches already on the training device."""

    batch_size: int

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def __len__(self) -> int: ...

    @property
    def num_samples(self) -> int: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class SeededLoader(ABC):
    """Shared by the built-in loaders: the batch count, and the generator (shuffling, augmentation) saved for resume.

    Subclasses set their data before calling ``__init__`` and define ``num_samples``.
    """

    def __init__(self, batch_size: int, drop_last: bool, seed: int) -> None:
        self.batch_size = batch_size
        self.drop_last = drop_last and self.epoch_size >= batch_size
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(seed)

    @property
    @abstractmethod
    def num_samples(self) -> int:
        """Samples in the split."""

    @property
    def epoch_size(self) -> int:
        """Samples drawn per epoch (the sample count unless a sampler repeats some)."""
        return self.num_samples

    def __len__(self) -> int:
        n = self.epoch_size
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state["generator"])


class DataflowOptions(ComponentOptions):
    """Options shared by every dataflow."""

    input_size: PositiveInt = 32
    batch_size: PositiveInt = 64
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    num_workers: int = Field(0, ge=0)


class Dataflow(ABC):
    """Loads a dataset and serves its splits."""

    name: ClassVar[str]  # the registered name, set by @register
    Options: ClassVar[type[ComponentOptions]] = DataflowOptions

    def __init__(self, options: DataflowOptions, seed: int, device: torch.device) -> None:
        self.options = options
        self.seed = seed
        self.device = device

    @property
    @abstractmethod
    def num_classes(self) -> int:
        """Number of classes (identities for face data)."""

    @property
    @abstractmethod
    def in_channels(self) -> int:
        """Channels of an input image."""

    @property
    def input_size(self) -> int:
        return self.options.input_size

    @abstractmethod
    def search_split(self) -> tuple[Loader, Loader]:
        """(train, val) for supernet training and search, both from the training data."""

    @abstractmethod
    def final_split(self) -> tuple[Loader, Loader]:
        """(full train, test) for training the found child and its final evaluation."""

    @abstractmethod
    def summary(self) -> dict[str, dict[str, int]]:
        """Sample counts per split and per class, e.g. ``{"train": {"0": 120, ...}, ...}``."""
