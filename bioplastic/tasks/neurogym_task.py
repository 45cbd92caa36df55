"""neurogym environments as tasks (task kind ``neurogym``; optional: ``pip install 'bioplastic[neurogym]'``).

A neurogym ``TrialEnv`` builds one trial at a time (``env.new_trial()``): the observations ``env.ob``
(time, observation), the ground truth ``env.gt`` (time,) of actions (or (time, k) for a continuous
action space), and its periods (``env.start_ind`` / ``env.end_ind``, or ``env.start_t`` / ``env.end_t``
in ms). This adapter stacks such trials into :class:`~bioplastic.tasks.base.Trials`:

- **inputs** = ``ob`` (float32), zero after the trial's end;
- **targets** = ``gt`` one-hot over the actions (a ``Discrete`` action space; output 0 is neurogym's
  fixation action), or ``gt`` itself (``targets: raw``, a ``Box`` action space);
- **periods** = the env's periods in the order it adds them, then ``padding`` up to ``n_steps``;
- **mask** = 1 in the decision period (``loss: decision``, the default) or on every step of the trial
  (``loss: trial``: neurogym's own supervised convention, the fixation action is the target before
  the decision); 0 in the padding;
- **score** = 1 if the action with the largest output averaged over the decision period is the
  correct one (``gt`` at the decision period's first step); ``targets: raw``: every output's mean
  within ``tolerance`` of the target's mean there. A trial without decision steps scores 1.
- **accuracy** (held-out accuracy, and so the criterion ``training.criterion``) = the mean score over
  the trials with evidence (``accuracy_trials: evidence``, the default): trials whose evidence label
  (``coh``, the coherence of PerceptualDecisionMaking and its kin) is 0 carry no evidence for either
  choice, so even an ideal observer is right on half of them, and with them the default criterion 0.95
  is out of reach (0-coherence trials are 1 in 5 of PerceptualDecisionMaking-v0's: its ideal observer
  scores about 0.9 on all trials, about 0.99 on the others). An environment without such a label
  scores every trial; ``accuracy_trials: all`` scores every trial anyway.
- **conditions** = ``action`` (the correct action, -1 without a decision period), ``trial_steps``
  (the trial's own length) and every numeric scalar of the env's ``trial`` dict (``ground_truth``,
  ``coh``, ...).

neurogym draws its own random numbers (``env.rng``, a ``numpy.random.RandomState``); every call of
:meth:`NeurogymTask.sample` seeds it from the ``Generator`` it is given, so the same generator state
gives the same trials. Trials have variable length; all are padded to ``n_steps`` (by default the
longest of ``probe_trials`` trials drawn with seed 0); a longer trial is redrawn.

neurogym is imported only when this kind is used; it is an optional dependency (it pins numpy and
gymnasium versions), never a core one. ``env`` may also be a module path ``package.module:Class`` of
an environment class with neurogym's interface (a ``TrialEnv`` subclass, or a stand-in for tests).
"""
from __future__ import annotations

import difflib
import importlib
import json
import warnings
from functools import lru_cache
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from ..schema_base import Schema
from .base import Task, Trials, window_bxt

#: the one install recipe (README, docs/tasks.md, ``bioplastic list`` and the errors give the same): from the
#: checkout, a virtual environment of its own that takes everything else from the current one
INSTALL_RECIPE = "python -m venv ngvenv --system-site-packages && ngvenv/bin/pip install -e '.[neurogym]'"
INSTALL_HINT = (f"neurogym pins numpy 2.2.* and gymnasium 0.29.*, so install it in an environment of its own, from the "
                f"checkout: {INSTALL_RECIPE}, then run ngvenv/bin/python -m bioplastic ... (docs/tasks.md)")
#: labels of neurogym's trial dict that hold the evidence's strength; a trial where it is 0 has none
EVIDENCE_LABELS = ("coh",)
#: a trial longer than n_steps is redrawn; after this many redraws in a row sample() gives up
_MAX_REDRAWS = 1000


