"""Built-in search spaces (imported so that they register)."""

from osnas.search_spaces import proxylessnas  # noqa: F401
from osnas.search_spaces import mobilefacenet  # noqa: F401
from osnas.search_spaces import sgnas  # noqa: F401
