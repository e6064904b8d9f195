"""Whole-network latency from the per-layer lookup table: plain sum, linear calibration, small MLP.

Summing per-layer latencies measured one layer at a time misses what a whole
network adds or saves (per-call overhead, caches, kernel launch overlap), so the
sum can be far off. Measuring a few sampled networks lets us calibrate it:
(a) ``scale * sum + offset`` with the least training MAPE, and (b) an MLP on the per-layer
LUT latencies that learns the remaining non-additive part on top of (a).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from osnas.profiling import measure_latency
from osnas.search_spaces.base import SpaceDefinition
from osnas.search_spaces.child import build_child
from osnas.search_spaces.lookup_table import LookupTable


def layer_latencies(lut: LookupTable, archs: np.ndarray) -> np.ndarray:
    """(N, L) LUT latency (ms) of the chosen candidate of every layer."""
    archs = np.atleast_2d(np.asarray(archs, dtype=np.int64))
    return lut.unit_table("latency")[np.arange(archs.shape[1])[None, :], archs]


def measure_networks(definition: SpaceDefinition, archs: np.ndarray, device: torch.device | str,
                     batch: int = 1, runs: int = 10) -> np.ndarray:
    """(N,) measured latency (ms) of each whole child network."""
    shape = (batch, definition.in_channels, definition.input_size, definition.input_size)
    return np.array([measure_latency(build_child(definition, a).to(device), shape, device, runs=runs).median_ms for a in archs])


def mape(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean absolute percentage error of ``pred`` against ``target`` (> 0)."""
    pred, target = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    return float(np.mean(np.abs(pred - target) / target) * 100.0)


@dataclass(frozen=True)
class LinearLatencyModel:
    """``scale * lut_sum + offset`` with the least mean absolute percentage error on measured networks."""

    scale: float
    offset: float

    @classmethod
    def fit(cls, lut_sum: np.ndarray, measured: np.ndarray) -> "LinearLatencyModel":
        """Median regression weighted by 1/measured minimizes exactly the MAPE (a linear program, HiGHS).

        The plain sum (scale 1, offset 0) is one of the candidates, so the fit is never worse on its data.
        """
        from sklearn.linear_model import QuantileRegressor

        fit = QuantileRegressor(quantile=0.5, alpha=0.0, solver="highs")
        fit.fit(np.asarray(lut_sum, dtype=np.float64)[:, None], measured, sample_weight=1.0 / np.asarray(measured))
        return cls(float(fit.coef_[0]), float(fit.intercept_))

    def predict(self, lut_sum: np.ndarray) -> np.ndarray:
        return self.scale * np.asarray(lut_sum) + self.offset


class MLPLatencyModel:
    """Linear calibration plus an MLP on standardized per-layer LUT latencies (the residual).

    The output layer starts at zero, so training begins at the linear fit; it is
    trained on relative error (what MAPE measures) with weight decay, full batch.
    """

    def __init__(self, linear: LinearLatencyModel, hidden: int = 16, steps: int = 300, lr: float = 1e-2,
                 weight_decay: float = 1e-2, seed: int = 0) -> None:
        self.linear, self.hidden, self.steps, self.lr, self.weight_decay, self.seed = (
            linear, hidden, steps, lr, weight_decay, seed)
        self.net: nn.Sequential | None = None
        self.mean = self.std = np.zeros(0)
        self.scale = 1.0

    def _inputs(self, features: np.ndarray) -> torch.Tensor:
        return torch.as_tensor((features - self.mean) / self.std, dtype=torch.float32)

    def fit(self, features: np.ndarray, lut_sum: np.ndarray, measured: np.ndarray) -> "MLPLatencyModel":
        """``features``: (N, L) per-layer LUT latencies; ``lut_sum``: (N,) whole LUT sum (fixed layers included)."""
        self.mean = features.mean(axis=0)
        self.std = np.where(features.std(axis=0) > 0, features.std(axis=0), 1.0)
        x = self._inputs(features)
        base = torch.as_tensor(self.linear.predict(lut_sum), dtype=torch.float32)
        y = torch.as_tensor(measured, dtype=torch.float32)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.net = nn.Sequential(nn.Linear(x.shape[1], self.hidden), nn.ReLU(), nn.Linear(self.hidden, 1))
        nn.init.zeros_(self.net[2].weight)
        nn.init.zeros_(self.net[2].bias)
        optimizer = torch.optim.Adam(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        self.scale = float(y.mean())  # the MLP outputs residuals in units of the mean latency
        for _ in range(self.steps):
            optimizer.zero_grad()
            pred = base + self.scale * self.net(x).squeeze(1)
            loss = (((pred - y) / y) ** 2).mean()
            loss.backward()
            optimizer.step()
        return self

    def predict(self, features: np.ndarray, lut_sum: np.ndarray) -> np.ndarray:
        if self.net is None:
            raise RuntimeError("MLPLatencyModel.predict called before fit")
        with torch.no_grad():
            residual = self.scale * self.net(self._inputs(features)).squeeze(1).numpy()
        return self.linear.predict(lut_sum) + residual


@dataclass
class LatencyFitReport:
    """MAPE (%) of each predictor on the training and held-out networks."""

    train_size: int
    holdout_size: int
    linear: LinearLatencyModel
    errors: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"train_size": self.train_size, "holdout_size": self.holdout_size,
                "linear": {"scale": self.linear.scale, "offset_ms": self.linear.offset},
                "mape_percent": self.errors}


def fit_latency_models(lut: LookupTable, archs: np.ndarray, measured: np.ndarray, holdout: int,
                       seed: int = 0) -> LatencyFitReport:
    """Fit on the first ``len(archs) - holdout`` networks, report MAPE on both parts."""
    archs, measured = np.atleast_2d(archs), np.asarray(measured, dtype=np.float64)
    n_train = len(archs) - holdout
    if n_train < 2 or holdout < 1:
        raise ValueError(f"need at least 2 training and 1 held-out networks (got {n_train} and {holdout})")
    features = layer_latencies(lut, archs)
    lut_sum = features.sum(axis=1) + lut.base[2]
    train, test = slice(0, n_train), slice(n_train, None)
    linear = LinearLatencyModel.fit(lut_sum[train], measured[train])
    mlp = MLPLatencyModel(linear, seed=seed).fit(features[train], lut_sum[train], measured[train])
    predictions = {"lut_sum": lut_sum, "linear": linear.predict(lut_sum), "mlp": mlp.predict(features, lut_sum)}
    errors = {name: {"train": mape(p[train], measured[train]), "holdout": mape(p[test], measured[test])}
              for name, p in predictions.items()}
    return LatencyFitReport(n_train, holdout, linear, errors)
