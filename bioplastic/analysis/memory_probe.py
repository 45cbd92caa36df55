"""How long a network holds the task's memory states with no input (science.md §5, claim 10).

Claim 10 counts the stable fixed points a task's solution needs (``Task.attractors_needed``). A network
can also solve a task whose trials are short by slow transients: its states drift towards one
another, but slowly enough to be read out correctly at the end of a trial. Then the fixed-point count
stays below the number needed although the network has learned, and attractor formation cannot be
timed. The probe tells the two apart from behaviour alone: each memory state is set by the task's
:meth:`~bioplastic.tasks.base.Task.memory_probes` trials, held with zero input for 1 and 10 trial
lengths (:data:`HOLD_TRIALS`), and read out. An attractor solution holds every state at every hold; a
transient one loses them as the hold grows past its memory.
"""
from __future__ import annotations

import numpy as np
import torch

from ..networks.base import Network
from ..tasks.base import Task

#: holds of zero input, in trial lengths (``Task.n_steps``), after which the memory states are read out
HOLD_TRIALS = (1, 10)


def hold_steps(task: Task, holds: tuple[int, ...] = HOLD_TRIALS) -> list[int]:
    """The holds of :data:`HOLD_TRIALS` in steps of the task."""
    return [int(h) * int(task.n_steps) for h in holds]


def memory_held(network: Network, task: Task, holds_steps: list[int]) -> np.ndarray | None:
    """(E, H) fraction of the task's memory states each member holds after each hold (in steps); a
    state counts as held when the task's score of its probe trial is 1. None for a task without
    memory probes. The network runs as it trained (with its short-term plasticity, if any), from its
    initial state, without noise beyond its own."""
    out = []
    for h in holds_steps:
        probes = task.memory_probes(h)
        if probes is None:
            return None
        with torch.no_grad():
            y = network.run(probes.inputs_bxtxi).output_exbxtxo
        score_exp = task.score(y.double().cpu().numpy(), probes)
        out.append((score_exp >= 1.0).mean(-1))
    return np.stack(out, axis=-1)
