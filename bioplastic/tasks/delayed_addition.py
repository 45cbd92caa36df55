"""Hochreiter & Schmidhuber's adding problem, followed by a variable delay and a go cue.

During the stimulus a value channel carries a fresh ``U(0, 1)`` sample every step and a marker
channel marks exactly two steps; after a delay of variable length a go cue asks for the sum of the
two marked values. Marker rules (Hochreiter & Schmidhuber 1997, experiment 4): the first marker lies
in the first 10 % of the stimulus period, the second in its first half, at a different step.

Trial layout (steps, ``dt_ms`` each)::

    | stimulus | delay (variable) | response | padding (zero input, mask 0) |

Channels: input 0 = value, input 1 = marker, input 2 = go cue; output 0 = sum.
Timing convention: the state at step t has already received u_t, so the target may change at the
first step of the response window, the step where the go cue arrives.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field, model_validator

from ..schema_base import Schema
from .base import TASKS, Task, Trials, delay_step_range, steps, window_bxt

#: the target (the sum of two U(0, 1) values) spans [0, 2]
TARGET_RANGE = 2.0


def _marker_ranges(stimulus_steps: int) -> tuple[int, int]:
    """Number of candidate steps for marker 1 (first 10 %) and marker 2 (first half).

    Both are at least one step; the first 10 % of a short stimulus is its first step.
    """
    return max(1, stimulus_steps // 10), stimulus_steps // 2


class Config(Schema):
    """Configuration of :class:`DelayedAddition`. Durations in ms, rounded to steps of ``dt_ms``."""

    dt_ms: float = Field(20.0, gt=0, description="time step, ms")
    stimulus_ms: float = Field(
        400.0, gt=0, description="stimulus period (values and the two markers), ms; at least 4 steps"
    )
    delay_min_ms: float = Field(
        100.0, ge=0, description="shortest delay between stimulus and go cue, ms (0 allowed: no delay)"
    )
    delay_max_ms: float = Field(300.0, ge=0, description="longest delay between stimulus and go cue, ms")
    response_ms: float = Field(100.0, gt=0, description="response window (go cue on, target and mask on), ms")
    relative_tolerance: float = Field(
        0.04,
        gt=0,
        le=1,
        description="a trial is correct when |mean output over the response window - target| < relative_tolerance "
        "x the target's range (2: the sum of two U(0, 1) values); 0.04 is Hochreiter & Schmidhuber's criterion, "
        "0.04 of their target range of 1, i.e. an absolute error below 0.08 here",
    )
    tolerance: float | None = Field(
        None,
        gt=0,
        description="absolute tolerance in target units, used instead of relative_tolerance when set "
        "(0.04: this task's criterion before it was put on the target's scale)",
    )

    @property
    def absolute_tolerance(self) -> float:
        """The largest absolute error of a correct trial (target units)."""
        return float(self.tolerance) if self.tolerance is not None else TARGET_RANGE * float(self.relative_tolerance)

    @model_validator(mode="after")
    def _check_timing(self) -> Config:
        for name in ("stimulus_ms", "response_ms"):
            ms = getattr(self, name)
            if steps(ms, self.dt_ms) < 1:
                raise ValueError(
                    f"{name}={ms} rounds to {steps(ms, self.dt_ms)} steps of dt_ms={self.dt_ms}; "
                    f"every period needs at least one step: use {name} >= {self.dt_ms} or a smaller dt_ms"
                )
        n_stim = steps(self.stimulus_ms, self.dt_ms)
        if n_stim < 4:
            raise ValueError(
                f"stimulus_ms={self.stimulus_ms} gives {n_stim} steps of dt_ms={self.dt_ms}; the two markers "
                f"need a first half of at least 2 steps: use stimulus_ms >= {4 * self.dt_ms} or a smaller dt_ms"
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


@TASKS.register("delayed_addition")
class DelayedAddition(Task):
    """Add the two marked values of a noisy stream and report the sum after a variable delay.

    Per trial: ``value_t ~ U(0, 1)`` on every stimulus step; marker 1 uniform over the first
    ``max(1, n_stim // 10)`` stimulus steps, marker 2 uniform over the first ``n_stim // 2`` steps
    except marker 1's step; delay uniform over the multiples of ``dt_ms`` in
    [delay_min_ms, delay_max_ms]. The target, ``value[marker_1] + value[marker_2]`` (in [0, 2]), and
    the mask are on during the response window only.

    Conditions: ``value_1``, ``value_2`` (the marked values), ``marker_1``, ``marker_2`` (their steps,
    counted from the trial start = stimulus start), ``delay_steps``.
    """

    kind: ClassVar[str] = "delayed_addition"
    Config: ClassVar[type[Schema]] = Config
    metadata: ClassVar[dict[str, str]] = {
        "paper": "Hochreiter & Schmidhuber (1997) Neural Computation 9:1735, experiment 4 (adding problem)",
        "tags": "working memory, gating, continuous report, variable delay, supervised",
    }

    def __init__(self, config: Config):
        super().__init__(config)
        dt = config.dt_ms
        self.stimulus_steps = steps(config.stimulus_ms, dt)
        self.response_steps = steps(config.response_ms, dt)
        self.delay_min_steps, self.delay_max_steps = delay_step_range(
            config.delay_min_ms, config.delay_max_ms, dt
        )
        self.marker_1_steps, self.marker_2_steps = _marker_ranges(self.stimulus_steps)

    #: channel names (module docstring)
    input_names: ClassVar[tuple[str, ...]] = ("value", "marker", "go cue")
    output_names: ClassVar[tuple[str, ...]] = ("sum",)

    @property
    def n_inputs(self) -> int:
        return 3

    @property
    def n_outputs(self) -> int:
        return 1

    @property
    def n_steps(self) -> int:
        return self.stimulus_steps + self.delay_max_steps + self.response_steps

    @property
    def period_names(self) -> tuple[str, ...]:
        return ("stimulus", "delay", "response", "padding")

    def sample(self, rng: np.random.Generator, n_trials: int) -> Trials:
        b, n_stim, n_steps = int(n_trials), self.stimulus_steps, self.n_steps
        values_bxs = rng.random((b, n_stim))
        marker_1 = rng.integers(self.marker_1_steps, size=b)
        # Uniform over the first half minus marker_1's step: draw from one slot fewer, skip marker_1.
        marker_2 = rng.integers(self.marker_2_steps - 1, size=b)
        marker_2 = marker_2 + (marker_2 >= marker_1)
        delay_b = rng.integers(self.delay_min_steps, self.delay_max_steps + 1, size=b)

        rows = np.arange(b)
        value_1, value_2 = values_bxs[rows, marker_1], values_bxs[rows, marker_2]
        total_b = (value_1.astype(np.float32) + value_2.astype(np.float32))

        resp_start_b = n_stim + delay_b
        resp_stop_b = resp_start_b + self.response_steps
        zeros_b = np.zeros(b, dtype=np.int64)
        periods = {
            "stimulus": np.stack([zeros_b, zeros_b + n_stim], axis=1),
            "delay": np.stack([zeros_b + n_stim, resp_start_b], axis=1),
            "response": np.stack([resp_start_b, resp_stop_b], axis=1),
            "padding": np.stack([resp_stop_b, zeros_b + n_steps], axis=1),
        }

        response_bxt = window_bxt(resp_start_b, resp_stop_b, n_steps)
        inputs = np.zeros((b, n_steps, 3), dtype=np.float32)
        inputs[:, :n_stim, 0] = values_bxs
        inputs[rows, marker_1, 1] = 1.0
        inputs[rows, marker_2, 1] = 1.0
        inputs[:, :, 2] = response_bxt
        mask = response_bxt[:, :, None].astype(np.float32)
        targets = mask * total_b[:, None, None]

        conditions = {
            # float32, as the network sees them, so that value_1 + value_2 == target exactly
            "value_1": value_1.astype(np.float32),
            "value_2": value_2.astype(np.float32),
            "marker_1": marker_1,
            "marker_2": marker_2,
            "delay_steps": delay_b,
        }
        return Trials(inputs, targets, mask, periods, conditions)

    def score(self, outputs_bxtxo: np.ndarray, trials: Trials) -> np.ndarray:
        """1 where |mean output over the response window - target| < the absolute tolerance
        (``relative_tolerance`` x the target's range 2, or ``tolerance`` when set).

        ``outputs_bxtxo`` may carry leading axes (e.g. ensemble): (..., trial, time, output) ->
        (..., trial).
        """
        resp = trials.periods["response"]
        in_window_bxt = window_bxt(resp[:, 0], resp[:, 1], trials.inputs_bxtxi.shape[1])
        n_window_b = in_window_bxt.sum(axis=1)
        mean_out = (np.asarray(outputs_bxtxo, dtype=np.float64)[..., 0] * in_window_bxt).sum(axis=-1) / n_window_b
        target_b = (trials.targets_bxtxo[..., 0].astype(np.float64) * in_window_bxt).sum(axis=-1) / n_window_b
        return (np.abs(mean_out - target_b) < self.config.absolute_tolerance).astype(np.float64)
