"""One-command check of osnas on a machine with an accelerator and no internet.

``bash benchmarks/gpu_check.sh [--wheels DIR] [--report FILE] [--dry-run]``
(or ``python -m benchmarks --gpu-check ...``). Standard library only: it runs before osnas is
installed. Steps, each under its own time limit and all under one budget (8 minutes):

1. probe: python, torch and the GPUs;
2. install osnas with ``pip install --no-deps`` on the machine's own torch;
3. dependencies that are missing (or too old) from a local wheel folder, torch pinned to the
   installed version. Fill the folder on a machine with internet, for the target's Python::

       pip download --only-binary=:all: --python-version 3.12 \\
           --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \\
           -d wheels numpy pydantic PyYAML typer rich thop scikit-learn matplotlib Jinja2 Pillow \\
           setuptools pytest pytest-timeout

   (add ``--platform manylinux_2_28_aarch64`` etc. for an ARM host; torch is not downloaded);
4. the CUDA tests (``pytest -m cuda``);
5. the quickstart on ``device: cuda`` with AMP bf16, channels_last and torch.compile;
6. a 2-process torchrun run of the quickstart (shortened) when two GPUs exist;
7. ``osnas bench --device cuda --quick``.

Everything goes to ONE report file (markdown), rewritten after every step, so a run cut short
still leaves what it did. ``--dry-run`` runs the probe and the dependency check, and prints
and records every other command without running it (no CUDA needed, nothing installed).
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 480
CHECK_DEPS = ["pytest>=7.4", "pytest-timeout>=2.2"]  # needed by the check itself, beyond osnas's own
QUICKSTART = ["--config", "configs/quickstart.yaml", "--quiet", "--set", "device=cuda",
              "--set", "supernet.amp=bf16", "--set", "final.amp=bf16",
              "--set", "supernet.channels_last=true", "--set", "final.channels_last=true",
              "--set", "final.compile=true"]
PROBE = ("import json, sys, torch; c = torch.cuda.is_available(); print(json.dumps({'python': sys.version.split()[0], "
         "'torch': torch.__version__, 'cuda': torch.version.cuda, 'available': c, "
         "'gpus': [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if c else []}))")


@dataclass
class Step:
    name: str
    argv: list[str]
    timeout_s: int
    needs_cuda: bool = False
    needs_gpus: int = 0
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    step: Step
    status: str  # ok, failed, timed out, skipped: <why>, planned (dry run)
    seconds: float = 0.0
    output: str = ""


def requirement_parts(text: str) -> tuple[str, str]:
    """(distribution name, version specifier) of a simple requirement string such as ``numpy>=1.24``."""
    match = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)", text)
    if not match:
        raise ValueError(f"cannot read requirement {text!r}")
    return match.group(1), match.group(2).split(";")[0].strip()


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:4])


def satisfied(requirement: str) -> bool:
    """Installed and at least the lower bound (the only kind of bound pyproject.toml states for these)."""
    name, spec = requirement_parts(requirement)
    try:
        have = metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    for clause in filter(None, (c.strip() for c in spec.split(","))):
        op = re.match(r"[<>=!~]*", clause).group(0)  # type: ignore[union-attr]
        have_v, bound_v = version_tuple(have), version_tuple(clause[len(op):])
        if {">=": have_v < bound_v, "~=": have_v < bound_v, ">": have_v <= bound_v, "<": have_v >= bound_v,
                "<=": have_v > bound_v, "==": have_v != bound_v, "!=": have_v == bound_v}.get(op, False):
            return False
    return True


def declared_dependencies() -> list[str]:
    """``project.dependencies`` and ``build-system.requires`` of pyproject.toml: the install step builds
    osnas without build isolation, so an older setuptools already there would fail on its metadata."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: pip vendors a TOML reader
        from pip._vendor import tomli as tomllib  # type: ignore[no-redef]
    with open(ROOT / "pyproject.toml", "rb") as handle:
        project = tomllib.load(handle)
    return list(project["project"]["dependencies"]) + list(project["build-system"]["requires"])


def missing_dependencies() -> list[str]:
    """Requirements not met here; torch is never among them (it must be the machine's own)."""
    wanted = [r for r in declared_dependencies() + CHECK_DEPS if requirement_parts(r)[0].lower() != "torch"]
    return [r for r in wanted if not satisfied(r)]


