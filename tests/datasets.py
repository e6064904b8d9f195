"""Writers of tiny datasets in their real on-disk formats (CIFAR pickles, JPEG folders, LFW pairs.txt)."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image


def cifar_batch(rng: np.random.Generator, n: int, classes: int, label_key: bytes) -> dict:
    """One batch like the published pickles: bytes keys, (n, 3072) uint8 rows, labels as a list."""
    return {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            label_key: [int(i % classes) for i in range(n)], b"batch_label": b"testing"}


def write_cifar10(root: Path, per_batch: int = 20, extracted: bool = False, seed: int = 0) -> dict[str, dict]:
    """cifar-10-python.tar.gz (or the extracted cifar-10-batches-py/) under ``root``; returns the batches."""
    rng = np.random.default_rng(seed)
    batches = {f"data_batch_{i}": cifar_batch(rng, per_batch, 10, b"labels") for i in range(1, 6)}
    batches["test_batch"] = cifar_batch(rng, per_batch, 10, b"labels")
    root.mkdir(parents=True, exist_ok=True)
    if extracted:
        folder = root / "cifar-10-batches-py"
        folder.mkdir(exist_ok=True)
        for name, batch in batches.items():
            (folder / name).write_bytes(pickle.dumps(batch))
    else:
        with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
            for name, batch in batches.items():
                data = pickle.dumps(batch)
                info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return batches


def write_cifar100(root: Path, per_file: int = 20, seed: int = 0) -> None:
    """The extracted cifar-100-python/ folder (train and test pickles, fine and coarse labels) under ``root``."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("train", "test"):
        batch = cifar_batch(rng, per_file, 100, b"fine_labels")
        batch[b"coarse_labels"] = [label // 5 for label in batch[b"fine_labels"]]
        (folder / name).write_bytes(pickle.dumps(batch))


def write_jpeg(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (20, 24), noise: int = 0,
               rng: np.random.Generator | None = None) -> None:
    """A small JPEG of one colour (plus optional noise)."""
    pixels = np.empty((size[1], size[0], 3), dtype=np.int64)
    pixels[:] = color
    if noise and rng is not None:
        pixels += rng.integers(-noise, noise + 1, pixels.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=95)


def write_class_folders(root: Path, counts: dict[str, int], size: tuple[int, int] = (20, 24)) -> None:
    """``root/<class>/<class>_<i>.jpg`` with a distinct colour per class."""
    rng = np.random.default_rng(0)
    for c, (name, count) in enumerate(sorted(counts.items())):
        color = (40 + 50 * (c % 4), 200 - 40 * (c % 5), 30 + 70 * (c % 3))
        for i in range(count):
            write_jpeg(root / name / f"{name}_{i + 1:04d}.jpg", color, size, noise=20, rng=rng)


def write_lfw(root: Path, names: dict[str, int], same: list[tuple], different: list[tuple], folds: int = 1,
              size: tuple[int, int] = (24, 24)) -> Path:
    """An LFW folder (``<name>/<name>_<idx:04d>.jpg``) and pairs.txt with ``folds`` copies of the listed pairs."""
    write_class_folders(root, names, size)
    assert len(same) == len(different)
    lines = [f"{folds} {len(same)}"]
    for _ in range(folds):
        lines += [f"{n} {a} {b}" for n, a, b in same]
        lines += [f"{n1} {a} {n2} {b}" for n1, a, n2, b in different]
    pairs = root / "pairs.txt"
    pairs.write_text("\n".join(lines) + "\n")
    return pairs


def call_cli(*args: str) -> int:
    """``osnas ARGS`` in this process (no interpreter start-up); returns the exit code."""
    import logging
    import sys

    from osnas.cli import main

    logger = logging.getLogger("osnas")
    argv, sys.argv = sys.argv, ["osnas", *args]
    handlers, level = list(logger.handlers), logger.level
    try:
        main()
        return 0
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    finally:
        sys.argv = argv
        for handler in set(logger.handlers) - set(handlers):  # the run's log.txt
            logger.removeHandler(handler)
            handler.close()
        logger.setLevel(level)


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """``osnas ARGS`` in this process: (exit code, stdout, stderr)."""
    code = call_cli(*args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def interrupt_after(checkpoint: str):
    """A ``RunDir.save_checkpoint`` that raises KeyboardInterrupt right after writing ``checkpoint`` (as Ctrl-C would)."""
    from osnas.run_dir import RunDir

    save = RunDir.save_checkpoint

    def save_then_interrupt(self, name, obj):
        path = save(self, name, obj)
        if name == checkpoint:
            raise KeyboardInterrupt
        return path

    return save_then_interrupt
