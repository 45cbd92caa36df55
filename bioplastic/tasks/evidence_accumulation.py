"""Evidence accumulation with a variable delay (pulse-counting, "Poisson clicks" style).

Two pulse channels (left, right) deliver Bernoulli pulses during the stimulus; after a delay of
variable length a go cue asks for +1 if the right channel received more pulses, -1 otherwise.
The network must count (integrate) the pulses and hold the sign of the difference through the delay.

Trial layout (steps, ``dt_ms`` each)::

    | fixation | stimulus | delay (variable) | response | padding (zero input, mask 0) |

Channels: input 0 = left pulses, input 1 = right pulses, input 2 = go cue; output 0 = choice.
Timing convention: the state at step t has already received u_t, so the target may change at the
first step of the response window, the step where the go cue arrives.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field, field_validator, model_validator

from ..schema_base import Schema
from .base import TASKS, Task, Trials, delay_step_range, steps, window_bxt

# A tie (equal counts) is redrawn; with sane configs one round removes ~90 % of ties, so this cap
# is only reached when ties are (almost) certain, e.g. pulse_prob so small that both counts are 0.
_MAX_TIE_ROUNDS = 1000






class Config(Schema):
    """Configuration of :class:`EvidenceAccumulation`. Durations in ms, rounded to steps of ``dt_ms``."""

    dt_ms: float = Field(20.0, gt=0, description="time step, ms")
    fixation_ms: float = Field(100.0, gt=0, description="fixation period before the stimulus (no input), ms")
    stimulus_ms: float = Field(500.0, gt=0, description="stimulus period (pulses), ms")
    delay_min_ms: float = Field(
        100.0, ge=0, description="shortest delay between stimulus and go cue, ms (0 allowed: no delay)"
    )
    delay_max_ms: float = Field(500.0, ge=0, description="longest delay between stimulus and go cue, ms")
    response_ms: float = Field(200.0, gt=0, description="response window (go cue on, target and mask on), ms")
    coherences: tuple[float, ...] = Field(
        (0.1, 0.3, 0.6),
        min_length=1,
        description="per-trial coherence c, drawn uniformly from this list; each in (0, 1] (dimensionless)",
    )
    pulse_prob: float = Field(
        0.5,
        gt=0,
        le=1,
        description=(
            "total pulse probability per step (both channels together, on average); the favoured channel "
            "fires with pulse_prob*(1+c)/2 per step, the other with pulse_prob*(1-c)/2 (dimensionless)"
        ),
    )

    @field_validator("coherences", mode="before")
    @classmethod
    def _list_to_tuple(cls, value):
        # YAML gives lists; the frozen schema stores an (immutable, hashable) tuple.
        return tuple(value) if isinstance(value, list) else value

    @field_validator("coherences")
    @classmethod
    def _coherence_range(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        bad = [c for c in value if not 0.0 < c <= 1.0]
        if bad:
            raise ValueError(
                f"every coherence must lie in (0, 1], got {bad}; "
                "use 1.0 for the easiest trials (only the favoured channel fires)"
            )
        return value

    @model_validator(mode="after")
    def _check_timing(self) -> Config:
        for name in ("fixation_ms", "stimulus_ms", "response_ms"):
            ms = getattr(self, name)
            if steps(ms, self.dt_ms) < 1:
                raise ValueError(
                    f"{name}={ms} rounds to {steps(ms, self.dt_ms)} steps of dt_ms={self.dt_ms}; "
                    f"every period needs at least one step: use {name} >= {self.dt_ms} or a smaller dt_ms"
                )
        if self.delay_min_ms > self.delay_max_ms:
            raise ValueError(
                f"delay_min_ms={self.delay_min_ms} is larger than delay_max_ms={self.delay_max_ms}; "
                "swap them (use equal values for a fixed delay)"
            )
        lo, hi = delay_step_range(self.delay_min_ms, self.delay_max_ms, self.dt_ms)
        if lo > hi:
            raise ValueError(
                f"no multiple of dt_ms={self.dt_ms} lies in [delay_min_ms, delay_max_ms] = "
                f"[{self.delay_min_ms}, {self.delay_max_ms}]; widen the range or change dt_ms"
            )
        return self




@TASKS.register("evidence_accumulation")
class EvidenceAccumulation(Task):
    """Count left/right pulses, hold the sign of the difference through a variable delay, report it.

    Per trial: a coherence ``c`` from ``coherences`` and a favoured side ``s = +-1`` (+1 = right),
    both uniform. During the stimulus each step carries a pulse on the favoured channel with
    probability ``pulse_prob*(1+c)/2`` and on the other with ``pulse_prob*(1-c)/2`` (independent
    Bernoulli). The target is the side that actually received more pulses (counts, not rates):
    +1 right, -1 left. Trials with equal counts are redrawn (their pulses only) until no tie is left,
    so the pulse statistics are those of the Bernoulli process conditioned on "no tie".

    Conditions: ``coherence``, ``favoured_side`` (+-1, the side the rates favour), ``side`` (+-1, the
    target: the side with more pulses), ``n_left``, ``n_right``, ``delay_steps``.
    """

    kind: ClassVar[str] = "evidence_accumulation"
    Config: ClassVar[type[Schema]] = Config
    metadata: ClassVar[dict[str, str]] = {
        "paper": (
            "Brunton, Botvinick & Brody (2013) Science 340:95 (Poisson clicks); "
            "Morcos & Harvey (2016) Nat Neurosci 19:1672 (accumulating towers)"
        ),
        "tags": "perceptual decision making, evidence accumulation, working memory, variable delay, supervised",
    }

    def __init__(self, config: Config):
        super().__init__(config)
        dt = config.dt_ms
        self.fixation_steps = steps(config.fixation_ms, dt)
        self.stimulus_steps = steps(config.stimulus_ms, dt)
        self.response_steps = steps(config.response_ms, dt)
        self.delay_min_steps, self.delay_max_steps = delay_step_range(
            config.delay_min_ms, config.delay_max_ms, dt
        )
        self._coherences = np.asarray(config.coherences, dtype=np.float64)

    #: channel names (module docstring)
    input_names: ClassVar[tuple[str, ...]] = ("left pulses", "right pulses", "go cue")
    output_names: ClassVar[tuple[str, ...]] = ("choice (+1 right, -1 left)",)

    @property
    def n_inputs(self) -> int:
        return 3

    @property
    def n_outputs(self) -> int:
        return 1

    @property
    def attractors_needed(self) -> int:
        """Two stable fixed points at zero input: the two choices held through the delay."""
        return 2

    @property
    def n_steps(self) -> int:
        return self.fixation_steps + self.stimulus_steps + self.delay_max_steps + self.response_steps

    @property
    def period_names(self) -> tuple[str, ...]:
        return ("fixation", "stimulus", "delay", "response", "padding")

    def sample(self, rng: np.random.Generator, n_trials: int) -> Trials:
        b, n_stim, n_steps = int(n_trials), self.stimulus_steps, self.n_steps
        coherence_b = self._coherences[rng.integers(len(self._coherences), size=b)]
        favoured_b = 2 * rng.integers(2, size=b) - 1  # +1 right, -1 left
        delay_b = rng.integers(self.delay_min_steps, self.delay_max_steps + 1, size=b)

        # p_bx2[:, 0] left, [:, 1] right
        p_fav = self.config.pulse_prob * (1 + coherence_b) / 2
        p_oth = self.config.pulse_prob * (1 - coherence_b) / 2
        right = favoured_b > 0
        p_bx2 = np.stack([np.where(right, p_oth, p_fav), np.where(right, p_fav, p_oth)], axis=1)

        pulses_bxsx2 = rng.random((b, n_stim, 2)) < p_bx2[:, None, :]
        counts_bx2 = pulses_bxsx2.sum(axis=1)
        tied = np.flatnonzero(counts_bx2[:, 0] == counts_bx2[:, 1])
        for _ in range(_MAX_TIE_ROUNDS):
            if tied.size == 0:
                break
            redraw = rng.random((tied.size, n_stim, 2)) < p_bx2[tied, None, :]
            pulses_bxsx2[tied] = redraw
            counts_bx2[tied] = redraw.sum(axis=1)
            tied = tied[counts_bx2[tied, 0] == counts_bx2[tied, 1]]
        else:
            if tied.size:
                raise RuntimeError(
                    f"{tied.size} trials still have equal left/right counts after {_MAX_TIE_ROUNDS} "
                    f"redraws; pulse_prob={self.config.pulse_prob} is too small for a "
                    f"{self.stimulus_steps}-step stimulus: raise pulse_prob or stimulus_ms"
                )
        side_b = np.where(counts_bx2[:, 1] > counts_bx2[:, 0], 1, -1)

        # Period boundaries, [start, stop) per trial.
        stim_start = self.fixation_steps
        delay_start = stim_start + n_stim
        resp_start_b = delay_start + delay_b
        resp_stop_b = resp_start_b + self.response_steps
        zeros_b = np.zeros(b, dtype=np.int64)
        periods = {
            "fixation": np.stack([zeros_b, zeros_b + stim_start], axis=1),
            "stimulus": np.stack([zeros_b + stim_start, zeros_b + delay_start], axis=1),
            "delay": np.stack([zeros_b + delay_start, resp_start_b], axis=1),
            "response": np.stack([resp_start_b, resp_stop_b], axis=1),
            "padding": np.stack([resp_stop_b, zeros_b + n_steps], axis=1),
        }

        response_bxt = window_bxt(resp_start_b, resp_stop_b, n_steps)
        inputs = np.zeros((b, n_steps, 3), dtype=np.float32)
        inputs[:, stim_start:delay_start, :2] = pulses_bxsx2
        inputs[:, :, 2] = response_bxt
        mask = response_bxt[:, :, None].astype(np.float32)
        targets = mask * side_b[:, None, None].astype(np.float32)

        conditions = {
            "coherence": coherence_b,
            "favoured_side": favoured_b,
            "side": side_b,
            "n_left": counts_bx2[:, 0],
            "n_right": counts_bx2[:, 1],
            "delay_steps": delay_b,
        }
        return Trials(inputs, targets, mask, periods, conditions)

    def memory_probes(self, hold_steps: int) -> Trials:
        """Two trials (left, right): the stimulus at the largest coherence with its pulses evenly spaced
        (the favoured channel at ``pulse_prob*(1+c)/2`` per step, the other at ``pulse_prob*(1-c)/2``),
        then ``hold_steps`` steps of delay, then the response window with the go cue, scored there."""
        hold = int(hold_steps)
        if hold < 0:
            raise ValueError(f"hold_steps must be >= 0; got {hold_steps}")
        c = float(self._coherences.max())
        t = np.arange(self.stimulus_steps + 1)

        def even(rate: float) -> np.ndarray:  # a pulse at the steps where the running count rate * t ticks over
            return np.diff(np.floor(rate * t)) > 0

        favoured, other = even(self.config.pulse_prob * (1 + c) / 2), even(self.config.pulse_prob * (1 - c) / 2)
        if favoured.sum() <= other.sum():  # rates so low that even spacing gives no majority: one pulse, on the favoured side
            favoured, other = np.zeros_like(favoured), np.zeros_like(other)
            favoured[len(favoured) // 2] = True
        stim, delay = self.fixation_steps, self.fixation_steps + self.stimulus_steps
        resp = delay + hold
        n = resp + self.response_steps
        side_b = np.array([-1, 1])
        inputs = np.zeros((2, n, 3), np.float32)
        inputs[0, stim:delay, 0], inputs[0, stim:delay, 1] = favoured, other   # left favoured
        inputs[1, stim:delay, 1], inputs[1, stim:delay, 0] = favoured, other   # right favoured
        inputs[:, resp:, 2] = 1.0
        mask = np.zeros((2, n, 1), np.float32)
        mask[:, resp:] = 1.0
        targets = mask * side_b[:, None, None].astype(np.float32)
        cols = lambda a, b: np.stack([np.full(2, a), np.full(2, b)], axis=1).astype(np.int64)  # noqa: E731
        periods = {"fixation": cols(0, stim), "stimulus": cols(stim, delay), "delay": cols(delay, resp),
                   "response": cols(resp, n), "padding": cols(n, n)}
        nf, no = int(favoured.sum()), int(other.sum())
        conditions = {"coherence": np.full(2, c), "favoured_side": side_b, "side": side_b,
                      "n_left": np.array([nf, no]), "n_right": np.array([no, nf]), "delay_steps": np.full(2, hold)}
        return Trials(inputs, targets, mask, periods, conditions)

    def score(self, outputs_bxtxo: np.ndarray, trials: Trials) -> np.ndarray:
        """1 where the sign of the mean output over the response window equals the target sign.

        ``outputs_bxtxo`` may carry leading axes (e.g. ensemble): (..., trial, time, output) ->
        (..., trial). A mean output of exactly 0 counts as wrong.
        """
        resp = trials.periods["response"]
        in_window_bxt = window_bxt(resp[:, 0], resp[:, 1], trials.inputs_bxtxi.shape[1])
        n_window_b = in_window_bxt.sum(axis=1)
        mean_out = (np.asarray(outputs_bxtxo)[..., 0] * in_window_bxt).sum(axis=-1) / n_window_b
        target_b = (trials.targets_bxtxo[..., 0] * in_window_bxt).sum(axis=-1) / n_window_b
        return (np.sign(mean_out) == np.sign(target_b)).astype(np.float64)
