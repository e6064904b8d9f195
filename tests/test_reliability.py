"""Failures during a run (NaN loss, full disk, unwritable output, interrupts), determinism and safe checkpoints."""

from __future__ import annotations

import copy
import errno
import io
import json
import os
import random
import shutil
import signal
import time
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from osnas.agent import MainAgent
from osnas.api import Launch
from osnas.cli.run import resumable
from osnas.config import validate_config
from osnas.errors import OsnasError, TrainingDivergedError
from osnas.pipeline.supernet import SupernetPhase
from osnas.run_dir import RunDir, atomic_write_bytes, load_checkpoint
from osnas.runtime import needed_disk_bytes, rng_state, seed_everything, set_rng_state
from osnas.training_strategies.uniform import Uniform
from tests.datasets import run_cli
from tests.small_config import small_config, write_config


@pytest.fixture(scope="module")
def lut_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("luts")


def make_agent(tmp_path: Path, lut_dir: Path, name: str, **sections) -> Launch:
    cfg = validate_config(small_config(tmp_path, lut_dir, **sections))
    return Launch(MainAgent(cfg, quiet=True), RunDir.create(tmp_path / "runs", name))


# ----------------------------------------------------------------------------- NaN / inf losses


def test_exploding_learning_rate_stops_the_run_naming_phase_epoch_and_step(capsys, tmp_path, lut_dir):
    config = write_config(tmp_path / "c.yaml", small_config(tmp_path, lut_dir))
    code, _, err = run_cli(capsys, "search", "--config", str(config), "--set", "supernet.optimizer.lr=1e30")
    assert code == 2, err
    assert "Traceback" not in err
    assert "the supernet loss became NaN or infinite at epoch 1, step" in " ".join(err.split())
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert not (run_dir / "supernet_last.pt").exists(), "a diverged epoch must not be checkpointed"


def test_nan_epoch_keeps_the_last_good_checkpoint(tmp_path, lut_dir, monkeypatch):
    launch = make_agent(tmp_path, lut_dir, "nan", supernet={"epochs": 2})
    steps_per_epoch = len(launch.agent.setup().dataflow.search_split()[0])
    original, calls = Uniform.step, []

    def step(self, supernet, batch, training_agent, updater):
        loss = original(self, supernet, batch, training_agent, updater)
        calls.append(1)
        return loss * float("nan") if len(calls) == steps_per_epoch + 2 else loss

    monkeypatch.setattr(Uniform, "step", step)
    with pytest.raises(TrainingDivergedError, match="supernet loss became NaN or infinite at epoch 2, step 2"):
        SupernetPhase(launch.agent.context(launch.run)).run()
    state = load_checkpoint(launch.run.file("supernet_last.pt"))
    assert state["epoch"] == 0
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())
    epochs = [json.loads(line)["epoch"] for line in launch.run.file("metrics.jsonl").read_text().splitlines()]
    assert epochs == [1]


# ----------------------------------------------------------------------------- disk


def test_failed_checkpoint_write_leaves_the_old_checkpoint_intact(tmp_path, monkeypatch):
    run = RunDir.create(tmp_path, "disk")
    run.save_checkpoint("supernet_last.pt", {"epoch": 0, "model": {"w": torch.ones(64)}})

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)  # fails after the new bytes went to the temporary file
    with pytest.raises(OsnasError, match="No space left on device") as info:
        run.save_checkpoint("supernet_last.pt", {"epoch": 1, "model": {"w": torch.zeros(64)}})
    assert "previous version of the file is intact" in str(info.value)
    assert f"osnas search --resume {run.path}" in str(info.value)
    monkeypatch.undo()
    state = load_checkpoint(run.file("supernet_last.pt"))
    assert state["epoch"] == 0 and bool((state["model"]["w"] == 1).all())
    assert [p.name for p in run.path.iterdir()] == ["supernet_last.pt"]


def test_too_little_free_space_is_reported_before_training(capsys, tmp_path, lut_dir, monkeypatch):
    config = write_config(tmp_path / "c.yaml", small_config(tmp_path, lut_dir))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(2**30, 2**30 - 2**20, 2**20))
    code, _, err = run_cli(capsys, "search", "--config", str(config))
    assert code == 2, err
    message = " ".join(err.split())
    assert "not enough free disk space for the checkpoints of this run" in message
    assert "MiB needed, 1 MiB free" in message
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_disk_estimate_covers_the_supernet_checkpoints(tmp_path, lut_dir):
    agent = make_agent(tmp_path, lut_dir, "estimate").agent
    from osnas.search_spaces.supernet import Supernet

    definition = agent.setup().definition
    weights = sum(t.numel() * t.element_size() for t in Supernet(definition).state_dict().values())
    assert needed_disk_bytes(agent.config, definition) >= 3 * weights


