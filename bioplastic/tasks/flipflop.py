"""k-bit flip-flop (Sussillo & Barak 2013): each output holds the sign of its channel's last pulse.

Each of the ``n_bits`` input channels carries sparse pulses of +1 or -1; output i must hold the sign
of the most recent pulse on input i until the next pulse on that channel flips (or re-sets) it.
Channels are independent, so a network needs 2**k stable states.

Every channel is given one forced pulse at a uniformly random step in the first 10 % of the trial
(on top of the Bernoulli pulses), so every channel is scored on at least 90 % of the trial and no
trial is left without scored steps.

Timing convention: the state at step t has already received u_t, so the target switches at the very
step of the pulse that causes it, and that step is scored.
"""
from __future__ import annotations

import itertools
from typing import ClassVar

import numpy as np
from pydantic import Field, model_validator

from ..schema_base import Schema
from .base import TASKS, Task, Trials, steps


class Config(Schema):
    """Configuration of :class:`FlipFlop`. Durations in ms, rounded to steps of ``dt_ms``."""

    dt_ms: float = Field(20.0, gt=0, description="time step, ms")
    trial_ms: float = Field(1000.0, gt=0, description="trial length, ms")
    n_bits: int = Field(3, ge=1, description="number of bits k (input channels = output channels = k)")
    pulse_prob: float = Field(
        0.05,
        ge=0,
        le=1,
        description="probability of a pulse per step and channel (sign +-1 equiprobable), "
        "on top of the one forced pulse per channel in the first 10 % of the trial (dimensionless)",
    )

    @model_validator(mode="after")
    def _check_timing(self) -> Config:
        n = steps(self.trial_ms, self.dt_ms)
        if n < 1:
            raise ValueError(
                f"trial_ms={self.trial_ms} rounds to {n} steps of dt_ms={self.dt_ms}; "
                f"use trial_ms >= {self.dt_ms} or a smaller dt_ms"
            )
        return self


