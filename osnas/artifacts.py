"""Every file of a run directory: its name, and typed read / validate / write.

Nothing else in osnas builds a run file's path from a string or parses one of
them ad hoc: a bad file then gets the same clear message (file, key, what is
valid) wherever it is read, and a new field is added in one place.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Optional, Union

import torch
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from osnas.config import Config, format_validation_error, read_yaml, validate_config
from osnas.errors import ArchitectureError, OsnasError
from osnas.run_dir import METRICS_FILE, RUN_MARKER, RunDir, atomic_write_json, load_checkpoint, read_json, short_error

if TYPE_CHECKING:
    import numpy as np

    from osnas.search_spaces.base import SpaceDefinition

CONFIG = RUN_MARKER  # config.yaml: its presence marks a run directory
LOG = "log.txt"
METRICS = METRICS_FILE
SUPERNET = "supernet.pt"
SUPERNET_LAST = "supernet_last.pt"
SUPERNET_SOURCE = "supernet_source.json"  # where the supernet came from (osnas/store.py)
SEARCH_STATE = "search_state.pt"
ARCHITECTURE = "architecture.json"
PARETO = "pareto.json"
MODEL = "model.pt"
FINAL_LAST = "final_last.pt"
RESULTS = "results.json"
AUDIT = "audit.json"
ONNX = "model.onnx"
CURVES = "curves.png"
LOOKUP_TABLES = "lookup_tables"  # default cache folder under output.dir

# 1: space, indices, costs, timings; 2: also input size, channels, outputs and the space's options
ARCHITECTURE_FORMAT = 2


def _not_nan(value: float) -> float:
    if math.isnan(value):
        raise ValueError("is NaN")
    return value


Index = Annotated[StrictInt, Field(ge=0, lt=2**31)]  # a candidate index (bounded: numpy needs it in int64)
Number = Annotated[float, AfterValidator(_not_nan)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Size = Annotated[StrictInt, Field(gt=0, lt=2**31)]


class _File(BaseModel):
    """A JSON run file: known keys typed, other keys kept as they are (older or newer writers)."""

    model_config = ConfigDict(extra="allow")

    @classmethod
    def parse(cls, data: Any, source: str) -> Any:
        if not isinstance(data, dict):
            raise OsnasError(f"{source}: expected a JSON object with keys {', '.join(cls.required())}, "
                             f"got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise OsnasError(format_validation_error(exc, cls, source)) from None

    @classmethod
    def required(cls) -> list[str]:
        return [name for name, field in cls.model_fields.items() if field.is_required()]

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True, exclude_unset=True)


class Architecture(_File):
    """``architecture.json``: the searched network and what it needs to be rebuilt on its own."""

    format: StrictInt = 1  # files written before format 2 have no key
    space: str
    indices: list[Index]
    space_hash: Optional[str] = None
    input_size: Optional[Size] = None
    in_channels: Optional[Size] = None
    num_outputs: Optional[Size] = None
    space_options: Optional[dict[str, Any]] = None
    candidates: Optional[list[str]] = None
    costs: Optional[dict[str, Finite]] = None
    score: Optional[Number] = None
    repaired: Optional[StrictBool] = None
    evaluated: Optional[StrictInt] = None
    search_seconds: Optional[Finite] = None
    supernet_seconds: Optional[Finite] = None

    @classmethod
    def parse(cls, data: Any, source: str) -> "Architecture":
        indices = data.get("indices") if isinstance(data, dict) else None
        if isinstance(data, dict) and not (isinstance(indices, list) and all(
                isinstance(i, int) and not isinstance(i, bool) for i in indices)):
            raise OsnasError(f"{source}: 'indices' must be a list of integers (one candidate index per searchable "
                             f"layer), got {indices!r}")
        return super().parse(data, source)

    @classmethod
    def of(cls, definition: SpaceDefinition, arch: Any, space_options: dict[str, Any], **fields: Any
           ) -> "Architecture":
        """The record of ``arch`` in ``definition`` (format 2), plus any further fields (score, costs, ...)."""
        indices = [int(i) for i in arch]
        return cls(format=ARCHITECTURE_FORMAT, space=definition.name, space_hash=definition.fingerprint(),
                   input_size=definition.input_size, in_channels=definition.in_channels,
                   num_outputs=definition.num_outputs, space_options=space_options, indices=indices,
                   candidates=definition.candidate_names(indices), **fields)

    def vector(self, definition: SpaceDefinition, source: str) -> np.ndarray:
        """The indices checked against ``definition`` (space name, length, ranges, rules)."""
        if self.space != definition.name:
            raise ArchitectureError(f"{source}: architecture is for space {self.space!r}, not {definition.name!r}")
        try:
            return definition.validate_arch(self.indices)
        except ArchitectureError as exc:
            raise ArchitectureError(f"{source}: {exc}") from None

    def is_complete(self) -> bool:
        """Whether the network can be rebuilt from this file alone (format 2)."""
        return None not in (self.input_size, self.in_channels, self.num_outputs, self.space_options)

    def definition(self, source: str, **overrides: Any) -> SpaceDefinition:
        """The space definition recorded here; ``overrides``: input_size, in_channels, num_outputs, options."""
        from osnas.components import define_space

        shape = {k: overrides.get(k) or getattr(self, k) for k in ("input_size", "in_channels", "num_outputs")}
        missing = [k for k, v in shape.items() if v is None]
        if missing or self.space_options is None and not overrides.get("options"):
            raise OsnasError(f"{source} does not record {', '.join(missing) or 'the space options'} (written by an "
                             "older osnas); give them explicitly or use the run directory")
        options = {**(self.space_options or {}), **(overrides.get("options") or {})}
        definition = define_space(self.space, options, **shape)
        unchanged = not any(overrides.get(k) for k in ("input_size", "in_channels", "num_outputs", "options"))
        if unchanged and self.space_hash is not None and self.space_hash != definition.fingerprint():
            raise OsnasError(f"{source}: space {self.space!r} built from the recorded options differs from the one "
                             "searched (space_hash); the space's code changed since this run")
        return definition


class Results(_File):
    """``results.json``: the test metrics and costs of the trained child."""

    space: str
    indices: list[Index]
    test: dict[str, Number]
    macs: Union[StrictInt, Finite]
    params: StrictInt
    latency_ms: Optional[Finite]  # None when latency was not measured (lookup_table.latency: false)
    latency: Union[Literal["not measured"], dict[str, Any], None] = None  # spread of the timing (profiling.py)
    candidates: list[str] = []
    seconds: dict[str, Finite] = {}
    device: Optional[str] = None
    constraint: Optional[dict[str, Any]] = None


def read_json_file(path: Path, what: str) -> Any:
    """A JSON file; a folder, a missing file or bad JSON is one clear error naming ``what`` was expected."""
    path = Path(path)
    if path.is_dir():
        raise OsnasError(f"{path} is a directory; expected {what}")
    try:
        return read_json(path)
    except PermissionError:
        raise OsnasError(f"{path}: permission denied") from None


def architecture_path(path: Path) -> Path:
    """``path`` itself, or a run directory's architecture.json."""
    path = Path(path)
    if path.is_dir():
        if not (path / ARCHITECTURE).is_file():
            raise OsnasError(f"{path} is a directory without {ARCHITECTURE}; give an architecture file or a run "
                             "directory whose search finished")
        return path / ARCHITECTURE
    return path


