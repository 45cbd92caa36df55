"""Schedules for a regularizer strength over training iterations: lambda(k) = lambda_0 * s(k).

Each schedule is vectorised over ensemble members (E,) because the adaptive controller keeps one
strength per network. Stateless schedules depend on ``k`` only; the adaptive one carries its state
in :attr:`Schedule.state` (saved with every checkpoint so an interrupted run resumes exactly).
"""
from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, model_validator

from ..registry import Registry
from ..schema_base import Schema

SCHEDULES: Registry[type[Schedule]] = Registry("schedule kind")


class _Base(Schema):
    off_when_learned: bool = Field(False, description="switch the term off (strength 0) for a network once it reaches the criterion")


class ConstantConfig(_Base):
    kind: Literal["constant"] = "constant"


class WarmupConfig(_Base):
    kind: Literal["warmup"] = "warmup"
    iterations: int = Field(gt=0, description="iterations over which the strength rises linearly from 0 to lambda")


class LinearDecayConfig(_Base):
    kind: Literal["linear_decay"] = "linear_decay"
    start: int = Field(0, ge=0, description="iteration at which the decay starts")
    iterations: int = Field(gt=0, description="iterations from full strength to `final` (times lambda)")
    final: float = Field(0.0, ge=0, description="final strength as a fraction of lambda")


class CosineDecayConfig(LinearDecayConfig):
    kind: Literal["cosine_decay"] = "cosine_decay"  # type: ignore[assignment]


class StepConfig(_Base):
    kind: Literal["step"] = "step"
    milestones: list[int] = Field(description="iterations at which the strength is multiplied by `factor`")
    factor: float = Field(0.1, ge=0, description="multiplier applied at each milestone")

    @model_validator(mode="after")
    def _sorted(self):
        if list(self.milestones) != sorted(set(self.milestones)) or any(m < 0 for m in self.milestones):
            raise ValueError(f"milestones must be increasing non-negative iterations, got {self.milestones}")
        return self


class AdaptiveConfig(_Base):
    kind: Literal["adaptive"] = "adaptive"
    target_ratio: float = Field(0.1, gt=0, description="hold (lambda * term) / task loss at this ratio")
    gain: float = Field(0.05, gt=0, le=1, description="exponent of the multiplicative update per iteration")
    min_factor: float = Field(1e-3, gt=0, description="lower bound on the strength, as a fraction of lambda")
    max_factor: float = Field(1e3, gt=0, description="upper bound on the strength, as a fraction of lambda")


class ActivityFloorConfig(_Base):
    kind: Literal["activity_floor"] = "activity_floor"
    target: float = Field(1e-4, gt=0, description="floor on the TCR term (mean squared one-step change of the state): below it the strength shrinks, above it it recovers; with `relative`, a fraction of the term's mean over the first `reference_iterations` iterations")
    relative: bool = Field(False, description="target is a fraction of each network's own early activity (robust to the noise floor set by sigma_h)")
    reference_iterations: int = Field(10, gt=0, description="with `relative`: iterations whose mean TCR term is the reference (the controller waits for them)")
    gain: float = Field(0.05, gt=0, le=1, description="exponent of the multiplicative update per iteration")
    min_factor: float = Field(1e-3, gt=0, description="lower bound on the strength, as a fraction of its base value")
    max_factor: float = Field(1.0, gt=0, description="upper bound on the strength, as a fraction of its base value")


ScheduleConfig = Annotated[ConstantConfig | WarmupConfig | LinearDecayConfig | CosineDecayConfig | StepConfig | AdaptiveConfig | ActivityFloorConfig, Field(discriminator="kind")]


