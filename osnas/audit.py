"""Ranking audit: does the supernet rank architectures the way stand-alone training does?

One-shot NAS rests on the supernet's scores ordering candidates as training each of
them from scratch would. The audit measures it on one finished run: K feasible
architectures drawn across the constraint's cost range (one per cost bin) plus the
found one are scored by the run's evaluator (BN recalibration, validation batches
of the search split) and trained from scratch with the run's final recipe (or a
shorter proxy) on the search-train split, then scored on the search-validation
split; the test split never takes part. Kendall tau, Spearman rho (with p-values)
and the top-k overlap say how well the two orders agree. With ``repeats`` > 1 each
architecture is trained that many times from different initialisations and its
stand-alone score is the mean: on a small validation split one image is worth more
than the gap between two architectures, and the spread says how much of it is noise.

Every finished architecture is saved in ``audit_state.json`` (each stand-alone
training also keeps its per-epoch checkpoint under ``audit/arch-NN/``), so an
interrupted audit continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from osnas import artifacts, distributed
from osnas.agent import MainAgent
from osnas.config import AuditConfig, Config, with_overrides
from osnas.constraint import Constraint
from osnas.dataflows.base import Dataflow, Loader
from osnas.errors import InfeasibleConstraintError, OsnasError
from osnas.pipeline.evaluate import TestPhase
from osnas.pipeline.final import FinalPhase
from osnas.run_dir import RunDir, read_json
from osnas.search_spaces.supernet import Supernet
from osnas.search_strategies.base import arch_key
from osnas.training import DTYPES, compute_in, in_layout

STATE_FILE = "audit_state.json"
RESULT_FILE = artifacts.AUDIT
PLOT_FILE = "audit.png"
VERSION = 1


@dataclass(frozen=True)
class AuditSettings:
    """What an audit draws and how it trains; ``proxy_epochs`` None means the run's final epochs."""

    k: int = 8
    proxy_epochs: int | None = None
    top_k: int = 3
    seed: int = 0
    repeats: int = 1

    @classmethod
    def from_config(cls, cfg: AuditConfig) -> "AuditSettings":
        return cls(cfg.k, cfg.proxy_epochs, cfg.top_k, cfg.seed, cfg.repeats)

    def check(self) -> None:
        if self.k < 2:
            raise OsnasError(f"audit k must be >= 2 (a rank correlation needs at least 3 architectures), got {self.k}")
        if self.proxy_epochs is not None and self.proxy_epochs < 1:
            raise OsnasError(f"audit proxy_epochs must be >= 1 (or null for the run's final epochs), "
                             f"got {self.proxy_epochs}")
        if self.repeats < 1:
            raise OsnasError(f"audit repeats must be >= 1 (stand-alone trainings per architecture), got {self.repeats}")
        if not 1 <= self.top_k <= self.k + 1:
            raise OsnasError(f"audit top_k must be between 1 and k + 1 = {self.k + 1} "
                             f"(the K drawn architectures plus the found one), got {self.top_k}")


# ----------------------------------------------------------------------------- statistics


