"""``osnas export``: a trained child network to ONNX, checked against torch with onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from osnas.cli.app import app, out
from osnas import artifacts
from osnas.config import load_config
from osnas.errors import OsnasError
from osnas.run_dir import RunDir


@app.command("export")
def export(
    run: Optional[Path] = typer.Option(None, "--run", help="Run directory with config.yaml, architecture.json, model.pt."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config (instead of --run)."),
    arch: Optional[Path] = typer.Option(None, "--arch", help="architecture.json (with --config)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Trained child RUN/model.pt (with --config)."),
    onnx_path: Optional[Path] = typer.Option(None, "--onnx", help="Output file (default RUN_DIR/model.onnx, "
                                             "or the checkpoint path with .onnx)."),
    exporter: str = typer.Option("dynamo", "--exporter", help="dynamo (torch.export, default) or torchscript (legacy)."),
) -> None:
    """Export the trained child to ONNX with a dynamic batch; verify it with onnx.checker and onnxruntime."""
    from osnas.components import config_definition
    from osnas.export import export_onnx, load_trained_child

    if run is not None:
        if config is not None or checkpoint is not None:
            raise OsnasError("use either --run RUN_DIR or --config with --arch and --checkpoint, not both")
        rundir = RunDir.open(run)
        cfg = artifacts.read_config(rundir)
        checkpoint = rundir.file(artifacts.MODEL)
        arch = arch or (rundir.file(artifacts.ARCHITECTURE) if rundir.exists(artifacts.ARCHITECTURE) else None)
        target = onnx_path or rundir.file(artifacts.ONNX)
    elif config is not None and checkpoint is not None and arch is not None:
        cfg = load_config(config)
        target = onnx_path or checkpoint.with_suffix(".onnx")
    else:
        raise OsnasError("osnas export needs --run RUN_DIR, or --config CONFIG --arch architecture.json "
                         "--checkpoint model.pt")
    definition = config_definition(cfg)
    child = load_trained_child(definition, checkpoint, arch)
    report = export_onnx(child, (definition.in_channels, definition.input_size, definition.input_size), target,
                         exporter)  # type: ignore[arg-type]
    errors = ", ".join(f"batch {b}: {e:.2e}" for b, e in report.max_error.items())
    out.print(f"exported {definition.name} to {report.path} ({report.exporter} exporter, opset {report.opset}, "
              f"dynamic batch); onnx.checker passed; max |onnxruntime - torch|: {errors}", highlight=False,
              soft_wrap=True)
