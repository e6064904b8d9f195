"""Run the benchmark suite: ``python -m benchmarks [--device cuda] [--quick] [--only overhead cost] [--spaces S ...] [--record]``.

``python -m benchmarks --gpu-check [--dry-run] [--wheels DIR] [--report FILE]``: the GPU check (benchmarks/gpu_check.py).
"""

import argparse
import sys
from pathlib import Path

if "--gpu-check" in sys.argv[1:]:  # before importing osnas: the check installs it
    from benchmarks.gpu_check import main as gpu_check

    sys.exit(gpu_check([a for a in sys.argv[1:] if a != "--gpu-check"]))

from osnas.bench.cli import run
from osnas.bench import SECTIONS
from osnas.plugins import load_builtins

parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
parser.add_argument("--quick", action="store_true", help="small sizes and few repeats (smoke run)")
parser.add_argument("--only", nargs="*", choices=SECTIONS, help="sections to run (default: all)")
parser.add_argument("--spaces", nargs="*", help="overhead section: only these search spaces (default: all)")
parser.add_argument("--record", action="store_true", help="prepend the figures to BENCHMARKS.md")
args = parser.parse_args()
load_builtins()
record = Path(__file__).resolve().parents[1] / "BENCHMARKS.md" if args.record else None
sys.exit(run(args.device, args.quick, args.only, record, "python -m " + " ".join(["benchmarks", *sys.argv[1:]]),
             args.spaces))
