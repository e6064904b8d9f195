"""osnas: one-shot neural architecture search with pluggable components."""

__version__ = "0.1.0"
