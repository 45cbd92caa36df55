"""The task interface: trials built from named periods, with per-step loss masks.

Shapes use the project's dimension vocabulary: ``trial``, ``time``, ``input``, ``output``.
All arrays are numpy; the training loop moves them to torch.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..registry import Registry
from ..schema_base import Schema, validated_config

TASKS: Registry[type[Task]] = Registry("task kind")


def steps(ms: float, dt_ms: float) -> int:
    """Duration in ms -> whole number of steps (rounded)."""
    return int(round(ms / dt_ms))


def delay_step_range(delay_min_ms: float, delay_max_ms: float, dt_ms: float) -> tuple[int, int]:
    """Delays are the multiples of dt inside [min, max] (a tiny slack absorbs float error)."""
    eps = 1e-9
    return int(math.ceil(delay_min_ms / dt_ms - eps)), int(math.floor(delay_max_ms / dt_ms + eps))


def window_bxt(start_b: np.ndarray, stop_b: np.ndarray, n_steps: int) -> np.ndarray:
    """Boolean (trial, time) array, True on [start, stop) of each trial."""
    t = np.arange(n_steps)
    return (t >= start_b[:, None]) & (t < stop_b[:, None])


@dataclass(frozen=True)
class Trials:
    """A batch of trials.

    inputs_bxtxi:  (trial, time, input) float32
    targets_bxtxo: (trial, time, output) float32
    mask_bxtxo:    (trial, time, output) float32, 1 where the step is scored (loss and accuracy)
    periods:       period name -> (trial, 2) int array of [start, stop) step indices
    conditions:    label name -> (trial,) array (difficulty, delay length, pulse counts, ...)
    """

    inputs_bxtxi: np.ndarray
    targets_bxtxo: np.ndarray
    mask_bxtxo: np.ndarray
    periods: dict[str, np.ndarray] = field(default_factory=dict)
    conditions: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_trials(self) -> int:
        return self.inputs_bxtxi.shape[0]


class Task(ABC):
    """One short-term-memory task. Subclasses set ``kind``, ``Config`` and ``metadata``.

    A task is built from its validated ``Config``; it owns no random state: every call to
    :meth:`sample` takes an explicit ``numpy.random.Generator``.
    """

    kind: ClassVar[str]
    Config: ClassVar[type[Schema]]
    metadata: ClassVar[dict[str, str]] = {}

    def __init__(self, config: Schema):
        self.config = config

    @property
    def dt_ms(self) -> float:
        return float(self.config.dt_ms)

    @property
    @abstractmethod
    def n_inputs(self) -> int: ...

    @property
    @abstractmethod
    def n_outputs(self) -> int: ...

    @property
    @abstractmethod
    def n_steps(self) -> int:
        """Length of every trial in steps (fixed, so trials of many networks stack)."""

    @property
    @abstractmethod
    def period_names(self) -> tuple[str, ...]: ...

    @property
    def attractors_needed(self) -> int | None:
        """How many stable fixed points at zero input the task's solution needs - one per memory state it
        must hold (2 for a binary choice held through a delay, 2^k for k flip-flop bits); None where the
        solution is not a set of point attractors (a sum held on a line attractor, a neurogym task).
        The phase-space analysis records when they first appear (``attractor_formation``, claim 10)."""
        return None

    def memory_probes(self, hold_steps: int) -> Trials | None:
        """Deterministic trials that put a network in each memory state of the task (one trial per
        state: each choice, each pattern of the flip-flop's bits), then give ``hold_steps`` steps of
        zero input, then read the state out (the mask is 1 at the read-out only: the flip-flop's one
        step after the hold, itself without input; evidence accumulation's response window with its go
        cue). :meth:`score` of 1 means the state was held. An attractor solution holds every state for any ``hold_steps``; a
        solution by slow transients loses them once ``hold_steps`` exceeds its memory
        (``memory_held`` in the phase-space analysis). None for tasks without discrete memory states
        (as :attr:`attractors_needed`)."""
        return None

    @property
    def input_names(self) -> tuple[str, ...]:
        """What each input channel carries, in figure legends (default: ``input 0``, ``input 1``, ...)."""
        return tuple(f"input {i}" for i in range(self.n_inputs))

    @property
    def output_names(self) -> tuple[str, ...]:
        """What each output channel reports, in figure legends (default: ``output 0``, ...)."""
        return tuple(f"output {i}" for i in range(self.n_outputs))

    @abstractmethod
    def sample(self, rng: np.random.Generator, n_trials: int) -> Trials:
        """Draw ``n_trials`` fresh trials using only ``rng``."""

    @abstractmethod
    def score(self, outputs_bxtxo: np.ndarray, trials: Trials) -> np.ndarray:
        """Per-trial score in [0, 1] (1 = correct); accuracy is its mean over trials."""

    def accuracy(self, outputs_bxtxo: np.ndarray, trials: Trials) -> float:
        return float(np.mean(self.score(outputs_bxtxo, trials)))

    def evidence_trials(self, trials: Trials) -> np.ndarray:
        """(trial,) bool: the trials that held-out accuracy counts (every trial here; a task whose
        accuracy leaves some out, e.g. neurogym's trials without evidence, says which)."""
        return np.ones(trials.n_trials, bool)

    def output_accuracy(self, outputs_bxtxo: np.ndarray, trials: Trials) -> np.ndarray | None:
        """Held-out accuracy of each output channel alone, (n_outputs,); None where the task scores
        its outputs only together (e.g. a choice read from several channels)."""
        return None


def build_task(kind: str, config: Schema | Mapping | None = None) -> Task:
    """Build a task of ``kind`` from its settings: the kind's ``Config`` (e.g. a protocol condition's
    ``task``), or a mapping of config values validated by it (``None``: every default)."""
    cls = TASKS.get(kind)
    return cls(validated_config(cls.Config, config, "task"))

