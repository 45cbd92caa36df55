"""Trial labels the analyses share: the choice of a trial and its evidence strength, read from the
condition labels a task gives its trials (``Trials.conditions``)."""
from __future__ import annotations

import numpy as np

#: condition labels that name the choice of a trial, in order of preference
CHOICE_LABELS = ("choice", "side", "action")
#: condition labels that give a trial's evidence strength (for the psychometric curve), in order of preference
STRENGTH_LABELS = ("coherence", "evidence", "difficulty")


def choice_of(trials) -> np.ndarray | None:
    """The per-trial choice label (first of :data:`CHOICE_LABELS` the task has, with 2-8 values), or None."""
    for name in CHOICE_LABELS:
        if name in trials.conditions:
            c = np.asarray(trials.conditions[name])
            if 2 <= len(np.unique(c)) <= 8:
                return c
    return None


def strength_of(trials) -> np.ndarray | None:
    """The per-trial evidence strength (first of :data:`STRENGTH_LABELS` the task has, with 2-12 values), or None."""
    for name in STRENGTH_LABELS:
        if name in trials.conditions:
            c = np.asarray(trials.conditions[name], float)
            if 2 <= len(np.unique(c)) <= 12:
                return c
    return None
