"""Random streams derived from one root seed (no global RNG anywhere).

Every stream is ``SeedSequence(root, spawn_key=(base stream id, *key prefix, *counters))``:
counter-based, so the data of iteration k of network s is the same whether the run went straight
through, was resumed, or trained s alone or in an ensemble. Seed index s is shared across
conditions (paired design: the conditions differ only in the treatment).

Every use of randomness is a *named* stream declared in :data:`NAMED` (base stream, key prefix,
what the counters are), so two uses cannot share numbers by accident: no declared key is a prefix
of another (tested). :data:`STREAMS` and :data:`NAMED` are append-only - new streams go at the end,
old keys never change - so old runs stay reproducible.
"""
from __future__ import annotations

import numpy as np
import torch

#: base streams (their index is the first word of the spawn key)
STREAMS = ("init", "train_data", "train_noise", "eval_data", "analysis", "weight_noise")

#: name -> (base stream, key prefix, the counters a use appends)
NAMED: dict[str, tuple[str, tuple[int, ...], str]] = {
    "init": ("init", (), "seed index"),
    "train_data": ("train_data", (), "seed index, iteration"),
    "train_noise": ("train_noise", (), "seed index, iteration (and the rule's own counters)"),
    "eval_data": ("eval_data", (), "seed index"),
    "weight_noise": ("weight_noise", (), "seed index, iteration"),
    "gr_trials": ("analysis", (0,), "none: the held-out trials of the phase-space analysis"),
    "fixed_point_starts": ("analysis", (1,), "checkpoint index, context index"),
    "lead_time_bootstrap": ("analysis", (2,), "condition index"),
    "prediction_trials": ("analysis", (3, 0), "none: the held-out trials of the predictions"),
    "prediction_noise": ("analysis", (3, 1), "seed index"),
    "prediction_summary": ("analysis", (3, 2), "measure index, condition index"),
    "prediction_effect": ("analysis", (3, 3), "measure index, condition index"),
    "lesion_effect": ("analysis", (3, 4), "condition index"),
    "learning_comparisons": ("analysis", (4,), "none: the bootstrap of iterations to criterion and accuracy"),
    "resimulation_trials": ("analysis", (5,), "none: the trials re-simulated in brian2 and torch"),
    "brian2_seed": ("analysis", (6,), "none: brian2's own seed (its private noise)"),
    "verdict_bootstrap": ("analysis", (7,), "claim number, condition index"),
    "staircase_comparisons": ("analysis", (8,), "none: the bootstrap of the plateau lengths (linear oracle)"),
    "lead_time_departure_bootstrap": ("analysis", (9,), "condition index"),
    "joint_slow_starts": ("analysis", (10,), "checkpoint index, context index, condition index"),
    "verdict_itc_censored": ("analysis", (11,), "condition index, CRC-32 of the sweep point's label"),
}


def spawn_key(stream: str, *counters: int) -> tuple[int, ...]:
    """The spawn key of a use of ``stream`` (a name of :data:`NAMED`) with its counters."""
    if stream not in NAMED:
        raise KeyError(f"unknown random stream {stream!r}; the streams are {', '.join(NAMED)}")
    base, prefix, _ = NAMED[stream]
    return (STREAMS.index(base), *prefix, *map(int, counters))


def _sequence(root: int, stream: str, *counters: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(int(root), spawn_key=spawn_key(stream, *counters))


def numpy_rng(root: int, stream: str, *counters: int) -> np.random.Generator:
    """A numpy Generator for a named stream, e.g. ``numpy_rng(seed, "train_data", s, k)``."""
    return np.random.Generator(np.random.PCG64(_sequence(root, stream, *counters)))


def torch_generator(root: int, stream: str, *counters: int) -> torch.Generator:
    """A CPU torch Generator for a named stream."""
    state = _sequence(root, stream, *counters).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
