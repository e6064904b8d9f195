"""CIFAR-10 and CIFAR-100 from the official "python version" files, kept on the device as uint8.

``root`` holds either the archive (``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``,
read in place) or its extracted folder (``cifar-10-batches-py/`` / ``cifar-100-python/``).
The batches are Python pickles, the format the dataset is published in; only load
files from the official source. Training batches are cropped (padding 4), flipped
and normalised on the device, a whole batch at a time.
"""

from __future__ import annotations

import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, ClassVar

import numpy as np
import torch
from pydantic import Field, field_validator

from osnas.dataflows.base import Dataflow, DataflowOptions
from osnas.dataflows.download import download as fetch
from osnas.dataflows.memory import TensorLoader
from osnas.dataflows.splits import check_batch_size, class_counts, split_indices
from osnas.errors import DataError
from osnas.registry import register


@dataclass(frozen=True)
class CifarSpec:
    """Where a CIFAR variant is published and how its files are laid out."""

    title: str
    url: str
    md5: str
    archive: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: str
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


CIFAR10 = CifarSpec(
    "CIFAR-10", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
    "cifar-10-python.tar.gz", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
    "labels", 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
)
CIFAR100 = CifarSpec(
    "CIFAR-100", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85",
    "cifar-100-python.tar.gz", "cifar-100-python", ("train",), ("test",),
    "fine_labels", 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
)


def parse_batch(f: IO[bytes], where: str, spec: CifarSpec) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, 32, 32) uint8 images and (N,) labels of one pickled batch, checked."""
    try:
        raw = pickle.load(f, encoding="bytes")
    except Exception as exc:  # a truncated or foreign file can fail in many ways inside pickle
        raise DataError(f"{where}: not a {spec.title} python-version batch ({type(exc).__name__}: {exc})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{where}: expected a pickled dict with 'data' and '{spec.label_key}', got {type(raw).__name__}")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}
    if "data" not in batch or spec.label_key not in batch:
        raise DataError(f"{where}: missing key 'data' or '{spec.label_key}' (found: {', '.join(map(str, batch))})")
    data = np.asarray(batch["data"], dtype=np.uint8)
    labels = np.asarray(batch[spec.label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (data.shape[0],):
        raise DataError(f"{where}: 'data' must be (N, 3072) with N labels; got {data.shape} and {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= spec.num_classes):
        raise DataError(f"{where}: labels must lie in 0..{spec.num_classes - 1}, found {labels.min()}..{labels.max()}")
    return data.reshape(-1, 3, 32, 32), labels


def read_files(root: Path, spec: CifarSpec, allow_download: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every batch of ``spec``, from the extracted folder, else from the archive (read in one pass)."""
    folder, archive = root / spec.folder, root / spec.archive
    names = spec.train_files + spec.test_files
    batches: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if folder.is_dir():
        for name in names:
            path = folder / name
            if not path.is_file():
                raise DataError(f"{spec.title}: {path} is missing; {folder} must hold {', '.join(names)}")
            with open(path, "rb") as f:
                batches[name] = parse_batch(f, str(path), spec)
        return batches
    if not archive.is_file():
        if not allow_download:
            raise DataError(f"{spec.title} not found: put {spec.archive} ({spec.url}) in {root}/ or extract it there "
                            f"as {folder}/, or set dataflow.download: true")
        fetch(spec.url, archive, spec.md5)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                name = member.name.removeprefix(spec.folder + "/")
                if name in names and member.isfile():
                    batches[name] = parse_batch(tar.extractfile(member), f"{archive}:{member.name}", spec)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{archive}: not a readable .tar.gz archive ({exc}); delete it and fetch it again") from None
    missing = [f"{spec.folder}/{name}" for name in names if name not in batches]
    if missing:
        raise DataError(f"{archive}: has no member {', '.join(missing)}; is this {spec.archive}?")
    return batches


def stack(batches: dict[str, tuple[np.ndarray, np.ndarray]], names: tuple[str, ...]) -> tuple[torch.Tensor, np.ndarray]:
    return (torch.from_numpy(np.concatenate([batches[n][0] for n in names])),
            np.concatenate([batches[n][1] for n in names]))


class CifarOptions(DataflowOptions):
    root: str = "data/cifar10"
    download: bool = False
    crop_padding: int = Field(4, ge=0)
    hflip: bool = True

    @field_validator("input_size")
    @classmethod
    def _native_size(cls, value: int) -> int:
        if value != 32:
            raise ValueError(f"CIFAR images are 32x32; input_size must be 32 (got {value})")
        return value


class Cifar(Dataflow):
    """Shared CIFAR implementation; subclasses name their :class:`CifarSpec`."""

    spec: ClassVar[CifarSpec]
    Options = CifarOptions

    def __init__(self, options: CifarOptions, seed: int, device: torch.device) -> None:
        super().__init__(options, seed, device)
        root = Path(options.root).expanduser()
        batches = read_files(root, self.spec, options.download)
        self.train_x, self.train_y = stack(batches, self.spec.train_files)
        self.test_x, self.test_y = stack(batches, self.spec.test_files)
        self.search_train_idx, self.search_val_idx = split_indices(self.train_y, options.val_fraction, seed)
        check_batch_size(options.batch_size, len(self.search_train_idx))

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def in_channels(self) -> int:
        return 3

    def _loader(self, images: torch.Tensor, labels: np.ndarray, train: bool, salt: int) -> TensorLoader:
        o = self.options
        return TensorLoader(images, torch.from_numpy(labels), o.batch_size, shuffle=train, drop_last=train,
                            crop_padding=o.crop_padding if train else 0, hflip=o.hflip and train,
                            seed=self.seed * 1000 + salt, device=self.device, mean=self.spec.mean, std=self.spec.std)

    def search_split(self) -> tuple[TensorLoader, TensorLoader]:
        tr, va = self.search_train_idx, self.search_val_idx
        return (self._loader(self.train_x[tr], self.train_y[tr], True, 1),
                self._loader(self.train_x[va], self.train_y[va], False, 2))

    def final_split(self) -> tuple[TensorLoader, TensorLoader]:
        return (self._loader(self.train_x, self.train_y, True, 3),
                self._loader(self.test_x, self.test_y, False, 4))

    def summary(self) -> dict[str, dict[str, int]]:
        return {
            "search_train": class_counts(self.train_y[self.search_train_idx]),
            "search_val": class_counts(self.train_y[self.search_val_idx]),
            "train": class_counts(self.train_y),
            "test": class_counts(self.test_y),
        }


@register("dataflow", "cifar10")
class Cifar10(Cifar):
    """CIFAR-10 from cifar-10-python.tar.gz (or its extracted folder), augmented on the device."""

    spec = CIFAR10


class Cifar100Options(CifarOptions):
    root: str = "data/cifar100"


@register("dataflow", "cifar100")
class Cifar100(Cifar):
    """CIFAR-100 (fine labels) from cifar-100-python.tar.gz (or its extracted folder), augmented on the device."""

    spec = CIFAR100
    Options = Cifar100Options
