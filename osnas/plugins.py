"""Importing components: the built-in packages and user plugins.

Built-in components register themselves when their package is imported
(:func:`load_builtins`). User components live in ``generated/<kind>/<name>/``
packages or in the ``osnas.plugins`` entry-point group and are imported by
:func:`load_plugins`. A plugin's import may raise anything, ``SystemExit`` and
``KeyboardInterrupt`` included: it is reported with the plugin's own file and line
(:class:`PluginFailure`) and the command goes on without it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from osnas.registry import KINDS


def load_builtins() -> None:
    """Import the built-in component packages so their decorators run."""
    import osnas.criteria  # noqa: F401
    import osnas.dataflows  # noqa: F401
    import osnas.search_spaces  # noqa: F401
    import osnas.search_strategies  # noqa: F401
    import osnas.training_agents  # noqa: F401
    import osnas.training_strategies  # noqa: F401


@dataclass
class PluginFailure:
    """A user module that could not be imported: where (``file:line``), what, and the full traceback."""

    source: str
    error: str
    details: str


def _failure(exc: BaseException, where: str) -> PluginFailure:
    message = str(exc)
    return PluginFailure(where, f"{type(exc).__name__}: {message}" if message else type(exc).__name__,
                         "".join(traceback.format_exception(exc)))


def failing_location(exc: BaseException, inside: Path | None = None) -> str | None:
    """``file:line`` of the user's code that raised: a syntax error's own position, else the innermost frame
    under ``inside`` (the plugin package), else the innermost frame outside osnas's loader and importlib."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}" if exc.lineno else str(exc.filename)
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith("<") and "importlib" not in f.filename and f.filename != __file__]
    if inside is not None:
        frames = [f for f in frames if Path(f.filename).resolve().is_relative_to(inside)] or frames
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else None


def plugin_packages(root: Path) -> list[Path]:
    """The ``generated/<kind>/<name>/`` packages under ``root``."""
    found: list[Path] = []
    for kind in KINDS:
        kind_dir = root / kind
        if not kind_dir.is_dir():
            continue
        for pkg in sorted(kind_dir.iterdir()):
            if pkg.is_dir() and (pkg / "__init__.py").is_file() and pkg.name.isidentifier():
                found.append(pkg)
    return found


def _import_package(path: Path, module_name: str) -> None:
    init = path / "__init__.py"
    spec = importlib.util.spec_from_file_location(module_name, init, submodule_search_locations=[str(path)])
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {init}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise


_LOADED: set[str] = set()
_FAILED: dict[str, PluginFailure] = {}  # a failed import is not retried: it left half its registrations behind


def _imported_elsewhere(init: Path) -> bool:
    """True when this ``__init__.py`` is already imported under another name (pytest imports a
    generated package by its bare name when it collects the package's ``test_<name>.py``)."""
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if file and Path(file).name == "__init__.py" and Path(file).resolve() == init:
            return True
    return False


def load_plugin_package(pkg: Path) -> PluginFailure | None:
    """Import one ``generated/<kind>/<name>/`` package once, as ``osnas_generated.<kind>.<name>_<hash>``.

    Its modules import each other relatively (``from .blocks import ...``).
    """
    pkg = Path(pkg).resolve()
    key = str(pkg)
    if key in _FAILED:
        return _FAILED[key]
    if key in _LOADED or _imported_elsewhere(pkg / "__init__.py"):
        _LOADED.add(key)
        return None
    unique = f"osnas_generated.{pkg.parent.name}.{pkg.name}_{hashlib.sha1(key.encode()).hexdigest()[:8]}"
    try:
        _import_package(pkg, unique)
    except BaseException as exc:  # noqa: B036  a user module may raise anything, even SystemExit
        _FAILED[key] = _failure(exc, failing_location(exc, pkg) or str(pkg / "__init__.py"))
        return _FAILED[key]
    _LOADED.add(key)
    return None


def load_plugins(dirs: list[Path] | None = None, entry_point_group: str = "osnas.plugins") -> list[PluginFailure]:
    """Import user components; return the failures instead of raising."""
    failures: list[PluginFailure] = []
    for root in dirs or []:
        for pkg in plugin_packages(Path(root).resolve()):
            failure = load_plugin_package(pkg)
            if failure is not None:
                failures.append(failure)
    for ep in entry_points(group=entry_point_group):
        if f"ep:{ep.value}" in _LOADED:
            continue
        try:
            ep.load()
            _LOADED.add(f"ep:{ep.value}")
        except BaseException as exc:  # noqa: B036  as above
            where = failing_location(exc)
            failures.append(_failure(exc, f"entry point {ep.name} = {ep.value}" + (f" ({where})" if where else "")))
    return failures
