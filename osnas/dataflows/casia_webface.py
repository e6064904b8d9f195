"""Face recognition data: train on an identity-folder set (CASIA-WebFace layout), test on LFW pairs.

Splits (the ``face_recognition`` agent reads both batch kinds):

- search train / search val: a seeded split by identity (about ``val_fraction``
  of the images, whole identities), so the search selects by verification on
  people the supernet never trained on, as the LFW test does; val batches are
  ``(images, identity)`` with each identity's images kept together, so the agent
  forms same/different pairs inside each batch.
- final train: every training image; test: LFW ``pairs.txt`` as pair batches
  ``(cat([a, b]), same)`` in file order (contiguous chunks = the official folds).

Train and test images get the same preprocessing (centre square of
``crop_fraction`` resized to ``input_size``, normalised to [-1, 1]); training adds
a random horizontal flip.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
from pydantic import Field, PositiveInt, model_validator

from osnas.dataflows.base import Dataflow, DataflowOptions
from osnas.dataflows.folder import CenterCrop, FolderLoader, ImageDataset, Order, fixed, scan_class_folders, shuffled
from osnas.dataflows.lfw import read_pairs
from osnas.dataflows.splits import check_batch_size, class_counts, split_by_class
from osnas.registry import register

MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)


def grouped(labels: np.ndarray, seed: int) -> np.ndarray:
    """Sample order with identities in a seeded random order and each identity's samples together."""
    rank = np.random.default_rng(seed).permutation(int(labels.max()) + 1 if labels.size else 0)
    return np.lexsort((np.arange(labels.size), rank[labels]))


def identity_batches(labels: np.ndarray, k: int) -> tuple[Order, int]:
    """Each epoch: every identity's images in random chunks of ``k`` (cycled to fill the last), chunks shuffled.

    Consecutive chunks fill a batch with ``batch_size / k`` identities of ``k`` images
    each, which batch-hard triplet mining needs. Returns the order and its length.
    """
    members = [idx for idx in np.split(np.argsort(labels, kind="stable"), np.cumsum(np.bincount(labels))[:-1]) if idx.size]

    def order(generator: torch.Generator) -> np.ndarray:
        chunks = []
        for idx in members:
            perm = idx[torch.randperm(idx.size, generator=generator).numpy()]
            chunks.append(np.resize(perm, -(-idx.size // k) * k).reshape(-1, k))
        stacked = np.concatenate(chunks)
        return stacked[torch.randperm(len(stacked), generator=generator).numpy()].reshape(-1)

    return order, sum(-(-idx.size // k) * k for idx in members)


class CasiaWebFaceOptions(DataflowOptions):
    root: str = "data/casia_webface"
    lfw_root: str = "data/lfw"
    lfw_pairs: Optional[str] = None
    input_size: PositiveInt = 112
    batch_size: PositiveInt = 256
    num_workers: int = Field(8, ge=0)
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    crop_fraction: float = Field(1.0, gt=0.0, le=1.0)
    hflip: bool = True
    samples_per_identity: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _groups_fill_batches(self) -> "CasiaWebFaceOptions":
        k = self.samples_per_identity
        if k == 1 or (k > 1 and self.batch_size % k):
            raise ValueError(f"samples_per_identity ({k}) must be 0 (plain shuffling) or at least 2 and divide "
                             f"batch_size ({self.batch_size})")
        return self


@register("dataflow", "casia_webface")
class CasiaWebFace(Dataflow):
    """Identity folders (root/<identity>/*.jpg) for training; LFW pairs.txt verification as the test split."""

    Options = CasiaWebFaceOptions

    def __init__(self, options: CasiaWebFaceOptions, seed: int, device: torch.device) -> None:
        super().__init__(options, seed, device)
        self.root = Path(options.root).expanduser()
        self.identities, self.rel, self.labels = scan_class_folders(self.root, "face training set")
        self.lfw_root = Path(options.lfw_root).expanduser()
        self.pairs = read_pairs(self.lfw_root, options.lfw_pairs)
        self.search_train_idx, self.search_val_idx = split_by_class(self.labels, options.val_fraction, seed)
        check_batch_size(options.batch_size, len(self.search_train_idx))

    @property
    def num_classes(self) -> int:
        return len(self.identities)

    @property
    def in_channels(self) -> int:
        return 3

    def _transform(self, train: bool) -> CenterCrop:
        return CenterCrop(self.options.input_size, self.options.crop_fraction, hflip=train and self.options.hflip)

    def _loader(self, dataset: ImageDataset, order: Order, train: bool, salt: int,
                epoch_size: int | None = None) -> FolderLoader:
        o = self.options
        return FolderLoader(dataset, o.batch_size, order, self.device, MEAN, STD, drop_last=train,
                            num_workers=o.num_workers, seed=self.seed * 1000 + salt, epoch_size=epoch_size)

    def _train_loader(self, idx: np.ndarray, salt: int) -> FolderLoader:
        labels = self.labels[idx]
        dataset = ImageDataset(self.root, self.rel[idx], labels, self._transform(True))
        k = self.options.samples_per_identity
        if k:
            order, size = identity_batches(labels, k)
            return self._loader(dataset, order, True, salt, size)
        return self._loader(dataset, shuffled(len(labels)), True, salt)

    def search_split(self) -> tuple[FolderLoader, FolderLoader]:
        val = self.search_val_idx
        val_set = ImageDataset(self.root, self.rel[val], self.labels[val], self._transform(False))
        return (self._train_loader(self.search_train_idx, 1),
                self._loader(val_set, fixed(grouped(self.labels[val], self.seed)), False, 2))

    def final_split(self) -> tuple[FolderLoader, FolderLoader]:
        test = ImageDataset(self.lfw_root, self.pairs.rel, self.pairs.same, self._transform(False))
        return (self._train_loader(np.arange(len(self.labels)), 3),
                self._loader(test, fixed(np.arange(len(self.pairs.same))), False, 4))

    def summary(self) -> dict[str, dict[str, int]]:
        names = self.identities
        same = int(self.pairs.same.sum())
        return {
            "search_train": class_counts(self.labels[self.search_train_idx], names),
            "search_val": class_counts(self.labels[self.search_val_idx], names),
            "train": class_counts(self.labels, names),
            "test": {"same": same, "different": int(self.pairs.same.size - same)},
        }
