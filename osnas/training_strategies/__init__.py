"""Built-in training strategies (imported so that they register)."""

from osnas.training_strategies import uniform  # noqa: F401
from osnas.training_strategies import fairness  # noqa: F401
from osnas.training_strategies import differentiable  # noqa: F401
from osnas.training_strategies import proxyless  # noqa: F401
