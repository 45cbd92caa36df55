"""Learning rules, one per file, registered by name in :data:`RULES`."""
from .base import RULES, Batch, LearningRule, StepResult
from . import bptt  # noqa: F401  (registration)
from . import eprop, node_perturbation, rflo  # noqa: F401  (registration of the local rules)

__all__ = ["RULES", "Batch", "LearningRule", "StepResult"]
