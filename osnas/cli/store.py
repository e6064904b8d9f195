"""``osnas store``: list and prune the supernet store."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from osnas.cli.app import app, out
from osnas.errors import OsnasError
from osnas.store import SupernetStore

store_app = typer.Typer(help="List and prune the trained supernets kept for reuse (store.dir of a config).",
                        no_args_is_help=True)
app.add_typer(store_app, name="store")

DirOption = typer.Option(Path("runs/supernets"), "--dir", help="The store directory (a config's store.dir; "
                         "default: its output.dir/supernets).")


@store_app.command("list")
def list_entries(directory: Path = DirOption) -> None:
    """One row per stored supernet: key, space, seed, who trained it, when, size."""
    entries = SupernetStore(directory).entries()
    table = Table(title=f"supernet store: {directory} ({len(entries)} entries)", title_justify="left")
    table.add_column("key", no_wrap=True, min_width=16)
    for column in ("space", "strategy", "seed", "epochs", "trained by", "created", "MB"):
        table.add_column(column, overflow="fold")
    for e in entries:
        material = e.info.get("material", {})
        table.add_row(e.key, str(material.get("search_space", {}).get("name", "?")),
                      str(material.get("training_strategy", {}).get("name", "?")), str(material.get("seed", "?")),
                      str(material.get("supernet", {}).get("epochs", "?")), str(e.info.get("trained_by", "?")),
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(e.created)), f"{e.size / 2**20:.1f}")
    out.print(table)


@store_app.command("prune")
def prune(
    directory: Path = DirOption,
    older_than: Optional[float] = typer.Option(None, "--older-than", min=0.0, help="Remove entries older than "
                                               "DAYS."),
    all_: bool = typer.Option(False, "--all", help="Remove every entry."),
) -> None:
    """Remove stored supernets (runs that used them keep their own copy)."""
    if (older_than is None) == (not all_):
        raise OsnasError("osnas store prune needs exactly one of --older-than DAYS or --all")
    removed = SupernetStore(directory).prune(None if all_ else older_than)
    out.print(f"removed {len(removed)} supernet(s) from {directory}", highlight=False)
    for entry in removed:
        out.print(f"  {entry.key} (trained by {entry.info.get('trained_by', '?')})", highlight=False)
