"""The interface generator: stubs for every kind import, register, run end to end and pass their contract test;
generation is safe (no overwrite without --force, dry runs, bad names); ``osnas check`` reports broken rules."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from osnas.criteria.base import Criterion
from osnas.dataflows.digits import Digits
from osnas.interface.checks import Subject, check_component, rules_for
from osnas.interface.cli import main as build_interface
from osnas.interface.render import InterfaceError, generate
from osnas.registry import REGISTRIES
from osnas.search_strategies.base import SearchResult
from osnas.search_strategies.random import RandomSearch
from osnas.training_agents.classification import Classification
from osnas.training_strategies.uniform import Uniform
from tests.conftest import ROOT, run_osnas

NAMES = {
    "search_space": "toy_space",
    "criterion": "toy_loss",
    "dataflow": "toy_data",
    "training_agent": "toy_task",
    "search_strategy": "toy_search",
    "training_strategy": "toy_training",
}
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # the CI machine is shared: no spinning worker threads
# seconds instead of a minute: one epoch each, few candidates; the generated toy space replaces proxylessnas
TINY = ["supernet.epochs=1", "final.epochs=1", "evaluation.bn_batches=1", "evaluation.val_batches=1",
        "logging.progress=false", "dataflow.batch_size=128"]
SMALL_SEARCH = {
    "search_strategy": ["search_strategy.num_evaluations=4", "search_strategy.batch=2"],
    "other": ["search_strategy.population=4", "search_strategy.generations=1", "search_strategy.top_k=2"],
}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A user's project directory with one generated component of every kind in generated/."""
    root = tmp_path_factory.mktemp("project")
    for kind, name in NAMES.items():
        generate(kind, name, output_dir=root / "generated")
    return root


# ----------------------------------------------------------------------------- every kind, end to end


def test_every_kind_is_registered_in_a_fresh_process(project):
    generate("search_strategy", "toy_search_b", output_dir=project / "generated")  # a second one of one kind
    proc = run_osnas("--plugins", str(project / "generated"), "list", env=ONE_THREAD)
    assert proc.returncode == 0, proc.stderr
    assert "could not import" not in proc.stderr, proc.stderr
    sections = re.split(r"^(\w+)\s*$", proc.stdout, flags=re.M)
    listed = {sections[i]: sections[i + 1] for i in range(1, len(sections) - 1, 2)}
    for kind, name in NAMES.items():
        assert re.search(rf"^{name}\s+plugin\s", listed[kind], flags=re.M), (kind, listed.get(kind))
    assert re.search(r"^toy_search_b\s+plugin\s", listed["search_strategy"], flags=re.M)


# Runs `osnas search` once per generated config in ONE process: each start-up (torch, sklearn) costs seconds.
DRIVER = """
import json, sys
from osnas.cli import main
codes = {}
for kind, argv in json.loads(sys.argv[1]).items():
    sys.argv = ["osnas", *argv]
    try:
        main()
        codes[kind] = 0
    except SystemExit as exc:
        codes[kind] = exc.code
print(json.dumps(codes))
"""


@pytest.fixture(scope="module")
def searches(project) -> tuple[dict[str, int], str]:
    """``osnas search --config generated/<kind>/<name>/<name>.yaml`` on a tiny budget for every kind."""
    argv = {}
    for kind, name in NAMES.items():
        overrides = TINY + SMALL_SEARCH["search_strategy" if kind == "search_strategy" else "other"]
        overrides += [f"output.dir={project / 'runs' / kind}", f"lookup_table.cache_dir={project / 'luts'}"]
        if kind != "search_space":
            overrides.append("search_space.name=toy_space")
        config = project / "generated" / kind / name / f"{name}.yaml"
        argv[kind] = ["search", "--config", str(config), *[a for o in overrides for a in ("--set", o)], "--quiet"]
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(argv)], cwd=project, capture_output=True,
                          text=True, timeout=600, env={**os.environ, **ONE_THREAD, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


@pytest.mark.parametrize("kind", list(NAMES))
def test_generated_config_runs_end_to_end(project, searches, kind):
    codes, stderr = searches
    assert codes[kind] == 0, stderr
    name = NAMES[kind]
    (run_dir,) = (project / "runs" / kind).glob(f"{name}-*")
    used = (run_dir / "config.yaml").read_text()
    section = "task" if kind == "training_agent" else kind
    assert re.search(rf"^{section}:\n  name: {name}$", used, flags=re.M), used
    results = json.loads((run_dir / "results.json").read_text())
    assert results["space"] == "toy_space"
    assert 0.0 <= results["test_top1"] <= 100.0
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {"supernet", "search", "final"} <= {r["phase"] for r in records}
    if kind == "training_strategy":  # the stub's epoch_metrics reached the log: its steps ran
        assert [r["paths"] >= 1 for r in records if r["phase"] == "supernet"] == [True]


def test_generated_contract_tests_pass(project):
    tests = [f"generated/{kind}/{name}/test_{name}.py" for kind, name in NAMES.items()]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], cwd=project,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, **ONE_THREAD, "PYTHONPATH": str(ROOT)})
    expected = sum(len(rules_for(kind)) for kind in NAMES)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert f"{expected} passed" in proc.stdout, proc.stdout[-3000:]


