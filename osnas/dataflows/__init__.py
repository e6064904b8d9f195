"""Built-in dataflows (imported so that they register)."""

from osnas.dataflows import digits  # noqa: F401
from osnas.dataflows import cifar  # noqa: F401
from osnas.dataflows import imagenet  # noqa: F401
from osnas.dataflows import casia_webface  # noqa: F401
