"""The run directory: unique per run, atomic writes, checkpoints, metrics log.

Every file is written to a temporary sibling, flushed, fsynced and renamed, so a
crash never leaves a truncated checkpoint or JSON file behind.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from osnas.errors import OsnasError

RUN_MARKER = "config.yaml"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def atomic_torch_save(path: Path, obj: Any) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path) -> Any:
    """Load a checkpoint with ``weights_only=True``; a corrupt file is a clear error."""
    path = Path(path)
    if not path.is_file():
        raise OsnasError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a damaged file
        raise OsnasError(f"checkpoint {path} is corrupt or not an osnas checkpoint ({type(exc).__name__}: {exc})") from None


def read_json(path: Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise OsnasError(f"file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OsnasError(f"{path} is not valid JSON ({exc})") from None


class RunDir:
    """One directory per run: ``<output.dir>/<name>-<timestamp>[-n]``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.sinks: list[Callable[[dict[str, Any]], None]] = []  # more consumers of metrics (TensorBoard)

    @classmethod
    def create(cls, root: str | Path, name: str) -> "RunDir":
        """A new directory that never reuses an earlier run's."""
        root = Path(root)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OsnasError(f"cannot create output directory {root}: {exc.strerror}") from None
        if not os.access(root, os.W_OK):
            raise OsnasError(f"output directory {root} is not writable")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for n in range(1000):
            path = root / (f"{name}-{stamp}" if n == 0 else f"{name}-{stamp}-{n}")
            try:
                path.mkdir()
                return cls(path)
            except FileExistsError:
                continue
        raise OsnasError(f"cannot find a free run directory name under {root}")

    @classmethod
    def open(cls, path: str | Path) -> "RunDir":
        """An existing run directory (for resume, report, export)."""
        path = Path(path)
        if not (path / RUN_MARKER).is_file():
            raise OsnasError(f"{path} is not an osnas run directory (no {RUN_MARKER})")
        return cls(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def exists(self, name: str) -> bool:
        return (self.path / name).exists()

    def write_json(self, name: str, data: Any) -> Path:
        atomic_write_json(self.path / name, data)
        return self.path / name

    def write_text(self, name: str, text: str) -> Path:
        atomic_write_text(self.path / name, text)
        return self.path / name

    def save_checkpoint(self, name: str, obj: Any) -> Path:
        atomic_torch_save(self.path / name, obj)
        return self.path / name

    def log_metrics(self, record: dict[str, Any]) -> None:
        """Append one JSON line to ``metrics.jsonl`` (a line is small, written whole and flushed)."""
        line = json.dumps({"time": round(time.time(), 3), **record}) + "\n"
        with open(self.path / "metrics.jsonl", "a") as handle:
            handle.write(line)
            handle.flush()
        for sink in self.sinks:
            sink(record)