def read_architecture(path: Path) -> Architecture:
    """An ``architecture.json`` (or a run directory's), validated; older files without format 2 fields too."""
    path = architecture_path(path)
    data = read_json_file(path, f"an {ARCHITECTURE}")
    if isinstance(data, dict) and "indices" not in data:
        raise OsnasError(f"{path}: not an architecture file (expected keys space, indices)")
    return Architecture.parse(data, str(path))


def write_architecture(path: Path | RunDir, record: Architecture) -> Path:
    """Write ``record`` as a run's architecture.json (``RunDir``) or to a file path."""
    if isinstance(path, RunDir):
        return path.write_json(ARCHITECTURE, record.to_dict())
    atomic_write_json(Path(path), record.to_dict())
    return Path(path)


def read_results(path: Path) -> Results:
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS
    return Results.parse(read_json_file(path, f"a {RESULTS}"), str(path))


def write_results(run: RunDir, results: dict[str, Any]) -> Path:
    return run.write_json(RESULTS, results)


def write_pareto(run: RunDir, front: list[dict[str, Any]]) -> Path:
    return run.write_json(PARETO, front)


def read_pareto(path: Path) -> list[dict[str, Any]]:
    path = Path(path)
    data = read_json_file(path / PARETO if path.is_dir() else path, f"a {PARETO}")
    if not isinstance(data, list) or not all(isinstance(entry, dict) for entry in data):
        raise OsnasError(f"{path}: expected a list of objects (one per Pareto-optimal architecture)")
    return data


