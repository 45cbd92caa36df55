"""A task from outside the package: remember which of two channels carried a cue.

Named from a protocol by its module path, ``task: {kind: cue_memory:CueMemory}``: the module
``cue_memory`` is imported from ``sys.path`` or, failing that, from the protocol's folder (this file
sits beside ``cue_memory.yaml``). See docs/tasks.md, "Your own task".

Trial layout (steps of ``dt_ms``)::

    | fixation | cue | delay (variable) | response | padding (zero input, mask 0) |

Inputs: 0 = cue on the "minus" channel, 1 = cue on the "plus" channel (1 during the cue period, on
one channel only), 2 = go cue (1 during the response window). Output 0: the cue's sign, -1 for
channel 0 and +1 for channel 1, during the response window (mask 1 there only). A trial is correct
when the output averaged over the response window has the target's sign.

It follows the built-in tasks' conventions: durations in ms rounded to steps, a fixed ``n_steps``
(the longest delay), periods that tile the trial in order, randomness only from the ``rng`` argument,
vectorised sampling, and ``score`` that keeps leading (ensemble) axes.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field, model_validator

from bioplastic.schema_base import Schema
from bioplastic.tasks import Task, Trials
from bioplastic.tasks.base import delay_step_range, steps, window_bxt


class Config(Schema):
    """The settings of ``task:`` (validated like a built-in task's: unknown keys and bad values are
    refused, naming the field)."""

    dt_ms: float = Field(20.0, gt=0, description="time step, ms")
    fixation_ms: float = Field(100.0, gt=0, description="fixation before the cue (no input), ms")
    cue_ms: float = Field(100.0, gt=0, description="cue period, ms")
    delay_min_ms: float = Field(200.0, ge=0, description="shortest delay, ms")
    delay_max_ms: float = Field(600.0, ge=0, description="longest delay, ms")
    response_ms: float = Field(200.0, gt=0, description="response window, ms")
    cue_amplitude: float = Field(1.0, gt=0, description="height of the cue pulse (dimensionless)")

    @model_validator(mode="after")
    def _check_timing(self) -> Config:
        for name in ("fixation_ms", "cue_ms", "response_ms"):
            if steps(getattr(self, name), self.dt_ms) < 1:
                raise ValueError(f"{name}={getattr(self, name)} is less than one step of dt_ms={self.dt_ms}")
        if self.delay_min_ms > self.delay_max_ms:
            raise ValueError(f"delay_min_ms={self.delay_min_ms} is larger than delay_max_ms={self.delay_max_ms}")
        lo, hi = delay_step_range(self.delay_min_ms, self.delay_max_ms, self.dt_ms)
        if lo > hi:
            raise ValueError(f"no multiple of dt_ms={self.dt_ms} lies in [{self.delay_min_ms}, {self.delay_max_ms}]")
        return self


class CueMemory(Task):
    """A cue on one of two channels, a delay, then report the cue's sign (-1 channel 0, +1 channel 1)."""

    kind: ClassVar[str] = "cue_memory"
    Config: ClassVar[type[Schema]] = Config
    metadata: ClassVar[dict[str, str]] = {"paper": "example task (examples/custom_task)",
                                          "tags": "working memory, variable delay, supervised"}

    def __init__(self, config: Config):
        super().__init__(config)
        dt = config.dt_ms
        self.fixation_steps = steps(config.fixation_ms, dt)
        self.cue_steps = steps(config.cue_ms, dt)
        self.response_steps = steps(config.response_ms, dt)
        self.delay_min_steps, self.delay_max_steps = delay_step_range(config.delay_min_ms, config.delay_max_ms, dt)

    @property
    def n_inputs(self) -> int:
        return 3

    @property
    def n_outputs(self) -> int:
        return 1

    @property
    def n_steps(self) -> int:
        return self.fixation_steps + self.cue_steps + self.delay_max_steps + self.response_steps

    @property
    def period_names(self) -> tuple[str, ...]:
        return ("fixation", "cue", "delay", "response", "padding")

    def sample(self, rng: np.random.Generator, n_trials: int) -> Trials:
        b, T = int(n_trials), self.n_steps
        channel_b = rng.integers(2, size=b)  # 0: minus, 1: plus
        delay_b = rng.integers(self.delay_min_steps, self.delay_max_steps + 1, size=b)
        sign_b = 2 * channel_b - 1

        cue_start = self.fixation_steps
        delay_start = cue_start + self.cue_steps
        resp_start_b = delay_start + delay_b
        resp_stop_b = resp_start_b + self.response_steps
        zeros_b = np.zeros(b, dtype=np.int64)
        periods = {
            "fixation": np.stack([zeros_b, zeros_b + cue_start], axis=1),
            "cue": np.stack([zeros_b + cue_start, zeros_b + delay_start], axis=1),
            "delay": np.stack([zeros_b + delay_start, resp_start_b], axis=1),
            "response": np.stack([resp_start_b, resp_stop_b], axis=1),
            "padding": np.stack([resp_stop_b, zeros_b + T], axis=1),
        }

        response_bxt = window_bxt(resp_start_b, resp_stop_b, T)
        inputs = np.zeros((b, T, 3), dtype=np.float32)
        # the cue: channel_b of each trial, over the cue period
        inputs[np.arange(b)[:, None], np.arange(cue_start, delay_start)[None, :], channel_b[:, None]] = self.config.cue_amplitude
        inputs[:, :, 2] = response_bxt
        mask = response_bxt[:, :, None].astype(np.float32)
        targets = mask * sign_b[:, None, None].astype(np.float32)
        conditions = {"channel": channel_b, "side": sign_b, "delay_steps": delay_b}  # side: the choice (+-1)
        return Trials(inputs, targets, mask, periods, conditions)

    def score(self, outputs_bxtxo: np.ndarray, trials: Trials) -> np.ndarray:
        """1 where the output averaged over the response window has the target's sign (0 is wrong);
        ``outputs`` (..., trial, time, output) gives (..., trial)."""
        resp = trials.periods["response"]
        in_window_bxt = window_bxt(resp[:, 0], resp[:, 1], trials.inputs_bxtxi.shape[1])
        mean_out = (np.asarray(outputs_bxtxo)[..., 0] * in_window_bxt).sum(axis=-1) / in_window_bxt.sum(axis=1)
        return (np.sign(mean_out) == trials.conditions["side"]).astype(np.float64)
