"""A run killed or interrupted at any moment continues where it stopped and ends exactly as an uninterrupted one."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from osnas.run_dir import RunDir, atomic_torch_save, load_checkpoint
from tests.conftest import ROOT, osnas_env
from tests.datasets import interrupt_after, run_cli
from tests.small_config import small_config, write_config

# tiny_config made smaller still (8x8 inputs, small splits), with enough epochs and generations to be killed in
SMALL = [arg for item in ("dataflow.input_size=8", "dataflow.val_fraction=0.5", "dataflow.test_fraction=0.8",
                          "supernet.epochs=3", "search_strategy.generations=4", "search_strategy.population=4",
                          "final.epochs=2") for arg in ("--set", item)]


def start_osnas(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "osnas", *args], cwd=ROOT, env=osnas_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(pattern: str, root: Path, proc: subprocess.Popen, timeout: float = 300) -> Path:
    """The first file matching ``pattern`` under ``root``, polled while ``proc`` runs."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = sorted(root.glob(pattern))
        if found:
            return found[0]
        if proc.poll() is not None:
            raise AssertionError(f"osnas ended (code {proc.returncode}) before {pattern} appeared:\n"
                                 f"{proc.stderr.read()}")
        time.sleep(0.01)
    proc.kill()
    raise AssertionError(f"{pattern} did not appear within {timeout} s")


def kill(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> tuple[int, str]:
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    return proc.returncode, stderr


def add_seconds(path: Path, phase: str, seconds: float) -> None:
    """Pretend ``phase`` had already taken ``seconds`` longer, to see the resumed run carry the time on."""
    state = load_checkpoint(path)
    state["seconds"][phase] += seconds
    atomic_torch_save(path, state)


def records(run_dir: Path, phase: str, key: str) -> list:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r[key] for r in map(json.loads, lines) if r["phase"] == phase]


def test_run_interrupted_in_every_phase_resumes_to_the_same_result(capsys, tiny_config, tmp_path):
    runs = tmp_path / "runs"
    code, _, err = run_cli(capsys, "search", "--config", str(tiny_config), "--quiet", *SMALL,
                           "--set", "output.name=ref")
    assert code == 0, err
    ref_dir = next(runs.glob("ref-*"))

    # SIGKILL during supernet training (after its first epoch checkpoint)
    proc = start_osnas("search", "--config", str(tiny_config), "--quiet", *SMALL, "--set", "output.name=cut")
    run_dir = wait_for("cut-*/supernet_last.pt", runs, proc).parent
    kill(proc)
    assert not (run_dir / "supernet.pt").exists(), "the kill was meant to land during supernet training"
    add_seconds(run_dir / "supernet_last.pt", "supernet", 1000.0)

    # resume, then SIGKILL during the search (after its first saved state)
    proc = start_osnas("search", "--resume", str(run_dir), "--quiet")
    wait_for("search_state.pt", run_dir, proc)
    kill(proc)
    assert (run_dir / "supernet.pt").exists() and not (run_dir / "architecture.json").exists(), \
        "the kill was meant to land during the search"
    add_seconds(run_dir / "search_state.pt", "search", 1000.0)

    # resume, then Ctrl-C during final training: a clean exit that says how to go on
    proc = start_osnas("search", "--resume", str(run_dir), "--quiet")
    checkpoint = wait_for("final_last.pt", run_dir, proc)
    code, stderr = kill(proc, signal.SIGINT)
    assert code == 130, stderr
    assert f"osnas search --resume {run_dir}" in " ".join(stderr.split()) and "Traceback" not in stderr
    assert not (run_dir / "model.pt").exists(), "the interrupt was meant to land during final training"
    assert load_checkpoint(checkpoint)["epoch"] == 0

    code, _, err = run_cli(capsys, "search", "--resume", str(run_dir), "--quiet")
    assert code == 0, err
    log = (run_dir / "log.txt").read_text()
    assert "supernet: resuming after epoch" in log and "search: resuming with" in log and "final: resuming" in log

    arch, ref_arch = (json.loads((d / "architecture.json").read_text()) for d in (run_dir, ref_dir))
    results, ref_results = (json.loads((d / "results.json").read_text()) for d in (run_dir, ref_dir))
    assert arch["indices"] == ref_arch["indices"]
    assert arch["score"] == ref_arch["score"]
    assert results["test"] == ref_results["test"]
    # time goes on from the checkpoints instead of restarting at zero
    assert 1000 < results["seconds"]["supernet"] < 2000
    assert 1000 < results["seconds"]["search"] < 2000
    # each epoch and evaluation is logged once, though some were redone after the kills
    assert records(run_dir, "supernet", "epoch") == [1, 2, 3]
    assert records(run_dir, "final", "epoch") == [1, 2]
    assert records(run_dir, "search", "eval") == records(ref_dir, "search", "eval")
    # retention: one file per finished phase, no per-epoch or temporary files
    assert not list(run_dir.glob("*_last.pt")) and not (run_dir / "search_state.pt").exists()
    assert not list(run_dir.glob(".*.tmp"))


def test_interrupted_train_run_resumes_its_final_training(capsys, tmp_path, monkeypatch):
    config = write_config(tmp_path / "c.yaml", small_config(tmp_path, tmp_path / "luts", final={"epochs": 2}))
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps({"space": "proxylessnas", "indices": [0] * 21, "search_seconds": 5.0}))
    monkeypatch.setattr(RunDir, "save_checkpoint", interrupt_after("final_last.pt"))
    code, _, err = run_cli(capsys, "train", "--config", str(config), "--arch", str(arch), "--quiet")
    assert code == 130 and "osnas search --resume" in err
    monkeypatch.undo()
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "architecture.json").read_text()) == {"space": "proxylessnas", "indices": [0] * 21}

    code, _, err = run_cli(capsys, "search", "--resume", str(run_dir), "--quiet")
    assert code == 0, err
    assert "final: resuming after epoch 1" in (run_dir / "log.txt").read_text()
    assert records(run_dir, "final", "epoch") == [1, 2] and not records(run_dir, "supernet", "epoch")
    results = json.loads((run_dir / "results.json").read_text())
    assert results["indices"] == [0] * 21 and "search" not in results["seconds"]
