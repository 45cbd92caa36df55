"""Learning rules, one per file, registered by name in :data:`RULES`."""
from .base import RULES, Batch, LearningRule, StepResult
from . import bptt  # noqa: F401  (registration)

__all__ = ["RULES", "Batch", "LearningRule", "StepResult"]
