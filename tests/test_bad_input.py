"""Every kind of bad input: one clear message (what is wrong, what is valid), exit code 2, no traceback,
and nothing written that could break a later run."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytest
import torch

from osnas.agent import MainAgent
from osnas.config import validate_config
from osnas.errors import ConfigError
from osnas.run_dir import RunDir
from tests.datasets import run_cli, write_class_folders
from tests.small_config import small_config, write_config


@pytest.fixture(scope="module")
def lut_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("luts")


@pytest.fixture
def config(tmp_path, lut_dir):
    """``config(**sections)``: path of a small config file with some top-level sections replaced."""
    return lambda **sections: write_config(tmp_path / "config.yaml", small_config(tmp_path, lut_dir, **sections))


def fails(capsys, tmp_path: Path, *args) -> str:
    """Run the CLI, expect exit code 2, one message, no traceback and no run directory; return the message."""
    code, out, err = run_cli(capsys, *map(str, args))
    assert code == 2, (code, out, err)
    assert "Traceback" not in err and "internal error" not in err, err
    assert err.count("error:") == 1, err
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir()), "a failed start must not leave a run directory"
    return " ".join(err[err.index("error:"):].split())


def test_malformed_yaml(capsys, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("seed: 0\nsupernet: {epochs: [1\n")
    msg = fails(capsys, tmp_path, "search", "--config", path)
    assert str(path) in msg and "malformed YAML" in msg and "line" in msg


def test_unknown_top_level_key(capsys, tmp_path, config):
    msg = fails(capsys, tmp_path, "search", "--config", config(sede=1))
    assert "unknown key 'sede'" in msg and "did you mean 'seed'?" in msg
    assert "valid keys here: seed, device" in msg and "search_space" in msg


def test_unknown_nested_key(capsys, tmp_path, config):
    msg = fails(capsys, tmp_path, "search", "--config", config(supernet={"epochs": 1, "optimizer": {"lrr": 0.1}}))
    assert "unknown key 'supernet.optimizer.lrr'" in msg and "did you mean 'lr'" in msg
    assert "valid keys here: name, lr, momentum" in msg


def test_unknown_component_option(capsys, tmp_path, config):
    msg = fails(capsys, tmp_path, "search", "--config", config(search_space={"name": "proxylessnas", "widht": 0.5}))
    assert "unknown key 'search_space.widht'" in msg and "width_mult" in msg


def test_unknown_component_name(capsys, tmp_path, config):
    msg = fails(capsys, tmp_path, "search", "--config", config(search_strategy={"name": "evolutoin"}))
    assert "unknown search_strategy 'evolutoin'" in msg and "did you mean 'evolution'" in msg
    assert "registered: " in msg and "random" in msg


def test_wrong_type(capsys, tmp_path, config):
    msg = fails(capsys, tmp_path, "search", "--config", config(supernet={"epochs": "three"}))
    assert "key 'supernet.epochs'" in msg and "got 'three'" in msg and "expected an integer > 0" in msg


@pytest.mark.parametrize("section, value, key", [
    ("supernet", {"epochs": 0}, "supernet.epochs"),
    ("final", {"epochs": -2}, "final.epochs"),
    ("supernet", {"optimizer": {"lr": 0}}, "supernet.optimizer.lr"),
    ("final", {"optimizer": {"lr": -0.1}}, "final.optimizer.lr"),
    ("dataflow", {"name": "digits", "batch_size": 0}, "dataflow.batch_size"),
    ("dataflow", {"name": "digits", "batch_size": -8}, "dataflow.batch_size"),
])
def test_non_positive_numbers(capsys, tmp_path, config, section, value, key):
    msg = fails(capsys, tmp_path, "search", "--config", config(**{section: value}))
    assert f"key '{key}'" in msg and "greater than 0" in msg and "> 0" in msg


def test_batch_size_larger_than_the_dataset(capsys, tmp_path, config):
    msg = fails(capsys, tmp_path, "search", "--config", config(dataflow={"name": "digits", "batch_size": 100000}))
    assert "batch_size (100000) is larger than" in msg and "use at most" in msg


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda(capsys, tmp_path, config):
    msg = fails(capsys, tmp_path, "search", "--config", config(device="cuda"))
    assert "CUDA is not available" in msg and "device: cpu" in msg


def test_unknown_device_name(capsys, tmp_path, config):
    msg = fails(capsys, tmp_path, "search", "--config", config(device="gpu"))
    assert "device must be one of auto, cpu, cuda, cuda:N" in msg


def test_missing_config_file(capsys, tmp_path):
    msg = fails(capsys, tmp_path, "search", "--config", tmp_path / "nope.yaml")
    assert "config file not found" in msg and "nope.yaml" in msg


@pytest.mark.parametrize("options, key, valid", [
    ({"val_fraction": 1.5}, "dataflow.val_fraction", "< 1.0"),
    ({"test_fraction": 0}, "dataflow.test_fraction", "> 0.0"),
    ({"input_size": "big"}, "dataflow.input_size", "an integer > 0"),
])
def test_bad_dataset_options(capsys, tmp_path, config, options, key, valid):
    msg = fails(capsys, tmp_path, "search", "--config", config(dataflow={"name": "digits", **options}))
    assert f"key '{key}'" in msg and valid in msg


def test_missing_dataset(capsys, tmp_path, config):
    cifar = {"name": "cifar10", "root": str(tmp_path / "none")}
    msg = fails(capsys, tmp_path, "search", "--config", config(dataflow=cifar))
    assert "CIFAR-10 not found: put cifar-10-python.tar.gz" in msg and "dataflow.download: true" in msg


def test_malformed_dataset_folder(capsys, tmp_path, config):
    write_class_folders(tmp_path / "data" / "train", {"n01": 2, "n02": 2})
    write_class_folders(tmp_path / "data" / "val", {"n01": 1})
    msg = fails(capsys, tmp_path, "search", "--config",
                config(dataflow={"name": "imagenet", "root": str(tmp_path / "data"), "input_size": 8, "batch_size": 2}))
    assert "must hold the same class folders; differing: n02" in msg


def test_infeasible_constraint(capsys, tmp_path, config):
    msg = fails(capsys, tmp_path, "search", "--config", config(constraint={"metric": "macs", "max": 0.001}))
    assert "cannot be met" in msg and "cheapest architecture costs" in msg and "dearest" in msg
    assert "set constraint.max >=" in msg


@pytest.mark.parametrize("content, expected", [
    ({"space": "fbnet", "indices": [0] * 21}, "architecture is for space 'fbnet'"),
    ({"space": "proxylessnas", "indices": [0] * 5}, "has 5 entries but space 'proxylessnas' has 21"),
    ({"space": "proxylessnas", "indices": [99] + [0] * 20}, "layer 0 has index 99; valid range"),
    ({"space": "proxylessnas", "indices": [0.5] * 21}, "'indices' must be a list of integers"),
    ({"space": "proxylessnas"}, "not an architecture file"),
    ("{not json", "is not valid JSON"),
])
def test_bad_architecture_file(capsys, tmp_path, config, content, expected):
    arch = tmp_path / "arch.json"
    arch.write_text(content if isinstance(content, str) else json.dumps(content))
    msg = fails(capsys, tmp_path, "train", "--config", config(), "--arch", arch)
    assert expected in msg and str(arch) in msg


def test_missing_architecture_file(capsys, tmp_path, config):
    msg = fails(capsys, tmp_path, "train", "--config", config(), "--arch", tmp_path / "none.json")
    assert "file not found" in msg


def test_corrupt_checkpoint_for_evaluate(capsys, tmp_path, config):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    msg = fails(capsys, tmp_path, "evaluate", "--config", config(), "--checkpoint", garbage)
    assert f"checkpoint {garbage} is corrupt" in msg


def test_evaluate_wrong_kind_of_checkpoint(capsys, tmp_path, config):
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    msg = fails(capsys, tmp_path, "evaluate", "--config", config(), "--checkpoint", other)
    assert "is not an osnas model checkpoint" in msg


def make_run_dir(tmp_path: Path, lut_dir: Path) -> Path:
    """A run directory as ``osnas search`` leaves it after writing its config."""
    run = tmp_path / "old-run"
    run.mkdir()
    data = small_config(tmp_path, lut_dir, output={"dir": str(tmp_path / "elsewhere"), "name": "t"})
    (run / "config.yaml").write_text(validate_config(data).to_yaml())
    return run


def test_resume_with_a_truncated_checkpoint(capsys, tmp_path, lut_dir):
    run = make_run_dir(tmp_path, lut_dir)
    torch.save({"model": {"w": torch.zeros(4096)}, "epoch": 0}, run / "supernet_last.pt")
    data = (run / "supernet_last.pt").read_bytes()
    (run / "supernet_last.pt").write_bytes(data[: len(data) // 2])
    msg = fails(capsys, tmp_path, "search", "--resume", run)
    assert "supernet_last.pt is corrupt" in msg and "delete" in msg and "resume again" in msg


def test_resume_with_a_foreign_checkpoint(capsys, tmp_path, lut_dir):
    run = make_run_dir(tmp_path, lut_dir)
    torch.save({"model": {}}, run / "supernet_last.pt")
    msg = fails(capsys, tmp_path, "search", "--resume", run)
    assert "supernet_last.pt lacks criterion" in msg and "delete" in msg


def test_resume_of_a_run_that_is_still_going(capsys, tmp_path, lut_dir):
    run = RunDir.open(make_run_dir(tmp_path, lut_dir))
    run.lock()  # as the process still training it holds it
    msg = fails(capsys, tmp_path, "search", "--resume", run.path)
    assert f"run {run.path} is in use by osnas process {os.getpid()}" in msg
    run._lock.close()  # that process ended: the run can be claimed again
    RunDir.open(run.path).lock()


def test_resume_on_a_directory_that_is_not_a_run(capsys, tmp_path):
    msg = fails(capsys, tmp_path, "search", "--resume", tmp_path)
    assert "is not an osnas run directory (no config.yaml)" in msg


def test_resume_with_config_options(capsys, tmp_path, lut_dir, config):
    run = make_run_dir(tmp_path, lut_dir)
    msg = fails(capsys, tmp_path, "search", "--resume", run, "--set", "supernet.epochs=9")
    assert "config.yaml saved in it" in msg and "--set" in msg


@pytest.mark.parametrize("override, expected", [
    ("supernet.epochs", "expected KEY.PATH=VALUE"),
    ("supernet.epochs.x=1", "'supernet.epochs' is a value, not a section"),
    ("supernet.epochz=3", "--set supernet.epochz=3: unknown key 'supernet.epochz'; valid keys here: epochs"),
    ("search_space.widht=0.5", "--set search_space.widht=0.5: unknown key 'search_space.widht'"),
    ("supernet.epochs=-1", "--set supernet.epochs=-1: key 'supernet.epochs'"),
])
def test_set_with_a_bad_path_or_value(capsys, tmp_path, config, override, expected):
    msg = fails(capsys, tmp_path, "search", "--config", config(), "--set", override)
    assert expected in msg


def test_debug_shows_the_traceback(capsys, tmp_path, config):
    with pytest.raises(ConfigError, match="sede"):
        run_cli(capsys, "--debug", "search", "--config", str(config(sede=1)))


def test_corrupt_cached_lookup_table_is_rebuilt_with_a_warning(tmp_path, lut_dir, caplog):
    cfg = validate_config(small_config(tmp_path, lut_dir))
    good = MainAgent(cfg, quiet=True).setup().lut
    cache = tmp_path / "cache"
    shutil.copytree(lut_dir, cache)
    (cached,) = cache.glob("*.json")
    cached.write_text('{"meta": {"format": 1}, "table": [[[')
    cfg = validate_config(small_config(tmp_path, cache))
    with caplog.at_level(logging.WARNING):
        comp = MainAgent(cfg, quiet=True).setup()
    assert "corrupt" in comp.lut_note and "rebuilt" in comp.lut_note
    assert any("corrupt" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert (comp.lut.table == good.table).all()
    assert json.loads(cached.read_text())["meta"] == good.meta  # the cache holds a good table again
