"""CIFAR-10 and CIFAR-100 from the official "python version" files, kept on the device as uint8.

``root`` holds either the archive (``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``,
read in place) or its extracted folder (``cifar-10-batches-py/`` / ``cifar-100-python/``).
The batches are Python pickles, the format the dataset is published in: they are read
with an unpickler that builds only what a genuine batch holds (dicts, lists, bytes,
strings, numbers and numpy arrays), so a crafted file cannot run code, and every file
used is checked against its published MD5 first (``verify_md5: false`` skips that for
a copy you made yourself). Training batches are cropped (padding 4), flipped and
normalised on the device, a whole batch at a time.
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
from osnas.dataflows.download import md5sum
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
    file_md5: dict[str, str]  # of each extracted batch file, as published alongside the archive


CIFAR10 = CifarSpec(
    "CIFAR-10", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
    "cifar-10-python.tar.gz", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
    "labels", 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
    {"data_batch_1": "c99cafc152244af753f735de768cd75f", "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
     "data_batch_3": "54ebc095f3ab1f0389bbae665268c751", "data_batch_4": "634d18415352ddfa80567beed471001a",
     "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb", "test_batch": "40351d587109b95175f43aff81a1287e"},
)
CIFAR100 = CifarSpec(
    "CIFAR-100", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85",
    "cifar-100-python.tar.gz", "cifar-100-python", ("train",), ("test",),
    "fine_labels", 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
    {"train": "16019d7e3df5f24257cddd939b257f8d", "test": "f0ef6b0ae62326f3e7ffdfab6717acfc"},
)

# (module, name) pairs a CIFAR batch needs: the published files (Python 2, protocol 2) and numpy's own
# protocol-5 form; everything else (os.system, builtins.eval, ...) is refused before it is looked up
SAFE_GLOBALS = {
    ("builtins", "dict"), ("builtins", "list"), ("builtins", "str"), ("builtins", "bytes"), ("builtins", "int"),
    ("_codecs", "encode"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
}


class BatchUnpickler(pickle.Unpickler):
    """Builds only the types a genuine CIFAR batch holds; any other global is refused unresolved."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: a CIFAR batch holds only dicts, lists, "
                                         "bytes, strings, numbers and numpy arrays")
        return super().find_class(module, name)


def parse_batch(f: IO[bytes], where: str, spec: CifarSpec) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, 32, 32) uint8 images and (N,) labels of one pickled batch, checked."""
    try:
        raw = BatchUnpickler(f, encoding="bytes").load()
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


def check_md5(path: Path, expected: str, spec: CifarSpec) -> None:
    """Refuse a file that is not the published one (tampered, truncated or another dataset's)."""
    actual = md5sum(path)
    if actual != expected:
        raise DataError(f"{path}: MD5 {actual} is not the published {expected} of {spec.title}'s {path.name} "
                        f"({spec.url}); replace it with the official file, or set dataflow.verify_md5: false "
                        "for a copy you made yourself")


def read_files(root: Path, spec: CifarSpec, allow_download: bool,
               verify: bool = True) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every batch of ``spec``, from the extracted folder, else from the archive (read in one pass)."""
    folder, archive = root / spec.folder, root / spec.archive
    names = spec.train_files + spec.test_files
    batches: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if folder.is_dir():
        for name in names:
            path = folder / name
            if not path.is_file():
                raise DataError(f"{spec.title}: {path} is missing; {folder} must hold {', '.join(names)}")
            if verify:
                check_md5(path, spec.file_md5[name], spec)
            with open(path, "rb") as f:
                batches[name] = parse_batch(f, str(path), spec)
        return batches
    if not archive.is_file():
        if not allow_download:
            raise DataError(f"{spec.title} not found: put {spec.archive} ({spec.url}) in {root}/ or extract it there "
                            f"as {folder}/, or set dataflow.download: true")
        fetch(spec.url, archive, spec.md5)
    if verify:
        check_md5(archive, spec.md5, spec)
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
    verify_md5: bool = True
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
        batches = read_files(root, self.spec, options.download, options.verify_md5)
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