# ----------------------------------------------------------------------------- osnas check


def test_check_reports_a_broken_search_space_in_words(tmp_path):
    generate("search_space", "bent_space", output_dir=tmp_path)
    blocks = tmp_path / "search_space" / "bent_space" / "bent_space_blocks.py"
    # the depthwise-separable candidate ignores its stride: its output is larger than the other candidates'
    blocks.write_text(blocks.read_text().replace("kernel, stride, groups=in_ch", "kernel, 1, groups=in_ch"))
    proc = run_osnas("check", "search_space", "bent_space", "--plugins", str(tmp_path), env=ONE_THREAD)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    text = " ".join(proc.stdout.split())
    assert ("searchable layer 0: candidate 'dw_k3' outputs (1, 16, 32, 32) but 'mb_k3_e3' outputs (1, 16, 16, 16)"
            in text), text
    assert "✗ lookup-table MACs and params equal thop's count" in text
    assert "3 rule(s) broken" in text


class NonScalarLoss(Criterion):
    """Per-sample losses: forgets the reduction."""

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets, reduction="none")


def test_check_reports_a_non_scalar_criterion():
    subject = Subject("criterion", "non_scalar", NonScalarLoss)
    outcomes = {rule.name: outcome for rule, outcome in check_component(subject)}
    assert outcomes["registered"].message == ("no criterion is registered as 'non_scalar'; decorate the class with "
                                              "@register('criterion', 'non_scalar')")
    assert not outcomes["scalar"].ok
    assert outcomes["scalar"].message == "the loss of a batch of 8 is (8,) torch.float32, not a 0-dim float tensor"
    assert outcomes["options"].ok and outcomes["gradients"].ok


class FixedOrderPaths(Uniform):
    """Trains the paths in a fixed order but forgets its position in state_dict()."""

    steps = 0

    def sample(self) -> list[int]:
        self.steps += 1
        return [self.steps % int(k) for k in self.context.definition.choices]


class DearestArchitecture(RandomSearch):
    """Returns the most expensive architecture, whatever the budget."""

    def search(self, context):
        best = np.argmax(np.where(context.definition.choice_mask, context.lut.unit_table("macs"), -np.inf), axis=1)
        return SearchResult(best, float(context.evaluator.evaluate(best)[0]), [])


class ValidationIsTraining(Digits):
    """Validates on the training split."""

    def search_split(self):
        train, _ = super().search_split()
        return train, train


class UnknownSelectionMetric(Classification):
    """Selects on a metric evaluate() does not return."""

    selection_metric = "accuracy"


@pytest.mark.parametrize("kind, cls, rule, message", [
    ("training_strategy", FixedOrderPaths, "state", "the original and the restored strategy leave"),
    ("search_strategy", DearestArchitecture, "result", "over the budget"),
    ("search_strategy", DearestArchitecture, "resume_search", "never called context.save_state"),
    ("dataflow", ValidationIsTraining, "disjoint", "search_val sample(s) also appear in search_train"),
    ("training_agent", UnknownSelectionMetric, "evaluate", "evaluate's result has no 'accuracy' (selection_metric)"),
])
def test_check_catches_a_broken_rule(kind, cls, rule, message):
    (checked,) = [r for r in rules_for(kind) if r.name == rule]
    outcome = checked.run(Subject(kind, "broken", cls))
    assert not outcome.ok and message in outcome.message, outcome


def test_check_unknown_name_or_kind_exits_2(monkeypatch, capsys):
    from osnas.cli import main

    for argv, expected in ((["check", "criterion", "nope"], "unknown criterion 'nope'; registered: arcface, cosface, cross_entropy"),
                           (["check", "loss", "nope"], "unknown component kind 'loss'; valid kinds: training_agent")):
        monkeypatch.setattr(sys, "argv", ["osnas", *argv])
        with pytest.raises(SystemExit) as exit_info:
            main()
        assert exit_info.value.code == 2
        assert expected in " ".join(capsys.readouterr().err.split())


# ----------------------------------------------------------------------------- safe generation


def file_texts(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(directory.iterdir())}


