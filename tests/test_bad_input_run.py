"""Bad data, config and run-directory input (issue 13, data/config/run half): exit code 2, one message naming
the file or key and what is valid, no traceback, no leftover files; and data files never run code."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import pytest

from tests.datasets import run_cli, write_cifar10
from tests.test_bad_input import config, fails, lut_dir  # noqa: F401  (fixtures)


class Payload:
    """Unpickling this creates ``marker``: what a crafted data file or checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def planted_pickle(marker: Path) -> bytes:
    return pickle.dumps({b"data": Payload(marker), b"labels": [0]})


# ----------------------------------------------------------------------------- §2 data files never run code


@pytest.mark.parametrize("layout", ["extracted", "archive"])
def test_cifar_payload_never_runs(capsys, tmp_path, config, layout):
    marker = tmp_path / "pwned"
    root = tmp_path / "cifar"
    write_cifar10(root, per_batch=4, extracted=layout == "extracted")
    if layout == "extracted":
        (root / "cifar-10-batches-py" / "data_batch_1").write_bytes(planted_pickle(marker))
    else:
        archive = root / "cifar-10-python.tar.gz"
        with tarfile.open(archive) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
        members["cifar-10-batches-py/data_batch_1"] = planted_pickle(marker)
        with tarfile.open(archive, "w:gz") as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    dataflow = {"name": "cifar10", "root": str(root), "batch_size": 2, "verify_md5": False}
    msg = fails(capsys, tmp_path, "data", "check", "--config", config(dataflow=dataflow))
    assert not marker.exists()
    assert "data_batch_1" in msg and "refused to load posix.mkdir" in msg and "numpy arrays" in msg
    # with the checksum on (the default) the file is refused before it is even opened
    msg = fails(capsys, tmp_path, "data", "check", "--config", config(dataflow={**dataflow, "verify_md5": True}))
    assert not marker.exists()
    assert "MD5" in msg and "is not the published" in msg and "verify_md5: false" in msg


# ----------------------------------------------------------------------------- §3, §5 config values


@pytest.mark.parametrize("value", ["-1", str(2**63 + 1), "true", "1.5"])
def test_seed_outside_what_numpy_accepts(capsys, tmp_path, config, value):
    msg = fails(capsys, tmp_path, "search", "--config", config(), "--set", f"seed={value}")
    assert f"--set seed={value}" in msg and "key 'seed'" in msg and "an integer >= 0 and <= 4294967295" in msg


@pytest.mark.parametrize("name", ["a/b", "../../escaped", "..", ".", "a\\b", "' lead'", "x" * 201])
def test_run_name_must_be_a_plain_name(capsys, tmp_path, config, name):
    msg = fails(capsys, tmp_path, "search", "--config", config(), "--set", f"output.name={name}")
    assert "key 'output.name'" in msg and "must be a plain file name" in msg and "output.dir" in msg
    assert not (tmp_path / "escaped").exists() and not (tmp_path.parent / "escaped").exists()


@pytest.mark.parametrize("item, expected", [
    ("dataflow.batch_size=true", "expected an integer > 0"),
    ("supernet.optimizer.lr=.inf", "finite number"),
    ("supernet.optimizer.weight_decay=.inf", "finite number"),
    ("final.grad_clip=.nan", "finite number"),
    ("constraint.max=.inf", "finite number"),
    ("supernet.epochs='3'", "expected an integer > 0"),
    ("logging.progress=1", "expected true or false"),
])
def test_no_silent_coercion_or_infinity(capsys, tmp_path, config, item, expected):
    msg = fails(capsys, tmp_path, "search", "--config", config(), "--set", item)
    assert f"--set {item}" in msg and f"key '{item.split('=')[0]}'" in msg and expected in msg, msg


def test_numbers_with_exponent_still_read_as_numbers(tmp_path, config):
    from osnas.config import load_config

    cfg = load_config(config(), ["constraint.max=1e6", "supernet.optimizer.lr=5e-2"])
    assert cfg.constraint.max == 1e6 and cfg.supernet.optimizer.lr == 0.05


def test_duplicate_yaml_key_names_both_lines(capsys, tmp_path, config):
    path = config()
    path.write_text(path.read_text() + "seed: 3\n")
    first = next(i for i, line in enumerate(path.read_text().splitlines(), 1) if line.startswith("seed:"))
    last = len(path.read_text().splitlines())
    msg = fails(capsys, tmp_path, "config", path)
    assert str(path) in msg and f"key 'seed' is given twice, on line {first} and line {last}" in msg


def test_deeply_nested_config_is_refused(capsys, tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("seed: " + "[" * 20000 + "]" * 20000 + "\n")
    msg = fails(capsys, tmp_path, "config", path)
    assert str(path) in msg and "nested more than 50 levels deep" in msg


def test_yaml_alias_bomb_is_refused_quickly(capsys, tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 8)]
    lines.append("seed: *a7")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size < 2000
    msg = fails(capsys, tmp_path, "config", path)
    assert str(path) in msg and "expands to more than 100000 values" in msg


def test_a_long_value_is_shortened_in_messages(capsys, tmp_path, config):
    msg = fails(capsys, tmp_path, "config", config(), "--set", "seed=[" + ", ".join(["1"] * 5000) + "]")
    assert "key 'seed'" in msg and "..." in msg and len(msg) < 1500


@pytest.mark.parametrize("sets, key, valid", [
    (("dataflow.test_fraction=0.99", "dataflow.val_fraction=0.99"), "dataflow.val_fraction=0.99",
     "splits 17 samples into 0 and 17"),
    (("dataflow.test_fraction=0.001",), "dataflow.test_fraction=0.001", "valid: a value between 0.005565 and 0.9944"),
])
def test_split_fractions_that_leave_a_split_empty(capsys, tmp_path, config, sets, key, valid):
    args = [a for item in sets for a in ("--set", item)]
    msg = fails(capsys, tmp_path, "search", "--config", config(), *args)
    assert key in msg and valid in msg and "each side needs at least" in msg