class Schedule:
    """Strength of a regularizer per member: ``value(k)`` -> (E,) numpy array."""

    def __init__(self, config, lambda0_e: np.ndarray):
        self.config = config
        self.lambda0_e = np.asarray(lambda0_e, dtype=float)
        self.off_e = np.zeros(self.lambda0_e.shape, bool)
        self.state: dict[str, np.ndarray] = {}

    def factor(self, k: int) -> float:
        return 1.0

    def value(self, k: int) -> np.ndarray:
        return np.where(self.off_e, 0.0, self.lambda0_e * self.factor(k))

    def observe(self, k: int, task_loss_e: np.ndarray, term_e: np.ndarray, learned_e: np.ndarray) -> None:
        """Called after every iteration with the per-member task loss and (unweighted) term."""
        if self.config.off_when_learned:
            self.off_e |= np.asarray(learned_e, bool)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"off_e": self.off_e.copy(), **{k: v.copy() for k, v in self.state.items()}}

    def load_state_dict(self, d: dict[str, np.ndarray]) -> None:
        self.off_e = np.asarray(d["off_e"], bool).copy()
        self.state = {k: np.asarray(v).copy() for k, v in d.items() if k != "off_e"}


@SCHEDULES.register("constant")
class Constant(Schedule):
    pass


@SCHEDULES.register("warmup")
class Warmup(Schedule):
    def factor(self, k):
        return min(1.0, k / self.config.iterations)


@SCHEDULES.register("linear_decay")
class LinearDecay(Schedule):
    def _progress(self, k):
        return min(1.0, max(0.0, (k - self.config.start) / self.config.iterations))

    def factor(self, k):
        return 1.0 + (self.config.final - 1.0) * self._progress(k)


@SCHEDULES.register("cosine_decay")
class CosineDecay(LinearDecay):
    def factor(self, k):
        f = self.config.final
        return f + (1.0 - f) * 0.5 * (1.0 + math.cos(math.pi * self._progress(k)))


@SCHEDULES.register("step")
class Step(Schedule):
    def factor(self, k):
        return self.config.factor ** sum(k >= m for m in self.config.milestones)


@SCHEDULES.register("adaptive")
class Adaptive(Schedule):
    """Multiplicative controller: lambda <- lambda * (target / ratio)^gain, ratio = lambda*term/task."""

    def __init__(self, config, lambda0_e):
        super().__init__(config, lambda0_e)
        self.state = {"factor_e": np.ones_like(self.lambda0_e)}

    def value(self, k):
        return np.where(self.off_e, 0.0, self.lambda0_e * self.state["factor_e"])

    def observe(self, k, task_loss_e, term_e, learned_e):
        super().observe(k, task_loss_e, term_e, learned_e)
        c = self.config
        lam = self.lambda0_e * self.state["factor_e"]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = lam * np.asarray(term_e) / np.asarray(task_loss_e)
            step = (c.target_ratio / ratio) ** c.gain
        step = np.where(np.isfinite(step) & (step > 0), step, 1.0)
        self.state["factor_e"] = np.clip(self.state["factor_e"] * step, c.min_factor, c.max_factor)


@SCHEDULES.register("activity_floor")
class ActivityFloor(Adaptive):
    """Homeostatic controller against collapse: strength <- strength * (term / target)^gain, bounded.

    When activity stops changing (the TCR term, the mean squared one-step change of the state, falls
    below ``target``: the network sits at a fixed point), the strength of the term or plasticity
    that holds activity still is lowered; when activity moves again it recovers up to ``max_factor``.
    """

    def observe(self, k, task_loss_e, term_e, learned_e):
        Schedule.observe(self, k, task_loss_e, term_e, learned_e)
        c = self.config
        term = np.asarray(term_e, float)
        target = c.target
        if c.relative:
            ref = self.state.setdefault("reference_sum_e", np.zeros_like(self.lambda0_e))
            if k < c.reference_iterations:
                ref += np.where(np.isfinite(term), term, 0.0)
                return
            target = c.target * ref / c.reference_iterations
        with np.errstate(divide="ignore", invalid="ignore"):
            step = (term / target) ** c.gain
        step = np.where(np.isfinite(step) & (step > 0), step, 1.0)
        self.state["factor_e"] = np.clip(self.state["factor_e"] * step, c.min_factor, c.max_factor)


def build_schedule(config, lambda0_e) -> Schedule:
    return SCHEDULES.get(config.kind)(config, lambda0_e)
