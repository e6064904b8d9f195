"""Benchmarks: each figure is measured side by side in one process and printed with its ratio."""

SECTIONS = ("overhead", "cost", "evaluation", "input", "strategies", "e2e", "job", "compilers")
