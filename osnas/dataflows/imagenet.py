"""ImageNet (ILSVRC-2012) in the ImageFolder layout: ``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from pydantic import Field, PositiveInt

from osnas.dataflows.base import Dataflow, DataflowOptions
from osnas.dataflows.folder import CenterCrop, FolderLoader, ImageDataset, RandomResizedCrop, fixed, scan_class_folders, shuffled
from osnas.dataflows.splits import check_batch_size, class_counts, split_indices
from osnas.errors import DataError
from osnas.registry import register

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class ImageNetOptions(DataflowOptions):
    root: str = "data/imagenet"
    input_size: PositiveInt = 224
    batch_size: PositiveInt = 256
    num_workers: int = Field(8, ge=0)
    min_scale: float = Field(0.08, gt=0.0, le=1.0)
    eval_crop_fraction: float = Field(0.875, gt=0.0, le=1.0)
    hflip: bool = True


@register("dataflow", "imagenet")
class ImageNet(Dataflow):
    """ImageNet folders decoded by DataLoader workers; random-resized-crop training, centre-crop evaluation."""

    Options = ImageNetOptions

    def __init__(self, options: ImageNetOptions, seed: int, device: torch.device) -> None:
        super().__init__(options, seed, device)
        self.root = Path(options.root).expanduser()
        self.classes, self.train_rel, self.train_y = scan_class_folders(self.root / "train", "ImageNet train split")
        val_classes, self.test_rel, self.test_y = scan_class_folders(self.root / "val", "ImageNet val split")
        if val_classes != self.classes:
            extra = sorted(set(val_classes) ^ set(self.classes))
            raise DataError(f"{self.root / 'val'} and {self.root / 'train'} must hold the same class folders; "
                            f"differing: {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}")
        self.search_train_idx, self.search_val_idx = split_indices(self.train_y, options.val_fraction, seed)
        check_batch_size(options.batch_size, len(self.search_train_idx))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return 3

    def _loader(self, split: str, idx: np.ndarray | None, train: bool, salt: int) -> FolderLoader:
        o = self.options
        rel, labels = (self.train_rel, self.train_y) if split == "train" else (self.test_rel, self.test_y)
        if idx is not None:
            rel, labels = rel[idx], labels[idx]
        if train:
            transform = RandomResizedCrop(o.input_size, o.min_scale, o.hflip)
            order = shuffled(len(labels))
        else:
            transform = CenterCrop(o.input_size, o.eval_crop_fraction)
            # one fixed shuffle: the first batches (scored during search) span all classes
            order = fixed(np.random.default_rng(salt).permutation(len(labels)))
        dataset = ImageDataset(self.root / split, rel, labels, transform)
        return FolderLoader(dataset, o.batch_size, order, self.device, MEAN, STD, drop_last=train,
                            num_workers=o.num_workers, seed=self.seed * 1000 + salt)

    def search_split(self) -> tuple[FolderLoader, FolderLoader]:
        return (self._loader("train", self.search_train_idx, True, 1),
                self._loader("train", self.search_val_idx, False, 2))

    def final_split(self) -> tuple[FolderLoader, FolderLoader]:
        return self._loader("train", None, True, 3), self._loader("val", None, False, 4)

    def summary(self) -> dict[str, dict[str, int]]:
        names = self.classes
        return {
            "search_train": class_counts(self.train_y[self.search_train_idx], names),
            "search_val": class_counts(self.train_y[self.search_val_idx], names),
            "train": class_counts(self.train_y, names),
            "test": class_counts(self.test_y, names),
        }
