"""Built-in search spaces (imported so that they register)."""

from osnas.search_spaces import proxylessnas  # noqa: F401
from osnas.search_spaces import mobilefacenet  # noqa: F401
from osnas.search_spaces import sgnas  # noqa: F401
from osnas.search_spaces import spos  # noqa: F401
from osnas.search_spaces import fbnet  # noqa: F401
from osnas.search_spaces import mobilenetv2  # noqa: F401
