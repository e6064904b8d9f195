"""Checks on a directory osnas is about to write into, made before the first file is written."""

from __future__ import annotations

import os
from pathlib import Path

from osnas.errors import OsnasError


def check_output_dir(directory: Path) -> None:
    """``directory`` is a folder or can be created: no file on its path, its nearest existing folder writable."""
    directory = Path(directory)
    for parent in (directory, *directory.parents):
        if parent.exists():
            if not parent.is_dir():
                raise OsnasError(f"cannot write into {directory}: {parent} is a file, not a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise OsnasError(f"cannot write into {directory}: {parent} is read-only")
            return
