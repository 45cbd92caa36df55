"""Trial labels the analyses share: the choice of a trial, its evidence strength and signed evidence, read from the
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


#: a task's own signed evidence label (custom tasks: positive favours the larger of the two choice labels)
EVIDENCE_LABEL = "evidence"
#: unsigned strength labels that the correct choice signs (e.g. neurogym's ``coh``), in order of preference
SIGNED_STRENGTH_LABELS = ("coherence", "coh")


def signed_evidence_of(trials) -> np.ndarray | None:
    """The per-trial signed evidence of the psychometric curve (positive favours the larger of the
    two values of the choice label, "right"), or None. In order: the label ``evidence`` as the task
    gives it (custom tasks: document it signed); ``n_right - n_left`` (evidence accumulation: the
    pulse counts); a strength label (``coherence``, ``coh``) signed by the correct choice (+ where
    :func:`choice_of` is the larger of its two values). None without a two-valued choice label."""
    choice = choice_of(trials)
    if choice is None or len(np.unique(choice)) != 2:
        return None
    c = trials.conditions
    if EVIDENCE_LABEL in c:
        return np.asarray(c[EVIDENCE_LABEL], float)
    if "n_right" in c and "n_left" in c:
        return np.asarray(c["n_right"], float) - np.asarray(c["n_left"], float)
    for name in SIGNED_STRENGTH_LABELS:
        if name in c:
            # + 0.0: no -0.0 for trials without evidence (a "-0" level on the curve's axis)
            return np.abs(np.asarray(c[name], float)) * np.where(choice == np.unique(choice)[-1], 1.0, -1.0) + 0.0
    return None


def choice_made(score_b, target_b) -> np.ndarray | None:
    """The choice a network made on each trial of a two-choice task: the correct one (``target_b``,
    the task's choice label) where the trial scored 1, the other one where it did not (with two
    choices a wrong answer is the other choice). None unless ``target_b`` has exactly two values.
    ``score_b`` may have leading axes (ensemble)."""
    values = np.unique(target_b)
    if len(values) != 2:
        return None
    other = np.where(np.asarray(target_b) == values[0], values[1], values[0])
    return np.where(np.asarray(score_b) >= 1, target_b, other)
