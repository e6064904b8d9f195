"""An in-memory loader: tensors on the device, seeded shuffling, batched augmentation."""

from __future__ import annotations

from typing import Iterator

import torch

from osnas.dataflows.augment import random_crop_flip, to_float
from osnas.dataflows.base import SeededLoader


class TensorLoader(SeededLoader):
    """Batches of an in-memory (images, labels) pair; augmentation applied per batch on the device.

    Images may be kept as uint8 (compact; CIFAR-10 is 150 MB on the device): each
    batch is cropped and flipped as uint8, then converted to float and normalised
    with ``mean``/``std`` (per channel, on the [0, 1] scale) when they are given.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        crop_padding: int = 0,
        hflip: bool = False,
        seed: int = 0,
        device: torch.device | str = "cpu",
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.shuffle = shuffle
        self.crop_padding = crop_padding
        self.hflip = hflip
        self.mean = None if mean is None else torch.tensor(mean, device=self.device)
        self.std = None if std is None else torch.tensor(std, device=self.device)
        super().__init__(batch_size, drop_last, seed)

    @property
    def num_samples(self) -> int:
        return int(self.images.shape[0])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = self.num_samples
        order = torch.randperm(n, generator=self.generator).to(self.device) if self.shuffle else None
        for i in range(len(self)):
            sl = slice(i * self.batch_size, min((i + 1) * self.batch_size, n))
            if order is not None:
                idx = order[sl]
                x, y = self.images[idx], self.labels[idx]
            else:
                x, y = self.images[sl], self.labels[sl]
            x = random_crop_flip(x, self.crop_padding, self.hflip, self.generator)
            yield to_float(x, self.mean, self.std), y
