"""One registry per component kind and the ``@register`` decorator.

A leaf module: it imports none of the components, which import it to register
themselves. Importing the built-ins and user plugins is :mod:`osnas.plugins`'s job.
"""

from __future__ import annotations

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
        setattr(cls, "name", name)  # each base class declares it: ``name: ClassVar[str]``
        return cls

    return decorate


def get(kind: str, name: str) -> type:
    return REGISTRIES[kind].get(name)
