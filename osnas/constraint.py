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
TOLERANCE = 1e-9  # costs are sums of floats; equal to a bound counts as inside


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

    def excess(self, cost: np.ndarray | float) -> np.ndarray:
        """How far a cost lies outside [min, max] (0 inside), in constraint units."""
        cost = np.asarray(cost, dtype=np.float64)
        out = np.maximum(cost - self.max, 0.0)
        if self.min is not None:
            out = out + np.maximum(self.min - cost, 0.0)
        return out

    def feasible(self, archs: np.ndarray) -> np.ndarray:
        """(N,) bool (or a bool for one vector): within [min, max] and valid for the space."""
        archs = np.asarray(archs)
        single = archs.ndim == 1
        batch = np.atleast_2d(archs)
        ok = (self.excess(self.cost(batch)) <= TOLERANCE) & self.definition.valid(batch)
        return bool(ok[0]) if single else ok

    def describe(self) -> str:
        unit = UNIT_NAMES[self.metric]
        low = f"{self.min:g} <= " if self.min is not None else ""
        return f"{low}{self.metric} <= {self.max:g} ({unit})"

    def check_satisfiable(self) -> tuple[float, float]:
        """Raise :class:`InfeasibleConstraintError` with the achievable range if no architecture fits.

        Returns the cheapest and dearest achievable cost. With a ``min`` the window may
        lie inside that range yet fall between the discrete costs of the space, so one
        feasible architecture is also looked for (bounded) before any search starts.
        """
        lo, hi = self.lut.bounds(self.metric, self.definition)
        unit = UNIT_NAMES[self.metric]
        achievable = f"the cheapest architecture costs {lo:.4g} {unit} and the dearest {hi:.4g} {unit}"
        where = f"constraint {self.describe()} cannot be met in space {self.definition.name!r}"
        if lo > self.max + TOLERANCE or (self.min is not None and hi < self.min - TOLERANCE):
            raise InfeasibleConstraintError(
                f"{where}: {achievable}; set constraint.max >= {lo:.4g}"
                + (f" and constraint.min <= {hi:.4g}" if self.min is not None else "")
            )
        if self.min is not None:
            try:
                self.sample_feasible(np.random.default_rng(0), 1)
            except InfeasibleConstraintError:
                raise InfeasibleConstraintError(
                    f"{where}: no architecture was found with a cost inside the window ({achievable}); "
                    "widen the window between constraint.min and constraint.max"
                ) from None
        return lo, hi

    def sample_feasible(self, rng: np.random.Generator, n: int, rounds: int = 50) -> np.ndarray:
        """``n`` feasible architectures: uniform by rejection, the rest repaired from random draws.

        Rejection keeps the draw uniform over the feasible set; when the budget is so
        tight that rejection rarely succeeds, random draws are repaired instead. Both
        are bounded; an unreachable window raises :class:`InfeasibleConstraintError`.
        """
        out: list[np.ndarray] = []
        for _ in range(rounds):
            batch = self.definition.sample(rng, max(4 * n, 64))
            out.extend(batch[self.feasible(batch)])
            if len(out) >= n:
                return np.stack(out[:n])
        out.extend(self.repair(arch, rng) for arch in self.definition.sample(rng, n - len(out)))
        return np.stack(out[:n])

    def repair(self, arch: np.ndarray, rng: np.random.Generator | None = None,
               preference: np.ndarray | None = None) -> np.ndarray:
        """Move an architecture into [min, max] with the cheapest changes the lookup table knows.

        Space rules are fixed first. Then, greedily, one entry at a time: among the
        changes that bring the cost closer to the window and keep the rules, those
        that do not jump past the window's far side are preferred; the change with
        the best ratio of lost ``preference`` ((L, K) scores, e.g. logits; uniform
        when None) to distance gained wins, ties going to the smallest cost change
        (so the result stays as close to the original as it can) and then, with
        ``rng``, at random. Bounded; raises :class:`InfeasibleConstraintError` if
        no sequence of such changes reaches the window.
        With a preference the feasible result is then polished: single changes that raise
        the preference and stay feasible are taken.
        """
        arch = np.array(arch, dtype=np.int64, copy=True)
        definition = self.definition
        if not definition.valid(arch[None])[0]:
            arch = definition.repair_rules(arch[None], rng if rng is not None else np.random.default_rng(0))[0]
        table = self.lut.unit_table(self.metric)
        num_layers, num_choices = table.shape
        rows = np.arange(num_layers)
        pref = self._preference(preference, definition.choice_mask)
        for _ in range(num_layers * num_choices):
            cost = float(self.cost(arch))
            distance = float(self.excess(cost))
            if distance <= TOLERANCE:
                break
            delta = table - table[rows, arch][:, None]  # cost change of switching entry l to candidate k
            new_cost = cost + delta
            gain = distance - self.excess(new_cost)
            usable = definition.choice_mask & (gain > 1e-12)
            layer, choice = np.nonzero(usable)
            trials = np.repeat(arch[None], len(layer), axis=0)
            trials[np.arange(len(layer)), layer] = choice
            usable[layer, choice] = definition.valid(trials)
            if not usable.any():
                break
            if cost > self.max:
                crossing = new_cost < self.min - TOLERANCE if self.min is not None else np.zeros_like(usable)
            else:
                crossing = new_cost > self.max + TOLERANCE
            if (usable & ~crossing).any():
                usable &= ~crossing
            loss = np.maximum(pref[rows, arch][:, None] - pref, 0.0) + 1e-6
            layer, choice = np.nonzero(usable)
            jitter = rng.random(len(layer)) if rng is not None else np.zeros(len(layer))
            order = np.lexsort((jitter, np.abs(delta[layer, choice]), loss[layer, choice] / gain[layer, choice]))
            arch[layer[order[0]]] = choice[order[0]]
        if not self.feasible(arch):
            raise InfeasibleConstraintError(
                f"could not repair architecture into {self.describe()} (cost {float(self.cost(arch)):.4g})"
            )
        return self._polish(arch, pref, definition.choice_mask)

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
