"""The hardware constraint, with the same semantics for every strategy.

``{metric, max, min}`` in explicit units (MACs and params in millions, latency in
ms). Feasibility is vectorized over batches of architectures; an infeasible
constraint is detected before any search runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from osnas.errors import InfeasibleConstraintError
from osnas.search_spaces.base import SpaceDefinition
from osnas.search_spaces.lookup_table import LookupTable

UNIT_NAMES = {"macs": "M MACs", "params": "M params", "latency": "ms"}


@dataclass
class Constraint:
    """A budget on one LUT metric."""

    metric: str
    max: float
    min: float | None
    lut: LookupTable
    definition: SpaceDefinition

    def cost(self, archs: np.ndarray) -> np.ndarray:
        return self.lut.cost(archs, self.metric)

    def feasible(self, archs: np.ndarray) -> np.ndarray:
        """(N,) bool (or a bool for one vector): within [min, max] and valid for the space."""
        archs = np.asarray(archs)
        single = archs.ndim == 1
        batch = np.atleast_2d(archs)
        cost = self.cost(batch)
        ok = cost <= self.max + 1e-9
        if self.min is not None:
            ok &= cost >= self.min - 1e-9
        ok &= self.definition.valid(batch)
        return bool(ok[0]) if single else ok

    def describe(self) -> str:
        unit = UNIT_NAMES[self.metric]
        low = f"{self.min:g} <= " if self.min is not None else ""
        return f"{low}{self.metric} <= {self.max:g} ({unit})"

    def check_satisfiable(self) -> tuple[float, float]:
        """Raise :class:`InfeasibleConstraintError` with the achievable range if no architecture fits."""
        lo, hi = self.lut.bounds(self.metric, self.definition)
        unit = UNIT_NAMES[self.metric]
        if lo > self.max + 1e-9 or (self.min is not None and hi < self.min - 1e-9):
            raise InfeasibleConstraintError(
                f"constraint {self.describe()} cannot be met in space {self.definition.name!r}: "
                f"the cheapest architecture costs {lo:.4g} {unit} and the dearest {hi:.4g} {unit}; "
                f"set constraint.max >= {lo:.4g}" + (f" and constraint.min <= {hi:.4g}" if self.min is not None else "")
            )
        return lo, hi

    def sample_feasible(self, rng: np.random.Generator, n: int, max_tries: int = 200) -> np.ndarray:
        """Up to ``n`` feasible architectures by rejection sampling, repaired when rejection fails."""
        out: list[np.ndarray] = []
        for _ in range(max_tries):
            batch = self.definition.sample(rng, max(4 * n, 64))
            out.extend(batch[self.feasible(batch)])
            if len(out) >= n:
                return np.stack(out[:n])
        while len(out) < n:
            out.append(self.repair(self.definition.sample(rng, 1)[0], rng))
        return np.stack(out[:n])

    def repair(self, arch: np.ndarray, rng: np.random.Generator | None = None,
               preference: np.ndarray | None = None) -> np.ndarray:
        """Move an architecture into the budget with the cheapest changes the lookup table knows.

        Greedy: repeatedly apply the single-entry change with the best ratio of lost
        preference (``preference``, (L, K) scores, e.g. log-probabilities; uniform if
        None) to cost moved towards the budget, until the architecture is feasible.
        Greedy steps can overshoot, so with a preference the feasible result is then
        polished: single changes that raise the preference and stay feasible are taken.
        """
        arch = np.array(arch, dtype=np.int64, copy=True)
        if rng is not None and not self.definition.valid(arch[None])[0]:
            arch = self.definition.repair_rules(arch[None], rng)[0]
        table = self.lut.unit_table(self.metric)
        mask = self.definition.choice_mask
        pref = self._preference(preference, mask)
        if self.feasible(arch):
            return arch
        rows = np.arange(len(arch))
        for _ in range(int(self.definition.choices.sum()) + 1):
            cost = float(self.cost(arch))
            if self.feasible(arch):
                break
            too_high = cost > self.max
            delta = table - table[rows, arch][:, None]  # cost change of switching entry l to k
            gain = -delta if too_high else delta
            loss = pref[rows, arch][:, None] - pref
            usable = mask & (gain > 1e-12)
            if not usable.any():
                break
            score = np.where(usable, (loss + 1e-6) / np.where(usable, gain, 1.0), np.inf)
            moved = False
            for l, k in zip(*np.unravel_index(np.argsort(score, axis=None), score.shape)):
                if not usable[l, k]:
                    break
                trial = arch.copy()
                trial[l] = k
                if self.definition.valid(trial[None])[0]:
                    arch, moved = trial, True
                    break
            if not moved:
                break
        if not self.feasible(arch):
            raise InfeasibleConstraintError(
                f"could not repair architecture into {self.describe()} (cost {float(self.cost(arch)):.4g})"
            )
        return self._polish(arch, pref, mask)

    @staticmethod
    def _preference(preference: np.ndarray | None, mask: np.ndarray) -> np.ndarray:
        """Finite (L, K) scores: missing candidates and -inf (zero probability) sit below every real score."""
        if preference is None:
            return np.zeros(mask.shape)
        pref = np.asarray(preference, dtype=np.float64)
        finite = mask & np.isfinite(pref)
        floor = pref[finite].min() - 1.0 if finite.any() else 0.0
        return np.where(finite, pref, floor)

    def _polish(self, arch: np.ndarray, pref: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Take the single change with the largest preference gain that keeps ``arch`` feasible, until none."""
        rows = np.arange(len(arch))
        while True:
            gain = np.where(mask, pref - pref[rows, arch][:, None], 0.0)
            layers, ks = np.nonzero(gain > 1e-12)
            if not len(layers):
                return arch
            trials = np.repeat(arch[None], len(layers), axis=0)
            trials[np.arange(len(layers)), layers] = ks
            ok = self.feasible(trials)
            if not ok.any():
                return arch
            best = np.flatnonzero(ok)[np.argmax(gain[layers, ks][ok])]
            arch = trials[best]
