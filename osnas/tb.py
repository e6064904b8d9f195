"""Optional TensorBoard logging (``logging.tensorboard: true``, extra ``osnas[tensorboard]``).

It mirrors ``metrics.jsonl``: each record that :meth:`RunDir.log_metrics` writes becomes
scalars ``<phase>/<key>`` at step ``epoch`` (training phases) or ``eval`` (search).
metrics.jsonl is always written; TensorBoard is an extra view of the same numbers.
"""

from __future__ import annotations

from typing import Any, Protocol

from osnas import distributed
from osnas.config import Config
from osnas.run_dir import RunDir

MISSING = ("logging.tensorboard is true but the tensorboard package is not installed "
           "(pip install 'osnas[tensorboard]'); metrics go to metrics.jsonl only")
STEP_KEYS = ("epoch", "eval")
SKIP_KEYS = {"phase", "time", *STEP_KEYS}


class ScalarWriter(Protocol):
    def add_scalar(self, tag: str, value: float, global_step: int | None = None) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class TensorBoardLogger:
    """A metrics sink writing every numeric field of a record as a scalar."""

    def __init__(self, writer: ScalarWriter) -> None:
        self.writer = writer

    def __call__(self, record: dict[str, Any]) -> None:
        phase = record.get("phase", "run")
        step = next((int(record[k]) for k in STEP_KEYS if isinstance(record.get(k), (int, float))), None)
        for key, value in record.items():
            if key not in SKIP_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{phase}/{key}", float(value), step)
        self.writer.flush()  # records are per epoch or per candidate: cheap, and nothing is lost on a crash

    def close(self) -> None:
        self.writer.close()


def attach(run: RunDir, config: Config) -> TensorBoardLogger | None:
    """Mirror ``run``'s metrics to ``RUN/tensorboard`` when enabled; one clear message if unavailable."""
    if not config.logging.tensorboard or not distributed.is_main():
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        from osnas.console import warn

        warn(MISSING)
        return None
    logger = TensorBoardLogger(SummaryWriter(log_dir=str(run.file("tensorboard"))))
    run.sinks.append(logger)
    return logger
