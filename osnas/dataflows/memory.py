"""An in-memory loader: tensors on the device, seeded shuffling, batched augmentation."""

from __future__ import annotations

from typing import Iterator

import torch

from osnas.dataflows.augment import random_crop, random_hflip


class TensorLoader:
    """Batches of an in-memory (images, labels) pair; augmentation applied per batch on the device."""

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
    ) -> None:
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last and images.shape[0] >= batch_size
        self.crop_padding = crop_padding
        self.hflip = hflip
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(seed)

    @property
    def num_samples(self) -> int:
        return int(self.images.shape[0])

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state["generator"])

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
            if self.crop_padding:
                x = random_crop(x, self.crop_padding, self.generator)
            if self.hflip:
                x = random_hflip(x, self.generator)
            yield x, y
