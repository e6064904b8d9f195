"""A table of bad inputs, one or more per command: each must end in exit code 2 with one short message
naming the key or file, no traceback, and no file left behind.

A case is (id, argv, files to create first, expected text). Files are written into a fresh working
directory; a dict is a config (the small config of ``tests/small_config.py`` with those top-level keys
replaced) and a str or bytes is the file's content. The CLI runs in this process (fast); the installed
console scripts and an exception inside a plugin are covered by ``test_installed_cli.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml

from tests.datasets import run_cli
from tests.small_config import small_config

ARCH = {"space": "proxylessnas", "indices": [0] * 21}
MAX_MESSAGE = 4000
SMALL = ("--input-size", "32", "--runs", "1")  # profile: a valid architecture is measured in milliseconds  # characters: a message quoting a huge value must cut it


class Case(NamedTuple):
    id: str
    argv: tuple[str, ...]
    expected: str
    files: dict[str, Any] = {}


def arch(**changes: Any) -> str:
    return json.dumps({**ARCH, **changes})


def nested(depth: int) -> str:
    return "seed: " + "[" * depth + "]" * depth + "\n"


def alias_bomb(levels: int = 5, width: int = 10) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + f"\nseed: *a{levels - 1}\n"


C = "c.yaml"
CFG = {C: {}}
RUN = {"run/config.yaml": {}, "run/architecture.json": arch(), "run/results.json": json.dumps({"test": 5})}

CASES = [
    # search
    Case("search-usage-unknown-option", ("search", "--bogus"), "--bogus"),
    Case("search-no-config", ("search",), "needs --config"),
    Case("search-missing-config", ("search", "--config", "nope.yaml"), "nope.yaml"),
    Case("search-malformed-yaml", ("search", "--config", C), "malformed YAML", {C: "seed: 0\nsupernet: {epochs: [1\n"}),
    Case("search-unknown-key", ("search", "--config", C), "unknown key 'sede'", {C: {"sede": 1}}),
    Case("search-unknown-component", ("search", "--config", C), "unknown search_strategy 'evolutoin'",
         {C: {"search_strategy": {"name": "evolutoin"}}}),
    Case("search-wrong-type", ("search", "--config", C), "supernet.epochs", {C: {"supernet": {"epochs": "three"}}}),
    Case("search-set-no-value", ("search", "--config", C, "--set", "supernet.epochs"), "expected KEY.PATH=VALUE", CFG),
    Case("search-set-unknown-key", ("search", "--config", C, "--set", "supernet.epochz=3"), "supernet.epochz", CFG),
    Case("search-set-value-not-section", ("search", "--config", C, "--set", "seed.x=1"), "'seed' is a value", CFG),
    Case("search-markup-in-root", ("search", "--config", C), "data/[abc]",
         {C: {"dataflow": {"name": "imagenet", "root": "data/[abc]"}}}),
    Case("search-markup-in-config-name", ("search", "--config", "[/x].yaml"), "[/x].yaml", {"[/x].yaml": {"sede": 1}}),
    Case("search-markup-in-missing-config", ("search", "--config", "a[/x]b.yaml"), "a[/x]b.yaml"),
    Case("search-markup-in-set", ("search", "--config", C, "--set", "supernet.[/x]=1"), "[/x]", CFG),
    Case("search-resume-not-a-run", ("search", "--resume", "."), "is not an osnas run directory"),
    Case("search-resume-with-config", ("search", "--resume", "run", "--config", C), "drop --config", {**RUN, **CFG}),
    Case("search-infeasible", ("search", "--config", C), "cannot be met", {C: {"constraint": {"metric": "macs", "max": 1e-3}}}),
    Case("config-seed-negative", ("config", C, "--set", "seed=-1"), "seed", CFG),
    Case("config-seed-huge", ("config", C, "--set", f"seed={2 ** 64}"), "seed", CFG),
    Case("search-name-with-slash", ("search", "--config", C, "--set", "output.name=a/b"), "output.name", CFG),
    Case("search-name-escapes", ("search", "--config", C, "--set", "output.name=../../escaped"), "output.name", CFG),
    Case("config-batch-size-bool", ("config", C, "--set", "dataflow.batch_size=true"),
         "dataflow.batch_size", CFG),
    Case("config-lr-inf", ("config", C, "--set", "supernet.optimizer.lr=.inf"), "supernet.optimizer.lr",
         CFG),
    Case("config-constraint-inf", ("config", C, "--set", "constraint.max=.inf"), "constraint.max", CFG),
    Case("config-duplicate-key", ("config", C), "seed", {C: "seed: 0\nseed: 1\n"}),
    Case("config-deep-nesting", ("config", C), C, {C: nested(20000)}),
    Case("config-alias-bomb", ("config", C), C, {C: alias_bomb()}),
    Case("search-digits-fractions", ("search", "--config", C), "fraction",
         {C: {"dataflow": {"name": "digits", "val_fraction": 0.99, "test_fraction": 0.99}}}),
    Case("search-input-size-1", ("search", "--config", C, "--set", "dataflow.input_size=1"), "input_size", CFG),
    Case("search-input-size-huge", ("search", "--config", C, "--set", "dataflow.input_size=10000"), "input_size",
         CFG),
    Case("search-supernet-missing", ("search", "--config", C, "--supernet", "nope.pt"), "nope.pt", CFG),
    Case("search-supernet-garbage", ("search", "--config", C, "--supernet", "junk.pt"), "junk.pt",
         {**CFG, "junk.pt": b"\x00not a checkpoint" * 8}),
    # train
    Case("train-usage-no-arch", ("train", "--config", C), "--arch", CFG),
    Case("train-arch-missing", ("train", "--config", C, "--arch", "none.json"), "none.json", CFG),
    Case("train-arch-not-json", ("train", "--config", C, "--arch", "a.json"), "is not valid JSON",
         {**CFG, "a.json": "{not json"}),
    Case("train-arch-wrong-space", ("train", "--config", C, "--arch", "a.json"), "space 'fbnet'",
         {**CFG, "a.json": arch(space="fbnet")}),
    Case("train-arch-out-of-range", ("train", "--config", C, "--arch", "a.json"), "layer 0 has index 99",
         {**CFG, "a.json": arch(indices=[99] + [0] * 20)}),
    Case("train-arch-nan", ("train", "--config", C, "--arch", "a.json"), "got [nan, 0",
         {**CFG, "a.json": arch(indices=[float("nan")] + [0] * 20)}),
    Case("train-arch-huge-index", ("train", "--config", C, "--arch", "a.json"), "a.json",
         {**CFG, "a.json": arch(indices=[10 ** 30] + [0] * 20)}),
    Case("train-arch-directory", ("train", "--config", C, "--arch", "d"), "d is a directory without architecture.json",
         {**CFG, "d/notes.txt": "x"}),
    # evaluate
    Case("evaluate-usage-no-args", ("evaluate",), "--config"),
    Case("evaluate-checkpoint-missing", ("evaluate", "--config", C, "--checkpoint", "none.pt"), "none.pt", CFG),
    Case("evaluate-checkpoint-garbage", ("evaluate", "--config", C, "--checkpoint", "junk.pt"), "junk.pt is corrupt",
         {**CFG, "junk.pt": b"\x00not a checkpoint" * 8}),
    # compare
    Case("compare-usage-seeds-0", ("compare", C, "--seeds", "0"), "--seeds", CFG),
    Case("compare-missing-config", ("compare", "nope.yaml", "--seeds", "1"), "nope.yaml"),
    Case("compare-bad-config", ("compare", C, "--seeds", "1"), "unknown key 'sede'", {C: {"sede": 1}}),
    Case("compare-output-is-a-file", ("compare", C, "--seeds", "1", "--output", C), "c.yaml is a file", CFG),
    Case("compare-unknown-launcher", ("compare", C, "--seeds", "1", "--launcher", "slurmx"),
         "--launcher must be one of local, submitit", CFG),
    Case("compare-tasks-without-submitit", ("compare", C, "--seeds", "1", "--jobs", "2", "--tasks-per-job", "2"),
         "--tasks-per-job 2 needs --launcher submitit", CFG),
    Case("compare-cluster-without-submitit", ("compare", C, "--seeds", "1", "--partition", "gpu"),
         "only apply to --launcher submitit", CFG),
    # report
    Case("report-missing", ("report", "nothere"), "nothere"),
    Case("report-not-a-run", ("report", "."), "config.yaml"),
    Case("report-bad-results", ("report", "run"), "results.json", RUN),
    Case("report-bad-comparison-index", ("report", "cmp"), "no valid index.json", {"cmp/index.json": "[1, 2]"}),
    # store
    Case("store-prune-without-choice", ("store", "prune", "--dir", "s"), "exactly one of --older-than DAYS or --all"),
    # audit
    Case("audit-usage-no-run", ("audit",), "--run"),
    Case("audit-not-a-run", ("audit", "--run", "."), "is not an osnas run directory"),
    Case("audit-markup-in-run", ("audit", "--run", "a[/x]b"), "a[/x]b"),
    Case("audit-no-supernet", ("audit", "--run", "run"), "has no supernet.pt", RUN),
    Case("audit-k-too-small", ("audit", "--run", "run", "--k", "1"), "k must be >= 2", RUN),
    Case("audit-top-k-too-large", ("audit", "--run", "run", "--k", "3", "--top-k", "9"), "top_k must be between 1 and",
         RUN),
    Case("audit-no-repeats", ("audit", "--run", "run", "--repeats", "0"), "repeats must be >= 1", RUN),
    # generate
    Case("generate-usage-no-target", ("generate", "--run", "run"), "--target", RUN),
    Case("generate-no-generator", ("generate", "--run", "run", "--target", "1"), "run", RUN),
    # profile
    Case("profile-usage-runs-0", ("profile", "-s", "proxylessnas", "--arch", "mobile", "--runs", "0"), "--runs"),
    Case("profile-unknown-space", ("profile", "-s", "nasnett", "--arch", "x"), "nasnett"),
    Case("profile-unknown-preset", ("profile", "-s", "proxylessnas", "--arch", "nopreset"), "nopreset"),
    Case("profile-bad-space-option", ("profile", "-s", "proxylessnas", "--arch", "a.json", "--set-space", "widht=1"),
         "widht", {"a.json": arch()}),
    Case("profile-arch-nan", ("profile", "-s", "proxylessnas", "--arch", "a.json", *SMALL), "got [nan, 0",
         {"a.json": arch(indices=[float("nan")] + [0] * 20)}),
    Case("profile-arch-huge-index", ("profile", "-s", "proxylessnas", "--arch", "a.json", *SMALL), "a.json",
         {"a.json": arch(indices=[10 ** 30] + [0] * 20)}),
    Case("profile-arch-float-index", ("profile", "-s", "proxylessnas", "--arch", "a.json", *SMALL), "a.json",
         {"a.json": arch(indices=[0.9] + [0] * 20)}),
    Case("profile-arch-bool-index", ("profile", "-s", "proxylessnas", "--arch", "a.json", *SMALL), "a.json",
         {"a.json": arch(indices=[True] + [0] * 20)}),
    Case("profile-arch-string-index", ("profile", "-s", "proxylessnas", "--arch", "a.json", *SMALL), "a.json",
         {"a.json": arch(indices=["1"] + [0] * 20)}),
    Case("profile-input-size-huge", ("profile", "-s", "proxylessnas", "--arch", "proxyless_mobile",
                                     "--input-size", "100000"), "--input-size=100000"),
    # export
    Case("export-nothing-to-export", ("export",), "--run"),
    Case("export-not-a-run", ("export", "--run", "."), "config.yaml"),
    # lookup-table
    Case("lookup-table-build-bad-config", ("lookup-table", "build", "--config", C), "unknown key 'sede'",
         {C: {"sede": 1}}),
    Case("lookup-table-show-missing-config", ("lookup-table", "show", "--config", "nope.yaml"), "nope.yaml"),
    Case("lookup-table-fit-usage", ("lookup-table", "fit-latency", "--config", C, "--samples", "1"), "--samples", CFG),
    # data check
    Case("data-check-missing-root", ("data", "check", "--config", C), "CIFAR-10 not found",
         {C: {"dataflow": {"name": "cifar10", "root": "none"}}}),
    Case("data-check-markup-in-root", ("data", "check", "--config", C), "data/[abc]",
         {C: {"dataflow": {"name": "imagenet", "root": "data/[abc]"}}}),
    Case("data-check-usage-batches", ("data", "check", "--config", C, "--batches", "-1"), "--batches", CFG),
    # new
    Case("new-unknown-kind", ("new", "gadget", "mine"), "unknown component kind 'gadget'"),
    Case("new-keyword", ("new", "criterion", "if"), "'if' is not usable"),
    Case("new-full-width-keyword", ("new", "criterion", "ｉｆ"), "'if' is not usable"),
    Case("new-full-width-builtin-class", ("new", "criterion", "mine", "--class", "ｌｉｓｔ"), "built-in 'list'"),
    Case("new-builtin-name", ("new", "search_space", "proxylessnas"), "is a built-in search_space"),
    Case("new-module-name", ("new", "criterion", "json"), "importable module"),
    Case("new-long-name", ("new", "search_space", "n" * 250), "has 250 characters; use at most 64"),
    Case("new-output-dir-is-a-file", ("new", "criterion", "mine", "--output-dir", "f"), "f is a file", {"f": "x"}),
    Case("new-markup-in-name", ("new", "criterion", "[/x]"), "'[/x]' is not usable"),
    # check
    Case("check-unknown-kind", ("check", "gadget", "x"), "gadget"),
    Case("check-bad-option", ("check", "criterion", "cross_entropy", "--option", "novalue"), "expected KEY=VALUE"),
    # list, config, bench
    Case("list-unknown-kind", ("list", "gadget"), "unknown component kind 'gadget'"),
    Case("config-missing", ("config", "nope.yaml"), "nope.yaml"),
    Case("config-bad-set", ("config", C, "--set", "seed"), "expected KEY.PATH=VALUE", CFG),
    Case("config-markup-in-name", ("config", "[/x].yaml"), "[/x].yaml", {"[/x].yaml": {"sede": 1}}),
    Case("config-unknown-command", ("confgi",), "No such command 'confgi'"),
    Case("markup-in-unknown-command", ("[/x]",), "No such command '[/x]'"),
    Case("markup-in-unknown-option", ("search", "--b[/x]"), "--b[/x]"),
    Case("bench-unknown-section", ("bench", "--only", "nosuch"), "unknown section(s) ['nosuch']"),
    Case("bench-unknown-space", ("bench", "--only", "overhead", "--space", "nasnett"), "nasnett"),
]


def case_param(case: Case):
    return pytest.param(case, id=case.id)


@pytest.fixture(scope="module")
def lut_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("corpus-luts")


def create(root: Path, files: dict[str, Any], lut_dir: Path) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, dict):
            data = small_config(root, lut_dir, **content)
            path.write_text(yaml.safe_dump(data, sort_keys=False))
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def snapshot(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def one_message(code: int, out: str, err: str) -> str:
    """Assert exit code 2, one short message and no traceback; return the message with its lines joined."""
    text = out + err
    assert code == 2, (code, text[-2000:])
    assert "Traceback" not in text and "internal error" not in text, text[-2000:]
    assert text.count("error:") + text.count("─ Error ─") == 1, text[-2000:]
    assert len(text) < MAX_MESSAGE, f"{len(text)} characters: {text[:300]}..."
    return " ".join(text.replace("│", " ").split())


@pytest.mark.parametrize("case", [case_param(c) for c in CASES])
def test_bad_input(case: Case, tmp_path, monkeypatch, capsys, lut_dir):
    create(tmp_path, case.files, lut_dir)
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    message = one_message(*run_cli(capsys, *case.argv))
    assert case.expected in message, message
    assert snapshot(tmp_path) == before, "a failed command must leave no file behind"


def test_corpus_covers_every_command():
    from osnas.cli import app

    commands = {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands}
    commands |= {g.name for g in app.registered_groups}
    covered = {case.argv[0] for case in CASES}
    assert commands <= covered, f"no bad-input case for {sorted(commands - covered)}"



@pytest.mark.parametrize("source", [
    pytest.param("raise RuntimeError('broken on purpose')\n", id="raises"),
    pytest.param("def oops(:\n", id="syntax-error"),
])
def test_warning_quotes_a_plugin_path_verbatim(source, tmp_path, monkeypatch, capsys):
    """A plugin that fails to import is a warning naming its file; markup-like text in the path survives."""
    package = tmp_path / "p[/x]" / "criterion" / "broken"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "--plugins", "p[/x]", "list", "criterion")
    assert code == 0 and "Traceback" not in err, err
    assert "warning: could not import user component" in err and "p[/x]/criterion/broken" in err, err


def test_a_bug_in_osnas_is_an_internal_error(monkeypatch, capsys):
    """Not every exception is the user's: one raised in osnas's own code exits 1 and says so."""
    def broken() -> None:
        raise RuntimeError("osnas itself [/x]")

    import importlib

    app_module = importlib.import_module("osnas.cli.app")  # the attribute osnas.cli.app is the Typer object
    monkeypatch.setattr(app_module, "load_builtins", broken)
    code, out, err = run_cli(capsys, "list")
    assert code == 1 and "Traceback" not in err, err
    assert "internal error: RuntimeError: osnas itself [/x] (run with --debug for the traceback)" in err
    with pytest.raises(RuntimeError, match="osnas itself"):
        run_cli(capsys, "--debug", "list")


def test_report_prints_markup_like_names_verbatim(tmp_path, capsys, lut_dir):
    """Tables print user text as written: a run directory and candidate names holding ``[...]``."""
    run = tmp_path / "r[bold]"
    create(tmp_path, {"r[bold]/config.yaml": {},
                      "r[bold]/architecture.json": json.dumps({**ARCH, "candidates": ["[bold]k3[/bold]"]})}, lut_dir)
    code, out, err = run_cli(capsys, "report", str(run))
    assert code == 0, err
    text = " ".join(out.replace("│", " ").split())
    assert "r[bold] (no results yet)" in text and "[bold]k3[/bold]" in text, text
