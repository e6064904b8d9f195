"""scikit-learn's bundled handwritten digits (1,797 real 8x8 images), embedded: no download."""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field

from osnas.dataflows.augment import normalize, resize
from osnas.dataflows.base import Dataflow, DataflowOptions
from osnas.dataflows.memory import TensorLoader
from osnas.dataflows.splits import check_batch_size, class_counts, split_indices
from osnas.registry import register


class DigitsOptions(DataflowOptions):
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    split_seed: int = Field(0, ge=0, le=2**32 - 1)
    crop_padding: int = Field(2, ge=0)


@register("dataflow", "digits")
class Digits(Dataflow):
    """Embedded handwritten digits (sklearn), resized in memory; the default for a first run."""

    Options = DigitsOptions

    def __init__(self, options: DigitsOptions, seed: int, device: torch.device) -> None:
        super().__init__(options, seed, device)
        from sklearn.datasets import load_digits

        data = load_digits()
        images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
        images = resize(images, options.input_size)
        self.labels = torch.tensor(data.target, dtype=torch.long)
        # the test split depends only on split_seed, so runs with different seeds share it
        self.train_idx, self.test_idx = split_indices(data.target, options.test_fraction, options.split_seed,
                                                     "dataflow.test_fraction")
        train = images[self.train_idx]
        self.images = normalize(images, train.mean(dim=(0, 2, 3)), train.std(dim=(0, 2, 3)))
        self.search_train_idx, self.search_val_idx = split_indices(
            data.target[self.train_idx], options.val_fraction, seed
        )
        self.search_train_idx = self.train_idx[self.search_train_idx]
        self.search_val_idx = self.train_idx[self.search_val_idx]
        check_batch_size(options.batch_size, len(self.search_train_idx))

    @property
    def num_classes(self) -> int:
        return 10

    @property
    def in_channels(self) -> int:
        return 1

    def _loader(self, idx: np.ndarray, train: bool, salt: int) -> TensorLoader:
        return TensorLoader(
            self.images[idx],
            self.labels[idx],
            self.options.batch_size,
            shuffle=train,
            drop_last=train,
            crop_padding=self.options.crop_padding if train else 0,
            seed=self.seed * 1000 + salt,
            device=self.device,
        )

    def search_split(self) -> tuple[TensorLoader, TensorLoader]:
        return self._loader(self.search_train_idx, True, 1), self._loader(self.search_val_idx, False, 2)

    def final_split(self) -> tuple[TensorLoader, TensorLoader]:
        return self._loader(self.train_idx, True, 3), self._loader(self.test_idx, False, 4)

    def summary(self) -> dict[str, dict[str, int]]:
        y = self.labels.numpy()
        return {
            "search_train": class_counts(y[self.search_train_idx]),
            "search_val": class_counts(y[self.search_val_idx]),
            "train": class_counts(y[self.train_idx]),
            "test": class_counts(y[self.test_idx]),
        }
