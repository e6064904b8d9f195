"""Built-in search strategies (imported so that they register)."""

from osnas.search_strategies import evolution, random  # noqa: F401
from osnas.search_strategies import differentiable  # noqa: F401
