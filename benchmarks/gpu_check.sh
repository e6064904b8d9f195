#!/bin/sh
# The GPU check in one command (see benchmarks/gpu_check.py for the steps and the wheel folder):
#   bash benchmarks/gpu_check.sh [--wheels DIR] [--report FILE] [--dry-run]
# PYTHON selects the interpreter that has the machine's own torch (default: python3).
cd "$(dirname "$0")/.." || exit 2
exec "${PYTHON:-python3}" benchmarks/gpu_check.py "$@"
