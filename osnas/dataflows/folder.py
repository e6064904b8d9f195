"""Image files decoded with Pillow in DataLoader workers: folder scanning, per-image transforms, the loader.

Workers decode and crop to uint8 tensors (a quarter of the float32 bytes to pin
and copy); the loader moves each batch to the device without blocking and
normalises it there. A sample is a tuple of images (one for classification, two
for a verification pair) and a label; a batch stacks the first images of its
samples, then the second ones, so a pair batch is ``(cat([a, b]), same)``.

An image that cannot be decoded is skipped and counted, with one warning per
epoch, so a bad file never stops a long run. Randomness is seeded per sample
from the loader's generator, whose state is saved for resume: the same seed gives
the same batches whatever the number of workers.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from osnas.dataflows.augment import to_float
from osnas.dataflows.base import SeededLoader
from osnas.errors import DataError

log = logging.getLogger("osnas")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")
# what Pillow raises for a truncated, foreign or oversized file
DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
CORRUPT_SHARE = 0.01  # above this share of undecodable images an epoch warns


def list_images(folder: Path) -> list[str]:
    """Sorted names of the image files directly inside ``folder``."""
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS))


def scan_class_folders(root: Path, what: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(class names, relative paths, labels) of a ``root/<class>/<image>`` layout, or a DataError naming the problem."""
    if not root.is_dir():
        raise DataError(f"{what}: folder {root} does not exist; expected the layout {root}/<class>/<image>")
    with os.scandir(root) as entries:
        found = sorted(entries, key=lambda e: e.name)
    classes = [e.name for e in found if e.is_dir() and not e.name.startswith(".")]
    loose = [e.name for e in found if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS)]
    if loose:
        raise DataError(f"{what}: {root} holds images directly ({loose[0]}, ...); "
                        f"expected one sub-folder per class: {root}/<class>/<image>")
    if not classes:
        raise DataError(f"{what}: {root} has no class folders; expected the layout {root}/<class>/<image>")
    paths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        images = list_images(root / name)
        if not images:
            raise DataError(f"{what}: class folder {root / name} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        paths += [f"{name}/{image}" for image in images]
        labels += [label] * len(images)
    return classes, path_array(paths), np.array(labels, dtype=np.int64)


def path_array(paths: list) -> np.ndarray:
    """Relative paths as fixed-width bytes (no per-path Python objects for forked workers to copy).

    Encoded as the file system encodes names (UTF-8, undecodable bytes kept), so any file name works.
    """
    return np.array([[os.fsencode(p) for p in item] if isinstance(item, (list, tuple)) else os.fsencode(item)
                     for item in paths], dtype=np.bytes_)


def crop_box(width: int, height: int, side: float) -> tuple[float, float, float, float]:
    """The centred square of ``side`` pixels."""
    left, top = (width - side) / 2, (height - side) / 2
    return left, top, left + side, top + side


@dataclass(frozen=True)
class CenterCrop:
    """Central square of ``fraction`` of the shorter side, resized to ``size``; a random flip when ``hflip``.

    With fraction 0.875 this is the usual ImageNet evaluation (resize to size/0.875, centre crop).
    """

    size: int
    fraction: float = 1.0
    hflip: bool = False

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        side = self.fraction * min(image.size)
        image = image.resize((self.size, self.size), Image.BILINEAR, box=crop_box(*image.size, side))
        if self.hflip and rng.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        return image

    def draft_size(self) -> int:
        """The smallest shorter side the JPEG decoder may scale down to without losing detail."""
        return int(np.ceil(self.size / self.fraction))


@dataclass(frozen=True)
class RandomResizedCrop:
    """Inception-style crop: random area in [min_scale, 1] and aspect ratio in [3/4, 4/3], resized; random flip."""

    size: int
    min_scale: float = 0.08
    hflip: bool = True

    def box(self, width: int, height: int, rng: np.random.Generator) -> tuple[float, float, float, float]:
        area = width * height
        for _ in range(10):
            target = area * rng.uniform(self.min_scale, 1.0)
            ratio = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
            w, h = np.sqrt(target * ratio), np.sqrt(target / ratio)
            if w <= width and h <= height:
                left, top = rng.uniform(0, width - w), rng.uniform(0, height - h)
                return left, top, left + w, top + h
        return crop_box(width, height, min(width, height))

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        image = image.resize((self.size, self.size), Image.BILINEAR, box=self.box(*image.size, rng))
        if self.hflip and rng.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        return image

    def draft_size(self) -> int:
        return 0  # a small random crop needs the full resolution


Transform = CenterCrop | RandomResizedCrop


@dataclass(frozen=True)
class Skipped:
    """A sample whose image could not be decoded."""

    path: str
    reason: str


def load_image(path: str, transform: Transform, rng: np.random.Generator) -> torch.Tensor:
    """Decode, convert to RGB, transform; (3, H, W) uint8."""
    with Image.open(path) as source:
        draft = transform.draft_size()
        if draft and source.format == "JPEG":
            source.draft("RGB", (draft, draft))  # decode at a reduced scale: much faster for large JPEGs
        image = transform(source.convert("RGB"), rng)
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)


