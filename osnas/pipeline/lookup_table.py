"""Phase: the components of a config and its lookup table (built, or reused from the cache)."""

from __future__ import annotations

import time

import torch

from osnas import artifacts
from osnas.components import Components, build_components
from osnas.config import Config
from osnas.pipeline.context import PhaseTimer, say
from osnas.runtime import seed_everything


class LookupTablePhase:
    """Builds the components once, before the run directory exists (bad inputs fail before any file)."""

    name = "lookup_table"

    def __init__(self, config: Config, device: torch.device, timer: PhaseTimer, quiet: bool) -> None:
        self.config, self.device, self.timer, self.quiet = config, device, timer, quiet

    def run(self) -> Components:
        seed_everything(self.config.seed, self.config.deterministic)
        start = time.perf_counter()
        components = build_components(self.config, self.device, artifacts.lookup_table_dir(self.config))
        # building the table draws from the torch RNG and a cached table does not: reseed so the cache
        # cannot change the run
        seed_everything(self.config.seed, self.config.deterministic)
        self.timer.add(self.name, start)
        self.timer.setup_seconds = self.timer.seconds[self.name]
        say(f"lookup table: {components.lut_note}", self.quiet)
        components.constraint.check_satisfiable()
        return components
