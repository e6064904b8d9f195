"""Built-in training agents (imported so that they register)."""

from osnas.training_agents import classification  # noqa: F401
from osnas.training_agents import face_recognition  # noqa: F401
