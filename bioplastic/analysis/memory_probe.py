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
from ..tasks.base import Task, Trials

#: holds of zero input, in trial lengths (``Task.n_steps``), after which the memory states are read out
HOLD_TRIALS = (1, 10)


def hold_steps(task: Task, holds: tuple[int, ...] = HOLD_TRIALS) -> list[int]:
    """The holds of :data:`HOLD_TRIALS` in steps of the task."""
    return [int(h) * int(task.n_steps) for h in holds]


#: probe trials run at once (the 2^k patterns of a many-bit flip-flop run in chunks of this many)
CHUNK = 64


def memory_held(network: Network, task: Task, holds_steps: list[int]) -> np.ndarray | None:
    """(E, H) fraction of the task's memory states each member holds after each hold (in steps; the
    hold's exact timing is the task's, :meth:`~bioplastic.tasks.base.Task.memory_probes`); a state
    counts as held when the task's score of its probe trial is 1. None for a task without memory
    probes. The network runs noise-free from its initial state, with its short-term plasticity if it
    has one (so a plastic network may hold a state through its fast variables, not only in attractors
    of its long-term weights)."""
    out = []
    for h in holds_steps:
        probes = task.memory_probes(h)
        if probes is None:
            return None
        scores = []
        for start in range(0, probes.n_trials, CHUNK):
            part = Trials(*(a[start:start + CHUNK] for a in (probes.inputs_bxtxi, probes.targets_bxtxo, probes.mask_bxtxo)),
                          periods={k: v[start:start + CHUNK] for k, v in probes.periods.items()},
                          conditions={k: v[start:start + CHUNK] for k, v in probes.conditions.items()})
            with torch.no_grad():
                y = network.run(part.inputs_bxtxi).output_exbxtxo
            scores.append(task.score(y.double().cpu().numpy(), part))
        out.append((np.concatenate(scores, axis=-1) >= 1.0).mean(-1))
    return np.stack(out, axis=-1)
