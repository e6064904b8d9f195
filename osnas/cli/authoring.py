"""``osnas new`` and ``osnas check``: start a component from a template, check it against its contract."""

from __future__ import annotations

import inspect

from pathlib import Path
from typing import Optional

import typer
import yaml
from rich.markup import escape

from osnas.cli.app import app, out
from osnas.errors import OsnasError
from osnas.interface.checks import ComponentImportError, check_component, load_subject
from osnas.interface.contract import RULE_TIME_LIMIT
from osnas.interface.cli import report, shown
from osnas.interface.render import generate
from osnas.registry import KINDS


@app.command("new")
def new(
    kind: str = typer.Argument(..., help=f"Component kind: {', '.join(KINDS)}."),
    name: str = typer.Argument(..., help="Registered name of the component (a Python identifier)."),
    cls: Optional[str] = typer.Option(None, "--class", help="Name of the component class (default: NAME in CamelCase)."),
    output_dir: Path = typer.Option(Path("generated"), "--output-dir", help="Root of the generated components."),
    force: bool = typer.Option(False, "--force", help="Overwrite files that exist already."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the files that would be written; write nothing."),
) -> None:
    """Write a runnable stub of a new component, its config and its contract test to OUTPUT_DIR/KIND/NAME/."""
    plan = generate(kind, name, cls, output_dir, force=force, dry_run=dry_run)
    typer.echo(report(plan, dry_run))


def parse_options(items: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` pairs, values read as YAML scalars (``0.5``, ``true``, ``[1, 2]``)."""
    options: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise OsnasError(f"--option {item!r}: expected KEY=VALUE, e.g. width_mult=0.5")
        options[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return options


@app.command("check")
def check(
    kind: str = typer.Argument(..., help=f"Component kind: {', '.join(KINDS)}."),
    name: str = typer.Argument(..., help="Registered name of the component."),
    plugins: Optional[Path] = typer.Option(None, "--plugins", help="Directory holding KIND/NAME/ (default: ./generated)."),
    option: Optional[list[str]] = typer.Option(None, "--option", help="Component option KEY=VALUE (e.g. width_mult=0.5). Repeatable."),
    time_limit: float = typer.Option(RULE_TIME_LIMIT, "--time-limit", min=0.1,
                                     help="Seconds one rule may take before it is stopped and reported broken."),
) -> None:
    """Check a component against the rules of its kind's contract; exit 1 if any rule is broken."""
    overrides = parse_options(option or [])
    try:
        subject = load_subject(kind, name, plugins or Path.cwd() / "generated", overrides)
    except ComponentImportError as exc:
        out.print(f"[red]✗[/] the package imports: {escape(str(exc))}", markup=True)
        raise SystemExit(1)
    source = shown(Path(inspect.getsourcefile(subject.cls) or subject.cls.__module__))
    out.print(f"[bold]{escape(kind)} {escape(name)}[/]: class {escape(subject.cls.__qualname__)} in {escape(source)}",
              markup=True, highlight=False)
    broken = 0
    for rule, outcome in check_component(subject, time_limit):
        mark = "[yellow]-[/]" if outcome.skipped else "[green]✓[/]" if outcome.ok else "[red]✗[/]"
        out.print(f"{mark} {escape(rule.text)}", markup=True)
        if outcome.message:
            out.print(f"    [dim]{escape(outcome.message)}[/]" if outcome.ok else f"    {escape(outcome.message)}",
                      markup=True, highlight=False)
        broken += not outcome.ok
    out.print(f"{broken} rule(s) broken" if broken else "every rule holds")
    if broken:
        raise SystemExit(1)
