"""The ``osnas`` command line (typer). Each command group lives in its own module."""

from osnas.cli.app import app, main
from osnas.cli import bench, info, run  # noqa: F401  (register commands)

__all__ = ["app", "main"]
