"""The ``osnas`` command line (typer). Each command group lives in its own module."""

from osnas.cli.app import app, main

# one import per command module (importing registers its commands)
from osnas.cli import audit  # noqa: F401,E402
from osnas.cli import authoring  # noqa: F401,E402
from osnas.cli import bench  # noqa: F401,E402
from osnas.cli import compare  # noqa: F401,E402
from osnas.cli import data  # noqa: F401,E402
from osnas.cli import export  # noqa: F401,E402
from osnas.cli import generate  # noqa: F401,E402
from osnas.cli import info  # noqa: F401,E402
from osnas.cli import lookup_table  # noqa: F401,E402
from osnas.cli import profile  # noqa: F401,E402
from osnas.cli import report  # noqa: F401,E402
from osnas.cli import run  # noqa: F401,E402

__all__ = ["app", "main"]
