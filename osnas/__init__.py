"""osnas: one-shot neural architecture search with pluggable components.

The Python API (``osnas.search``, ``osnas.load_run``, ``osnas.build_space``,
``osnas.profile``, ``osnas.list_components``) lives in :mod:`osnas.api` and is
imported on first use, so ``import osnas`` stays cheap (no torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

API = ("search", "resume", "train", "load_run", "Run", "build_space", "Space", "profile", "list_components")
__all__ = ["__version__", *API]

if TYPE_CHECKING:
    from osnas.api import Run, Space, build_space, list_components, load_run, profile, resume, search, train


def __getattr__(name: str) -> Any:
    if name in API:
        from osnas import api

        return getattr(api, name)
    raise AttributeError(f"module 'osnas' has no attribute {name!r}")
