"""Filtered noise: the input is white noise, the target is that noise passed through a linear filter.

The filter is given by its poles ``p_j`` and residues ``c_j`` (in steps): its impulse response is

    h_t = sum_j c_j p_j^t,        t = 0, 1, 2, ...      (transfer function sum_j c_j / (1 - p_j z^-1))

A real pole is a number; a damped oscillation is a complex-conjugate pair, written as one entry
``[re, im]`` (the pair ``re +- i im``) whose residue is ``[re, im]`` too (the residue ``c`` of
``re + i im``; its conjugate belongs to the conjugate pole), contributing ``2 Re(c p^t)``.

Every trial starts from rest (zero input history): the target at step t is the convolution of the
impulse response with the inputs of steps 0..t, ``y_t = sum_{k=0}^{t} h_k x_{t-k}``, what
``scipy.signal.lfilter`` gives from zero initial conditions (tested). The loss is masked to the steps
after a burn-in, where both the target and a network started at rest have forgotten (nearly) the
missing past. Timing convention: the state at step t has already received ``x_t``, so lag 0 counts.

This is the task of the linear-network oracle (science.md §8): for a linear network the expected
loss is a weighted sum of squared impulse-response errors (:meth:`FilteredNoise.lag_weights`), so the
plateaus of its learning curve can be computed (analysis/pole_fit.py).
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field, field_validator, model_validator

from ..schema_base import Schema
from .base import TASKS, Task, Trials

#: a real pole or residue (a number), or one of a complex-conjugate pair as [re, im]
Complexish = float | list[float]


def _as_complex(v: float | list[float]) -> complex:
    return complex(v[0], v[1]) if isinstance(v, list) else complex(v, 0.0)


class Config(Schema):
    """Configuration of :class:`FilteredNoise`. The filter acts per step; ``dt_ms`` only names the step."""

    dt_ms: float = Field(20.0, gt=0, description="time step, ms (the filter's poles are per step)")
    poles: list[Complexish] = Field(
        default_factory=lambda: [0.95, 0.6],
        description="poles of the target filter, each inside the unit circle: a number (a real pole) or [re, im] "
                    "(the complex-conjugate pair re +- i im, a damped oscillation)")
    residues: list[Complexish] = Field(
        default_factory=lambda: [0.25, -0.9],
        description="residues of the target filter, one per entry of poles and of the same form (a number for a real "
                    "pole, [re, im] for a pair: the residue of re + i im); impulse response h_t = sum_j c_j p_j^t")
    burn_in_steps: int = Field(60, ge=0, description="steps at the start of each trial that are not scored (loss and "
                                                      "score masked to the steps after them)")
    trial_steps: int = Field(121, ge=1, description="trial length, steps (more than burn_in_steps)")
    input_std: float = Field(1.0, gt=0, description="standard deviation of the white Gaussian input noise per step")
    tolerance: float = Field(0.1, gt=0, description="a trial is correct when its mean squared error on the scored steps "
                                                    "is below tolerance x the mean square of its target there (dimensionless)")

    @field_validator("poles", "residues")
    @classmethod
    def _pairs(cls, v):
        for i, x in enumerate(v):
            if isinstance(x, list) and len(x) != 2:
                raise ValueError(f"entry {i}: expected a number or a pair [re, im], got a list of {len(x)}")
        return v

    @field_validator("poles")
    @classmethod
    def _stable(cls, v):
        if not v:
            raise ValueError("expected at least one pole, got []")
        for i, x in enumerate(v):
            z = _as_complex(x)
            if not abs(z) < 1:
                raise ValueError(f"entry {i}: expected a pole inside the unit circle (|p| < 1: a stable filter), "
                                 f"got {x} with |p| = {abs(z):.4g}")
            if isinstance(x, list) and x[1] == 0:
                raise ValueError(f"entry {i}: [re, im] is a complex pair and needs im != 0; write a real pole as a number")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        if len(self.residues) != len(self.poles):
            raise ValueError(f"residues: expected one per pole ({len(self.poles)}: {self.poles}), got "
                             f"{len(self.residues)}: {self.residues}")
        for i, (p, c) in enumerate(zip(self.poles, self.residues)):
            if isinstance(p, list) != isinstance(c, list):
                raise ValueError(f"residues: entry {i} is {c!r} but pole {p!r} is "
                                 f"{'a complex pair: give its residue as [re, im]' if isinstance(p, list) else 'real: give its residue as a number'}")
        if self.burn_in_steps >= self.trial_steps:
            raise ValueError(f"burn_in_steps: expected fewer than trial_steps = {self.trial_steps} (something must be "
                             f"scored), got {self.burn_in_steps}")
        return self


def filter_modes(poles, residues) -> tuple[np.ndarray, np.ndarray]:
    """Every pole and residue as complex arrays, the conjugate of each pair included (order: as
    given, a pair's conjugate right after it)."""
    p, c = [], []
    for x, r in zip(poles, residues):
        p.append(_as_complex(x))
        c.append(_as_complex(r))
        if isinstance(x, list):
            p.append(p[-1].conjugate())
            c.append(c[-1].conjugate())
    return np.array(p, complex), np.array(c, complex)


def impulse_response(poles_j: np.ndarray, residues_j: np.ndarray, n_lags: int) -> np.ndarray:
    """``h_t = sum_j c_j p_j^t`` for t = 0 .. n_lags - 1 (real part; exact for conjugate-closed sets)."""
    t = np.arange(n_lags)
    return np.real((residues_j[None, :] * np.asarray(poles_j, complex)[None, :] ** t[:, None]).sum(1))


@TASKS.register("filtered_noise")
class FilteredNoise(Task):
    """Report white noise passed through a linear filter (poles and residues).

    Inputs ``(trial, time, 1)``: ``x_t ~ N(0, input_std^2)`` i.i.d. Target ``(trial, time, 1)``:
    ``y_t = sum_{k=0}^{t} h_k x_{t-k}`` on every step; mask 1 from ``burn_in_steps`` on. Periods:
    ``burn_in`` [0, burn_in_steps) and ``scored`` [burn_in_steps, trial_steps).
    Conditions: ``target_power``, the mean square of the target on the scored steps.
    """

    kind: ClassVar[str] = "filtered_noise"
    Config: ClassVar[type[Schema]] = Config
    metadata: ClassVar[dict[str, str]] = {
        "paper": "Bordelon, Cotler, Pehlevan & Zavatone-Veth (2025) arXiv 2503.18754 (linear RNNs on filtered noise); "
                 "Saxe, McClelland & Ganguli (2014) ICLR (staircase learning in linear networks)",
        "tags": "linear filtering, analytic oracle, staircase learning, supervised",
    }

    def __init__(self, config: Config):
        super().__init__(config)
        self.poles_j, self.residues_j = filter_modes(config.poles, config.residues)
        n = int(config.trial_steps)
        h = impulse_response(self.poles_j, self.residues_j, n)
        # y = x @ H^T with H[t, s] = h[t - s] (lower triangular Toeplitz): the convolution from rest
        idx = np.arange(n)[:, None] - np.arange(n)[None, :]
        self._conv_txs = np.where(idx >= 0, h[np.clip(idx, 0, None)], 0.0)

    input_names: ClassVar[tuple[str, ...]] = ("white noise",)
    output_names: ClassVar[tuple[str, ...]] = ("filtered noise",)

    @property
    def n_inputs(self) -> int:
        return 1

    @property
    def n_outputs(self) -> int:
        return 1

    @property
    def n_steps(self) -> int:
        return int(self.config.trial_steps)

    @property
    def period_names(self) -> tuple[str, ...]:
        return ("burn_in", "scored")

    @property
    def order(self) -> int:
        """Number of poles of the target filter (a complex pair counts 2)."""
        return len(self.poles_j)

    def impulse_response(self, n_lags: int | None = None) -> np.ndarray:
        """The target filter's impulse response h_t, t = 0 .. n_lags - 1 (default: the trial length)."""
        return impulse_response(self.poles_j, self.residues_j, self.n_steps if n_lags is None else n_lags)

    def lag_weights(self) -> np.ndarray:
        """(trial_steps,) weights w_k such that the expected task loss of a linear readout with
        impulse response g is ``input_std^2 sum_k w_k (h_k - g_k)^2``: the fraction of scored steps
        t (burn-in <= t < trial_steps) that see lag k, i.e. with t >= k (white input, trials from rest)."""
        B, T = int(self.config.burn_in_steps), self.n_steps
        k = np.arange(T)
        return np.clip((T - np.maximum(k, B)) / (T - B), 0.0, 1.0)

    def sample(self, rng: np.random.Generator, n_trials: int) -> Trials:
        b, n, B = int(n_trials), self.n_steps, int(self.config.burn_in_steps)
        x_bxt = rng.standard_normal((b, n)) * self.config.input_std
        y_bxt = x_bxt @ self._conv_txs.T
        mask_t = (np.arange(n) >= B).astype(np.float32)
        mask = np.broadcast_to(mask_t[None, :, None], (b, n, 1)).copy()
        periods = {"burn_in": np.tile(np.array([[0, B]], dtype=np.int64), (b, 1)),
                   "scored": np.tile(np.array([[B, n]], dtype=np.int64), (b, 1))}
        conditions = {"target_power": (y_bxt[:, B:] ** 2).mean(1)}
        return Trials(x_bxt[:, :, None].astype(np.float32), y_bxt[:, :, None].astype(np.float32), mask, periods, conditions)

    def score(self, outputs_bxtxo: np.ndarray, trials: Trials) -> np.ndarray:
        """1 where the trial's mean squared error on the scored steps is below ``tolerance`` times
        the mean square of its target there. ``outputs_bxtxo`` may carry leading axes (ensemble)."""
        m = trials.mask_bxtxo[..., 0] > 0
        err = ((np.asarray(outputs_bxtxo, np.float64)[..., 0] - trials.targets_bxtxo[..., 0]) ** 2 * m).sum(-1)
        power = (trials.targets_bxtxo[..., 0].astype(np.float64) ** 2 * m).sum(-1)
        return (err < self.config.tolerance * power).astype(np.float64)