def test_output_directory_that_cannot_be_created(capsys, tmp_path, lut_dir):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    config = write_config(tmp_path / "c.yaml", small_config(tmp_path, lut_dir, output={"dir": str(blocker / "runs")}))
    code, _, err = run_cli(capsys, "search", "--config", str(config))
    assert code == 2 and "Traceback" not in err
    assert f"cannot write into {blocker / 'runs'}: {blocker} is a file, not a directory" in " ".join(err.split())


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_output_directory_without_write_permission(capsys, tmp_path, lut_dir):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    config = write_config(tmp_path / "c.yaml", small_config(tmp_path, lut_dir, output={"dir": str(locked)}))
    code, _, err = run_cli(capsys, "search", "--config", str(config))
    assert code == 2 and "is read-only" in err


# ----------------------------------------------------------------------------- interrupts


def test_interrupt_during_a_write_takes_effect_after_it(tmp_path, monkeypatch):
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"old")
    real_fsync = os.fsync

    def interrupted_fsync(fd: int) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the signal arrives here, in the middle of the write
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", interrupted_fsync)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b"new" * 1000)
    assert target.read_bytes() == b"new" * 1000
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_sigterm_ends_a_run_with_a_resume_hint(capsys, tmp_path):
    run = RunDir.create(tmp_path, "term")
    with pytest.raises(SystemExit) as info, resumable(run):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert info.value.code == 130
    assert f"osnas search --resume {run.path}" in " ".join(capsys.readouterr().err.split())
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_resume_drops_records_of_redone_work_and_unfinished_writes(tmp_path):
    run = RunDir.create(tmp_path, "prune")
    for record in ({"phase": "supernet", "epoch": 1}, {"phase": "supernet", "epoch": 2},
                   {"phase": "search", "eval": 1}, {"phase": "supernet", "epoch": 3}):
        run.log_metrics(record)
    with open(run.file("metrics.jsonl"), "a") as handle:
        handle.write('{"phase": "supernet", "ep')  # a line cut short by a kill
    (run.path / ".supernet_last.pt.x1y2.tmp").write_bytes(b"half")
    assert run.prune_metrics("supernet", 1) == 3
    kept = [json.loads(line) for line in run.file("metrics.jsonl").read_text().splitlines()]
    assert [(r["phase"], r.get("epoch", r.get("eval"))) for r in kept] == [("supernet", 1), ("search", 1)]
    assert run.prune_metrics("supernet", 1) == 0
    assert run.remove_temporaries() == [".supernet_last.pt.x1y2.tmp"]
    assert sorted(p.name for p in run.path.iterdir()) == ["metrics.jsonl"]


# ----------------------------------------------------------------------------- determinism and safe loading


def test_rng_states_survive_a_weights_only_round_trip():
    seed_everything(3)
    buffer = io.BytesIO()
    torch.save(rng_state(), buffer)
    expected = (random.random(), float(np.random.rand()), float(torch.rand(())))
    buffer.seek(0)
    set_rng_state(torch.load(buffer, weights_only=True))
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == expected


def test_state_that_could_not_be_loaded_back_is_refused_when_saved(tmp_path):
    run = RunDir.create(tmp_path, "unsafe")
    with pytest.raises(OsnasError, match=r"supernet_last.pt: strategy.population\[1\] is a numpy.ndarray"):
        run.save_checkpoint("supernet_last.pt", {"strategy": {"population": [[0, 1], np.zeros(2)]}})
    with pytest.raises(OsnasError, match=r"search_state.pt: best_score is a numpy.float64"):
        run.save_checkpoint("search_state.pt", {"best_score": np.float64(1.0)})
    assert not list(run.path.iterdir())


def test_deterministic_option_sets_the_torch_flags():
    try:
        seed_everything(0, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] in (":4096:8", ":16:8")
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False


def test_same_seed_and_config_give_the_same_result(tmp_path):
    lut_dir = tmp_path / "fresh-luts"  # the first run builds the lookup table, the second reuses it
    results = [make_agent(tmp_path, lut_dir, name).execute() for name in ("a", "b")]
    assert results[0]["indices"] == results[1]["indices"]
    assert results[0]["test"] == results[1]["test"]


def test_float64_models_take_float32_batches_and_still_profile_and_export_in_float32():
    from osnas.profiling import count_macs
    from osnas.training import compute_in

    net = nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    wide = compute_in(copy.deepcopy(net), torch.float64)
    x = torch.randn(5, 1, 8, 8)  # loaders deliver float32
    out = wide(x)
    assert out.dtype == torch.float64 and all(p.dtype == torch.float64 for p in wide.parameters())
    torch.testing.assert_close(out.float(), net(x), rtol=1e-4, atol=1e-5)
    assert count_macs(wide, (1, 1, 8, 8)) == count_macs(net, (1, 1, 8, 8)) > 0  # profiling casts a copy to float32
    assert copy.deepcopy(wide).float()(x).dtype == torch.float32  # inputs follow the parameters
    assert compute_in(net, torch.float32)(x).dtype == torch.float32 and not net._forward_pre_hooks
