"""Property-based fuzzing of the command line: whatever the input, osnas succeeds or exits 2 with one
message, never with a traceback or another exit code.

Seeded (``derandomize``) so CI sees the same examples every time; ``OSNAS_FUZZ_EXAMPLES=N`` runs N
examples per test instead of the small default. Only fast paths run (``osnas config``, ``profile`` of
a small network, ``new``): no example can start a training run. Each test prints how many examples ran.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import unicodedata
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from osnas.registry import KINDS
from tests.datasets import call_cli
from tests.small_config import small_config

ENV_EXAMPLES = os.environ.get("OSNAS_FUZZ_EXAMPLES")
MAX_MESSAGE = 4000


def examples(default: int) -> int:
    return int(ENV_EXAMPLES) if ENV_EXAMPLES else default


def fuzz(default: int) -> Callable:
    """Hypothesis settings of one fuzz test: seeded, no deadline (a shared CI box is slow), no database."""
    return settings(max_examples=examples(default), derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def outcome(*args: str) -> tuple[int, str]:
    """Run ``osnas ARGS`` in-process; assert success or exit 2 with one short message and no traceback."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = call_cli(*args)
    text = out.getvalue() + err.getvalue()
    assert code in (0, 2), (args, code, text[-2000:])
    assert "Traceback" not in text and "internal error" not in text, (args, text[-2000:])
    if code == 2:
        assert text.count("error:") + text.count("─ Error ─") == 1, (args, text[-2000:])
        assert len(text) < MAX_MESSAGE, (args, len(text), text[:300])
    return code, text


class Counter:
    def __init__(self) -> None:
        self.runs = self.failures = 0

    def add(self, code: int) -> None:
        self.runs += 1
        self.failures += code == 2

    def report(self, what: str) -> None:
        print(f"fuzz {what}: {self.runs} examples, {self.failures} refused with exit 2")
        assert self.runs >= min(10, examples(10)), "hypothesis ran fewer examples than asked"


# text as argv can carry it: no NUL, no lone surrogates
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=-2 ** 70, max_value=2 ** 70),
                    st.floats(allow_nan=True, allow_infinity=True), TEXT)
TRICKY = st.sampled_from([".inf", "-.inf", ".nan", "~", "[1, 2]", "{a: 1}", "[/x]", "[bold]x", "''", "&a [*a]",
                          "!!python/object:os.system ''", "1e400", "0x10", "yes", "2019-01-01", "-1", "0"])


@pytest.fixture(scope="module")
def base_config(tmp_path_factory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("fuzz")
    return small_config(root, root / "luts")


def paths_of(data: dict[str, Any], prefix: str = "") -> list[str]:
    found = []
    for key, value in data.items():
        found.append(prefix + key)
        if isinstance(value, dict):
            found += paths_of(value, prefix + key + ".")
    return found


def test_fuzz_set_overrides(base_config, tmp_path_factory):
    config = tmp_path_factory.mktemp("fuzz-set") / "c.yaml"
    config.write_text(yaml.safe_dump(base_config))
    known = paths_of(base_config) + ["supernet.optimizer.lr", "final.optimizer.lr", "search_space.width_mult"]
    known_path = st.sampled_from(known)
    path_strategy = st.one_of(known_path, known_path, known_path, TEXT,  # mostly real keys: reach value checks
                              st.builds(lambda p, t: f"{p}.{t}", known_path, TEXT))
    value_strategy = st.one_of(TRICKY, SCALARS.map(str), st.integers(0, 9).map(str), TEXT)
    counter = Counter()

    @fuzz(120)
    @given(st.lists(st.tuples(path_strategy, value_strategy), min_size=1, max_size=2))
    def run(items: list[tuple[str, str]]) -> None:
        args = [arg for path, value in items for arg in ("--set", f"{path}={value}")]
        code, _ = outcome("config", str(config), *args)
        counter.add(code)

    run()
    counter.report("--set")


YAML_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
                           max_leaves=12)


def test_fuzz_yaml_documents(base_config, tmp_path_factory):
    config = tmp_path_factory.mktemp("fuzz-yaml") / "c.yaml"
    keys = sorted(base_config)
    changed = st.builds(lambda key, value: {**base_config, key: value}, st.sampled_from(keys), YAML_VALUES)
    nested = st.builds(lambda key, sub, value: {**base_config, key: {**base_config[key], sub: value}}
                       if isinstance(base_config[key], dict) else base_config, st.sampled_from(keys), TEXT, YAML_VALUES)
    documents = st.one_of(changed.map(yaml.safe_dump), nested.map(yaml.safe_dump), YAML_VALUES.map(yaml.safe_dump),
                          TEXT, st.lists(st.sampled_from(["seed: 0", "a: &x [1]", "b: *x", "- 1", "{", "]", "!!binary x",
                                                          "  c: 2", "seed: [", "---", "? k", "d: !!float nan"]),
                                         max_size=6).map("\n".join))
    counter = Counter()

    @fuzz(120)
    @given(documents)
    def run(document: str) -> None:
        config.write_text(document)
        code, _ = outcome("config", str(config))
        counter.add(code)

    run()
    counter.report("YAML documents")


JSON_VALUES = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
                           max_leaves=10)
INDEX = st.one_of(st.integers(-3, 8), st.integers(), st.floats(), st.booleans(), st.none(), TEXT)


def test_fuzz_architecture_json(tmp_path_factory):
    arch = tmp_path_factory.mktemp("fuzz-arch") / "architecture.json"
    indices = st.one_of(st.lists(st.integers(0, 3), min_size=21, max_size=21),
                        st.lists(INDEX, min_size=19, max_size=23),
                        st.lists(st.integers(0, 3), min_size=21, max_size=21).flatmap(
                            lambda good: st.tuples(st.integers(0, 20), INDEX).map(
                                lambda change: good[:change[0]] + [change[1]] + good[change[0] + 1:])))
    shaped = st.fixed_dictionaries({"space": st.sampled_from(["proxylessnas", "fbnet", "", "[/x]"]),
                                    "indices": indices})
    contents = st.one_of(shaped.map(json.dumps), JSON_VALUES.map(json.dumps), TEXT)
    counter = Counter()

    @fuzz(30)
    @given(contents)
    def run(content: str) -> None:
        arch.write_text(content)
        code, _ = outcome("profile", "-s", "proxylessnas", "--arch", str(arch), "--input-size", "32",
                          "--classes", "10", "--runs", "1", "--set-space", "width_mult=0.25")
        counter.add(code)

    run()
    counter.report("architecture.json")


FULL_WIDTH = {chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)}
NAMES = st.one_of(TEXT, st.text(st.sampled_from("abcxyz_0123ｉｆｌｓｔ"), max_size=12),
                  st.sampled_from(["if", "list", "json", "proxylessnas", "my_space", "class", "x" * 250, "[/x]"])
                  .flatmap(lambda n: st.sampled_from([n, "".join(FULL_WIDTH.get(ch, ch) for ch in n)])))


def test_fuzz_generator_names():
    counter = Counter()

    @fuzz(60)
    @given(st.sampled_from(KINDS), NAMES)
    def run(kind: str, name: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out"
            code, _ = outcome("new", kind, name, "--output-dir", str(out))
            written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) if out.exists() else []
            if code == 0:
                plain = unicodedata.normalize("NFKC", name)
                assert plain.isidentifier() and (out / kind / plain / "__init__.py").is_file(), written
            else:
                assert written == [], f"a refused name left files behind: {written}"
        counter.add(code)

    run()
    counter.report("generator names")

