"""``osnas lookup-table build | show | fit-latency``: the per-layer hardware table of a config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import typer
from rich.table import Table

from osnas.artifacts import lookup_table_dir
from osnas.components import Components, build_components
from osnas.cli.app import app, out
from osnas.cli.run import SetOption
from osnas.config import Config, load_config
from osnas.console import note, warn
from osnas.runtime import resolve_device
from osnas.search_spaces.lookup_table import METRICS, UNITS, LookupTable

lookup_table_app = typer.Typer(help="Build, show and calibrate the per-layer hardware lookup table of a config.",
                               no_args_is_help=True)
app.add_typer(lookup_table_app, name="lookup-table")

ConfigOption = typer.Option(..., "--config", "-c", help="YAML config file (data shape, search space, lookup_table).")


def short(value: object) -> str:
    """A metadata value for one line (hashes cut to 12 characters)."""
    text = repr(value)
    return text if len(text) <= 14 else text[:12] + "…"


def other_tables(cache_dir: Path, lut: LookupTable) -> list[str]:
    """Cached tables of the same space whose metadata differ from ``lut``'s, with the differing keys."""
    notes = []
    for path in sorted(cache_dir.glob(f"{lut.meta['space']}-*.json")):
        if path == LookupTable.cache_path(cache_dir, lut.meta):
            continue
        try:
            meta = json.loads(path.read_text())["meta"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            continue
        diff = [f"{k}: {short(meta.get(k))} -> {short(v)}" for k, v in lut.meta.items() if meta.get(k) != v]
        notes.append(f"{path.name} ({', '.join(diff)})")
    return notes


def load_table(config: Path, set_: Optional[list[str]], latency: bool = False
               ) -> tuple[Config, torch.device, Components]:
    """Build or reuse the config's table and say which (a rebuild of a bad or stale file is a warning)."""
    cfg = load_config(config, set_ or [])
    if latency and not cfg.lookup_table.latency:
        cfg.lookup_table.latency = True
        note("latency fitting needs per-layer latencies; using lookup_table.latency=true")
    device = resolve_device(cfg.device)
    cache_dir = lookup_table_dir(cfg)
    comp = build_components(cfg, device, cache_dir)
    lut_note = comp.lut_note
    if lut_note.startswith("rebuilt"):
        warn(f"lookup table {lut_note}")
    else:
        out.print(f"lookup table {lut_note}", highlight=False, soft_wrap=True)
    if lut_note == "built":
        out.print(f"saved to {LookupTable.cache_path(cache_dir, comp.lut.meta)}", highlight=False, soft_wrap=True)
        stale = other_tables(cache_dir, comp.lut)
        if stale:
            out.print("not reused, metadata differ: " + "; ".join(stale), highlight=False, soft_wrap=True)
    return cfg, device, comp


@lookup_table_app.command("build")
def build(config: Path = ConfigOption, set_: Optional[list[str]] = SetOption) -> None:
    """Build the config's lookup table, or reuse the cached one when its metadata match."""
    load_table(config, set_)


@lookup_table_app.command("show")
def show(config: Path = ConfigOption, set_: Optional[list[str]] = SetOption) -> None:
    """Print every layer x candidate cost (MACs M, params M, latency ms), the base cost and the metadata."""
    _, _, comp = load_table(config, set_)
    lut, definition = comp.lut, comp.definition
    timed = bool(lut.meta.get("latency"))
    table = Table(title=f"lookup table: {definition.name} ({definition.input_size}x{definition.input_size})",
                  title_justify="left")
    for name in ("layer", "candidate", "MACs (M)", "params (M)", "latency (ms)"):
        table.add_column(name, justify="left" if name == "candidate" else "right")
    macs, params, latency = (lut.unit_table(m) for m in METRICS)
    for layer, names in enumerate(definition.entry_names):
        for k, name in enumerate(names):
            table.add_row(str(layer) if k == 0 else "", name, f"{macs[layer, k]:.3f}", f"{params[layer, k]:.4f}",
                          f"{latency[layer, k]:.4f}" if timed else "-", end_section=k == len(names) - 1)
    out.print(table)
    base = Table(title="base cost (fixed layers) and range", title_justify="left")
    for name in ("metric", "base", "cheapest", "dearest"):
        base.add_column(name, justify="left" if name == "metric" else "right")
    for i, metric in enumerate(METRICS if timed else METRICS[:2]):
        lo, hi = lut.bounds(metric, definition)
        unit = "ms" if metric == "latency" else "M"
        base.add_row(f"{metric} ({unit})", f"{lut.base[i] * UNITS[metric]:.4f}", f"{lo:.4f}", f"{hi:.4f}")
    out.print(base)
    meta = Table(title="metadata", title_justify="left", show_header=False)
    meta.add_column("key", style="bold")
    meta.add_column("value")
    for key, value in lut.meta.items():
        meta.add_row(key, str(value))
    out.print(meta)


@lookup_table_app.command("fit-latency")
def fit_latency(
    config: Path = ConfigOption,
    set_: Optional[list[str]] = SetOption,
    samples: int = typer.Option(64, "--samples", min=2, help="Sampled networks to fit on (each timed whole)."),
    holdout: int = typer.Option(16, "--holdout", min=1, help="Further sampled networks to report the error on."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the report to this JSON file."),
) -> None:
    """Time whole sampled networks; compare plain LUT sum, linear calibration and an MLP (MAPE %)."""
    from osnas.search_spaces.latency_model import fit_latency_models, measure_networks

    cfg, device, comp = load_table(config, set_, latency=True)
    rng = np.random.default_rng([cfg.seed, 7])
    archs = comp.definition.sample(rng, samples + holdout)
    lt = cfg.lookup_table
    out.print(f"timing {len(archs)} networks on {device} (batch {lt.latency_batch}, {lt.latency_runs} runs each)")
    measured = measure_networks(comp.definition, archs, device, lt.latency_batch, lt.latency_runs)
    report = fit_latency_models(comp.lut, archs, measured, holdout, seed=cfg.seed)
    table = Table(title=f"whole-network latency prediction ({comp.definition.name}, MAPE %)", title_justify="left")
    for name in ("predictor", f"train ({report.train_size})", f"held out ({report.holdout_size})"):
        table.add_column(name, justify="left" if name == "predictor" else "right")
    labels = {"lut_sum": "LUT sum", "linear": f"linear ({report.linear.scale:.3f} x sum + {report.linear.offset:.3f} ms)",
              "mlp": "MLP on per-layer latencies"}
    for key, label in labels.items():
        table.add_row(label, f"{report.errors[key]['train']:.2f}", f"{report.errors[key]['holdout']:.2f}")
    out.print(table)
    out.print(f"measured latency: {measured.mean():.3f} ms mean ({measured.min():.3f}-{measured.max():.3f})")
    if json_path is not None:
        from osnas.run_dir import atomic_write_json

        atomic_write_json(json_path, {**report.to_dict(), "space": comp.definition.name, "device": str(device),
                                      "measured_ms": measured.tolist()})
        out.print(f"report written to {json_path}")
