"""``osnas list`` and ``osnas config``: what is registered, and what a config resolves to."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from osnas.cli.app import app, fail, out
from osnas.config import load_config
from osnas.registry import KINDS, REGISTRIES


@app.command("list")
def list_components(
    kind: Optional[str] = typer.Argument(None, help=f"One of: {', '.join(KINDS)}. All kinds when omitted."),
) -> None:
    """Print every registered component name with its one-line description."""
    if kind is not None and kind not in REGISTRIES:
        fail(f"unknown component kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    for k in [kind] if kind else KINDS:
        table = Table(title=k, title_justify="left", show_header=False, box=None, pad_edge=False)
        table.add_column("name", style="bold cyan", no_wrap=True)
        table.add_column("origin", style="dim", no_wrap=True)
        table.add_column("description")
        registry = REGISTRIES[k]
        for name in registry.names():
            table.add_row(name, registry.origin(name), registry.describe(name))
        out.print(table)
        out.print()


@app.command("config")
def show_config(
    config: Path = typer.Argument(..., help="YAML config file."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Override a key: KEY.PATH=VALUE. Repeatable."),
) -> None:
    """Print the resolved config: file + overrides + every default, validated."""
    cfg = load_config(config, set_ or [])
    typer.echo(cfg.to_yaml(), nl=False)
