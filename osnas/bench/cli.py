"""Command-line driver shared by ``python -m benchmarks`` and ``osnas bench``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import torch
from rich.text import Text

from osnas.bench import SECTIONS
from osnas.bench.suite import Figure, run_suite, to_markdown
from osnas.registry import REGISTRIES
from osnas.console import labelled
from osnas.console import out as console
from osnas.run_dir import atomic_write_text


def echo(figure: Figure) -> None:
    ratio = "" if figure.ratio is None else f"  ratio {figure.ratio:.2f}"
    target = f"  target {figure.target}" if figure.target else ""
    verdict = ("", "") if figure.passed is None else ("  met", "green") if figure.passed else ("  NOT met", "red")
    console.print(Text.assemble((figure.section, "bold"), f" {figure.name}: {figure.value}{ratio}{target}", verdict))


def run(device: str = "cpu", quick: bool = False, only: Optional[list[str]] = None,
        record: Optional[Path] = None, command: str | None = None, spaces: Optional[list[str]] = None) -> int:
    sections = set(only) if only else None
    if sections and not sections <= set(SECTIONS):
        labelled("error:", "red", f"unknown section(s) {sorted(sections - set(SECTIONS))}; valid: {', '.join(SECTIONS)}",
                 console)
        return 2
    known = REGISTRIES["search_space"].names()
    if spaces and not set(spaces) <= set(known):
        labelled("error:", "red", f"unknown search space(s) {sorted(set(spaces) - set(known))}; "
                 f"registered: {', '.join(known)}", console)
        return 2
    report = run_suite(torch.device(device), quick=quick, sections=sections, echo=echo, spaces=spaces)
    if record is not None:
        text = to_markdown(report, command or " ".join(sys.argv))
        existing = record.read_text() if record.exists() else "# Benchmarks\n\nFigures measured by the suite in `osnas/bench/`; newest first.\n\n"
        head, _, rest = existing.partition("\n## ")
        atomic_write_text(record, head.rstrip() + "\n\n" + text + ("\n## " + rest if rest else ""))
        console.print(f"recorded in {record}")
    return 0
