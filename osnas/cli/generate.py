"""``osnas generate``: the architecture a trained SGNAS generator makes for a target cost."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
import typer
from rich.table import Table

from osnas.cli.app import app, out
from osnas import artifacts
from osnas.components import build_components
from osnas.console import note
from osnas.constraint import UNIT_NAMES
from osnas.errors import OsnasError
from osnas.run_dir import RunDir
from osnas.runtime import resolve_device
from osnas.search_strategies.architecture_generator import GENERATOR_FILE, decode, load_generator


@app.command()
def generate(
    run: Path = typer.Option(..., "--run", help="Run directory of an architecture_generator search "
                             "(holds config.yaml and generator.pt)."),
    target: float = typer.Option(..., "--target", help="Target cost in the units of the run's constraint metric "
                                 "(M MACs, M params or ms)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also write an architecture.json for "
                                          "`osnas train --arch`."),
) -> None:
    """Print the architecture the run's generator makes for a target cost: one forward pass, no training."""
    run_dir = RunDir.open(run)
    if not run_dir.exists(GENERATOR_FILE):
        raise OsnasError(f"{run} has no {GENERATOR_FILE}; it is written by search_strategy architecture_generator")
    if target <= 0:
        raise OsnasError(f"--target must be a positive cost, got {target:g}")
    config = artifacts.read_config(run_dir)
    comp = build_components(config, resolve_device(config.device), artifacts.lookup_table_dir(config))
    model, meta = load_generator(run_dir.file(GENERATOR_FILE))
    if meta["space_hash"] != comp.definition.fingerprint():
        raise OsnasError(f"{run_dir.file(GENERATOR_FILE)} was trained on another definition of space "
                         f"{meta['space']!r} than {run_dir.file(artifacts.CONFIG)} gives")
    with torch.no_grad():
        arch = decode(model(target), comp.definition)
    metric, unit = meta["metric"], UNIT_NAMES[meta["metric"]]
    costs = comp.lut.costs(arch)
    low, high = meta["target_range"]
    out.print(f"target {target:g} {unit} -> {metric} {costs[metric]:.4g} {unit} "
              f"({100 * (costs[metric] - target) / target:+.1f}%)")
    if not low <= target <= high:
        note(f"the generator was trained on targets {low:.4g}..{high:.4g} {unit}; this one is extrapolated", out)
    table = Table(show_header=True, box=None, pad_edge=False)
    for column in ("layer", "index", "candidate"):
        table.add_column(column)
    names = comp.definition.candidate_names(arch)
    for layer, (index, name) in enumerate(zip(arch, names)):
        table.add_row(str(layer), str(int(index)), name)
    out.print(table)
    out.print("costs: " + ", ".join(f"{m} {v:.4g} {UNIT_NAMES[m]}" for m, v in costs.items()))
    out.print(f"indices: {[int(i) for i in arch]}")
    if output is not None:
        record = artifacts.Architecture.of(comp.definition, arch, config.search_space.options.model_dump(),
                                           costs=costs, target=target, generator=str(run_dir.file(GENERATOR_FILE)))
        artifacts.write_architecture(output, record)
        out.print(f"wrote {output}")
