"""What a contract rule is: a promise in words, a check that raises :class:`Broken`, and its :class:`Outcome`.

Rules live in ``rules/<kind>.py`` and register themselves with :func:`rule`; they
check a :class:`Subject` (the component class, its options and the probes its
rules share). ``checks.py`` loads a component and runs its kind's rules.
"""

from __future__ import annotations

import io
import signal
import threading
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, TypeVar

import torch
import torch.nn as nn

from osnas.config import ComponentOptions
from osnas.registry import KINDS

T = TypeVar("T")
CPU = torch.device("cpu")
RULE_TIME_LIMIT = 60.0  # seconds one rule may take (the probes make a sound component pass each in seconds)
TIMED_OUT = "timed_out"  # Subject.memo key: the rule that ran past its limit


class Broken(Exception):
    """A rule does not hold; the message says what was seen."""


class Skipped(Exception):
    """A rule cannot be checked on this component; the message says why."""


class RuleTimeout(BaseException):
    """Raised into a rule that runs past its time limit (a BaseException, so that a component's
    ``except Exception`` cannot swallow it)."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`RuleTimeout` in the block after ``seconds`` (a real-time timer; in the main thread of a
    Unix process only: elsewhere the block runs without a limit)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise RuleTimeout()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass(frozen=True)
class Outcome:
    ok: bool
    message: str = ""
    skipped: bool = False


@dataclass
class Subject:
    """A component class under check, with the probes its rules share, each built on first use."""

    kind: str
    name: str
    cls: type
    overrides: dict[str, Any] = field(default_factory=dict)
    memo: dict[str, Any] = field(default_factory=dict, repr=False)

    def shared(self, key: str, build: Callable[[], T]) -> T:
        """``build()`` once per subject (a probe several rules use)."""
        if key not in self.memo:
            self.memo[key] = build()
        return self.memo[key]

    @property
    def options(self) -> ComponentOptions:
        return self.shared("options", lambda: self.cls.Options.model_validate(self.overrides))


def where(exc: BaseException) -> str:
    """`` (file:line)`` of the innermost frame outside installed libraries: the code to look at."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "site-packages" not in f.filename]
    return f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""


@dataclass(frozen=True)
class Rule:
    """One promise of a kind's contract: a short name (the test id), the promise in words, its check."""

    name: str
    text: str
    check: Callable[[Subject], str | None]

    def run(self, subject: Subject, limit: float = RULE_TIME_LIMIT) -> Outcome:
        """The check's outcome; past ``limit`` seconds it is stopped and broken, and so are the subject's later
        rules (without running: the component hangs, and the probes they share may be half-built)."""
        if TIMED_OUT in subject.memo:
            return Outcome(False, f"not run: rule {subject.memo[TIMED_OUT]} ran past its time limit")
        try:
            with time_limit(limit):
                note = self.check(subject)
        except RuleTimeout:
            subject.memo[TIMED_OUT] = self.name
            return Outcome(False, f"rule {self.name} ran past its time limit of {limit:g} s and was stopped; "
                                  "does the component end on the small probes (e.g. a search once no unseen "
                                  "architecture is left)?")
        except Skipped as exc:
            return Outcome(True, str(exc), skipped=True)
        except Broken as exc:
            return Outcome(False, str(exc))
        except Exception as exc:  # a user component may raise anything: that is the finding
            return Outcome(False, f"{type(exc).__name__}: {exc}{where(exc)}")
        return Outcome(True, note or "")


RULES: dict[str, list[Rule]] = {kind: [] for kind in KINDS}


def rule(kinds: str | tuple[str, ...], text: str) -> Callable[[Callable], Callable]:
    """Register a check function as a rule of ``kinds``; its name without ``check_`` names the rule."""

    def decorate(fn: Callable[[Subject], str | None]) -> Callable[[Subject], str | None]:
        for kind in (kinds,) if isinstance(kinds, str) else kinds:
            RULES[kind].append(Rule(fn.__name__.removeprefix("check_"), text, fn))
        return fn

    return decorate


# ----------------------------------------------------------------------------- helpers for the rules


def shape(value: Any) -> str:
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__


def finite_scalar(value: Any, what: str) -> torch.Tensor:
    """``value`` if it is a finite 0-dim float tensor, else :class:`Broken` saying what it is."""
    if not isinstance(value, torch.Tensor) or value.dim() != 0 or not value.is_floating_point():
        dtype = f" {value.dtype}" if isinstance(value, torch.Tensor) else ""
        raise Broken(f"{what} is {shape(value)}{dtype}, not a 0-dim float tensor")
    if not torch.isfinite(value):
        raise Broken(f"{what} is {value.item()}, not finite")
    return value


def saved_and_loaded(state: Any, what: str) -> Any:
    """``state`` after ``torch.save`` and ``torch.load(weights_only=True)``, as checkpoints store it."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    try:
        return torch.load(buffer, weights_only=True)
    except Exception as exc:
        raise Broken(f"{what} cannot be restored from a checkpoint (torch.load with weights_only=True): "
                     f"{str(exc).splitlines()[0]}; keep it to plain numbers, strings, lists, dicts and tensors") from None


@torch.no_grad()
def run_module(module: nn.Module, x: torch.Tensor, what: str) -> torch.Tensor:
    """``module(x)`` in eval mode; a failure is :class:`Broken` naming ``what`` and the input shape."""
    try:
        return module.eval()(x)
    except Exception as exc:
        raise Broken(f"{what} fails on an input of shape {tuple(x.shape)}: {type(exc).__name__}: "
                     f"{str(exc).splitlines()[0]}") from None