class NeurogymUnavailable(RuntimeError):
    """neurogym cannot be imported."""


def _neurogym():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import neurogym
    except Exception as exc:  # noqa: BLE001 - ImportError, or a numpy/gymnasium clash at import
        raise NeurogymUnavailable(f"the neurogym task kind needs neurogym, which cannot be imported "
                                  f"({type(exc).__name__}: {exc}); {INSTALL_HINT}") from None
    return neurogym


def make_env(env: str, dt_ms: float, kwargs: dict[str, Any]):
    """The unwrapped environment ``env`` names (a neurogym id or a module path), built with ``dt=dt_ms``."""
    with warnings.catch_warnings():  # gymnasium warns about metadata neurogym does not set
        warnings.simplefilter("ignore")
        if ":" in env:
            module, _, attr = env.partition(":")
            obj = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
            made = obj(dt=dt_ms, **kwargs)
        else:
            made = _neurogym().make(env, dt=dt_ms, **kwargs)
        made = getattr(made, "unwrapped", made)
        if hasattr(made, "seed"):
            made.seed(0)
    return made


def _env_ids() -> list[str]:
    ngym = _neurogym()
    try:
        return sorted(ngym.all_envs())
    except Exception:  # noqa: BLE001 - older/newer neurogym: fall back to gymnasium's registry
        import gymnasium

        return sorted(gymnasium.envs.registry)


