"""The contract rules of every component kind, one module per kind (imported so that they register)."""

from osnas.interface.rules import common  # noqa: F401  (first: the rules every kind shares)
from osnas.interface.rules import (  # noqa: F401
    criterion,
    dataflow,
    search_space,
    search_strategy,
    training_agent,
    training_strategy,
)
