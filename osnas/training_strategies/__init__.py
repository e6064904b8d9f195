"""Built-in training strategies (imported so that they register)."""

from osnas.training_strategies import uniform  # noqa: F401
