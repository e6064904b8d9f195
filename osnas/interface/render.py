"""Render a component stub from the Jinja2 templates and write it safely.

Templates live in ``osnas/interface/templates/`` (package data, so an installed
osnas finds them; the repository's top-level ``templates`` is a link to it):
``common/`` holds the files every kind gets, ``<kind>/`` the kind's own files and
overrides. A template file name ``NAME_space.py.j2`` becomes ``<name>_space.py``.

Nothing is written unless every check passes: the names (NFKC-normalised first,
as Python normalises identifiers, so ``ｉｆ`` is checked as ``if``) are short
identifiers and not keywords; the name is not a built-in's of that kind, not an importable
module's and not a generated component's of another kind (pytest imports a
component package by its bare name); the class name shadows neither a Python
built-in nor a name the stub uses; the rendered Python compiles; every file
lands inside the output directory, whose path holds no file where a folder must
be and is writable; every file name fits the file system; no existing file is
overwritten without ``force``.
"""

from __future__ import annotations

import ast
import builtins
import importlib.util
import keyword
import os
import sys
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from osnas.config import COMPONENT_SECTIONS
from osnas.errors import OsnasError
from osnas.output_dir import check_output_dir
from osnas.plugins import load_builtins
from osnas.registry import KINDS, REGISTRIES

TEMPLATES = Path(__file__).resolve().parent / "templates"
# the module holding the component class, per kind
MODULE_SUFFIX = {
    "training_agent": "agent",
    "criterion": "criterion",
    "dataflow": "dataflow",
    "search_space": "space",
    "search_strategy": "strategy",
    "training_strategy": "strategy",
}
SECTION = {kind: section for section, (kind, _) in COMPONENT_SECTIONS.items()}
MAX_NAME = 64  # characters of a component or class name: file names are built from it


class InterfaceError(OsnasError):
    """A component cannot be generated as asked."""


@dataclass
class Plan:
    """The files one generation writes: path -> text, and which of them exist already."""

    kind: str
    name: str
    cls: str
    directory: Path
    files: dict[Path, str]
    existing: list[Path] = field(default_factory=list)


