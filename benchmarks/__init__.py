"""``python -m benchmarks``: the osnas benchmark suite (see osnas/bench/suite.py)."""