@TASKS.register("flipflop")
class FlipFlop(Task):
    """Hold the sign of the last pulse of each of ``n_bits`` channels.

    Inputs ``(trial, time, n_bits)`` in {-1, 0, +1}. Target of channel i at step t: the sign of the
    most recent pulse on channel i at a step <= t; mask 1 from that channel's first pulse on
    (inclusive), 0 (and target 0) before it. Single period ``trial``.

    Conditions: ``n_pulses`` (total pulses per trial, all channels, forced pulses included).
    """

    kind: ClassVar[str] = "flipflop"
    Config: ClassVar[type[Schema]] = Config
    metadata: ClassVar[dict[str, str]] = {
        "paper": "Sussillo & Barak (2013) Neural Computation 25:626 (3-bit flip-flop)",
        "tags": "working memory, multistability, fixed points, supervised",
    }

    def __init__(self, config: Config):
        super().__init__(config)
        self._n_steps = steps(config.trial_ms, config.dt_ms)
        # forced pulse of each channel: uniform over the first 10 % of the trial (at least 1 step)
        self.forced_steps = max(1, self._n_steps // 10)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(f"bit {i} pulses" for i in range(self.n_inputs))

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(f"bit {i}" for i in range(self.n_outputs))

    @property
    def n_inputs(self) -> int:
        return int(self.config.n_bits)

    @property
    def n_outputs(self) -> int:
        return int(self.config.n_bits)

    @property
    def attractors_needed(self) -> int:
        """2^k stable fixed points at zero input: one per pattern of the k held bits."""
        return 2 ** int(self.config.n_bits)

    @property
    def n_steps(self) -> int:
        return self._n_steps

    @property
    def period_names(self) -> tuple[str, ...]:
        return ("trial",)

    def sample(self, rng: np.random.Generator, n_trials: int) -> Trials:
        b, n, k = int(n_trials), self._n_steps, int(self.config.n_bits)
        p = self.config.pulse_prob
        # One uniform per step and channel: u < p is a pulse, and given a pulse, u < p/2 (probability
        # 1/2) makes it +1. Half the random numbers of separate occurrence and sign draws.
        u_bxtxk = rng.random((b, n, k))
        occurs_bxtxk = u_bxtxk < p
        inputs = np.where(u_bxtxk < p / 2, np.float32(1.0), np.float32(-1.0))
        inputs[~occurs_bxtxk] = 0.0
        forced_bxk = rng.integers(self.forced_steps, size=(b, k))
        forced_sign_bxk = (2 * rng.integers(2, size=(b, k)) - 1).astype(np.float32)
        bi, ki = np.meshgrid(np.arange(b), np.arange(k), indexing="ij")
        occurs_bxtxk[bi, forced_bxk, ki] = True
        inputs[bi, forced_bxk, ki] = forced_sign_bxk

        # index of the most recent pulse at a step <= t (-1 before the first pulse)
        t_idx = np.arange(n)[None, :, None]
        last_bxtxk = np.maximum.accumulate(np.where(occurs_bxtxk, t_idx, -1), axis=1)
        scored = last_bxtxk >= 0
        held = np.take_along_axis(inputs, np.maximum(last_bxtxk, 0), axis=1)
        targets = np.where(scored, held, np.float32(0.0)).astype(np.float32)
        mask = scored.astype(np.float32)

        periods = {"trial": np.tile(np.array([[0, n]], dtype=np.int64), (b, 1))}
        conditions = {"n_pulses": occurs_bxtxk.sum(axis=(1, 2))}
        return Trials(inputs, targets, mask, periods, conditions)

    def memory_probes(self, hold_steps: int) -> Trials:
        """One trial per pattern of the k bits (2^k): every channel pulsed at step 0 with the pattern's
        signs, then ``hold_steps`` steps of zero input, then one more (the read-out) scored on every channel."""
        hold = int(hold_steps)
        if hold < 0:
            raise ValueError(f"hold_steps must be >= 0; got {hold_steps}")
        k = int(self.config.n_bits)
        patterns_pxk = np.array(list(itertools.product((-1.0, 1.0), repeat=k)), dtype=np.float32)
        p, n = len(patterns_pxk), hold + 2
        inputs = np.zeros((p, n, k), np.float32)
        inputs[:, 0] = patterns_pxk
        targets = np.zeros((p, n, k), np.float32)
        targets[:, -1] = patterns_pxk
        mask = np.zeros((p, n, k), np.float32)
        mask[:, -1] = 1.0
        periods = {"trial": np.tile(np.array([[0, n]], dtype=np.int64), (p, 1))}
        return Trials(inputs, targets, mask, periods, {"n_pulses": np.full(p, k)})

    def score(self, outputs_bxtxo: np.ndarray, trials: Trials) -> np.ndarray:
        """Fraction of scored steps (mask 1), over all channels, where sign(output) == target.

        ``outputs_bxtxo`` may carry leading axes (e.g. ensemble): (..., trial, time, output) ->
        (..., trial). An output of exactly 0 counts as wrong. A trial without scored steps (not
        produced by :meth:`sample`) scores 1.
        """
        mask = trials.mask_bxtxo > 0
        hit = (np.sign(np.asarray(outputs_bxtxo)) == trials.targets_bxtxo) & mask
        n_scored = mask.sum(axis=(-2, -1))
        return np.where(n_scored > 0, hit.sum(axis=(-2, -1)) / np.maximum(n_scored, 1), 1.0)

    def output_accuracy(self, outputs_bxtxo: np.ndarray, trials: Trials) -> np.ndarray:
        """Per bit: the fraction of its scored steps, over all trials, where sign(output) == target."""
        mask = trials.mask_bxtxo > 0
        hit = (np.sign(np.asarray(outputs_bxtxo)) == trials.targets_bxtxo) & mask
        n_scored = mask.sum(axis=(-3, -2))
        return np.where(n_scored > 0, hit.sum(axis=(-3, -2)) / np.maximum(n_scored, 1), 1.0)
