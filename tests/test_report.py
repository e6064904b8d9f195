"""``osnas report`` (summary + curves.png) and the TensorBoard mirror of metrics.jsonl."""

import json
import sys

import matplotlib.image
import pytest
from typer.testing import CliRunner

from osnas.cli import app, main
from osnas.config import load_config
from osnas.run_dir import RunDir
from osnas.tb import MISSING, TensorBoardLogger, attach

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RESULTS = {
    "space": "proxylessnas", "indices": [0, 1], "candidates": ["k3_e3", "zero"],
    "test": {"top1": 91.25, "top5": 99.5, "loss": 0.31}, "test_top1": 91.25,
    "macs": 2_500_000, "params": 150_000, "latency_ms": 1.7, "device": "cpu",
    "constraint": {"metric": "macs", "max": 3.0, "min": None},
    "seconds": {"supernet": 12.0, "search": 3.5, "final": 20.0, "total": 36.0},
}


def report(run_dir):
    """``osnas report RUN_DIR`` in this process (no interpreter start: the test stays fast)."""
    return CliRunner().invoke(app, ["report", str(run_dir)], env={"COLUMNS": "200"})


def make_run(path, records, results=None):
    path.mkdir(parents=True)
    (path / "config.yaml").write_text("seed: 0\n")
    run = RunDir.open(path)
    for record in records:
        run.log_metrics(record)
    if results is not None:
        run.write_json("results.json", results)
    return run


def training_records():
    records = [{"phase": "supernet", "epoch": e, "loss": 2.3 - 0.2 * e, "lr": 0.1} for e in (1, 2, 3)]
    records += [{"phase": "search", "eval": i, "arch": [0, 1], "score": 10.0 + i % 3, "cost": 2.0,
                 "best_score": 10.0 + min(i, 2)} for i in range(1, 7)]
    records += [{"phase": "final", "epoch": e, "loss": 1.5 / e, "train_top1": 50.0 + 10 * e} for e in (1, 2)]
    return records


def test_report_prints_summary_and_writes_curves(tmp_path):
    run = make_run(tmp_path / "run", training_records(), RESULTS)
    with open(run.file("metrics.jsonl"), "a") as handle:
        handle.write('{"phase": "final", "epoch": 3, "lo')  # a line cut short by a crash is skipped
    proc = report(run.path)
    assert proc.exit_code == 0, proc.output
    assert "91.25" in proc.stdout and "2.50 M" in proc.stdout and "macs <= 3.0" in proc.stdout
    assert "k3_e3 zero" in proc.stdout
    png = run.file("curves.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    assert matplotlib.image.imread(run.file("curves.png")).shape[1] > 500


def test_report_of_an_unfinished_run_shows_its_progress(tmp_path):
    run = make_run(tmp_path / "partial", training_records()[:5])
    proc = report(run.path)
    assert proc.exit_code == 0, proc.output
    assert "no results yet" in proc.stdout
    assert "epoch 3 logged" in proc.stdout and "2 candidates scored" in proc.stdout
    assert run.file("curves.png").read_bytes().startswith(PNG_SIGNATURE)


def test_report_of_a_directory_that_is_no_run_fails_clearly(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["osnas", "report", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "not an osnas run directory" in err and "Traceback" not in err


class FakeWriter:
    def __init__(self):
        self.scalars, self.flushes = [], 0

    def add_scalar(self, tag, value, global_step=None):
        self.scalars.append((tag, value, global_step))

    def flush(self):
        self.flushes += 1

    def close(self):
        pass


def test_tensorboard_logger_mirrors_metrics_records(tmp_path):
    run = make_run(tmp_path / "run", [])
    writer = FakeWriter()
    run.sinks.append(TensorBoardLogger(writer))
    for record in training_records()[:4]:
        run.log_metrics(record)
    assert ("supernet/loss", 2.1, 1) in [(t, round(v, 6), s) for t, v, s in writer.scalars]
    assert ("search/score", 11.0, 1) in writer.scalars and ("search/best_score", 11.0, 1) in writer.scalars
    assert not any(tag.endswith(("/epoch", "/eval", "/time", "/arch")) for tag, _, _ in writer.scalars)
    assert writer.flushes == 4
    lines = run.file("metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["phase"] for line in lines] == ["supernet"] * 3 + ["search"]


def test_tensorboard_missing_is_one_message_and_the_run_goes_on(tiny_config, tmp_path, capsys):
    config = load_config(tiny_config, ["logging.tensorboard=true"])
    run = make_run(tmp_path / "run", [])
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        assert attach(run, config) is None
        assert "pip install 'osnas[tensorboard]'" in MISSING
        assert MISSING in capsys.readouterr().err
        assert run.sinks == []
    else:
        assert attach(run, config) is not None and len(run.sinks) == 1
    assert attach(run, load_config(tiny_config)) is None  # off by default
