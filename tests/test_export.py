"""``osnas export``: a trained child to ONNX with a dynamic batch, checked here independently of the command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from osnas.cli import app
from osnas.config import load_config
from osnas.errors import OsnasError
from osnas.components import config_definition
from osnas.export import export_onnx
from osnas.run_dir import atomic_torch_save, atomic_write_json
from osnas.search_spaces.child import build_child

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")




def fake_run(config: Path, root: Path) -> tuple[Path, torch.nn.Module, tuple[int, int, int]]:
    """A run directory as ``osnas search`` leaves it: config.yaml, architecture.json, model.pt."""
    cfg = load_config(config)
    definition = config_definition(cfg)
    # the shallowest network (zero wherever allowed): the dynamo exporter's time grows with the graph
    arch = np.array([names.index("zero") if "zero" in names else 1 for names in definition.entry_names])
    torch.manual_seed(0)
    child = build_child(definition, arch)
    with torch.no_grad():  # non-trivial BN statistics, as after training
        child.train()(torch.randn(8, definition.in_channels, definition.input_size, definition.input_size))
    child.eval()
    run = root / "run"
    run.mkdir()
    (run / "config.yaml").write_text(cfg.to_yaml())
    indices = [int(i) for i in arch]
    atomic_write_json(run / "architecture.json", {"space": definition.name, "indices": indices})
    atomic_torch_save(run / "model.pt", {"model": child.state_dict(), "space": definition.name, "indices": indices})
    return run, child, (definition.in_channels, definition.input_size, definition.input_size)


def assert_matches_torch(path: Path, child: torch.nn.Module, shape: tuple[int, int, int]) -> None:
    onnx.checker.check_model(onnx.load(str(path)))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = torch.randn(batch, *shape)
        with torch.no_grad():
            expected = child(x).numpy()
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_export_run_dir_to_onnx_with_dynamic_batch(tiny_config: Path, tmp_path: Path):
    run, child, shape = fake_run(tiny_config, tmp_path)
    result = CliRunner().invoke(app, ["export", "--run", str(run)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, (result.output, result.exception)
    assert "onnx.checker passed" in result.stdout and "batch 3" in result.stdout
    assert_matches_torch(run / "model.onnx", child, shape)


def test_export_from_config_arch_and_checkpoint_and_mismatch(tiny_config: Path, tmp_path: Path):
    run, child, shape = fake_run(tiny_config, tmp_path)
    target = tmp_path / "out" / "net.onnx"
    args = ["export", "--config", str(tiny_config), "--arch", str(run / "architecture.json"),
            "--checkpoint", str(run / "model.pt"), "--onnx", str(target), "--exporter", "torchscript"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    assert_matches_torch(target, child, shape)
    atomic_write_json(run / "architecture.json", {"space": "proxylessnas", "indices": [0] * len(child)})
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, OsnasError) and "different network" in str(result.exception)


@pytest.mark.parametrize("space", ["sgnas", "mobilefacenet"])
def test_new_spaces_export(space: str, tmp_path: Path):
    """Split/concat depthwise sub-blocks, PReLU and GDC survive export (the legacy exporter: 10x faster to test)."""
    from osnas.registry import REGISTRIES

    cls = REGISTRIES["search_space"].get(space)
    definition = cls(cls.Options(width_mult=0.25)).define(16, 3, 8)
    child = build_child(definition, definition.sample(np.random.default_rng(1), 1)[0]).eval()
    report = export_onnx(child, (3, 16, 16), tmp_path / f"{space}.onnx", exporter="torchscript")
    assert set(report.max_error) == {1, 3} and max(report.max_error.values()) <= 1e-4
    assert_matches_torch(report.path, child, (3, 16, 16))
