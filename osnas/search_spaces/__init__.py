"""Built-in search spaces (imported so that they register)."""

from osnas.search_spaces import proxylessnas  # noqa: F401
