"""Short-term-memory tasks, one per file, registered by kind in :data:`TASKS`.

Besides the built-in kinds, a protocol may name a task from outside: the optional ``neurogym`` kind
(an adapter for neurogym environments, ``pip install 'bioplastic[neurogym]'``; imported only when
used), a module path ``package.module:Class`` or an entry point of the group ``bioplastic.tasks``
(see bioplastic.registry and docs/tasks.md, "Your own task").
"""
from . import delayed_addition, evidence_accumulation, filtered_noise, flipflop  # noqa: F401  (registration)
from .base import TASKS, Task, Trials, build_task

TASKS.register_lazy("neurogym", "bioplastic.tasks.neurogym_task:NeurogymTask")

__all__ = ["TASKS", "Task", "Trials", "build_task"]
