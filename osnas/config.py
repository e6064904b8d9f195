"""Typed configuration: pydantic schema, YAML loading, ``--set`` overrides, readable errors.

Validation runs in two stages. The framework sections (``supernet``, ``constraint``,
...) are checked by :class:`FrameworkConfig`; each component section
(``search_space: {name: ..., <options>}``) is checked by the ``Options`` model of
the component it names, so an unknown option is reported with that component's
valid keys.
"""

from __future__ import annotations

import difflib
import re
import reprlib
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Optional, Union, get_args, get_origin

import yaml
from pydantic import (BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError, field_validator,
                      model_validator)

from osnas.errors import ConfigError
from osnas.registry import REGISTRIES


class Section(BaseModel):
    """Base for every config section: unknown keys are errors, and nothing is coerced.

    Strict types: ``batch_size: true`` or ``epochs: "3"`` is an error rather than 1
    or 3, and a number must be finite (``lr: .inf`` is refused).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False)


class ComponentOptions(Section):
    """Base for a component's own options (``Options`` inner class of a component)."""


class OptimizerConfig(Section):
    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: PositiveFloat = 0.05
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = True
    weight_decay: float = Field(4e-5, ge=0.0)


class PhaseConfig(Section):
    """A training phase (supernet training or final training)."""

    epochs: PositiveInt = 5
    optimizer: OptimizerConfig = OptimizerConfig()
    scheduler: Literal["cosine", "step", "none"] = "cosine"
    warmup_epochs: int = Field(0, ge=0)
    grad_clip: Optional[PositiveFloat] = 5.0
    amp: Literal["none", "bf16", "fp16"] = "none"
    # NHWC activations: auto = on for CPU (oneDNN; measured faster for these networks, BENCHMARKS.md
    # "compilers") and for CUDA with AMP (tensor cores); off for CUDA in float32 and for dtype float64
    channels_last: Union[bool, Literal["auto"]] = "auto"


class FinalConfig(PhaseConfig):
    epochs: PositiveInt = 10
    compile: bool = False


class ConstraintConfig(Section):
    """Hardware budget in explicit units: MACs and params in millions, latency in ms."""

    metric: Literal["macs", "params", "latency"] = "macs"
    max: PositiveFloat = 1e12
    min: Optional[float] = Field(None, ge=0.0)

    @model_validator(mode="after")
    def _ordered(self) -> "ConstraintConfig":
        if self.min is not None and self.min > self.max:
            raise ValueError(f"constraint.min ({self.min}) is larger than constraint.max ({self.max})")
        return self


class EvaluationConfig(Section):
    """How candidates are scored on the supernet during search."""

    bn_batches: int = Field(4, ge=0)
    val_batches: PositiveInt = 4
    # 512 MB: on the quickstart search a 2 GB cache reused 36 % of the layers against 30 % but was slower,
    # every kept activation being fresh memory the OS must map (BENCHMARKS.md, issue 17)
    prefix_cache_mb: float = Field(512.0, ge=0, description="memory for per-prefix BN statistics and activations "
                                   "of the evaluation batches (exact incremental evaluation; 0 turns it off)")


class AuditConfig(Section):
    """The ranking audit after the search (``osnas audit``): K stratified architectures trained from scratch."""

    enabled: bool = False
    k: int = Field(8, ge=2)
    proxy_epochs: Optional[PositiveInt] = None  # null: the run's final.epochs
    top_k: PositiveInt = 3
    seed: int = 0
    repeats: PositiveInt = 1  # stand-alone trainings per architecture (seeds seed, seed+1, ...); the mean is ranked

    @model_validator(mode="after")
    def _top_k(self) -> "AuditConfig":
        if self.top_k > self.k + 1:
            raise ValueError(f"audit.top_k ({self.top_k}) is larger than k + 1 = {self.k + 1} "
                             "(the K drawn architectures plus the found one)")
        return self


class LookupTableConfig(Section):
    latency: bool = True
    latency_batch: PositiveInt = 1
    latency_runs: int = Field(10, ge=10)
    cache_dir: Optional[str] = None


class StoreConfig(Section):
    """Where trained supernets are kept for reuse by later runs (default: OUTPUT_DIR/supernets)."""

    enabled: bool = True
    dir: Optional[str] = None


# a run directory is <name>-<timestamp>[-n]: room for the suffix within a file name's 255 bytes
MAX_NAME_BYTES = 200