def test_refuses_to_overwrite_and_force_overwrites(tmp_path, capsys):
    generate("criterion", "my_loss", output_dir=tmp_path)
    module = tmp_path / "criterion" / "my_loss" / "my_loss_criterion.py"
    module.write_text("# my work\n")
    with pytest.raises(SystemExit) as exit_info:
        build_interface(["-it", "criterion", "--customize-name", "my_loss", "--output-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "exist already" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert module.read_text() == "# my work\n"
    build_interface(["-it", "criterion", "--customize-name", "my_loss", "--output-dir", str(tmp_path), "--force"])
    assert "@register(\"criterion\", \"my_loss\")" in module.read_text()


def test_dry_run_writes_nothing(tmp_path, capsys):
    build_interface(["-it", "search_space", "--customize-name", "dry", "--customize-class", "DrySpace",
                     "--output-dir", str(tmp_path), "--dry-run"])
    assert list(tmp_path.iterdir()) == []
    out = capsys.readouterr().out
    for filename in ("__init__.py", "dry_space.py", "dry_blocks.py", "dry.yaml", "test_dry.py"):
        assert f"  {filename}" in out


def test_osnas_new_writes_the_stub(tmp_path, monkeypatch, capsys):
    from osnas.cli import main

    monkeypatch.setattr(sys, "argv", ["osnas", "new", "dataflow", "my_data", "--class", "MyData",
                                      "--output-dir", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_:  # typer's standalone mode ends every command with SystemExit
        main()
    assert exit_.value.code in (0, None)
    written = file_texts(tmp_path / "dataflow" / "my_data")
    assert sorted(written) == ["__init__.py", "my_data.yaml", "my_data_dataflow.py", "test_my_data.py"]
    assert "class MyData(Dataflow):" in written["my_data_dataflow.py"]
    assert "dataflow: {name: my_data, input_size: 16, batch_size: 32}" in written["my_data.yaml"]


@pytest.mark.parametrize("kind, name, cls, message", [
    ("search_space", "../x", None, "name '../x' is not usable"),
    ("search_space", "class", None, "name 'class' is not usable"),
    ("search_space", "1abc", None, "name '1abc' is not usable"),
    ("search_space", "proxylessnas", None, "'proxylessnas' is a built-in search_space"),
    ("search_strategy", "json", None, "name 'json' is already an importable module"),
    ("criterion", "ok_name", "Bad-Class", "class name 'Bad-Class' is not usable"),
    ("criterion", "ok_name", "int", "would shadow the Python built-in 'int'"),
    ("search_space", "ok_name", "SearchSpace", "class name 'SearchSpace' collides with a name the generated "
                                               "ok_name_space.py already uses"),
    ("loss", "ok_name", None, "unknown component kind 'loss'"),
])
def test_bad_names_are_refused(tmp_path, kind, name, cls, message):
    with pytest.raises(InterfaceError, match=re.escape(message)):
        generate(kind, name, cls, output_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_name_is_used_by_one_kind_only(tmp_path):
    generate("criterion", "shared", output_dir=tmp_path)
    with pytest.raises(InterfaceError, match="name 'shared' is taken by the criterion"):
        generate("dataflow", "shared", output_dir=tmp_path)
    assert not (tmp_path / "dataflow").exists()


def test_nothing_is_written_outside_the_output_directory(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "criterion").symlink_to(outside)
    with pytest.raises(InterfaceError, match="outside the output directory"):
        generate("criterion", "escaped", output_dir=tmp_path / "out")
    assert list(outside.iterdir()) == []


def test_build_interface_script_help_from_repo_root():
    proc = subprocess.run([sys.executable, "build_interface.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    for option in ("-it KIND", "--customize-name NAME", "--customize-class CLASS", "--output-dir DIR", "--force",
                   "--dry-run"):
        assert option in proc.stdout


def test_generated_files_get_the_mode_of_a_plain_write(tmp_path):
    """Stubs are ordinary source files: readable by the group and others unless the user's umask says not."""
    old = os.umask(0o022)
    try:
        plan = generate("criterion", "mode_check", output_dir=tmp_path)
    finally:
        os.umask(old)
    modes = {path.name: path.stat().st_mode & 0o777 for path in plan.files}
    assert set(modes.values()) == {0o644}, modes


def test_full_width_names_are_normalised_before_every_check(tmp_path):
    with pytest.raises(InterfaceError, match="name 'if' is not usable"):
        generate("criterion", "ｉｆ", output_dir=tmp_path)
    plan = generate("criterion", "ｍｙ_ｌｏｓｓ", output_dir=tmp_path)
    assert plan.name == "my_loss" and (tmp_path / "criterion" / "my_loss" / "my_loss_criterion.py").is_file()


def test_a_name_too_long_writes_nothing(tmp_path):
    with pytest.raises(InterfaceError, match="has 250 characters; use at most 64"):
        generate("search_space", "n" * 250, output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
