"""What every phase of a run shares: config, run directory, components, device, timings, messages."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from osnas.components import Components
from osnas.config import Config
from osnas.run_dir import RunDir

log = logging.getLogger("osnas")


@dataclass
class PhaseTimer:
    """Seconds per phase, carried across resumes through the checkpoints.

    ``total``: the time of every process of the run up to now (saved with each state).
    """

    seconds: dict[str, float] = field(default_factory=dict)
    setup_seconds: float = 0.0  # this process's lookup-table phase, added to a resumed run's
    started: float = field(default_factory=time.perf_counter)
    earlier: float = 0.0  # total of the processes before this one, up to their last saved state

    def add(self, phase: str, start: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start
        self.seconds["total"] = self.total()

    def total(self) -> float:
        return self.earlier + time.perf_counter() - self.started

    def restore(self, saved: dict[str, float]) -> None:
        """Continue the accounting of a resumed run: saved phases, plus this process's own setup time."""
        for phase, seconds in saved.items():
            if phase == "total":
                self.earlier = max(self.earlier, float(seconds))
            else:
                self.seconds[phase] = float(seconds) + (self.setup_seconds if phase == "lookup_table" else 0.0)
        self.seconds["total"] = self.total()


def say(message: str, quiet: bool) -> None:
    """Log ``message`` and, unless ``quiet``, print it."""
    log.info(message)
    if not quiet:
        from osnas.progress import console

        console.print(message)


@dataclass
class RunContext:
    """The state the phases of one run share."""

    config: Config
    run: RunDir
    components: Components
    device: torch.device
    timer: PhaseTimer
    quiet: bool = False
    on_epoch: Callable[[str, int], None] | None = None  # after each checkpoint: (phase, epoch or evaluations)
    amp: dict[str, str] = field(default_factory=dict)  # the AMP mode each training phase ran with

    def say(self, message: str) -> None:
        say(message, self.quiet)

    def progress(self) -> bool:
        return self.config.logging.progress and not self.quiet

    def checkpointed(self, phase: str, step: int) -> None:
        if self.on_epoch:
            self.on_epoch(phase, step)