class OutputConfig(Section):
    dir: str = "runs"
    name: str = "run"

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        """The run directory is ``<dir>/<name>-<timestamp>``: a path in the name would put it elsewhere."""
        bad = any(c in value for c in ("/", "\\", "\0")) or value != value.strip()
        if not value or value in (".", "..") or bad or len(value.encode()) > MAX_NAME_BYTES:
            raise ValueError(f"output.name must be a plain file name (no '/', '\\', not '.' or '..', no leading or "
                             f"trailing space, at most {MAX_NAME_BYTES} bytes), got {shown(value)}; "
                             "the run directory goes in output.dir")
        return value


class LoggingConfig(Section):
    tensorboard: bool = False
    progress: bool = True


# what numpy's and scikit-learn's seeds accept
MAX_SEED = 2**32 - 1


class FrameworkConfig(Section):
    seed: int = Field(0, ge=0, le=MAX_SEED)
    device: str = "auto"
    deterministic: bool = False
    dtype: Literal["float32", "float64"] = "float32"
    supernet: PhaseConfig = PhaseConfig()
    final: FinalConfig = FinalConfig()
    constraint: ConstraintConfig = ConstraintConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    lookup_table: LookupTableConfig = LookupTableConfig()
    output: OutputConfig = OutputConfig()
    store: StoreConfig = StoreConfig()
    logging: LoggingConfig = LoggingConfig()
    audit: AuditConfig = AuditConfig()

    @model_validator(mode="after")
    def _device(self) -> "FrameworkConfig":
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be one of auto, cpu, cuda, cuda:N (got {self.device!r})")
        return self

    @model_validator(mode="after")
    def _dtype(self) -> "FrameworkConfig":
        for phase in ("supernet", "final"):
            if self.dtype == "float64" and getattr(self, phase).amp != "none":
                raise ValueError(f"{phase}.amp ({getattr(self, phase).amp}) computes in half precision; "
                                 "it cannot be combined with dtype: float64 (set amp: none)")
        return self


class Component(BaseModel):
    """A component section after validation: its registered name and its typed options."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)
    name: str
    options: Any

    def dump(self) -> dict[str, Any]:
        return {"name": self.name, **self.options.model_dump(mode="json")}


# config section -> (registry kind, default component name)
COMPONENT_SECTIONS: dict[str, tuple[str, str]] = {
    "task": ("training_agent", "classification"),
    "criterion": ("criterion", "cross_entropy"),
    "dataflow": ("dataflow", "digits"),
    "search_space": ("search_space", "proxylessnas"),
    "training_strategy": ("training_strategy", "uniform"),
    "search_strategy": ("search_strategy", "evolution"),
}


class Config(FrameworkConfig):
    """The whole resolved configuration of a run."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    task: Component
    criterion: Component
    dataflow: Component
    search_space: Component
    training_strategy: Component
    search_strategy: Component
    source: str = Field("<config>", exclude=True)

    def dump(self) -> dict[str, Any]:
        """Plain data (YAML-ready) with every default filled in."""
        data = FrameworkConfig.model_validate(self.model_dump(include=set(FrameworkConfig.model_fields))).model_dump(
            mode="json"
        )
        for section in COMPONENT_SECTIONS:
            data[section] = getattr(self, section).dump()
        order = ["seed", "device", "deterministic", "dtype", *COMPONENT_SECTIONS]
        return {key: data[key] for key in order} | {k: v for k, v in data.items() if k not in order}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.dump(), sort_keys=False)


# ----------------------------------------------------------------------------- errors


BOUNDS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
MAX_SHOWN = 200  # characters of a user's value repeated in a message


def shown(value: Any) -> str:
    """``repr(value)`` cut to a readable length, at a bounded cost whatever the value's size."""
    short = reprlib.Repr()
    short.maxlevel, short.maxdict, short.maxlist, short.maxtuple, short.maxset = 3, 8, 8, 8, 8
    short.maxstring = short.maxother = short.maxlong = MAX_SHOWN
    return clip(short.repr(value))


def clip(text: str) -> str:
    """``text`` cut to :data:`MAX_SHOWN` characters."""
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."

TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def describe_type(annotation: Any, metadata: list[Any] = ()) -> str:
    """A type in the words of a config file: 'an integer > 0', 'one of sgd, adam', 'a number or null'."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return describe_type(args[0], [*args[1:], *metadata])
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (Union, UnionType):
        kinds = [describe_type(a) for a in args if a is not type(None)]
        return " or ".join(kinds) + (" or null" if type(None) in args else "")
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "a mapping with keys " + ", ".join(annotation.model_fields)
    text = TYPE_WORDS.get(annotation, getattr(annotation, "__name__", str(annotation)))
    bounds = [f"{sign} {getattr(m, key)}" for m in metadata for key, sign in BOUNDS.items()
              if getattr(m, key, None) is not None]
    return text + (" " + " and ".join(bounds) if bounds else "")


def _model_at(model: type[BaseModel], path: tuple[Any, ...]) -> type[BaseModel] | None:
    """Follow a location path through nested models, to list the valid keys there."""
    current: Any = model
    for part in path:
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            return None
        annotation = fields[part].annotation
        args = getattr(annotation, "__args__", ())
        candidates = [annotation, *args]
        current = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if current is None:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _expected(model: type[BaseModel], path: tuple[Any, ...]) -> str:
    parent = _model_at(model, path[:-1]) if path else None
    if parent is not None and path[-1] in parent.model_fields:
        field = parent.model_fields[path[-1]]
        return describe_type(field.annotation, field.metadata)
    return "a valid value"


def _valid_keys(model: type[BaseModel], loc: tuple[Any, ...], extra_keys: tuple[str, ...]) -> list[str]:
    parent = _model_at(model, loc[:-1])
    keys = list(parent.model_fields) if parent else []
    return keys + list(extra_keys) if len(loc) == 1 else keys


def _field_loc(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """``loc`` cut after a union field it reaches: there pydantic appends the member it tried (``bool``,
    ``literal['auto']``), one error per member, which are one problem to the user. Other locations
    (list items, nested sections) stay whole."""
    for n in range(1, len(loc) + 1):
        parent = _model_at(model, loc[:n - 1])
        if parent is None or loc[n - 1] not in parent.model_fields:
            return loc
        annotation = parent.model_fields[loc[n - 1]].annotation
        members = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
        if get_origin(annotation) in (Union, UnionType) and len(members) > 1:
            return loc[:n]
    return loc


def _origin(key: str, source: str, overrides: tuple[str, ...]) -> str:
    """Where a bad key came from: the ``--set`` that wrote it, else the file."""
    for item in overrides:
        path = item.split("=", 1)[0].strip()
        if key == path or key.startswith(path + ".") or path.startswith(key + "."):
            return f"--set {clip(item)}"
    return source


def format_validation_error(exc: ValidationError, model: type[BaseModel], source: str, prefix: str = "",
                            extra_keys: tuple[str, ...] = (), overrides: tuple[str, ...] = ()) -> str:
    """One readable line per problem: file (or ``--set``), key path, what is wrong, what is valid.

    ``extra_keys`` are valid keys at the top of ``model`` that it does not declare
    itself (the component sections next to the framework ones, ``name`` next to a
    component's options).
    """
    lines = []
    unions: dict[str, int] = {}  # key of a union field -> its line
    for err in exc.errors():
        loc = _field_loc(model, tuple(err["loc"]))
        key = ".".join(str(p) for p in (prefix.split(".") if prefix else []) + list(loc)) or "(top level)"
        where = _origin(key, source, overrides)
        if len(loc) < len(err["loc"]):  # a union field: one line for all its members, with what is wrong inside
            inner = ".".join(str(p) for p in err["loc"][len(loc) + 1:])
            if key not in unions:
                unions[key] = len(lines)
                lines.append(f"{where}: key '{key}': got {shown(err.get('input'))}; expected {_expected(model, loc)}")
            if inner:
                lines[unions[key]] += f"; at {inner}: {err['msg'].lower()} (got {shown(err.get('input'))})"
        elif err["type"] == "extra_forbidden":
            valid = _valid_keys(model, loc, extra_keys)
            close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            lines.append(f"{where}: unknown key '{key}'; valid keys here: {', '.join(valid) or 'none'}{hint}")
        elif err["type"] == "missing":
            lines.append(f"{where}: missing required key '{key}'")
        elif err["type"] == "literal_error":
            lines.append(f"{where}: key '{key}': got {shown(err.get('input'))}; {err['msg'].lower()}")
        elif err["type"] in ("value_error", "assertion_error"):
            lines.append(f"{where}: key '{key}': {err['msg'].removeprefix('Value error, ')}")
        else:
            lines.append(f"{where}: key '{key}': {err['msg'].lower()} "
                         f"(got {shown(err.get('input'))}; expected {_expected(model, loc)})")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- loading


# far beyond any real config (a handful of levels, hundreds of values), far below what would exhaust memory
MAX_DEPTH = 50
MAX_NODES = 100_000


class ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice, absurd nesting and alias bombs, naming where."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise yaml.YAMLError(f"nested more than {MAX_DEPTH} levels deep (line {self.peek_event().start_mark.line + 1})")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # '<<: *base' then overriding keys is intended
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in lines:
                raise yaml.YAMLError(f"key {shown(key)} is given twice, on line {lines[key]} and line "
                                     f"{key_node.start_mark.line + 1}; keep one")
            if isinstance(key, (str, int, float, bool)):
                lines[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


# YAML 1.1 reads 1e6 (no dot) as a string; read it as the number everyone means (YAML 1.2 does)
ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def expanded_size(node: yaml.Node, sizes: dict[int, int] | None = None) -> int:
    """Values in the document once every alias is expanded (counted per shared node, so it costs little)."""
    sizes = {} if sizes is None else sizes
    if id(node) not in sizes:
        sizes[id(node)] = 1  # a node that refers to itself counts once
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        sizes[id(node)] = 1 + sum(min(expanded_size(c, sizes), MAX_NODES + 1) for c in children)
    return sizes[id(node)]


def parse_yaml(text: str) -> Any:
    """Safe-load YAML text with the checks of :class:`ConfigLoader` and a limit on the expanded size."""
    loader = ConfigLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if expanded_size(node) > MAX_NODES:
            raise yaml.YAMLError(f"expands to more than {MAX_NODES} values (aliases repeated inside aliases?)")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Safe-load a YAML mapping, with errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = parse_yaml(path.read_text())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = exc.problem or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply ``a.b=value`` overrides; values are parsed as YAML scalars (``5``, ``true``, ``[1, 2]``)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {shown(item)}: expected KEY.PATH=VALUE, e.g. supernet.epochs=3")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"--set {shown(item)}: empty key in path {shown(key)}")
        try:
            value = parse_yaml(raw) if raw.strip() else ""
        except yaml.MarkedYAMLError:
            value = raw
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {shown(item)}: {exc}") from None
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = {}
            elif isinstance(child, str) and part in COMPONENT_SECTIONS:
                child = {"name": child}
            elif not isinstance(child, dict):
                raise ConfigError(f"--set {shown(item)}: '{'.'.join(parts[: i + 1])}' is a value, not a section")
            node[part] = child
            node = child
        node[parts[-1]] = value
    return data


def _validate_component(section: str, value: Any, source: str, overrides: tuple[str, ...] = ()) -> Component:
    kind, default = COMPONENT_SECTIONS[section]
    if value is None:
        value = {}
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: key '{section}' must be a component name or a mapping with 'name', got {shown(value)}")
    options = dict(value)
    name = options.pop("name", default)
    where = _origin(f"{section}.name", source, overrides)
    if not isinstance(name, str):
        raise ConfigError(f"{where}: key '{section}.name' must be a string, got {shown(name)}")
    registry = REGISTRIES[kind]
    if name not in registry:
        close = difflib.get_close_matches(name, registry.names(), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"{where}: key '{section}.name': unknown {kind} {shown(name)}; registered: {', '.join(registry.names())}{hint}"
        )
    cls = registry.get(name)
    try:
        parsed = cls.Options.model_validate(options)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, cls.Options, source, prefix=section, extra_keys=("name",),
                                                  overrides=overrides)) from None
    return Component(name=name, options=parsed)


def validate_config(data: dict[str, Any], source: str = "<config>", overrides: tuple[str, ...] = ()) -> Config:
    """Validate a raw mapping into a :class:`Config`, raising :class:`ConfigError`.

    ``overrides`` (the ``--set`` items applied to ``data``) let an error name the
    ``--set`` that caused it rather than the file.
    """
    data = dict(data)
    components = {section: _validate_component(section, data.pop(section, None), source, overrides)
                  for section in COMPONENT_SECTIONS}
    try:
        framework = FrameworkConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, FrameworkConfig, source, extra_keys=tuple(COMPONENT_SECTIONS),
                                                  overrides=overrides)) from None
    values = {name: getattr(framework, name) for name in FrameworkConfig.model_fields}
    _check_strategy_pair(components, source)
    return Config(**values, **components, source=source)


def _check_strategy_pair(components: dict[str, Component], source: str) -> None:
    """A search strategy that needs a kind of training strategy (learnt alpha) says so before any training."""
    search = components["search_strategy"].name
    needed = getattr(REGISTRIES["search_strategy"].get(search), "needs_training_strategy", object)
    trainers = REGISTRIES["training_strategy"]
    if not issubclass(trainers.get(components["training_strategy"].name), needed):
        fits = [name for name in trainers.names() if issubclass(trainers.get(name), needed)]
        raise ConfigError(f"{source}: search_strategy {search!r} cannot use training_strategy "
                          f"{components['training_strategy'].name!r}; set training_strategy to one of: {', '.join(fits)}")


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read, override and validate a config file."""
    data = apply_overrides(read_yaml(path), list(overrides))
    return validate_config(data, source=str(path), overrides=tuple(overrides))


def with_overrides(config: Config, overrides: list[str] | tuple[str, ...]) -> Config:
    """A copy of ``config`` with ``--set`` style overrides applied and revalidated."""
    return validate_config(apply_overrides(config.dump(), list(overrides)), source=config.source,
                           overrides=tuple(overrides))
