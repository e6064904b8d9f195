"""``osnas profile``: MACs, parameters and measured latency of one architecture of a search space."""

from __future__ import annotations

import json
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from osnas.api import resolve_network
from osnas.cli.app import app, out
from osnas.config import apply_overrides
from osnas.components import make_space
from osnas.errors import OsnasError
from osnas.input_check import check_defined_input
from osnas.profiling import profile_architecture
from osnas.runtime import resolve_device
from osnas.search_spaces.base import SearchSpace, SpaceDefinition


def space_options(items: list[str]) -> dict[str, Any]:
    """``--set-space KEY=VALUE`` items as an options mapping (values parsed as YAML, like ``--set``)."""
    return apply_overrides({"search_space": {}}, [f"search_space.{item}" for item in items])["search_space"]


def load_space(name: str, options: list[str], input_size: int, in_channels: int, num_outputs: int
               ) -> tuple[SearchSpace, SpaceDefinition]:
    """The registered space ``name`` with ``KEY=VALUE`` options (validated like a config) and its definition."""
    space = make_space(name, space_options(options), source="--set-space")
    return space, space.define(input_size, in_channels, num_outputs)


@app.command("profile")
def profile(
    arch: str = typer.Option(
        ..., "--arch", help="A preset of the space, an architecture.json, or a run directory (its input size, "
                            "channels, outputs and space options are used unless given)."
    ),
    search_space: Optional[str] = typer.Option(
        None, "--search-space", "-s", help="A registered search space (osnas list search_space); "
                                           "default: the architecture file's."
    ),
    input_size: Optional[int] = typer.Option(None, "--input-size", min=1,
                                             help="Square input resolution in pixels (default: the run's, else 224)."),
    classes: Optional[int] = typer.Option(None, "--classes", min=1,
                                          help="Number of outputs (default: the run's, else 1000)."),
    channels: Optional[int] = typer.Option(None, "--channels", min=1, help="Input channels (default: the run's, else 3)."),
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
    definition, vector = resolve_network(arch, search_space, input_size, channels, classes,
                                         space_options(set_space or []))
    check_defined_input(definition, 1, "cpu", "--input-size")  # MACs are counted on the CPU
    result = profile_architecture(definition, vector, device, runs)
    if as_json:
        typer.echo(json.dumps(result))
        return
    size = definition.input_size
    table = Table(title=escape(f"{definition.name} / {arch} at {size}x{size}"), title_justify="left",
                  show_header=False, box=None, pad_edge=False)
    table.add_column("metric", style="bold cyan")
    table.add_column("value", justify="right")
    table.add_row("MACs", f"{result['macs'] / 1e6:.2f} M")
    table.add_row("params", f"{result['params'] / 1e6:.3f} M")
    table.add_row(f"latency ({resolve_device(device)}, batch 1)", f"{result['latency_ms']:.2f} ms")
    out.print(table)
