"""Short-term-memory tasks, one per file, registered by kind in :data:`TASKS`."""
from . import delayed_addition, evidence_accumulation, flipflop  # noqa: F401  (registration)
from .base import TASKS, Task, Trials, build_task

__all__ = ["TASKS", "Task", "Trials", "build_task"]