def plan(python: str, wheels: Path, missing: list[str], torch_version: str) -> list[Step]:
    """The steps after the probe, in order of importance (the budget may cut the last ones)."""
    osnas = [python, "-m", "osnas"]
    steps = []
    if missing:
        constraint = ROOT / ".gpu_check_constraints.txt"
        steps.append(Step("missing dependencies from the wheel folder",
                          ["sh", "-c", f"echo torch=={shlex.quote(torch_version)} > {shlex.quote(str(constraint))} && "
                           + shlex.join([python, "-m", "pip", "install", "--no-index", "--find-links", str(wheels),
                                         "-c", str(constraint), *missing])], 120))
    steps.append(Step("install osnas (no dependencies)", [python, "-m", "pip", "install", "--no-deps",
                                                          "--no-build-isolation", "--no-index", "-e", str(ROOT)], 120))
    steps += [
        Step("CUDA tests", [python, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", "tests/test_cuda.py"],
             150, needs_cuda=True),
        Step("quickstart on cuda (bf16, channels_last, compile)", [*osnas, "search", *QUICKSTART], 240, needs_cuda=True),
        Step("torchrun, 2 processes", [python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                                       "-m", "osnas", "search", *QUICKSTART, "--set", "supernet.epochs=2",
                                       "--set", "final.epochs=1", "--set", "output.name=gpu_check_ddp"],
             180, needs_cuda=True, needs_gpus=2),
        Step("benchmarks", [*osnas, "bench", "--device", "cuda", "--quick"], 200, needs_cuda=True),
    ]
    return steps


def run_step(step: Step, limit: float) -> Outcome:
    start = time.perf_counter()
    try:
        proc = subprocess.run(step.argv, cwd=ROOT, capture_output=True, text=True, timeout=limit,
                              env={**os.environ, **step.env})
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return Outcome(step, f"timed out after {limit:.0f} s", time.perf_counter() - start, out)
    except OSError as exc:
        return Outcome(step, f"failed: {exc}", time.perf_counter() - start)
    status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    return Outcome(step, status, time.perf_counter() - start, proc.stdout + proc.stderr)


def render(outcomes: list[Outcome], facts: dict[str, object], dry_run: bool, total: float) -> str:
    lines = ["# osnas GPU check" + (" (dry run)" if dry_run else ""), "",
             f"Date: {time.strftime('%Y-%m-%d %H:%M:%S')}; total {total:.0f} s of a {BUDGET_S} s budget", ""]
    lines += [f"- {key}: {value}" for key, value in facts.items()]
    lines += ["", "| step | status | seconds |", "|---|---|---|"]
    lines += [f"| {o.step.name} | {o.status} | {o.seconds:.1f} |" for o in outcomes]
    for o in outcomes:
        lines += ["", f"## {o.step.name}", "", f"Command: `{shlex.join(o.step.argv)}`", f"Status: {o.status}"]
        if o.output.strip():
            tail = "\n".join(o.output.strip().splitlines()[-60:])
            lines += ["", "```", tail, "```"]
    return "\n".join(lines) + "\n"


def write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/gpu_check.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheels", type=Path, default=ROOT / "wheels", help="local wheel folder (default: ./wheels)")
    parser.add_argument("--report", type=Path, default=ROOT / "gpu_check_report.md", help="the one report file")
    parser.add_argument("--python", default=sys.executable, help="the interpreter with the machine's torch")
    parser.add_argument("--dry-run", action="store_true", help="print and record the plan; run only read-only steps")
    args = parser.parse_args(argv)
    if not args.report.parent.is_dir():
        print(f"error: --report {args.report}: folder {args.report.parent} does not exist", file=sys.stderr)
        return 2
    begin = time.perf_counter()
    probe = run_step(Step("probe", [args.python, "-c", PROBE], 60), 60)  # read-only: runs in a dry run too
    try:
        facts: dict[str, object] = json.loads(probe.output.strip().splitlines()[-1])
    except (ValueError, IndexError):
        print(f"error: {args.python} cannot import torch; install the machine's torch first\n{probe.output}",
              file=sys.stderr)
        return 2
    missing = missing_dependencies()
    facts["missing dependencies"] = ", ".join(missing) or "none"
    facts["wheel folder"] = f"{args.wheels} ({'present' if args.wheels.is_dir() else 'absent'})"
    if missing and not args.wheels.is_dir() and not args.dry_run:
        print(f"error: missing {', '.join(missing)} and no wheel folder at {args.wheels}; see the docstring of "
              "benchmarks/gpu_check.py to fill it", file=sys.stderr)
        return 2
    gpus = len(facts.get("gpus") or [])  # type: ignore[arg-type]
    outcomes = [Outcome(probe.step, probe.status, probe.seconds, probe.output)]
    for step in plan(args.python, args.wheels, missing, str(facts["torch"])):
        left = BUDGET_S - (time.perf_counter() - begin)
        if step.needs_cuda and not facts.get("available"):
            outcome = Outcome(step, "skipped: no CUDA device" + (" (dry run)" if args.dry_run else ""))
        elif step.needs_gpus > gpus:
            outcome = Outcome(step, f"skipped: needs {step.needs_gpus} GPUs, found {gpus}")
        elif args.dry_run:
            outcome = Outcome(step, "planned (dry run)")
        elif left < 10:
            outcome = Outcome(step, "skipped: the 8-minute budget is spent")
        else:
            print(f"== {step.name}: {shlex.join(step.argv)}", flush=True)
            outcome = run_step(step, min(step.timeout_s, left))
        print(f"   {step.name}: {outcome.status}", flush=True)
        outcomes.append(outcome)
        write(args.report, render(outcomes, facts, args.dry_run, time.perf_counter() - begin))
    print(f"report: {args.report}")
    failed = [o for o in outcomes if o.status.startswith(("failed", "timed out"))]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
