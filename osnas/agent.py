"""The main agent: runs the phases of a one-shot NAS run (``osnas.pipeline``), nothing task-specific.

lookup table -> supernet -> search -> final training -> test. Every phase reads
and writes through the run directory, so a run can be resumed (``--resume``) or a
phase skipped (``--supernet``, ``osnas train``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np

from osnas import distributed
from osnas.components import Components
from osnas.config import Config
from osnas.pipeline.context import PhaseTimer, RunContext, say
from osnas.pipeline.evaluate import TestPhase
from osnas.pipeline.final import FinalPhase
from osnas.pipeline.lookup_table import LookupTablePhase
from osnas.pipeline.search import SearchPhase
from osnas.pipeline.supernet import SupernetPhase
from osnas.run_dir import RunDir
from osnas.runtime import resolve_device
from osnas.store import obtain_supernet


class MainAgent:
    """Orchestrates one ``osnas search`` (or ``osnas train``) run of ``config``."""

    def __init__(self, config: Config, quiet: bool = False,
                 on_epoch: Callable[[str, int], None] | None = None) -> None:
        self.config = config
        self.quiet = quiet or not distributed.is_main()
        self.on_epoch = on_epoch
        self.device = distributed.setup(resolve_device(config.device))
        self.timer = PhaseTimer()
        self.components: Components | None = None

    def setup(self) -> Components:
        """The lookup-table phase: components built and checked (once)."""
        if self.components is None:
            self.components = LookupTablePhase(self.config, self.device, self.timer, self.quiet).run()
        return self.components

    def context(self, run: RunDir) -> RunContext:
        """What the phases of a run in ``run`` share."""
        return RunContext(self.config, run, self.setup(), self.device, self.timer, self.quiet, self.on_epoch)

    def run(self, run: RunDir, reuse_supernet: Path | None = None) -> dict[str, Any]:
        """Every phase whose output ``run`` does not hold yet; returns the content of results.json."""
        ctx = self.context(run)
        if distributed.active():
            logging.getLogger("osnas").info("distributed run: %d processes (%s)", distributed.world_size(),
                                            distributed.backend())
        arch = self.searched(ctx, reuse_supernet)
        final = FinalPhase(ctx, arch)
        final.run()
        results = TestPhase(ctx).run(final)
        if self.config.audit.enabled:
            self.audit(run)
        return results

    def searched(self, ctx: RunContext, reuse_supernet: Path | None) -> np.ndarray:
        """The run's architecture: recorded, or searched now. Its own call, so that the supernet, its optimiser
        and the evaluator are freed before final training (on a GPU they would hold its memory)."""
        search = SearchPhase(ctx)
        arch = search.reuse()
        if arch is None:
            supernet = SupernetPhase(ctx)
            # the supernet: given (--supernet), this run's own, the store's, or trained now
            arch = search.run(obtain_supernet(supernet, reuse_supernet), supernet.strategy)
        return arch

    def audit(self, run: RunDir) -> dict[str, Any]:
        """Optional last phase: the ranking audit of this run (``audit:`` in the config; see osnas/audit.py)."""
        from osnas.audit import AuditSettings, run_audit

        return run_audit(run, AuditSettings.from_config(self.config.audit), self.quiet,
                         lambda message: say(message, self.quiet))
