"""The run directory: unique per run, atomic writes, checkpoints, metrics log.

Every file is written to a temporary sibling, flushed, fsynced and renamed, so a
crash never leaves a truncated checkpoint or JSON file behind, and Ctrl-C (or
SIGTERM) arriving during a write takes effect only once the write is complete.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from osnas.errors import OsnasError
from osnas.output_dir import check_output_dir

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("osnas")
RUN_MARKER = "config.yaml"
METRICS_FILE = "metrics.jsonl"
LOCK_FILE = ".lock"
TEMP_SUFFIX = ".tmp"
INTERRUPTS = (signal.SIGINT, signal.SIGTERM)
# (a phase's finished output, the per-epoch checkpoint it replaces)
SUPERSEDED = (("supernet.pt", "supernet_last.pt"), ("architecture.json", "search_state.pt"),
              ("model.pt", "final_last.pt"))


def short_error(exc: BaseException) -> str:
    """An exception's first line, shortened (a load_state_dict error lists every mismatched tensor)."""
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold back SIGINT/SIGTERM inside the block and re-deliver them when it ends.

    Used around file writes so that an interrupt can never leave a half-written
    checkpoint behind (signals are only handled in the main thread).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: received.append(signum)) for sig in INTERRUPTS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        if received:
            signal.raise_signal(received[0])


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    path = Path(path)
    with deferred_interrupts():
        _write_replace(path, data)