def default_class_name(name: str) -> str:
    """``my_space`` -> ``MySpace``."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part) or name


def normalized(name: str) -> str:
    """``name`` as Python reads it in source (NFKC): the form every check and every file uses."""
    return unicodedata.normalize("NFKC", name)


def validate_names(kind: str, name: str, cls: str) -> None:
    """Raise :class:`InterfaceError` unless kind, component name and class name (normalised) are usable."""
    if kind not in KINDS:
        raise InterfaceError(f"unknown component kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    for what, value in (("name", name), ("class name", cls)):
        if len(value) > MAX_NAME:
            raise InterfaceError(f"{what} {value[:20]!r}... has {len(value)} characters; use at most {MAX_NAME}")
        if not value.isidentifier() or keyword.iskeyword(value) or value.startswith("_"):
            raise InterfaceError(
                f"{what} {value!r} is not usable: it must be a Python identifier (letters, digits, underscores, "
                f"not starting with a digit or underscore) and not a keyword"
            )
    if hasattr(builtins, cls):
        raise InterfaceError(f"class name {cls!r} would shadow the Python built-in {cls!r}; choose another")
    spec = importlib.util.find_spec(name)
    if name in sys.stdlib_module_names or (spec is not None and spec.origin not in (None, "namespace")):
        raise InterfaceError(
            f"name {name!r} is already an importable module; pytest imports a generated package by its bare "
            f"name, so {name!r} would shadow it. Choose another name"
        )
    load_builtins()
    registry = REGISTRIES[kind]
    if name in registry and registry.origin(name) == "builtin":
        builtin_names = [n for n in registry.names() if registry.origin(n) == "builtin"]
        raise InterfaceError(
            f"{name!r} is a built-in {kind}; choose another name (built-ins: {', '.join(builtin_names)})"
        )


def template_names(kind: str) -> dict[str, str]:
    """Output file pattern (``NAME_space.py``) -> template to render, kind files overriding common ones."""
    names: dict[str, str] = {}
    for folder in ("common", kind):
        for path in sorted((TEMPLATES / folder).glob("*.j2")):
            names[path.name.removesuffix(".j2")] = f"{folder}/{path.name}"
    return names


def render(kind: str, name: str, cls: str, where: str) -> dict[str, str]:
    """File name -> rendered text of every file of the stub (``where``: the folder as the user sees it)."""
    import jinja2  # only needed here: keeps every other osnas command's start-up lighter

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # the output is Python and YAML, not HTML
    )
    context = {
        "kind": kind,
        "name": name,
        "cls": cls,
        "title": kind.replace("_", " "),
        "section": SECTION[kind],
        "module": f"{name}_{MODULE_SUFFIX[kind]}",
        "where": where,
    }
    files = {
        pattern.replace("NAME", name): env.get_template(template).render(context)
        for pattern, template in template_names(kind).items()
    }
    files = {f: files[f] for f in sorted(files, key=lambda f: (f != "__init__.py", f.startswith("test_"), f))}
    for filename, text in files.items():
        if filename.endswith(".py"):
            check_python(filename, text, cls)
    return files


def check_python(filename: str, text: str, cls: str) -> None:
    """The rendered module compiles and binds the class name only once (no shadowed import)."""
    try:
        tree = ast.parse(text, filename)
    except SyntaxError as exc:
        raise InterfaceError(f"template for {filename} rendered invalid Python (line {exc.lineno}): {exc.msg}") from None
    bound = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            bound += [(alias.asname or alias.name).split(".")[0] for alias in node.names]
        elif isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            bound.append(node.name)
        elif isinstance(node, ast.Assign):
            bound += [t.id for t in node.targets if isinstance(t, ast.Name)]
    for own in (cls, f"{cls}Options"):
        if bound.count(own) > 1:
            through = "" if own == cls else f" (through its options class {own!r})"
            raise InterfaceError(f"class name {cls!r} collides{through} with a name the generated {filename} "
                                 "already uses; choose another class name")


def check_file_name(path: Path) -> None:
    """The file name and the whole path fit the file system's limits (checked before anything is written)."""
    existing = next(parent for parent in path.parents if parent.exists())
    try:
        name_max, path_max = os.pathconf(existing, "PC_NAME_MAX"), os.pathconf(existing, "PC_PATH_MAX")
    except (AttributeError, OSError, ValueError):  # no pathconf (Windows): the common limits
        name_max, path_max = 255, 4096
    if len(os.fsencode(path.name)) > name_max or len(os.fsencode(str(path))) >= path_max:
        raise InterfaceError(f"file name {path.name!r} or path {path} is too long for the file system "
                             f"(at most {name_max} bytes a name, {path_max} a path); choose a shorter name "
                             "or output directory")


def plan(kind: str, name: str, cls: str | None, output_dir: Path) -> Plan:
    """Validate the request and render every file, writing nothing."""
    name = normalized(name)
    cls = normalized(cls or default_class_name(name))
    validate_names(kind, name, cls)
    root = Path(output_dir).resolve()
    for other in KINDS:
        if other != kind and (root / other / name / "__init__.py").is_file():
            raise InterfaceError(
                f"name {name!r} is taken by the {other} in {root / other / name}; pytest imports a generated package "
                f"by its bare name, so two packages named {name!r} cannot be tested together. Choose another name"
            )
    directory = (root / kind / name).resolve()
    check_output_dir(directory)
    where = (Path(output_dir) / kind / name).as_posix()
    files: dict[Path, str] = {}
    for filename, text in render(kind, name, cls, where).items():
        path = directory / filename
        if not path.resolve().is_relative_to(root):
            raise InterfaceError(f"refusing to write {path.resolve()}: it is outside the output directory {root}")
        check_file_name(path)
        files[path] = text
    existing = [path for path in files if path.exists() or path.is_symlink()]
    return Plan(kind, name, cls, directory, files, existing)


def write(plan: Plan, force: bool = False) -> None:
    """Write the planned files; refuse (writing nothing) if one exists and ``force`` is off."""
    if plan.existing and not force:
        listing = ", ".join(str(p) for p in plan.existing)
        raise InterfaceError(f"{len(plan.existing)} file(s) exist already and were left alone: {listing}; "
                             "pass --force to overwrite them")
    plan.directory.mkdir(parents=True, exist_ok=True)
    for path, text in plan.files.items():
        if path.is_symlink():
            path.unlink()  # replace a link itself, never the file it points to
        path.write_text(text)


def generate(kind: str, name: str, cls: str | None = None, output_dir: Path = Path("generated"),
             force: bool = False, dry_run: bool = False) -> Plan:
    """Plan a stub and, unless ``dry_run``, write it."""
    result = plan(kind, name, cls, output_dir)
    if not dry_run:
        write(result, force)
    return result
