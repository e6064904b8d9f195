"""The summary table printed at the end of a run and by ``osnas report``."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from osnas.profiling import describe_latency


def summary_table(results: dict[str, Any], title: str = "osnas result") -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("figure", style="bold")
    table.add_column("value")
    for key, value in results.get("test", {}).items():
        table.add_row(f"test {key}", f"{value:.2f}" if isinstance(value, float) else str(value))
    table.add_row("MACs", f"{results['macs'] / 1e6:.2f} M")
    table.add_row("params", f"{results['params'] / 1e6:.3f} M")
    table.add_row("latency", f"{describe_latency(results)} ({results.get('device', '?')}, batch 1)")
    c = results.get("constraint") or {}
    if c:
        low = f"{c['min']} <= " if c.get("min") is not None else ""
        table.add_row("constraint", f"{low}{c['metric']} <= {c['max']}")
    for phase, seconds in results.get("seconds", {}).items():
        table.add_row(f"time {phase}", f"{seconds:.1f} s")
    table.add_row("architecture", " ".join(results.get("candidates", [])))
    if results.get("run_dir"):
        table.add_row("run directory", str(results["run_dir"]))
    return table
