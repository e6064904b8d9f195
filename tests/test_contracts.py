"""Every registered component holds its kind's contract (the rules ``osnas check`` reports).

The parameters come from the registries, so a new built-in is checked without editing this
file. Components are checked with their default options, except where a small option keeps
the check fast (a quarter-width space) or points a dataflow at a tiny dataset written here
in its real on-disk format (nothing is downloaded).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from osnas.interface.checks import check_component
from osnas.interface.contract import Subject
from osnas.registry import KINDS, REGISTRIES
from tests.datasets import write_cifar10, write_cifar100, write_class_folders, write_lfw


def face_folders(root: Path) -> dict[str, Any]:
    write_class_folders(root / "casia", {f"{i:07d}": 6 for i in range(4)}, size=(24, 24))
    write_lfw(root / "lfw", {"ann": 3, "bob": 3, "cid": 1}, [("ann", 1, 2), ("bob", 1, 3)],
              [("ann", 1, "bob", 2), ("cid", 1, "ann", 3)], folds=2)
    return {"root": str(root / "casia"), "lfw_root": str(root / "lfw"), "input_size": 16, "batch_size": 4,
            "num_workers": 0, "val_fraction": 0.3333}  # a validation image of each of the 4 identities


def image_folders(root: Path) -> dict[str, Any]:
    write_class_folders(root / "train", {"n01": 6, "n02": 6, "n03": 6})
    write_class_folders(root / "val", {"n01": 2, "n02": 2, "n03": 2})
    return {"root": str(root), "input_size": 16, "batch_size": 4, "num_workers": 0}


def cifar10(root: Path) -> dict[str, Any]:
    write_cifar10(root, per_batch=8, extracted=True)
    return {"root": str(root), "batch_size": 8, "verify_md5": False}  # a made-up copy, not the published files


def cifar100(root: Path) -> dict[str, Any]:
    write_cifar100(root, per_file=40)
    return {"root": str(root), "batch_size": 8, "verify_md5": False}  # a made-up copy, not the published files


# dataflows that read files: a writer of a tiny copy of their data, returning the options that point at it
DATA: dict[str, Callable[[Path], dict[str, Any]]] = {
    "cifar10": cifar10, "cifar100": cifar100, "imagenet": image_folders, "casia_webface": face_folders,
}


# smaller budgets for the slowest strategies (seconds of CPU each at their defaults on the probe space)
SMALL_BUDGETS = {"architecture_generator": {"iterations": 60, "save_every": 20}, "nsga2": {"generations": 4},
                 "regularized_evolution": {"cycles": 40}}


def small_options(kind: str, name: str, cls: type) -> dict[str, Any]:
    """Options that keep a check fast without changing what is checked."""
    if kind == "search_space" and "width_mult" in cls.Options.model_fields:
        return {"width_mult": 0.25}
    return dict(SMALL_BUDGETS.get(name, {})) if kind == "search_strategy" else {}


COMPONENTS = [(kind, name) for kind in KINDS for name in REGISTRIES[kind].names()]


@pytest.mark.parametrize("kind, name", COMPONENTS, ids=[f"{kind}-{name}" for kind, name in COMPONENTS])
def test_registered_component_holds_its_contract(kind, name, tmp_path):
    cls = REGISTRIES[kind].get(name)
    overrides = small_options(kind, name, cls)
    if kind == "dataflow" and name in DATA:
        overrides |= DATA[name](tmp_path)
    subject = Subject(kind, name, cls, overrides)
    broken = [(rule.name, outcome.message) for rule, outcome in check_component(subject)
              if not outcome.ok or outcome.skipped]
    assert broken == []


def test_every_builtin_of_every_kind_is_checked():
    builtins = {(kind, name) for kind in KINDS for name in REGISTRIES[kind].names()
                if REGISTRIES[kind].origin(name) == "builtin"}
    assert {kind for kind, _ in builtins} == set(KINDS)
    assert builtins <= set(COMPONENTS)


class WaitsForFiftyUnseen(REGISTRIES["search_strategy"].get("random")):
    """Draws until 50 unseen architectures were scored, swallowing every Exception: never ends on 18."""

    def search(self, context):
        history = self.begin(context)
        while len(history.records) < 50:
            try:
                arch = context.constraint.sample_feasible(context.rng, 1)
                if tuple(arch[0]) not in history.scores:
                    history.evaluate(arch)
            except Exception:  # noqa: BLE001  the time limit must get through this
                continue
        return history.result()


def test_a_rule_past_its_time_limit_is_stopped_and_named_and_later_rules_do_not_run():
    subject = Subject("search_strategy", "waits", WaitsForFiftyUnseen)
    outcomes = {rule.name: outcome for rule, outcome in check_component(subject, limit=1.0)}
    stopped = outcomes["stops_when_space_is_exhausted"]
    assert not stopped.ok and "rule stops_when_space_is_exhausted ran past its time limit of 1 s" in stopped.message
    assert outcomes["options"].ok  # the rules before it ran as usual
    for name in ("result", "tight_budget", "resume_search"):
        assert outcomes[name].message == "not run: rule stops_when_space_is_exhausted ran past its time limit"
