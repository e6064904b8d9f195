"""The ``osnas`` command line (typer). Each command group lives in its own module."""

from osnas.cli.app import app, main
from osnas.cli import info, run  # noqa: F401  (register commands)
from osnas.cli import generate  # noqa: F401

__all__ = ["app", "main"]
