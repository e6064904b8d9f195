"""Built-in criteria (imported so that they register)."""

from osnas.criteria import cross_entropy  # noqa: F401
