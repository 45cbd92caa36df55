"""Learning rules, one per file, registered by name in :data:`RULES`."""
from . import (  # noqa: F401  (registration of the local rules)
    bptt,  # noqa: F401  (registration)
    eprop,
    node_perturbation,
    rflo,
)
from .base import RULES, Batch, LearningRule, StepResult

__all__ = ["RULES", "Batch", "LearningRule", "StepResult"]
