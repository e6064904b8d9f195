"""``build_interface``: the OSNASLib-style command for ``osnas new`` (also ``python build_interface.py``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from osnas.errors import OsnasError
from osnas.registry import KINDS

if TYPE_CHECKING:
    from osnas.interface.render import Plan


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="build_interface",
        description="Start a new osnas component: write a runnable stub, its config and its contract test to "
                    "OUTPUT_DIR/KIND/NAME/. Same as `osnas new KIND NAME --class CLASS`.",
    )
    p.add_argument("-it", "--interface-type", required=True, choices=KINDS, metavar="KIND",
                   help=f"component kind: {', '.join(KINDS)}")
    p.add_argument("--customize-name", required=True, metavar="NAME",
                   help="registered name of the component (a Python identifier, not a built-in's name)")
    p.add_argument("--customize-class", metavar="CLASS",
                   help="name of the component class (default: NAME in CamelCase)")
    p.add_argument("--output-dir", type=Path, default=Path("generated"), metavar="DIR",
                   help="root of the generated components, imported by osnas at start-up (default: ./generated)")
    p.add_argument("--force", action="store_true", help="overwrite files that exist already")
    p.add_argument("--dry-run", action="store_true", help="list the files that would be written; write nothing")
    return p


def shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it."""
    relative = os.path.relpath(path)
    return path.as_posix() if relative.startswith("..") else Path(relative).as_posix()


def report(plan: Plan, dry_run: bool) -> str:
    """What was (or would be) written and what to run next."""
    verb = "would write" if dry_run else "wrote"
    lines = [f"{verb} the {plan.kind} {plan.name!r} (class {plan.cls}) in {shown(plan.directory)}/:"]
    lines += [f"  {path.name}{'  (overwrites)' if path in plan.existing else ''}" for path in plan.files]
    if not dry_run:
        root = plan.directory.parent.parent
        plugins = "" if root == Path.cwd().resolve() / "generated" else f" --plugins {shown(root)}"
        where = shown(plan.directory)
        lines += [
            "next:",
            f"  python -m osnas{plugins} list {plan.kind}",
            f"  python -m osnas{plugins} check {plan.kind} {plan.name}",
            f"  pytest {where}/test_{plan.name}.py",
            f"  python -m osnas{plugins} search --config {where}/{plan.name}.yaml",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Parse, generate, print; a bad request exits with code 2 and one message."""
    args = parser().parse_args(argv)
    from osnas.interface.render import generate  # imports torch: only once the arguments are known good

    try:
        plan = generate(args.interface_type, args.customize_name, args.customize_class, args.output_dir,
                        force=args.force, dry_run=args.dry_run)
    except OsnasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(report(plan, args.dry_run))