def plain_write_mode(path: Path) -> int:
    """The permission bits ``open(path, "w")`` would leave: an existing file's, else 0o666 less the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _write_replace(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = plain_write_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, mode)  # mkstemp makes it private (0o600)
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


# what ``torch.load(weights_only=True)`` reads back (exact types: numpy scalars subclass float but fail)
PLAIN_TYPES = (int, float, bool, complex, str, bytes, type(None), torch.Size, torch.dtype, torch.device)
MAPPINGS = (dict, OrderedDict)
SEQUENCES = (list, tuple, set)


def _join(head: str, rest: str) -> str:
    return head + ("." if rest and not rest.startswith("[") else "") + rest


def unloadable_value(obj: Any) -> tuple[str, type] | None:
    """The first value (key path, type) that ``torch.load(weights_only=True)`` could not read back, if any."""
    if isinstance(obj, torch.Tensor) or type(obj) in PLAIN_TYPES:
        return None
    if type(obj) in MAPPINGS:
        for key, value in obj.items():
            if unloadable_value(key):
                return f"key {key!r}", type(key)
            bad = unloadable_value(value)
            if bad:
                return _join(str(key), bad[0]), bad[1]
        return None
    if type(obj) in SEQUENCES:
        for i, value in enumerate(obj):
            bad = unloadable_value(value)
            if bad:
                return _join(f"[{i}]", bad[0]), bad[1]
        return None
    return "", type(obj)


def atomic_torch_save(path: Path, obj: Any) -> None:
    """Save ``obj`` atomically, refusing what could not be loaded safely later (a resume must not fail days on)."""
    bad = unloadable_value(obj)
    if bad is not None:
        where, kind = bad
        raise OsnasError(
            f"cannot save {Path(path).name}: {where or 'the top level'} is a {kind.__module__}.{kind.__qualname__}, "
            "which torch.load(weights_only=True) cannot read back; a component's state_dict() must hold only tensors, "
            "numbers, strings and lists/dicts of them (convert arrays with .tolist())"
        )
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
        text = str(exc)
        if "WeightsUnpickler error:" in text:  # torch's long advice on weights_only; only its cause matters here
            cause = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0].split(". ")[0]
            reason = f"not loadable as tensors and plain data with torch.load(weights_only=True): {cause}"
        elif text.startswith("Weights only load failed"):  # newer torch: advice, then the cause, then a link
            parts = [part.strip() for part in text.split("\n\n") if part.strip()]
            cause = parts[1].splitlines()[0] if len(parts) > 2 else "a type it does not allow"
            reason = f"not loadable as tensors and plain data with torch.load(weights_only=True): {cause}"
        else:
            reason = f"{type(exc).__name__}: {short_error(exc)}"
        raise OsnasError(f"checkpoint {path} is corrupt or not an osnas checkpoint ({reason})") from None


def free_bytes(path: Path) -> int:
    """Free bytes on the file system that holds ``path`` (or its nearest existing parent)."""
    return shutil.disk_usage(nearest_existing(path)).free


def nearest_existing(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_free_space(path: Path, needed: int, what: str) -> None:
    """Fail before a long run starts when its checkpoints cannot be written: a read-only place or a full disk."""
    check_output_dir(path)  # a read-only place may report no free space: say what is really wrong
    free = free_bytes(path)
    if free < needed:
        raise OsnasError(
            f"not enough free disk space for {what} in {path}: about {needed / 2**20:.0f} MiB needed, "
            f"{free / 2**20:.0f} MiB free; free some space or set output.dir to another disk"
        )


def read_json(path: Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise OsnasError(f"file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OsnasError(f"{path} is not valid JSON ({exc})") from None


def describe_record(record: dict[str, Any]) -> str:
    """One metrics record as a log line: ``supernet: epoch 1, loss 2.303, lr 0.05, seconds 1.2``."""
    def value(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    fields = ", ".join(f"{k} {value(v)}" for k, v in record.items() if k != "phase" and not isinstance(v, (dict, list)))
    return f"{record.get('phase', 'metrics')}: {fields}"


class RunDir:
    """One directory per run: ``<output.dir>/<name>-<timestamp>[-n]``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.sinks: list[Callable[[dict[str, Any]], None]] = []  # more consumers of metrics (TensorBoard)
        self._lock: Any = None

    @classmethod
    def create(cls, root: str | Path, name: str) -> "RunDir":
        """A new directory that never reuses an earlier run's."""
        root = Path(root)
        if name in ("", ".", "..") or Path(name).name != name or "\\" in name:
            raise OsnasError(f"run name {name!r} must be a plain name (no path); the run directory goes in {root}")
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

    def lock(self) -> None:
        """Claim the run for this process; a second ``--resume`` of a run still going is refused.

        The lock is an advisory ``flock`` that the kernel drops when the process
        ends, however it ends (a SIGKILL leaves no stale lock behind).
        """
        if fcntl is None:  # Windows has no flock: runs are not locked there
            return
        handle = open(self.path / LOCK_FILE, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise OsnasError(f"run {self.path} is in use by {owner}; wait for it to end or stop it first") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"osnas process {os.getpid()}")
        handle.flush()
        self._lock = handle

    def unlock(self) -> None:
        """Release the claim before the process ends (a later command in the same process may take it)."""
        if self._lock is not None:
            self._lock.close()  # closing the descriptor drops the flock
            self._lock = None

    def file(self, name: str) -> Path:
        return self.path / name

    def exists(self, name: str) -> bool:
        return (self.path / name).exists()

    def load_checkpoint(self, name: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
        """One of this run's checkpoints; a damaged one is a clear error that says how to recover."""
        path = self.path / name
        recover = f"delete {path} to redo that part of the run from its start, then resume again"
        try:
            state = load_checkpoint(path)
        except OsnasError as exc:
            raise OsnasError(f"{exc}; {recover}") from None
        missing = [key for key in required if not isinstance(state, dict) or key not in state]
        if missing:
            raise OsnasError(f"checkpoint {path} lacks {', '.join(missing)} (not written by this osnas version?); "
                             f"{recover}")
        return state

    @contextlib.contextmanager
    def restoring(self, name: str) -> Iterator[None]:
        """Loading a checkpoint's states into this run's objects: a mismatch is a clear error, not a traceback.

        Another search space's ``supernet_last.pt`` fails inside ``load_state_dict``
        (size mismatch), a damaged entry with a TypeError or KeyError.
        """
        try:
            yield
        except OsnasError:
            raise
        except (RuntimeError, KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise self.mismatch(name, f"{type(exc).__name__}: {short_error(exc)}") from None

    def mismatch(self, name: str, why: str) -> OsnasError:
        path = self.path / name
        return OsnasError(f"checkpoint {path} does not match this run ({why}); delete it to start the phase again, "
                          f"then resume: osnas search --resume {self.path}")

    def check_resume_state(self, name: str, state: dict[str, Any], epochs: int) -> None:
        """The per-epoch fields of a ``<phase>_last.pt`` have the types this osnas writes (checked before use)."""
        epoch = state["epoch"]
        if type(epoch) is not int or not 0 <= epoch < epochs:
            raise self.mismatch(name, f"'epoch' must be an integer in 0..{epochs - 1}, got {epoch!r:.80}")
        rng = state["rng"]
        if not isinstance(rng, dict) or not {"python", "numpy", "torch"} <= set(rng):
            raise self.mismatch(name, "'rng' must hold the python, numpy and torch generator states")
        for key in ("model", "criterion", "updater", "loader", "seconds"):
            if not isinstance(state[key], dict):
                raise self.mismatch(name, f"'{key}' must be a mapping, got {type(state[key]).__name__}")
        if not state["updater"] or not state["model"]:
            raise self.mismatch(name, "its 'model' or 'updater' entry is empty")
        if not all(type(v) in (int, float) for v in state["seconds"].values()):
            raise self.mismatch(name, "'seconds' must map phases to numbers")

    def remove_superseded(self) -> list[str]:
        """Delete a phase's per-epoch checkpoint whose finished output exists (a kill between the two writes)."""
        stale = [last for done, last in SUPERSEDED if self.exists(done) and self.exists(last)]
        for name in stale:
            self.file(name).unlink(missing_ok=True)
        return stale

    def remove_temporaries(self) -> list[str]:
        """Delete the temporary files of writes that a killed process left unfinished."""
        stale = [p for p in self.path.glob(f".*{TEMP_SUFFIX}") if p.is_file()]
        for p in stale:
            p.unlink(missing_ok=True)
        return [p.name for p in stale]

    @contextlib.contextmanager
    def _writing(self, name: str) -> Iterator[None]:
        """Turn a failed write (full disk, lost permissions) into a clear error; the old file stays."""
        try:
            yield
        except OSError as exc:
            raise OsnasError(
                f"could not write {self.path / name} ({exc.strerror or exc}); the previous version of the file "
                f"is intact. Fix the cause, then continue with: osnas search --resume {self.path}"
            ) from None

    def write_json(self, name: str, data: Any) -> Path:
        with self._writing(name):
            atomic_write_json(self.path / name, data)
        return self.path / name

    def write_text(self, name: str, text: str) -> Path:
        with self._writing(name):
            atomic_write_text(self.path / name, text)
        return self.path / name

    def save_checkpoint(self, name: str, obj: Any) -> Path:
        with self._writing(name):
            atomic_torch_save(self.path / name, obj)
        return self.path / name

    def log_metrics(self, record: dict[str, Any]) -> None:
        """Append one JSON line to ``metrics.jsonl`` (a line is small, written whole and flushed)."""
        line = json.dumps({"time": round(time.time(), 3), **record}) + "\n"
        with self._writing(METRICS_FILE), deferred_interrupts(), open(self.path / METRICS_FILE, "a") as handle:
            handle.write(line)
            handle.flush()
        log.info("%s", describe_record(record))
        for sink in self.sinks:
            sink(record)

    def prune_metrics(self, phase: str, keep: int) -> int:
        """Keep only the first ``keep`` records of ``phase`` in ``metrics.jsonl``; return how many were dropped.

        On resume, work done after the last checkpoint is redone and logged again:
        its first records (and a line cut short by a kill) must go, so that every
        epoch or evaluation appears once.
        """
        path = self.path / METRICS_FILE
        if not path.is_file():
            return 0
        kept: list[str] = []
        seen = dropped = 0
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                dropped += 1
                continue
            if isinstance(record, dict) and record.get("phase") == phase:
                seen += 1
                if seen > keep:
                    dropped += 1
                    continue
            kept.append(line)
        if dropped:
            with self._writing(METRICS_FILE):
                atomic_write_text(path, "".join(line + "\n" for line in kept))
        return dropped
