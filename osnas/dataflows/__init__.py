"""Built-in dataflows (imported so that they register)."""

from osnas.dataflows import digits  # noqa: F401