def top_k_overlap(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """Share of the k best by ``a`` that are also among the k best by ``b`` (higher is better, ties by order)."""
    best_a = set(np.argsort(-np.asarray(a, dtype=np.float64), kind="stable")[:k].tolist())
    best_b = set(np.argsort(-np.asarray(b, dtype=np.float64), kind="stable")[:k].tolist())
    return len(best_a & best_b) / k


def _finite(value: float) -> float | None:
    """JSON has no NaN: an undefined statistic (constant scores) is null."""
    return None if value is None or math.isnan(value) else float(value)


def rank_agreement(supernet: np.ndarray, standalone: np.ndarray, top_k: int) -> dict[str, float | None]:
    """Kendall tau-b and Spearman rho with their two-sided p-values, and the top-k overlap."""
    from scipy import stats  # imported only when an audit runs

    with warnings.catch_warnings():  # constant scores: reported as undefined (null) below
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        tau = stats.kendalltau(supernet, standalone)
        rho = stats.spearmanr(supernet, standalone)
    return {
        "kendall_tau": _finite(tau.statistic), "kendall_p": _finite(tau.pvalue),
        "spearman_rho": _finite(rho.statistic), "spearman_p": _finite(rho.pvalue),
        "top_k_overlap": top_k_overlap(supernet, standalone, top_k),
    }


# ----------------------------------------------------------------------------- drawing


def feasible_range(constraint: Constraint) -> tuple[float, float]:
    """The constraint metric's achievable costs clipped to the window [min, max]."""
    lo, hi = constraint.lut.bounds(constraint.metric, constraint.definition)
    return max(lo, constraint.min or lo), min(hi, constraint.max)


def stratified_sample(constraint: Constraint, rng: np.random.Generator, k: int,
                      exclude: list[np.ndarray] = ()) -> np.ndarray:
    """(k, L) distinct feasible architectures, one per equal-width bin of the feasible cost range.

    Each bin takes a uniformly drawn feasible architecture whose cost falls in it; a bin the
    uniform draws missed (the extremes of the range are rare) gets a random architecture
    repaired into the bin, and if even that fails, the unused draw nearest to its centre.
    """
    lo, hi = feasible_range(constraint)
    edges = np.linspace(lo, hi, k + 1)
    pool = np.unique(constraint.sample_feasible(rng, max(64 * k, 512)), axis=0)
    cost = constraint.cost(pool)
    used = {arch_key(a) for a in exclude}
    chosen: list[np.ndarray] = []

    def take(arch: np.ndarray) -> None:
        chosen.append(arch)
        used.add(arch_key(arch))

    for b in range(k):
        free = np.array([arch_key(a) not in used for a in pool], dtype=bool)
        inside = np.flatnonzero(free & (cost >= edges[b] - 1e-9) & (cost <= edges[b + 1] + 1e-9))
        if inside.size:
            take(pool[rng.choice(inside)])
            continue
        window = dataclasses.replace(constraint, min=float(edges[b]), max=float(edges[b + 1]))
        try:
            repaired = window.repair(constraint.definition.sample(rng, 1)[0], rng)
        except InfeasibleConstraintError:
            repaired = None
        if repaired is not None and constraint.feasible(repaired) and arch_key(repaired) not in used:
            take(repaired)
            continue
        if not free.any():
            raise OsnasError(f"the audit cannot find {k} distinct feasible architectures in space "
                             f"{constraint.definition.name!r} under {constraint.describe()}; lower k")
        centre = (edges[b] + edges[b + 1]) / 2
        candidates = np.flatnonzero(free)
        take(pool[candidates[np.argmin(np.abs(cost[candidates] - centre))]])
    return np.stack(chosen)


# ----------------------------------------------------------------------------- stand-alone training


class SearchSplitData:
    """The run's dataflow with the final phase pointed at the search split.

    Stand-alone training in an audit uses the agent's own child training, which trains on
    ``final_split()[0]`` and scores on ``final_split()[1]``; here those are search-train and
    search-validation, so the test split is never used to judge a ranking.
    """

    def __init__(self, dataflow: Dataflow) -> None:
        self.dataflow = dataflow

    def search_split(self) -> tuple[Loader, Loader]:
        return self.dataflow.search_split()

    def final_split(self) -> tuple[Loader, Loader]:
        return self.dataflow.search_split()


def load_run_supernet(run: RunDir, agent: MainAgent) -> Supernet:
    """The run's trained supernet, checked against its space."""
    comp = agent.setup()
    if not run.exists(artifacts.SUPERNET):
        raise OsnasError(f"{run.path} has no {artifacts.SUPERNET}: the audit needs a run whose supernet phase finished")
    state = artifacts.read_supernet(run.file(artifacts.SUPERNET), comp.definition)
    supernet = compute_in(Supernet(comp.definition).to(agent.device), DTYPES[agent.config.dtype])
    supernet.load_state_dict(state["model"])
    cfg = agent.config.supernet
    return in_layout(supernet, cfg.channels_last, cfg.amp, agent.device)  # the layout the search scored it in


# ----------------------------------------------------------------------------- the audit


class Audit:
    """One audit of one run directory; ``run()`` does what is left and writes audit.json and audit.png."""

    def __init__(self, run: RunDir, settings: AuditSettings, quiet: bool = False,
                 say: Callable[[str], None] = print) -> None:
        settings.check()
        self.run = run
        self.settings = settings
        self.say = say
        for name in (artifacts.CONFIG, artifacts.ARCHITECTURE, artifacts.SUPERNET):
            if not run.exists(name):
                raise OsnasError(f"{run.path} has no {name}: the audit needs a run whose search finished "
                                 "(osnas search --resume it first)")
        config = artifacts.read_config(run)
        self.epochs = settings.proxy_epochs or config.final.epochs
        self.config: Config = with_overrides(config, [f"final.epochs={self.epochs}", "final.compile=false"])
        if config.lookup_table.cache_dir is None:  # the run's own table, wherever the audit is started from
            self.config.lookup_table.cache_dir = str(run.path.parent / artifacts.LOOKUP_TABLES)
        self.agent = MainAgent(self.config, quiet=quiet)
        path = run.file(artifacts.ARCHITECTURE)
        self.found = artifacts.read_architecture(path).vector(self.agent.setup().definition, str(path))
        self.state = self._load_state()

    def _settings_record(self) -> dict[str, Any]:
        return {"k": self.settings.k, "proxy_epochs": self.epochs, "seed": self.settings.seed,
                "repeats": self.settings.repeats}

    def _load_state(self) -> dict[str, Any]:
        if not self.run.exists(STATE_FILE):
            return {}
        state = read_json(self.run.file(STATE_FILE))
        keys = ("settings", "archs", "supernet", "standalone")
        if not isinstance(state, dict) or any(key not in state for key in keys):
            raise OsnasError(f"{self.run.file(STATE_FILE)} is damaged (expected keys {', '.join(keys)}); "
                             "delete it to redo the audit from its start")
        if isinstance(state["settings"], dict) and "repeats" not in state["settings"]:  # written before repeats
            state["settings"]["repeats"] = 1
            state["standalone"] = [[] if score is None else [score] for score in state["standalone"]]
        if state["settings"] != self._settings_record():
            raise OsnasError(f"{self.run.file(STATE_FILE)} belongs to an audit with {state['settings']}, not "
                             f"{self._settings_record()}; rerun with those settings to continue it, or delete "
                             f"{self.run.file(STATE_FILE)} and {self.run.file('audit')} to start a new one")
        return state

    def _save_state(self) -> None:
        self.run.write_json(STATE_FILE, self.state)

    def draw(self) -> None:
        """The K stratified architectures and the found one (last), fixed before anything is trained."""
        if self.state:
            return
        comp = self.agent.setup()
        rng = np.random.default_rng([self.settings.seed, self.config.seed, 7])
        drawn = stratified_sample(comp.constraint, rng, self.settings.k, exclude=[self.found])
        archs = [*drawn.tolist(), [int(i) for i in self.found]]
        self.state = {"settings": self._settings_record(), "archs": archs,
                      "supernet": [None] * len(archs), "standalone": [[] for _ in archs]}
        self._save_state()

    def score_on_supernet(self) -> None:
        """The run's evaluator (same BN and validation batches as its search) on every audited architecture."""
        if all(score is not None for score in self.state["supernet"]):
            return
        comp = self.agent.setup()
        ev = self.config.evaluation
        train_loader, val_loader = comp.dataflow.search_split()
        supernet = load_run_supernet(self.run, self.agent)
        evaluator = distributed.ShardedEvaluator(supernet, comp.training_agent, train_loader, val_loader, ev.bn_batches,
                                                 ev.val_batches, ev.prefix_cache_mb)
        scores = evaluator.evaluate(np.asarray(self.state["archs"], dtype=np.int64))
        self.state["supernet"] = [float(s) for s in scores]
        self._save_state()

    def train_standalone(self) -> None:
        """Each architecture from scratch with the run's final recipe on the search split, resumable.

        Repeat r initialises from seed ``config.seed + r`` (the data order is the run's); its
        checkpoints go to ``audit/arch-NN`` (r = 0) or ``audit/arch-NN-rR``.
        """
        comp = self.agent.setup()
        self.agent.components = dataclasses.replace(comp, dataflow=SearchSplitData(comp.dataflow))
        total, repeats = len(self.state["archs"]), self.settings.repeats
        for i, arch in enumerate(self.state["archs"]):
            scores = self.state["standalone"][i]
            for r in range(len(scores), repeats):
                folder = self.run.file("audit") / (f"arch-{i:02d}" + (f"-r{r}" if r else ""))
                folder.mkdir(parents=True, exist_ok=True)
                ctx = dataclasses.replace(self.agent.context(distributed.rank_view(RunDir(folder))),
                                          config=with_overrides(self.config, [f"seed={self.config.seed + r}"]))
                self.agent.timer.seconds.clear()  # each training's metrics count its own seconds
                final = FinalPhase(ctx, np.asarray(arch, dtype=np.int64))
                final.run()
                scores.append(float(TestPhase(ctx).metrics(final)[comp.training_agent.selection_metric]))
                self._save_state()
                run_label = f" run {r + 1}/{repeats}" if repeats > 1 else ""
                self.say(f"audit: architecture {i + 1}/{total}{run_label} trained ({self.epochs} epochs): "
                         f"validation {comp.training_agent.selection_metric} {scores[-1]:.4f}, "
                         f"supernet score {self.state['supernet'][i]:.4f}")

    def result(self) -> dict[str, Any]:
        comp = self.agent.setup()
        archs = np.asarray(self.state["archs"], dtype=np.int64)
        supernet = np.asarray(self.state["supernet"], dtype=np.float64)
        runs = np.asarray(self.state["standalone"], dtype=np.float64)  # (architectures, repeats)
        standalone = runs.mean(axis=1)
        random_scores = standalone[:-1]
        found_score = standalone[-1]
        return {
            "version": VERSION,
            "k": self.settings.k,
            "proxy_epochs": self.epochs,
            "repeats": self.settings.repeats,
            **rank_agreement(supernet, standalone, self.settings.top_k),
            "top_k": self.settings.top_k,
            "metric": comp.training_agent.selection_metric,
            "cost_metric": comp.constraint.metric,
            "found_standalone": float(found_score),
            "found_rank": int(1 + np.sum(standalone > found_score)),
            "median_random": float(np.median(random_scores)),
            "found_at_least_median": bool(found_score >= np.median(random_scores)),
            # the spread of the repeats (population std): how far one training's score is from the mean
            "repeat_std_mean": float(runs.std(axis=1).mean()),
            "archs": [{"indices": [int(i) for i in arch], "supernet_score": float(s), "standalone_score": float(t),
                       "standalone_runs": [float(v) for v in r], "costs": comp.lut.costs(arch),
                       "found": n == len(archs) - 1}
                      for n, (arch, s, t, r) in enumerate(zip(archs, supernet, standalone, runs))],
        }

    def run_all(self) -> dict[str, Any]:
        self.draw()
        self.score_on_supernet()
        self.train_standalone()
        result = self.result()
        self.run.write_json(RESULT_FILE, result)
        plot_audit(result, self.run.file(PLOT_FILE))
        return result


def plot_audit(result: dict[str, Any], path: Path) -> Path:
    """Supernet score vs stand-alone accuracy, cost as colour, the found architecture starred."""
    from matplotlib.figure import Figure

    from osnas.report import save_figure

    archs = result["archs"]
    metric = result["cost_metric"]
    x = np.array([a["supernet_score"] for a in archs])
    y = np.array([a["standalone_score"] for a in archs])
    cost = np.array([a["costs"][metric] for a in archs])
    found = np.array([a["found"] for a in archs])
    figure = Figure(figsize=(6, 4.5))
    ax = figure.add_subplot()
    if result["repeats"] > 1:  # one standard deviation of the repeated trainings
        spread = np.array([np.std(a["standalone_runs"]) for a in archs])
        ax.errorbar(x, y, yerr=spread, fmt="none", ecolor="grey", elinewidth=0.8, capsize=2, zorder=0)
    points = ax.scatter(x, y, c=cost, cmap="viridis", s=40, edgecolors="black", linewidths=0.5)
    ax.scatter(x[found], y[found], marker="*", s=260, facecolors="none", edgecolors="red", linewidths=1.5,
               label="found architecture")
    figure.colorbar(points, ax=ax, label=f"{metric} (lookup table)")

    def fmt(value: float | None) -> str:
        return "undefined" if value is None else f"{value:.3f}"

    ax.set_title(f"Kendall tau {fmt(result['kendall_tau'])} (p {fmt(result['kendall_p'])}), "
                 f"Spearman rho {fmt(result['spearman_rho'])}", fontsize=9)
    ax.set_xlabel(f"supernet score (validation {result['metric']}, BN recalibrated)")
    runs = f", mean of {result['repeats']} runs" if result["repeats"] > 1 else ""
    ax.set_ylabel(f"stand-alone validation {result['metric']} ({result['proxy_epochs']} epochs{runs})")
    ax.legend(loc="best", fontsize=8)
    return save_figure(figure, path)


def run_audit(run: RunDir, settings: AuditSettings, quiet: bool = False,
              say: Callable[[str], None] = print) -> dict[str, Any]:
    """Audit a finished search run (or continue an interrupted audit); returns audit.json's contents."""
    return Audit(run, settings, quiet, say).run_all()