class ImageDataset(Dataset):
    """Samples of one or more images (``rel`` is (N, images per sample)) and a label each.

    Indexed by ``(index, epoch_seed)`` keys, so every sample's random crop is seeded.
    """

    def __init__(self, root: Path, rel: np.ndarray, labels: np.ndarray, transform: Transform) -> None:
        self.root = str(root)
        self.rel = rel.reshape(len(labels), -1)
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def path(self, index: int, k: int = 0) -> str:
        return os.path.join(self.root, os.fsdecode(self.rel[index, k]))

    def __getitem__(self, key: tuple[int, int]) -> tuple[tuple[torch.Tensor, ...], np.generic] | Skipped:
        index, seed = key
        rng = np.random.default_rng([seed, index])
        images = []
        for k in range(self.rel.shape[1]):
            path = self.path(index, k)
            try:
                images.append(load_image(path, self.transform, rng))
            except DECODE_ERRORS as exc:
                return Skipped(path, f"{type(exc).__name__}: {exc}")
        return tuple(images), self.labels[index]


def collate(items: list) -> tuple[torch.Tensor | None, torch.Tensor | None, list[Skipped]]:
    """Stack the decodable samples (first images, then second images, ...); report the others."""
    good = [item for item in items if not isinstance(item, Skipped)]
    bad = [item for item in items if isinstance(item, Skipped)]
    if not good:
        return None, None, bad
    x = torch.cat([torch.stack([images[k] for images, _ in good]) for k in range(len(good[0][0]))])
    y = torch.from_numpy(np.array([label for _, label in good]))
    return x, y, bad


Order = Callable[[torch.Generator], np.ndarray]


def shuffled(n: int) -> Order:
    """A new permutation of ``n`` samples each epoch."""
    return lambda generator: torch.randperm(n, generator=generator).numpy()


def fixed(order: np.ndarray) -> Order:
    """The same sample order every epoch (evaluation)."""
    return lambda generator: order


class FolderLoader(SeededLoader):
    """Batches on the device from an :class:`ImageDataset`, decoded by ``num_workers`` worker processes."""

    def __init__(
        self,
        dataset: ImageDataset,
        batch_size: int,
        order: Order,
        device: torch.device,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        drop_last: bool = False,
        num_workers: int = 0,
        seed: int = 0,
        epoch_size: int | None = None,
    ) -> None:
        self.dataset = dataset
        self.order = order
        self.device = torch.device(device)
        self.mean = torch.tensor(mean, device=self.device)
        self.std = torch.tensor(std, device=self.device)
        self._epoch_size = len(dataset) if epoch_size is None else epoch_size
        self.num_workers = num_workers
        self.skipped = 0
        super().__init__(batch_size, drop_last, seed)

    @property
    def num_samples(self) -> int:
        return len(self.dataset)

    @property
    def epoch_size(self) -> int:
        return self._epoch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.order(self.generator)
        seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        keys = [(int(i), seed) for i in order]
        batches = [keys[i:i + self.batch_size] for i in range(0, len(keys), self.batch_size)][: len(self)]
        loader = DataLoader(self.dataset, batch_sampler=batches, num_workers=self.num_workers, collate_fn=collate,
                            pin_memory=self.device.type == "cuda")
        skipped: list[Skipped] = []
        used = 0
        try:
            for x, y, bad in loader:
                skipped += bad
                if x is not None:
                    used += len(y)
                    x = x.to(self.device, non_blocking=True)
                    yield to_float(x, self.mean, self.std), y.to(self.device, non_blocking=True)
            if skipped and not used:
                raise DataError(f"none of the {len(skipped)} images read from {self.dataset.root} could be decoded, "
                                f"e.g. {skipped[0].path}: {skipped[0].reason}; replace or remove the broken files")
        finally:
            if skipped:
                self.skipped += len(skipped)
                share = len(skipped) / max(1, len(skipped) + used)
                # a few broken files in a large dataset are normal; more is worth the user's attention
                log.log(logging.WARNING if share > CORRUPT_SHARE else logging.INFO,
                        "skipped %d undecodable image(s) this epoch (%.1f%% of those read; %d in all), e.g. %s: %s",
                        len(skipped), 100 * share, self.skipped, skipped[0].path, skipped[0].reason)
