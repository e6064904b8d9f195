"""Built-in criteria (imported so that they register)."""

from osnas.criteria import cross_entropy  # noqa: F401
from osnas.criteria import focal  # noqa: F401
from osnas.criteria import triplet  # noqa: F401
from osnas.criteria import cosface  # noqa: F401
from osnas.criteria import arcface  # noqa: F401
