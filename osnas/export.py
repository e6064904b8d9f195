"""ONNX export of a trained child network with a dynamic batch dimension, verified with onnxruntime.

The default exporter is torch's current one (``dynamo=True``, via ``torch.export``
and onnxscript): the TorchScript exporter is deprecated since torch 2.9. The batch
dimension is declared with ``dynamic_shapes``; ``exporter="torchscript"`` (with
``dynamic_axes``) remains for networks ``torch.export`` cannot trace. Only the child
is exported: margin-loss heads live in the criterion and are training-only.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

import numpy as np
import torch
import torch.nn as nn

from osnas import artifacts
from osnas.errors import OsnasError
from osnas.search_spaces.base import SpaceDefinition
from osnas.search_spaces.child import build_child

Exporter = Literal["dynamo", "torchscript"]
INPUT, OUTPUT = "input", "output"


@dataclass
class ExportReport:
    """What was written and how closely onnxruntime reproduces torch."""

    path: Path
    exporter: str
    opset: int
    max_error: dict[int, float]


def load_trained_child(definition: SpaceDefinition, checkpoint: Path, arch_path: Path | None = None) -> nn.Module:
    """The child of ``RUN/model.pt`` with its weights; ``architecture.json``, if given, must name the same network."""
    state = artifacts.read_model(checkpoint, definition.name)
    if arch_path is not None:
        record = artifacts.read_architecture(arch_path)
        if record.space != definition.name or record.indices != [int(i) for i in state["indices"]]:
            raise OsnasError(f"{arch_path} describes a different network than {checkpoint} "
                             f"({record.space} {record.indices} vs {state.get('space')} {state['indices']})")
    try:
        child = build_child(definition, state["indices"])
    except OsnasError as exc:
        raise OsnasError(f"{checkpoint}: {exc}") from None
    try:
        child.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise OsnasError(f"{checkpoint} does not match the network of this config: {str(exc).splitlines()[0]}") from None
    return child.eval()


def _require(module: str) -> Any:
    """Import an optional ONNX dependency, or explain how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise OsnasError(f"ONNX export needs {module}; install the extra: pip install 'osnas[onnx]'") from None


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's progress prints, deprecation warnings and torchvision notices."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export_onnx(model: nn.Module, input_shape: Sequence[int], path: Path, exporter: Exporter = "dynamo",
                check_batches: Sequence[int] = (1, 3), atol: float = 1e-4) -> ExportReport:
    """Write ``model`` (eval mode, CPU, float32) to ``path`` with a dynamic batch and check it.

    ``input_shape`` is (C, H, W). The file must pass ``onnx.checker`` and its
    onnxruntime outputs must match torch within ``atol`` at every ``check_batches`` size.
    """
    if exporter not in ("dynamo", "torchscript"):
        raise OsnasError(f"unknown ONNX exporter {exporter!r}; valid: dynamo, torchscript")
    onnx = _require("onnx")
    if exporter == "dynamo":
        _require("onnxscript")
    model = model.cpu().float().eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.randn(2, *input_shape)  # batch 2: torch.export specializes sizes 0 and 1
    try:
        with _quiet_exporter(), torch.no_grad():
            if exporter == "dynamo":
                batch = torch.export.Dim("batch", min=1)
                torch.onnx.export(model, (example,), str(path), dynamo=True, dynamic_shapes=({0: batch},),
                                  input_names=[INPUT], output_names=[OUTPUT], external_data=False, verbose=False)
            else:
                torch.onnx.export(model, (example,), str(path), dynamo=False, input_names=[INPUT],
                                  output_names=[OUTPUT], dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}})
    except Exception as exc:  # exporter failures come in many types
        raise OsnasError(f"ONNX export ({exporter}) failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"
                         + (" (try --exporter torchscript)" if exporter == "dynamo" else "")) from None
    proto = onnx.load(str(path))
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise OsnasError(f"exported {path} fails onnx.checker: {exc}") from None
    errors = verify_onnx(model, path, input_shape, check_batches)
    worst = max(errors.values())
    if not worst <= atol:
        raise OsnasError(f"exported {path} differs from torch by {worst:.3g} (> {atol:g}) at batch sizes "
                         f"{', '.join(str(b) for b, e in errors.items() if not e <= atol)}")
    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return ExportReport(path, exporter, opset, errors)


def verify_onnx(model: nn.Module, path: Path, input_shape: Sequence[int], batches: Sequence[int]) -> dict[int, float]:
    """Largest absolute difference between onnxruntime and torch outputs, per batch size."""
    ort = _require("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    generator = torch.Generator().manual_seed(0)
    errors: dict[int, float] = {}
    for batch in batches:
        x = torch.randn(batch, *input_shape, generator=generator)
        with torch.no_grad():
            expected = model(x).numpy()
        got = session.run(None, {name: x.numpy()})[0]
        if got.shape != expected.shape:
            raise OsnasError(f"exported {path} returns shape {got.shape} for batch {batch}; torch gives {expected.shape}")
        errors[batch] = float(np.abs(got - expected).max())
    return errors
