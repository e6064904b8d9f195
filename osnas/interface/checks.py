"""Contract checks: the rules ``osnas check KIND NAME`` reports and a generated ``test_<name>.py`` runs.

Each rule (``rules/<kind>.py``) states one promise of a kind's contract in words
and checks it on the component with its default options, against small probes
(``probes.py``), so that a whole check takes seconds. One implementation serves
the command and the generated tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from osnas.errors import OsnasError
from osnas.interface import rules  # noqa: F401  (registers the rules)
from osnas.interface.contract import RULE_TIME_LIMIT, RULES, Outcome, Rule, Subject
from osnas.plugins import load_builtins, load_plugin_package
from osnas.registry import KINDS, REGISTRIES

__all__ = ["ComponentImportError", "Outcome", "Rule", "Subject", "check_component", "load_subject", "rules_for"]


class ComponentImportError(OsnasError):
    """The component's package raised while being imported."""


def rules_for(kind: str) -> list[Rule]:
    return list(RULES[kind])


def load_subject(kind: str, name: str, plugins: Path | None = None, overrides: dict[str, Any] | None = None
                 ) -> Subject:
    """The registered component ``name`` of ``kind``, importing ``plugins/<kind>/<name>/`` first if it exists."""
    if kind not in KINDS:
        raise OsnasError(f"unknown component kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    load_builtins()
    package = Path(plugins or ".") / kind / name
    if plugins is not None and (package / "__init__.py").is_file():
        failure = load_plugin_package(package)
        if failure is not None:
            raise ComponentImportError(f"importing {package} failed at {failure.source}: {failure.error}")
    registry = REGISTRIES[kind]
    if name not in registry:
        raise OsnasError(f"unknown {kind} {name!r}; registered: {', '.join(registry.names()) or '(none)'}")
    return Subject(kind, name, registry.get(name), dict(overrides or {}))


def check_component(subject: Subject, limit: float = RULE_TIME_LIMIT) -> Iterator[tuple[Rule, Outcome]]:
    """Every rule of the subject's kind, in order, with its outcome as soon as it is known (each within
    ``limit`` seconds)."""
    for r in rules_for(subject.kind):
        yield r, r.run(subject, limit)
