"""``osnas profile``: MACs, parameters and measured latency of one architecture of a search space."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import numpy as np
import typer
from rich.table import Table

from osnas.agent import resolve_device
from osnas.cli.app import app, out
from osnas.config import apply_overrides, validate_config
from osnas.errors import ArchitectureError, OsnasError
from osnas.profiling import count_macs, count_params, measure_latency
from osnas.registry import REGISTRIES
from osnas.run_dir import read_json
from osnas.input_check import check_input_size
from osnas.search_spaces.base import SearchSpace, SpaceDefinition
from osnas.search_spaces.child import build_child


def load_space(name: str, options: list[str], input_size: int, in_channels: int, num_outputs: int
               ) -> tuple[SearchSpace, SpaceDefinition]:
    """The registered space ``name`` with ``KEY=VALUE`` options (validated like a config) and its definition."""
    cls = REGISTRIES["search_space"].get(name)  # an unknown name is reported with the registered ones
    data = apply_overrides({"search_space": {"name": name}}, [f"search_space.{item}" for item in options])
    space: SearchSpace = cls(validate_config(data, source="--set-space").search_space.options)
    return space, space.define(input_size, in_channels, num_outputs)


def read_architecture(path: Path, definition: SpaceDefinition) -> np.ndarray:
    """The indices of an ``architecture.json`` (as ``osnas search`` writes it), checked against ``definition``."""
    data = read_json(path)
    if not isinstance(data, dict) or "indices" not in data:
        raise OsnasError(f"{path}: not an architecture file (expected keys space, indices)")
    if data.get("space") != definition.name:
        raise OsnasError(f"{path}: architecture is for space {data.get('space')!r}, not {definition.name!r}")
    try:
        return definition.validate_arch(data["indices"])
    except ArchitectureError as exc:
        raise ArchitectureError(f"{path}: {exc}") from None


def resolve_architecture(space: SearchSpace, definition: SpaceDefinition, spec: str) -> np.ndarray:
    """``spec`` is a preset name of the space or the path of an architecture.json."""
    path = Path(spec)
    if path.suffix == ".json" or path.is_file():
        return read_architecture(path, definition)
    return space.preset(spec, definition)


def profile_architecture(definition: SpaceDefinition, arch: Any, device: str = "cpu", runs: int = 10
                         ) -> dict[str, Any]:
    """MACs (thop, conv + linear), exact parameter count and median batch-1 latency of the child network.

    ``runs=0`` skips the timing (``latency_ms`` is then None), for callers that only need the counts.
    """
    child = build_child(definition, arch)
    shape = (1, definition.in_channels, definition.input_size, definition.input_size)
    latency = None
    if runs > 0:
        torch_device = resolve_device(device)
        latency = measure_latency(child.to(torch_device), shape, torch_device, runs=runs)
    return {"macs": count_macs(child, shape), "params": count_params(child), "latency_ms": latency}


@app.command("profile")
def profile(
    search_space: str = typer.Option(
        ..., "--search-space", "-s", help="A registered search space (osnas list search_space)."
    ),
    arch: str = typer.Option(
        ..., "--arch", help="A preset of the space, or an architecture.json written by osnas search."
    ),
    input_size: int = typer.Option(224, "--input-size", min=1, help="Square input resolution in pixels."),
    classes: int = typer.Option(1000, "--classes", min=1, help="Number of outputs of the classifier."),
    channels: int = typer.Option(3, "--channels", min=1, help="Input channels."),
    device: str = typer.Option("cpu", "--device", help="Where latency is measured: cpu, cuda, cuda:N or auto."),
    set_space: Optional[list[str]] = typer.Option(
        None, "--set-space", help="A search-space option KEY=VALUE (e.g. width_mult=0.5). Repeatable."
    ),
    runs: int = typer.Option(10, "--runs", min=1, help="Timed forward passes (batch 1); the median is reported."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object: macs, params, latency_ms."),
) -> None:
    """Print the MACs, parameters and measured latency (batch 1) of a preset or a searched architecture."""
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise OsnasError(f"--device {device!r}: use cpu, cuda, cuda:N or auto")
    space, definition = load_space(search_space, set_space or [], input_size, channels, classes)
    check_input_size(space, input_size, 1, "cpu", "--input-size")  # MACs are counted on the CPU
    vector = resolve_architecture(space, definition, arch)
    result = profile_architecture(definition, vector, device, runs)
    if as_json:
        typer.echo(json.dumps(result))
        return
    table = Table(title=f"{definition.name} / {arch} at {input_size}x{input_size}", title_justify="left",
                  show_header=False, box=None, pad_edge=False)
    table.add_column("metric", style="bold cyan")
    table.add_column("value", justify="right")
    table.add_row("MACs", f"{result['macs'] / 1e6:.2f} M")
    table.add_row("params", f"{result['params'] / 1e6:.3f} M")
    table.add_row(f"latency ({resolve_device(device)}, batch 1)", f"{result['latency_ms']:.2f} ms")
    out.print(table)
