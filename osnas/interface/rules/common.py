"""Rules every kind shares: registration, docstring, options."""

from __future__ import annotations

from osnas.criteria.base import Criterion, CriterionOptions
from osnas.dataflows.base import Dataflow, DataflowOptions
from osnas.interface.contract import Broken, Subject, rule
from osnas.registry import KINDS, REGISTRIES
from osnas.search_spaces.base import SearchSpace, SearchSpaceOptions
from osnas.search_strategies.base import SearchStrategy, SearchStrategyOptions
from osnas.training_agents.base import TrainingAgent, TrainingAgentOptions
from osnas.training_strategies.base import TrainingStrategy, TrainingStrategyOptions

BASES: dict[str, tuple[type, type]] = {
    "training_agent": (TrainingAgent, TrainingAgentOptions),
    "criterion": (Criterion, CriterionOptions),
    "dataflow": (Dataflow, DataflowOptions),
    "search_space": (SearchSpace, SearchSpaceOptions),
    "training_strategy": (TrainingStrategy, TrainingStrategyOptions),
    "search_strategy": (SearchStrategy, SearchStrategyOptions),
}


@rule(KINDS, "the class is registered under its name, subclasses the kind's base and has a one-line docstring")
def check_registered(s: Subject) -> None:
    base = BASES[s.kind][0]
    registry = REGISTRIES[s.kind]
    if s.name not in registry:
        raise Broken(f"no {s.kind} is registered as {s.name!r}; decorate the class with "
                     f"@register({s.kind!r}, {s.name!r})")
    if registry.get(s.name) is not s.cls:
        raise Broken(f"{s.name!r} is registered to another class ({registry.get(s.name).__qualname__})")
    if not issubclass(s.cls, base):
        raise Broken(f"{s.cls.__name__} does not subclass {base.__module__}.{base.__name__}")
    if not (s.cls.__doc__ or "").strip():
        raise Broken(f"{s.cls.__name__} has no docstring; its first line is what `osnas list` shows")


@rule(KINDS, "Options subclasses the kind's options base, forbids unknown keys and has a default for every key")
def check_options(s: Subject) -> None:
    base = BASES[s.kind][1]
    options = getattr(s.cls, "Options", None)
    if not (isinstance(options, type) and issubclass(options, base)):
        raise Broken(f"{s.cls.__name__}.Options is not a subclass of {base.__module__}.{base.__name__}")
    if options.model_config.get("extra") != "forbid":
        raise Broken("Options accepts unknown keys; a typo in a config would pass silently (keep extra='forbid')")
    required = [key for key, f in options.model_fields.items() if f.is_required()]
    if required:
        raise Broken(f"option(s) without a default: {', '.join(required)}; a config naming only the component "
                     "must work")
    s.options.model_dump()  # the overrides of `osnas check --option` validate
