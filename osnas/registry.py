"""One registry per component kind, the ``@register`` decorator and plugin discovery.

Built-in components register themselves when their package is imported
(:func:`load_builtins`). User components live in ``generated/<kind>/<name>/``
packages or in the ``osnas.plugins`` entry-point group and are imported by
:func:`load_plugins`; a broken plugin is reported, never fatal for the others.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable, TypeVar

from osnas.errors import ConfigError

KINDS: tuple[str, ...] = (
    "training_agent",
    "criterion",
    "dataflow",
    "search_space",
    "training_strategy",
    "search_strategy",
)

T = TypeVar("T")


class Registry:
    """Name -> class map for one component kind."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, type] = {}
        self._origins: dict[str, str] = {}

    def add(self, name: str, cls: type, origin: str = "builtin") -> None:
        if not name.isidentifier():
            raise ValueError(f"{self.kind} name {name!r} is not a valid identifier")
        if name in self._items and self._items[name] is not cls:
            known = self._items[name]
            if f"{known.__module__}.{known.__qualname__}" != f"{cls.__module__}.{cls.__qualname__}":
                raise ValueError(f"{self.kind} {name!r} is registered twice ({known.__module__} and {cls.__module__})")
        self._items[name] = cls
        self._origins[name] = origin

    def get(self, name: str) -> type:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; registered: {', '.join(sorted(self._items)) or '(none)'}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def origin(self, name: str) -> str:
        return self._origins[name]

    def describe(self, name: str) -> str:
        doc = (self._items[name].__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    def __contains__(self, name: object) -> bool:
        return name in self._items


REGISTRIES: dict[str, Registry] = {kind: Registry(kind) for kind in KINDS}


def register(kind: str, name: str) -> Callable[[type[T]], type[T]]:
    """Class decorator: ``@register("search_space", "proxylessnas")``."""
    if kind not in REGISTRIES:
        raise ValueError(f"unknown component kind {kind!r}; kinds: {', '.join(KINDS)}")

    def decorate(cls: type[T]) -> type[T]:
        module = getattr(cls, "__module__", "")
        origin = "builtin" if module.startswith("osnas.") else "plugin"
        REGISTRIES[kind].add(name, cls, origin)
        cls.registry_name = name  # type: ignore[attr-defined]
        return cls

    return decorate


def get(kind: str, name: str) -> type:
    return REGISTRIES[kind].get(name)


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
    """A user module that could not be imported, with the file to look at."""

    source: str
    error: str
    details: str


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


def _failing_file(exc: BaseException, default: Path) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    for frame in reversed(frames):
        if not frame.filename.startswith("<") and "importlib" not in frame.filename:
            return f"{frame.filename}:{frame.lineno}"
    filename = getattr(exc, "filename", None)
    if filename:
        lineno = getattr(exc, "lineno", None)
        return f"{filename}:{lineno}" if lineno else str(filename)
    return str(default)


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
    except Exception as exc:  # a user module may raise anything
        _FAILED[key] = PluginFailure(_failing_file(exc, pkg / "__init__.py"), f"{type(exc).__name__}: {exc}",
                                     traceback.format_exc())
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
        except Exception as exc:
            failures.append(PluginFailure(f"entry point {ep.name} = {ep.value}", f"{type(exc).__name__}: {exc}",
                                          traceback.format_exc()))
    return failures
