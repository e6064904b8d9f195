"""User-facing errors: the CLI prints their message and exits with code 2."""


class OsnasError(Exception):
    """Bad input or an unusable environment, explained in one message for the user."""


class ConfigError(OsnasError):
    """A configuration file or override is invalid."""


class DataError(OsnasError):
    """A dataset is missing or malformed."""


class ArchitectureError(OsnasError):
    """An architecture does not fit its search space."""


class InfeasibleConstraintError(OsnasError):
    """No architecture of the space can meet the constraint."""


class TrainingDivergedError(OsnasError):
    """A loss became NaN or infinite."""
