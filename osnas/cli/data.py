"""``osnas data check``: build a config's dataflow (which validates the dataset layout) and show its counts."""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import typer
from rich.table import Table
from rich.text import Text

from osnas.runtime import resolve_device
from osnas.cli.app import app, out
from osnas.config import load_config
from osnas.dataflows.base import Dataflow
from osnas.registry import REGISTRIES

data_app = typer.Typer(help="Dataset utilities.", no_args_is_help=True)
app.add_typer(data_app, name="data")

# up to this many classes get one row each; more get min/median/max per class
MAX_CLASS_ROWS = 20


def counts_table(summary: dict[str, dict[str, int]]) -> Table:
    """Samples per class and split; a compact per-split summary when there are many classes."""
    classes = sorted({c for counts in summary.values() for c in counts})
    if len(classes) <= MAX_CLASS_ROWS:
        table = Table(title="samples per class", title_justify="left")
        table.add_column("class", style="bold")
        for split in summary:
            table.add_column(split, justify="right")
        for c in classes:
            table.add_row(c, *(str(counts.get(c, 0)) for counts in summary.values()))
        table.add_row("total", *(str(sum(counts.values())) for counts in summary.values()), style="bold")
        return table
    table = Table(title=f"samples per split ({len(classes)} classes)", title_justify="left")
    for column in ("split", "samples", "classes", "min / class", "median / class", "max / class"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for split, counts in summary.items():
        values = np.array(list(counts.values()) or [0])
        table.add_row(split, str(int(values.sum())), str(len(counts)), str(int(values.min())),
                      f"{float(np.median(values)):g}", str(int(values.max())))
    return table


def batches_table(flow: Dataflow, count: int) -> Table:
    """Decode the first ``count`` batches of every split: what a run will actually receive."""
    table = Table(title=f"first {count} batch(es) of each split", title_justify="left")
    for column in ("split", "samples", "batches", "inputs", "targets", "skipped"):
        table.add_column(column, no_wrap=True)
    splits = dict(zip(("search_train", "search_val"), flow.search_split())) | dict(
        zip(("train", "test"), flow.final_split()))
    for name, loader in splits.items():
        first = list(islice(iter(loader), count))
        x, y = first[0] if first else (None, None)
        if x is None:
            inputs = targets = "-"
        else:
            kind = "same-pair flags" if y.dtype == torch.bool else str(y.dtype).removeprefix("torch.")
            inputs, targets = str(tuple(x.shape)), f"{kind} {tuple(y.shape)}"
        table.add_row(name, str(loader.num_samples), str(len(loader)), inputs, targets,
                      str(getattr(loader, "skipped", 0)))
    return table


@data_app.command("check")
def check(
    config: Path = typer.Option(..., "--config", "-c", help="YAML config file whose dataflow section is checked."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Override a config key: KEY.PATH=VALUE. Repeatable."),
    batches: int = typer.Option(1, "--batches", min=0,
                                help="Decode this many batches of every split (0: only check the layout)."),
) -> None:
    """Validate a dataset layout (builds the dataflow) and print sample counts per split and class."""
    cfg = load_config(config, set_ or [])
    flow: Dataflow = REGISTRIES["dataflow"].get(cfg.dataflow.name)(cfg.dataflow.options, cfg.seed,
                                                                    resolve_device(cfg.device))
    out.print(Text.assemble("dataflow ", (cfg.dataflow.name, "bold"), f": {flow.num_classes} classes, "
              f"{flow.in_channels}x{flow.input_size}x{flow.input_size} inputs"))
    out.print(counts_table(flow.summary()))
    if batches:
        out.print(batches_table(flow, batches))
