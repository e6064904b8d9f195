"""Benchmarks: each figure is measured side by side in one process and printed with its ratio."""
