"""Built-in search strategies (imported so that they register)."""

from osnas.search_strategies import evolution, random  # noqa: F401
from osnas.search_strategies import regularized_evolution  # noqa: F401
from osnas.search_strategies import nsga2  # noqa: F401
from osnas.search_strategies import architecture_generator  # noqa: F401
from osnas.search_strategies import differentiable  # noqa: F401