def read_config(path: Path | RunDir) -> Config:
    """A run's saved config.yaml (or a config file), validated."""
    path = path.file(CONFIG) if isinstance(path, RunDir) else Path(path)
    return validate_config(read_yaml(path), source=str(path))


def write_config(run: RunDir, config: Config) -> Path:
    return run.write_text(CONFIG, config.to_yaml())


def lookup_table_dir(config: Config) -> Path:
    """Where a config's lookup tables are cached: lookup_table.cache_dir, else OUTPUT_DIR/lookup_tables."""
    cache = config.lookup_table.cache_dir
    return Path(cache) if cache else Path(config.output.dir) / LOOKUP_TABLES


# ----------------------------------------------------------------------------- checkpoints


def _checkpoint(path: Path, keys: tuple[str, ...], what: str, name: str) -> dict[str, Any]:
    state = load_checkpoint(path)
    if not isinstance(state, dict) or any(k not in state for k in keys):
        raise OsnasError(f"{path} is not an osnas {what} checkpoint (expected RUN/{name} with keys "
                         f"{', '.join(keys)})")
    return state


def read_supernet(path: Path, definition: SpaceDefinition) -> dict[str, Any]:
    """A trained supernet (``RUN/supernet.pt``) for ``definition``: weights, strategy state, timings.

    Checked against the space without building it (on the meta device), so ``--supernet`` can be
    checked before the run directory is created and a wrong file leaves nothing behind.
    """
    from osnas.search_spaces.supernet import Supernet  # the space code imports the run-file helpers

    path = Path(path)
    usage = f"--supernet takes the {SUPERNET} of a search run (RUN/{SUPERNET})"
    if path.is_dir():
        raise OsnasError(f"{path} is a directory; {usage}")
    state = load_checkpoint(path)
    if not isinstance(state, dict) or not {"model", "strategy", "space_hash"} <= set(state):
        kind = (f"a trained child network ({MODEL}, for osnas evaluate)" if isinstance(state, dict)
                and "indices" in state else "not an osnas supernet checkpoint")
        raise OsnasError(f"{path} is {kind}; {usage}")
    if state["space_hash"] != definition.fingerprint():
        raise OsnasError(
            f"{path} was trained on a different search space definition than this config's "
            f"{definition.name!r} (space, its options and the input size must match)"
        )
    with torch.device("meta"):
        model = Supernet(definition)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # copying into meta tensors is a shape check only, as wanted
            model.load_state_dict(state["model"])
    except (RuntimeError, TypeError, KeyError, AttributeError) as exc:
        raise OsnasError(f"{path} does not fit this config's supernet ({short_error(exc)}); {usage}") from None
    return state


def supernet_state(model: dict[str, Any], strategy: dict[str, Any], definition: SpaceDefinition,
                   seconds: dict[str, float] | None) -> dict[str, Any]:
    """The content of ``supernet.pt`` (``seconds`` None: the time belongs to the run that trained it)."""
    state = {"model": model, "strategy": strategy, "space": definition.name, "space_hash": definition.fingerprint()}
    return state if seconds is None else {**state, "seconds": dict(seconds)}


def read_model(path: Path, space: str) -> dict[str, Any]:
    """A trained child (``RUN/model.pt``): weights, space name and indices; it must be of ``space``."""
    path = Path(path)
    if path.is_dir():
        path = path / MODEL
    state = _checkpoint(path, ("model", "indices"), "model", MODEL)
    if state.get("space") != space:
        raise OsnasError(f"{path} holds a {state.get('space')!r} network but the config uses {space!r}")
    return state


def model_state(model: dict[str, Any], space: str, arch: Any, seconds: dict[str, float]) -> dict[str, Any]:
    return {"model": model, "space": space, "indices": [int(i) for i in arch], "seconds": dict(seconds)}