class Config(Schema):
    """Configuration of :class:`NeurogymTask`."""

    env: str = Field(..., min_length=1, description="the neurogym environment id (e.g. PerceptualDecisionMaking-v0), or a "
                     "module path package.module:Class of an environment class with neurogym's interface")
    dt_ms: float = Field(100.0, gt=0, description="time step, ms (passed to the environment as dt)")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the environment (e.g. timing: "
                                   "{stimulus: 500}, in ms; dt is dt_ms)")
    loss: Literal["decision", "trial"] = Field("decision", description="where the loss mask is 1: the decision period, or "
                                               "every step of the trial (neurogym's convention: fixation action before it)")
    decision_period: str = Field("decision", min_length=1, description="the period whose ground truth is scored")
    targets: Literal["auto", "one_hot", "raw"] = Field("auto", description="one_hot over the actions (Discrete action "
                                                       "space), raw ground truth (Box), or auto: by the action space")
    tolerance: float = Field(0.1, gt=0, description="targets raw: largest |mean output - mean target| of a correct trial")
    n_steps: int | None = Field(None, ge=1, le=1_000_000, description="trial length in steps (trials are padded to it, "
                                "longer ones redrawn); null: the longest of probe_trials trials")
    probe_trials: int = Field(200, ge=1, le=100_000, description="trials drawn (seed 0) to find the periods, "
                              "the actions and, without n_steps, the trial length")
    accuracy_trials: Literal["evidence", "all"] = Field(
        "evidence", description="trials that held-out accuracy (and so training.criterion) counts: evidence, those whose "
        "evidence label (coh) is not 0 (a 0-coherence trial has no correct answer that evidence supports, and caps "
        "accuracy near 0.9 on PerceptualDecisionMaking-v0); all, every trial")

    @field_validator("env")
    @classmethod
    def _known_env(cls, value: str) -> str:
        if ":" in value:
            module, _, attr = value.partition(":")
            try:
                obj = importlib.import_module(module)
                for part in attr.split("."):
                    obj = getattr(obj, part)
            except (ImportError, AttributeError) as exc:
                raise ValueError(f"cannot import the environment class {value!r}: {type(exc).__name__}: {exc}") from None
            return value
        try:
            ids = _env_ids()
        except NeurogymUnavailable as exc:
            raise ValueError(str(exc)) from None
        if value not in ids:
            hint = difflib.get_close_matches(value, ids, n=3)
            raise ValueError(f"unknown neurogym environment {value!r}"
                             + (f" (did you mean {', '.join(map(repr, hint))}?)" if hint else f"; expected one of: {', '.join(ids)}"))
        return value

    @field_validator("kwargs")
    @classmethod
    def _env_accepts(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if "dt" in value:
            raise ValueError("dt is set by dt_ms; remove it from kwargs")
        env, dt_ms = info.data.get("env"), info.data.get("dt_ms")
        if env is None or dt_ms is None:  # already refused
            return value
        try:
            json.dumps(value)
        except TypeError as exc:
            raise ValueError(f"expected plain values (numbers, strings, lists, mappings): {exc}") from None
        try:
            _probe(env, dt_ms, json.dumps(value, sort_keys=True), 1)
        except Exception as exc:  # noqa: BLE001 - the environment's own complaint, verbatim
            raise ValueError(f"{env} cannot be built or run with these kwargs: {type(exc).__name__}: {exc}") from None
        return value

    @field_validator("decision_period")
    @classmethod
    def _has_period(cls, value: str, info: ValidationInfo) -> str:
        env, dt_ms, kwargs = info.data.get("env"), info.data.get("dt_ms"), info.data.get("kwargs")
        if env is None or dt_ms is None or kwargs is None:
            return value
        names = _probe(env, dt_ms, json.dumps(kwargs, sort_keys=True), 1).period_names
        if value not in names:
            raise ValueError(f"{env} has no period {value!r}; its periods: {', '.join(names)}")
        return value


class _Probe:
    """What a few trials of an environment show: periods, sizes, actions, lengths, condition keys."""

    def __init__(self, env, n_trials: int):
        lengths, names, keys = [], [], None
        for _ in range(n_trials):
            trial, ob, gt, periods = _draw(env)
            lengths.append(ob.shape[0])
            names += [n for n in periods if n not in names]
            numeric = {k for k, v in (trial or {}).items() if _is_number(v)}
            keys = numeric if keys is None else keys & numeric
        self.period_names = tuple(names)
        self.max_steps = max(lengths)
        self.n_inputs = int(np.prod(ob.shape[1:])) if ob.ndim > 1 else 1
        space = getattr(env, "action_space", None)
        self.n_actions = int(space.n) if hasattr(space, "n") else None
        self.gt_width = int(np.prod(gt.shape[1:])) if gt.ndim > 1 else 1
        self.condition_keys = tuple(sorted(k for k in (keys or ()) if k not in ("action", "trial_steps")))


@lru_cache(maxsize=32)
def _probe(env: str, dt_ms: float, kwargs_json: str, n_trials: int) -> _Probe:
    return _Probe(make_env(env, dt_ms, json.loads(kwargs_json)), n_trials)


def _space_names(space, n: int, default: str) -> tuple[str, ...]:
    """Channel names from a neurogym space's ``name`` mapping (name -> index, or a list / range of
    indices, numbered from 1); ``default i`` for a channel it does not name."""
    names = [f"{default} {i}" for i in range(n)]
    mapping = getattr(space, "name", None)
    if isinstance(mapping, dict):
        for key, idx in mapping.items():
            many = not isinstance(idx, (int, np.integer))
            for k, i in enumerate([idx] if not many else list(idx)):
                if isinstance(i, (int, np.integer)) and 0 <= int(i) < n:
                    names[int(i)] = f"{key} {k + 1}" if many and len(list(idx)) > 1 else str(key)
    return tuple(names)


def _is_number(v) -> bool:
    return isinstance(v, (bool, int, float, np.bool_, np.integer, np.floating)) or (
        isinstance(v, np.ndarray) and v.ndim == 0 and v.dtype.kind in "biuf")


def _draw(env):
    """One new trial: (trial dict, ob (T, ...), gt (T, ...), {period: (start, stop) steps})."""
    for attr in ("start_t", "end_t", "start_ind", "end_ind"):
        if isinstance(getattr(env, attr, None), dict):
            getattr(env, attr).clear()  # periods of the previous trial must not linger
    trial = env.new_trial()
    ob, gt = np.asarray(env.ob), np.asarray(env.gt)
    n = ob.shape[0]
    if gt.shape[0] != n:
        raise ValueError(f"the environment's gt has {gt.shape[0]} steps, its ob {n}")
    if isinstance(getattr(env, "start_ind", None), dict) and env.start_ind:
        starts, stops = env.start_ind, env.end_ind
    else:
        dt = float(env.dt)
        starts = {k: int(round(v / dt)) for k, v in env.start_t.items()}
        stops = {k: int(round(v / dt)) for k, v in env.end_t.items()}
    periods = {k: (min(max(int(starts[k]), 0), n), min(max(int(stops[k]), 0), n)) for k in starts}
    periods = dict(sorted(periods.items(), key=lambda kv: kv[1]))  # temporal order (stable for ties)
    return trial, ob, gt, periods


class NeurogymTask(Task):
    """A neurogym environment's trials as a task (see the module docstring)."""

    kind: ClassVar[str] = "neurogym"
    Config: ClassVar[type[Schema]] = Config
    metadata: ClassVar[dict[str, str]] = {
        "paper": "Molano-Mazon et al. (2022) NeuroGym: An open resource for developing and sharing neuroscience tasks",
        "tags": "adapter, neurogym, supervised",
    }

    def __init__(self, config: Config):
        super().__init__(config)
        kwargs_json = json.dumps(config.kwargs, sort_keys=True)
        self.env = make_env(config.env, config.dt_ms, config.kwargs)
        probe = _probe(config.env, config.dt_ms, kwargs_json, config.probe_trials)
        self.probe = probe
        self._n_steps = int(config.n_steps or probe.max_steps)
        mode = config.targets
        if mode == "auto":
            mode = "one_hot" if probe.n_actions is not None and probe.gt_width == 1 else "raw"
        if mode == "one_hot" and probe.n_actions is None:
            raise ValueError(f"targets: one_hot needs a Discrete action space; {config.env} has "
                             f"{getattr(self.env, 'action_space', None)!r} (use targets: raw)")
        self.target_mode = mode
        self._n_outputs = probe.n_actions if mode == "one_hot" else probe.gt_width
        self._period_names = tuple(n for n in probe.period_names if n != "padding") + ("padding",)

    @property
    def input_names(self) -> tuple[str, ...]:
        """From the observation space's ``name`` (neurogym: ``{'fixation': 0, 'stimulus': [1, 2]}`` ->
        fixation, stimulus 1, stimulus 2); ``input i`` where it names none."""
        return _space_names(getattr(self.env, "observation_space", None), self.n_inputs, "input")

    @property
    def output_names(self) -> tuple[str, ...]:
        """From the action space's ``name`` (one-hot targets; ``output i`` otherwise)."""
        if self.target_mode != "one_hot":
            return super().output_names
        return _space_names(getattr(self.env, "action_space", None), self.n_outputs, "output")

    @property
    def n_inputs(self) -> int:
        return self.probe.n_inputs

    @property
    def n_outputs(self) -> int:
        return self._n_outputs

    @property
    def n_steps(self) -> int:
        return self._n_steps

    @property
    def period_names(self) -> tuple[str, ...]:
        return self._period_names

    def sample(self, rng: np.random.Generator, n_trials: int) -> Trials:
        b, T, n_in, n_out = int(n_trials), self.n_steps, self.n_inputs, self.n_outputs
        self.env.seed(int(rng.integers(2**31 - 1)))
        inputs = np.zeros((b, T, n_in), dtype=np.float32)
        targets = np.zeros((b, T, n_out), dtype=np.float32)
        mask = np.zeros((b, T, n_out), dtype=np.float32)
        periods = {name: np.zeros((b, 2), dtype=np.int64) for name in self.period_names}
        conditions = {k: np.full(b, np.nan) for k in self.probe.condition_keys}
        action_b = np.full(b, -1, dtype=np.int64)
        steps_b = np.zeros(b, dtype=np.int64)
        dec = self.config.decision_period
        for i in range(b):
            for _ in range(_MAX_REDRAWS):
                trial, ob, gt, per = _draw(self.env)
                if ob.shape[0] <= T:
                    break
            else:
                raise RuntimeError(f"{self.config.env}: {_MAX_REDRAWS} trials in a row were longer than n_steps={T}; "
                                   "raise task.n_steps (or leave it null)")
            n = ob.shape[0]
            steps_b[i] = n
            inputs[i, :n] = ob.reshape(n, -1)
            if self.target_mode == "one_hot":
                gt_t = gt.reshape(n).astype(np.int64)
                bad = (gt_t < 0) | (gt_t >= n_out)
                if bad.any():
                    raise ValueError(f"{self.config.env}: ground truth {gt_t[bad][0]} is not an action 0..{n_out - 1}")
                targets[i, np.arange(n), gt_t] = 1.0
            else:
                targets[i, :n] = gt.reshape(n, -1)
            d0, d1 = per.get(dec, (n, n))
            if self.config.loss == "trial":
                mask[i, :n] = 1.0
            else:
                mask[i, d0:d1] = 1.0
            if d1 > d0 and self.target_mode == "one_hot":
                action_b[i] = int(gt.reshape(n)[d0])
            # periods absent from this trial are empty, at the end of the previous one
            last = 0
            for name in self.period_names[:-1]:
                start, stop = per.get(name, (last, last))
                periods[name][i] = (start, stop)
                last = max(last, stop)
            periods["padding"][i] = (n, T)
            for k in conditions:
                v = (trial or {}).get(k)
                if _is_number(v):
                    conditions[k][i] = float(v)
        conditions["action"] = action_b
        conditions["trial_steps"] = steps_b
        return Trials(inputs, targets, mask, periods, conditions)

    def evidence_trials(self, trials: Trials) -> np.ndarray:
        """(trial,) bool: the trials that held-out accuracy counts (see ``accuracy_trials``)."""
        keep = np.ones(trials.n_trials, bool)
        if self.config.accuracy_trials == "evidence":
            for k in EVIDENCE_LABELS:
                if k in trials.conditions:
                    keep &= np.asarray(trials.conditions[k], dtype=np.float64) != 0
        return keep

    def accuracy(self, outputs_bxtxo: np.ndarray, trials: Trials) -> float:
        """Mean score over the trials with evidence (``accuracy_trials: evidence``), or every trial
        (``all``, or an environment without an evidence label). NaN when no trial counts."""
        keep = self.evidence_trials(trials)
        if not keep.any():
            return float("nan")
        return float(np.mean(self.score(outputs_bxtxo, trials)[..., keep]))

    def score(self, outputs_bxtxo: np.ndarray, trials: Trials) -> np.ndarray:
        """Per trial (leading axes of ``outputs`` kept): the correct action has the largest output
        averaged over the decision period (one-hot targets); each output's mean within ``tolerance``
        of the target's (raw). A trial without decision steps scores 1."""
        out = np.asarray(outputs_bxtxo, dtype=np.float64)
        dec = trials.periods[self.config.decision_period]
        win_bxt = window_bxt(dec[:, 0], dec[:, 1], out.shape[-2])
        n_b = win_bxt.sum(axis=1)
        mean_out = (out * win_bxt[..., None]).sum(axis=-2) / np.maximum(n_b, 1)[:, None]  # (..., trial, output)
        if self.target_mode == "one_hot":
            correct = np.argmax(mean_out, axis=-1) == trials.conditions["action"]
        else:
            mean_tgt = (trials.targets_bxtxo * win_bxt[..., None]).sum(axis=-2) / np.maximum(n_b, 1)[:, None]
            correct = np.all(np.abs(mean_out - mean_tgt) < self.config.tolerance, axis=-1)
        return np.where(n_b > 0, correct, True).astype(np.float64)
