"""Predictions for experimentalists (science.md §6): what a recording of the trained networks would show,
per condition across seeds, with effect sizes against the baseline condition.

``predict(results, protocol, analysis)`` rebuilds the networks of every condition at the **final
checkpoint** from a results dataset (never retrains), runs them on held-out trials and returns the
dataset the pipeline writes as ``OUT/predictions.nc``; :func:`prediction_sentences` states the
results in words with their numbers.

Simulation. All networks of all conditions see the same ``trials`` held-out trials (random stream
``prediction_trials``) and, when the model has private noise (``sigma_h > 0``), the same
standard-normal noise per seed (stream ``prediction_noise``, by seed): the design is paired across conditions, as training is. The
**rate** is ``phi(h)`` for rate networks (``leaky_rate``, ``low_rank``), ``relu(z)`` for the PLRNN and
the LSTM's ``h`` (already a squashed output).

Measures per network (dims ``condition, seed``) and per unit (``condition, seed, unit``):

- **The measures of a recording** - ramping, choice-resolved ramps and the population's choice axis,
  single-unit autocorrelation timescales, participation ratio, the psychometric curve and its fit -
  are those of :mod:`bioplastic.analysis.recording` (where their rules are stated), computed by
  :func:`~bioplastic.analysis.recording.measure_recording` on a recording built from each network's
  simulated trials (:func:`network_recording`): the rates, the task's periods, ``target`` = the
  task's choice label (``choice``, ``side`` or ``action``: the choice-resolved measures group by
  it), ``choice`` = the network's choice (two-choice tasks: the correct one where the trial scored
  1, else the other) and ``evidence`` = the signed evidence
  (:func:`~bioplastic.analysis.labels.signed_evidence_of`). Timescales are measured in the first
  period without input in any trial (:func:`input_free_period`: ``delay``, else ``fixation``, else
  the task's other periods), none without one. The same function measures recorded data
  (``bioplastic compare``), so model and data are measured identically. The choice-resolved
  measures are also computed with the trials grouped by the network's own ``choice``
  (``<m>_by_choice``, :func:`~bioplastic.analysis.recording.grouped_measures`): a recording without
  ``target`` is grouped by the subject's choice, and compare sets it beside these.
- **Jacobian slow modes, attractor count and type**, read from ``OUT/analysis.nc`` at its final
  checkpoint, zero-input context (not recomputed; NaN / -1 when analysis.nc is absent). Attractors
  are the stable fixed points; ``attractor_slow_tau_ms`` is the median over a network's attractors
  of the time constant of their slowest mode (``-dt / ln|lambda_1|``). ``attractor_type``: 0 none, 1
  one point attractor, 2 several point attractors, 3 slow manifold (some attractor's slowest mode is
  longer than the trial: effectively continuous over a trial); -1 unknown.
- **Participation ratio** of the rate trajectories (all trials and steps).
- **Plasticity signatures** (conditions whose networks carry short-term plasticity; NaN otherwise).
  Anti-Hebbian TCR plasticity: from the fast efficacies at trial end ``F_end``, the fraction of
  negative and of positive entries, the mean signed entry and the mean ``|F|``; Tsodyks-Markram: the
  same of the change of the efficacy ``s = u x / U`` from its resting value 1 at trial end. **Timescale**: ``y(t) = c + a
  exp(-t / tau)`` fitted to the mean ``|F|`` over trials and synapses (or mean |efficacy change|)
  from its maximum after stimulus offset to the end of the trial (its decay once the input stops;
  the changes can go on growing for a few steps after the offset); without a stimulus period, from
  trial start (its build-up). Anti-Hebbian ``F_t`` is read from the same rollout cut after step t,
  at most :data:`PLASTICITY_POINTS` steps (the plasticity records only ``F`` at trial end);
  Tsodyks-Markram efficacies are recorded at every step. NaN on
  failure (rules of :func:`fit_exponential_timescale`).
- **Lesion after training**: held-out accuracy of each network as trained (plasticity on) and with
  the plasticity blocked (same weights, same trials and noise); ``lesion_accuracy_drop`` = on -
  blocked (NaN in conditions without plasticity). Blocking it *during* training is a protocol
  condition (its learning speed is in results.nc), not a measure here.

Statistics. Seeds are the independent samples (units of one network are not). Per condition:
``<m>_summary`` = median over seeds with a 95 % percentile-bootstrap CI (10000 resamples). Against
the first condition (the baseline): ``<m>_effect`` = (estimate, ci_low, ci_high, p_value). Paired
by seed when at least 2 seeds have finite values in both conditions: estimate = median of the
per-seed differences, CI by resampling seeds, Wilcoxon signed-rank test (two-sided; all differences
zero gives p = 1); otherwise, when each condition has at least 2 finite values, unpaired: difference
of medians, CI by resampling each condition independently, Mann-Whitney U test (two-sided). NaN when
neither is possible and for the baseline's own row. ``lesion_effect`` tests on - blocked within a
condition the same paired way. p-values are not corrected across measures or conditions.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import xarray as xr
from scipy import stats

from ..device import device_label, device_scope, resolve_device
from ..seeds import numpy_rng, torch_generator
from ..storage.rebuild import protocol_task, trained_network
from .labels import choice_made, choice_of, signed_evidence_of, strength_of
from .measures import (  # noqa: F401 - the measure primitives, importable from here as before
    CONSTANT_TOL,
    MIN_PERIOD_STEPS,
    MIN_TIMESCALE_STEPS,
    MIN_TRIALS_AT_TIME,
    MIN_TRIALS_PER_PAIR,
    RAMP_CLASSES,
    RAMP_PERIODS,
    STATIONARY_PERIODS,
    STATUS_MEANINGS,
    TAU_MAX_WINDOW,
    TAU_MIN_DT,
    RampFit,
    TimescaleFit,
    Window,
    across_trial_autocorrelation,
    aligned,
    choice_means,
    choice_resolved_ramps,
    choice_sorted,
    choose_period,
    cut_window,
    fit_autocorrelation_timescale,
    fit_exponential_timescale,
    ramp_slopes,
    trials_at_time,
)
from .phase_space import check_results
from .psychometric import FIT_STATUS_MEANINGS, slope_is_lower_bound
from .recording import BY_CHOICE, GROUPED_MEASURES, RECORDING_MEASURES, grouped_measures, make_recording, measure_recording
from .statistics import ALPHA, CI_LEVEL, N_BOOT, benjamini_hochberg, bootstrap_ci, num, paired_comparison  # noqa: F401

#: held-out trials per network
DEFAULT_TRIALS = 128
#: example held-out trials stored per network (inputs, target, output)
EXAMPLE_TRIALS = 4
#: a period counts as input-free when no input exceeds this in any trial
INPUT_FREE_TOL = 1e-12
#: when more than this fraction of units (median over seeds) is longer than measurable, that fraction
#: is the headline of the timescale sentence (the median of the fitted units is then biased low)
LONG_HEADLINE = 0.5
#: the anti-Hebbian efficacies' time course is sampled at this many steps at most
PLASTICITY_POINTS = 24

ATTRACTOR_TYPES = "unknown none single_point several_points slow_manifold"

#: network-level measures (append-only: the index keys the bootstrap stream): name -> (units, long_name)
_R = RECORDING_MEASURES
MEASURES: dict[str, tuple[str, str]] = {
    "fraction_ramping": _R["fraction_ramping"],
    "fraction_ramping_uncorrected": _R["fraction_ramping_uncorrected"],
    "median_abs_ramp_slope": _R["median_abs_ramp_slope"],
    "fraction_buildup": _R["fraction_buildup"],
    "fraction_decay": _R["fraction_decay"],
    "fraction_opposite_ramps": _R["fraction_opposite_ramps"],
    "population_ramp_slope": _R["population_ramp_slope"],
    "population_ramp_p_value": _R["population_ramp_p_value"],
    "timescale_median_ms": _R["timescale_median_ms"],
    "fraction_timescale_fitted": _R["fraction_timescale_fitted"],
    "fraction_timescale_long": _R["fraction_timescale_long"],
    "attractor_slow_tau_ms": ("ms", "median over attractors of the slowest Jacobian mode's time constant (final checkpoint, zero input)"),
    "n_attractors": ("1", "number of stable fixed points (final checkpoint, zero input)"),
    "n_saddles": ("1", "number of saddle points (final checkpoint, zero input)"),
    "n_slow_points": ("1", "number of slow points (final checkpoint, zero input)"),
    "participation_ratio": _R["participation_ratio"],
    "accuracy": ("1", "held-out accuracy of the trained network (plasticity as in training)"),
    "accuracy_plasticity_blocked": ("1", "held-out accuracy with the short-term plasticity blocked after training"),
    "lesion_accuracy_drop": ("1", "accuracy with plasticity minus accuracy with it blocked"),
    "plasticity_fraction_negative": ("1", "fraction of negative short-term changes at trial end"),
    "plasticity_fraction_positive": ("1", "fraction of positive short-term changes at trial end"),
    "plasticity_mean_signed": ("1", "mean signed short-term change at trial end (F, or change of efficacy)"),
    "plasticity_mean_abs": ("1", "mean |short-term change| at trial end"),
    "plasticity_timescale_ms": ("ms", "timescale of exp fit of mean |short-term change| (decay after stimulus offset, or build-up)"),
    "psychometric_slope": _R["psychometric_slope"],
    "psychometric_bias": _R["psychometric_bias"],
    "psychometric_lapse": _R["psychometric_lapse"],
}
#: the measures of a recording that are network-level measures here (measured on the simulated recording)
RECORDING_KEYS = tuple(k for k in MEASURES if k in RECORDING_MEASURES and k != "accuracy")


# --------------------------------------------------------------------------------------------- pure functions
def input_free_period(trials, preference=STATIONARY_PERIODS, min_steps: int = MIN_TIMESCALE_STEPS) -> Window | None:
    """The first period (``preference`` first, then the task's other periods) that every trial has
    with at least ``min_steps`` steps and in which no trial has any input; None when there is none
    (e.g. flip-flop, whose pulses may come at any step)."""
    names = list(preference) + [n for n in trials.periods if n not in preference]
    u = np.abs(np.asarray(trials.inputs_bxtxi))
    for name in names:
        if name not in trials.periods:
            continue
        se = np.asarray(trials.periods[name]).astype(int)
        if (se[:, 1] - se[:, 0]).min() < min_steps:
            continue
        if all(u[b, se[b, 0]:se[b, 1]].max(initial=0.0) <= INPUT_FREE_TOL for b in range(len(se))):
            return Window(name, se[:, 0], se[:, 1])
    return None


def condition_summary(values_cxs, rng_for, n_boot: int = N_BOOT) -> np.ndarray:
    """(C, 3): median over seeds and its 95 % bootstrap CI per condition; ``rng_for(c)`` gives the RNG."""
    v = np.asarray(values_cxs, float)
    return np.array([bootstrap_ci(v[c], rng_for(c), np.median, n_boot) for c in range(v.shape[0])]).reshape(-1, 3)


def paired_or_unpaired(a_s, b_s, rng: np.random.Generator, n_boot: int = N_BOOT, level: float = CI_LEVEL
                       ) -> tuple[np.ndarray, bool]:
    """Effect of ``b`` relative to ``a`` (seed-aligned arrays): ((estimate, ci_low, ci_high, p_value),
    paired). The rules are in the module docstring."""
    a, b = np.asarray(a_s, float), np.asarray(b_s, float)
    both = np.isfinite(a) & np.isfinite(b)
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    if both.sum() >= 2:
        r = paired_comparison(b, a, rng, n_boot, zero_method="wilcox", level=level)
        return np.array([r["difference"], r["difference_ci_low"], r["difference_ci_high"], r["p_value"]]), True
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) >= 2 and len(b) >= 2:
        est = float(np.median(b) - np.median(a))
        boots = (np.median(b[rng.integers(0, len(b), (n_boot, len(b)))], axis=1)
                 - np.median(a[rng.integers(0, len(a), (n_boot, len(a)))], axis=1))
        p = float(stats.mannwhitneyu(b, a, alternative="two-sided").pvalue)
        return np.array([est, np.quantile(boots, lo_q), np.quantile(boots, hi_q), p]), False
    return np.full(4, np.nan), False


# --------------------------------------------------------------------------------------------- simulation
def rates_of(net, rollout) -> np.ndarray:
    """The firing rate (E, B, T, N) of a rollout (module docstring), as the network class defines it."""
    return net.rates(rollout).double().cpu().numpy()


def _run(net, inputs_bxtxi, noise):
    """The network's own torch dynamics, where the network is (the inputs and noise are moved there)."""
    u = torch.as_tensor(inputs_bxtxi, dtype=net.dtype, device="cpu").to(net.device).expand(net.n_members, *inputs_bxtxi.shape)
    with torch.no_grad():
        return net.run(u.contiguous(), None if noise is None else noise.to(net.dtype).to(net.device))


def _noise(net, root: int, n_trials: int, n_steps: int, seeds) -> torch.Tensor | None:
    if not net.needs_noise:
        return None
    shape = (n_trials, n_steps, net.n_units)
    return torch.stack([torch.randn(shape, generator=torch_generator(root, "prediction_noise", int(s)), dtype=torch.float64,
                                    device="cpu") for s in seeds])


def plasticity_end(plast: dict | None) -> np.ndarray | None:
    """(E, K): the short-term changes at trial end (flattened per member) from a rollout's
    ``plasticity`` dict (anti-Hebbian ``F``; Tsodyks-Markram: efficacy minus its resting value 1);
    None without plasticity."""
    if not plast:
        return None
    if "F_end_exbxnxn" in plast:
        end = plast["F_end_exbxnxn"].detach().double().cpu().numpy()
        return end.reshape(end.shape[0], -1)
    if "efficacy_exbxtxn" in plast:
        change = plast["efficacy_exbxtxn"].detach().double().cpu().numpy()[:, :, -1] - 1.0  # s = 1 at rest
        return change.reshape(change.shape[0], -1)
    return None


def plasticity_course(net, inputs_bxtxi, noise, plast: dict, t_from: int) -> tuple[np.ndarray, np.ndarray]:
    """The mean magnitude of the short-term changes (over trials and synapses) from step
    ``t_from`` to the trial's end: ``(steps_k, mean_abs_exk)``. Tsodyks-Markram: every step, from
    the recorded efficacies. Anti-Hebbian: the rollout holds only ``F`` at trial end, so ``F_t`` is
    that of the same rollout cut after step t (the dynamics up to t do not depend on what follows),
    at :data:`PLASTICITY_POINTS` steps at most."""
    T = inputs_bxtxi.shape[1]
    if "efficacy_exbxtxn" in plast:
        eff = plast["efficacy_exbxtxn"].detach().double().cpu().numpy()
        return np.arange(t_from, T), np.abs(eff[:, :, t_from:] - 1.0).mean((1, 3))
    if "F_abs_exbxt" in plast:  # a per-step record, when the plasticity keeps one
        return np.arange(t_from, T), plast["F_abs_exbxt"].detach().double().cpu().numpy()[:, :, t_from:].mean(1)
    steps = np.unique(np.linspace(t_from, T - 1, min(PLASTICITY_POINTS, T - t_from)).round().astype(int))
    course = []
    for t in steps:
        cut = _run(net, inputs_bxtxi[:, :t + 1], None if noise is None else noise[:, :, :t + 1])
        course.append(np.abs(cut.plasticity["F_end_exbxnxn"].detach().double().cpu().numpy()).mean((1, 2, 3)))
    return steps, np.stack(course, 1)


def plasticity_signatures(end_exk, course_t_ms=None, course_exk=None, from_peak: bool = False) -> dict[str, np.ndarray]:
    """Per member: fraction of negative / positive changes, mean signed and mean |change| at trial
    end (``end_exk``, (E, K)), and the timescale (ms) of an exponential fitted to the mean magnitude
    ``course_exk`` (E, P) at times ``course_t_ms`` (P,) (NaN without a course); with ``from_peak``,
    to the course from its maximum on (the decay)."""
    end = np.asarray(end_exk, float)
    out = {"plasticity_fraction_negative": (end < 0).mean(1), "plasticity_fraction_positive": (end > 0).mean(1),
           "plasticity_mean_signed": end.mean(1), "plasticity_mean_abs": np.abs(end).mean(1),
           "plasticity_timescale_ms": np.full(len(end), np.nan)}
    if course_exk is not None:
        for e in range(len(end)):
            k = int(np.argmax(course_exk[e])) if from_peak else 0
            out["plasticity_timescale_ms"][e] = fit_exponential_timescale(course_t_ms[k:], course_exk[e][k:])
    return out


def _attractors(analysis: xr.Dataset | None, cond: str, seeds, ok_s, trial_ms: float) -> dict[str, np.ndarray]:
    S = len(seeds)
    out = {k: np.full(S, np.nan) for k in ("attractor_slow_tau_ms", "n_attractors", "n_saddles", "n_slow_points")}
    out["attractor_type"] = np.full(S, -1)
    if analysis is None or cond not in analysis["condition"].values:
        return out
    a = analysis.sel(condition=cond).isel(checkpoint=-1)
    ctx = "zero" if "zero" in a["context"].values else a["context"].values[0]
    a = a.sel(context=ctx)
    for i, s in enumerate(seeds):
        if not ok_s[i] or s not in a["seed"].values:
            continue  # a missing (diverged) network
        n = a.sel(seed=s)
        valid = n["fp_valid"].values
        att = valid & n["fp_is_fixed"].values & (n["fp_kind"].values == 0)
        slow = n["fp_tau_ms"].values[att, 0] if att.any() else np.zeros(0)
        slow = slow[np.isfinite(slow)]
        out["n_attractors"][i] = att.sum()
        out["n_saddles"][i] = (valid & n["fp_is_fixed"].values & (n["fp_kind"].values == 1)).sum()
        out["n_slow_points"][i] = (valid & n["fp_is_slow"].values).sum()
        out["attractor_slow_tau_ms"][i] = np.median(slow) if len(slow) else np.nan
        k = int(att.sum())
        out["attractor_type"][i] = 0 if k == 0 else (3 if len(slow) and slow.max() > trial_ms else (1 if k == 1 else 2))
    return out


def network_recording(rate_bxtxn, trials, dt_ms: float, score_b=None, attrs: dict | None = None) -> xr.Dataset:
    """The recording (:mod:`bioplastic.analysis.recording`) of one network on ``trials``: its rates
    ``rate_bxtxn`` (trial, time, unit), the task's periods, ``target`` (the task's choice label),
    ``evidence`` (the signed evidence) and, from the network's per-trial ``score_b``, ``choice``
    (the choice it made; two-choice tasks only)."""
    target = choice_of(trials)
    made = None if (score_b is None or target is None) else choice_made(score_b, target)
    return make_recording(rate_bxtxn, dt_ms, trials.periods, choice=made, evidence=signed_evidence_of(trials),
                          target=target, attrs=attrs)


def _network_measures(net, ok, trials, task, root, seeds, ramp_w, stat_w, blocked_net=None, engine=None) -> dict:
    run = _run if engine is None else engine
    noise = _noise(net, root, trials.n_trials, task.n_steps, seeds)
    roll = run(net, trials.inputs_bxtxi, noise)
    rate = rates_of(net, roll)  # (E, B, T, N)
    E, _, _, N = rate.shape
    dt = task.dt_ms
    outputs = roll.output_exbxtxo.detach().double().cpu().numpy()
    score = task.score(outputs, trials)
    out: dict[str, np.ndarray] = {k: np.full(E, np.nan) for k in RECORDING_KEYS + tuple(f"{k}{BY_CHOICE}" for k in GROUPED_MEASURES)}
    out["psychometric_fit_status"] = np.ones(E, int)
    per_unit = {k: np.full((E, N), np.nan) for k in ("ramp_slope", "ramp_slope_se", "ramp_p_value", "timescale_ms",
                                                      "timescale_amplitude", "timescale_offset")}
    per_unit["ramping"] = np.zeros((E, N), bool)
    per_unit["timescale_status"] = np.ones((E, N), int)
    per_unit["ramp_class"] = np.full((E, N), -1)
    per_unit["ramp_preferred_choice"] = np.full((E, N), np.nan)
    per_unit["ramp_slope_preferred"] = np.full((E, N), np.nan)
    choice_b = choice_of(trials)
    L_ac = int((stat_w.stop_b - stat_w.start_b).max()) if stat_w is not None else 1
    L_ramp = int((ramp_w.stop_b - ramp_w.start_b).max())
    ac_all = np.full((E, N, L_ac), np.nan)
    mean_rate = np.full((E, N, L_ramp), np.nan)
    figs: dict[str, np.ndarray] = {}
    if choice_b is not None:
        G = len(np.unique(choice_b))
        figs.update(psth_by_choice=np.full((E, N, G, L_ramp), np.nan), projection_by_choice=np.full((E, G, L_ramp), np.nan),
                    choice_values=np.unique(choice_b).astype(float))
    curve = None
    for e in range(E):
        if not ok[e]:
            continue
        rec = network_recording(rate[e], trials, dt, score[e])
        m = measure_recording(rec, ramp_period=ramp_w.name, timescale_period=stat_w.name if stat_w is not None else "none",
                              check=False)
        for k, v in grouped_measures(rec, "choice", ramp_period=ramp_w.name).items():
            out[f"{k}{BY_CHOICE}"][e] = v
        for k in per_unit:
            per_unit[k][e] = m[k].values
        for k in RECORDING_KEYS:
            out[k][e] = m[k].values
        out["psychometric_fit_status"][e] = int(m["psychometric_fit_status"])
        ac_all[e] = m["autocorrelation"].values
        mean_rate[e] = m["mean_rate"].values
        if "psth_by_choice" in m:
            figs["psth_by_choice"][e], figs["projection_by_choice"][e] = m["psth_by_choice"].values, m["projection_by_choice"].values
        if "p_right" in m:
            if curve is None:
                curve = {"evidence_level": m["evidence_level"].values, "n_trials_at_evidence": m["n_trials_at_evidence"].values,
                         "p_right": np.full((E, m.sizes["evidence_level"]), np.nan)}
            curve["p_right"][e] = m["p_right"].values
    if curve is not None:
        figs["psychometric"] = curve
    counted = task.evidence_trials(trials)  # the trials held-out accuracy counts (all but neurogym's without evidence)
    out["accuracy"] = np.where(ok, score[:, counted].mean(-1), np.nan)
    figs["example_output"] = np.where(ok[:, None, None, None], outputs[:, :EXAMPLE_TRIALS], np.nan)
    strength = strength_of(trials)
    if strength is not None:
        levels = np.unique(strength)
        figs["accuracy_by_strength"] = np.where(ok[:, None], np.stack([score[:, strength == s].mean(-1) for s in levels], 1), np.nan)
    plast = getattr(roll, "plasticity", None)
    end = plasticity_end(plast)
    if end is None:
        sig = {k: np.full(E, np.nan) for k in MEASURES if k.startswith("plasticity_")}
    elif engine is not None:  # the time course is simulated by torch only
        sig = plasticity_signatures(end)
    else:
        # the decay once the stimulus is off (its offset is the same step in every trial of the
        # shipped tasks; the earliest one otherwise), else the build-up from trial start
        t_from = int(trials.periods["stimulus"][:, 1].min()) - 1 if "stimulus" in trials.periods else 0
        steps, course = plasticity_course(net, trials.inputs_bxtxi, noise, plast, max(t_from, 0))
        sig = plasticity_signatures(end, steps * dt, course, from_peak="stimulus" in trials.periods)
        full = np.full((E, trials.inputs_bxtxi.shape[1]), np.nan)
        full[:, steps] = np.where(ok[:, None], course, np.nan)
        figs["plasticity_course"] = full
    out.update({k: np.where(ok, v, np.nan) for k, v in sig.items()})
    out["accuracy_plasticity_blocked"] = np.full(E, np.nan)
    if blocked_net is not None:
        roll_b = run(blocked_net, trials.inputs_bxtxi, noise)
        out["accuracy_plasticity_blocked"] = np.where(ok, task.score(roll_b.output_exbxtxo.detach().double().cpu().numpy(),
                                                                     trials)[:, counted].mean(-1), np.nan)
    out["lesion_accuracy_drop"] = out["accuracy"] - out["accuracy_plasticity_blocked"]
    for k in per_unit:
        if per_unit[k].dtype.kind == "f":
            per_unit[k][~ok] = np.nan
    per_unit["timescale_status"][~ok] = 1
    return {"net": out, "unit": per_unit, "autocorrelation": ac_all, "mean_rate": mean_rate, "figures": figs}


def _figure_data(pred: xr.Dataset, results: list[dict], trials, N: int, period: str) -> None:
    """What the figures of the field need: example trials, the psychometric curve, choice-sorted PSTHs."""
    k = min(EXAMPLE_TRIALS, trials.n_trials)
    pred.coords["example_trial"] = np.arange(k)
    pred["example_input"] = (("example_trial", "time", "input"), trials.inputs_bxtxi[:k].astype(float),
                             {"units": "1", "long_name": "inputs of the example held-out trials"})
    pred["example_target"] = (("example_trial", "time", "output"), trials.targets_bxtxo[:k].astype(float),
                              {"units": "1", "long_name": "targets of the example trials"})
    pred["example_mask"] = (("example_trial", "time", "output"), trials.mask_bxtxo[:k].astype(float),
                            {"units": "1", "long_name": "loss mask of the example trials (1: scored)"})
    pred["example_output"] = (("condition", "seed", "example_trial", "time", "output"),
                              np.stack([r["figures"]["example_output"] for r in results]),
                              {"units": "1", "long_name": "outputs of the trained networks on the example trials"})
    strength = strength_of(trials)
    if strength is not None:
        pred.coords["strength"] = np.unique(strength)
        pred["strength"].attrs.update(units="1", long_name="evidence strength of the trial (e.g. coherence)")
        pred["accuracy_by_strength"] = (("condition", "seed", "strength"), np.stack([r["figures"]["accuracy_by_strength"] for r in results]),
                                        {"units": "1", "long_name": "held-out accuracy by evidence strength (psychometric curve)"})
    curves = [r["figures"].get("psychometric") for r in results]
    if any(c is not None for c in curves):
        first = next(c for c in curves if c is not None)
        S = len(results[0]["figures"]["example_output"])
        pred.coords["evidence_level"] = first["evidence_level"]
        pred["evidence_level"].attrs.update(units="1", long_name="signed evidence of the psychometric curve (positive favours the "
                                                                   "larger choice, 'right'; each value, or the mean of a bin)")
        pred["p_right"] = (("condition", "seed", "evidence_level"),
                           np.stack([c["p_right"] if c is not None else np.full((S, len(first["evidence_level"])), np.nan) for c in curves]),
                           {"units": "1", "long_name": "fraction of held-out trials on which the network chose 'right' (the larger choice), "
                                                       "by signed evidence (psychometric curve)"})
        pred["n_trials_at_evidence"] = (("evidence_level",), first["n_trials_at_evidence"],
                                        {"units": "1", "long_name": "held-out trials at each evidence level"})
    if "psth_by_choice" in results[0]["figures"]:
        psth = np.full((len(results),) + results[0]["figures"]["psth_by_choice"].shape[:1] + (N,)
                       + results[0]["figures"]["psth_by_choice"].shape[2:], np.nan)
        for c, r in enumerate(results):
            psth[c, :, :r["figures"]["psth_by_choice"].shape[1]] = r["figures"]["psth_by_choice"]
        L = psth.shape[-1]
        pred.coords["choice"] = results[0]["figures"]["choice_values"]
        pred["choice"].attrs.update(units="1", long_name="the trial's choice (the task's label)")
        pred["psth_by_choice"] = (("condition", "seed", "unit", "choice", "period_time"), psth[..., :L],
                                  {"units": "1", "long_name": f"trial-averaged rate by choice from the onset of the {period} period"})
        pred["projection_by_choice"] = (("condition", "seed", "choice", "period_time"),
                                        np.stack([r["figures"]["projection_by_choice"] for r in results]),
                                        {"units": "1", "long_name": "population rate projected on the network's choice axis, by choice"})
    T = trials.inputs_bxtxi.shape[1]
    if any("plasticity_course" in r["figures"] for r in results):
        course = np.stack([r["figures"].get("plasticity_course", np.full((len(r["figures"]["example_output"]), T), np.nan))
                           for r in results])
        pred["plasticity_course"] = (("condition", "seed", "time"), course,
                                     {"units": "1", "long_name": "mean |short-term change| over trials and synapses (F, or "
                                                                 "efficacy minus 1) at each step, from the stimulus offset "
                                                                 "(NaN where not measured)"})
    pred.coords["time"] = np.arange(T)
    pred["time"].attrs.update(units="", long_name="time step of the trial")
    pred.coords["input"] = np.arange(trials.inputs_bxtxi.shape[2])
    pred["input"].attrs.update(units="", long_name="input channel")
    pred.coords["output"] = np.arange(trials.targets_bxtxo.shape[2])
    pred["output"].attrs.update(units="", long_name="output channel")
    pred["example_trial"].attrs.update(units="", long_name="example held-out trial")


def _has_plasticity(net) -> bool:
    return getattr(net, "plasticity", None) is not None


# --------------------------------------------------------------------------------------------- the dataset
def predict(ds: xr.Dataset, protocol, analysis: xr.Dataset | None = None, *, trials: int = DEFAULT_TRIALS,
            engine: Callable | None = None, progress: Callable[[int, dict], None] | None = None,
            device: str | torch.device | None = None) -> xr.Dataset:
    """Every prediction measure (module docstring) of the networks of a results dataset at its last
    checkpoint, as a dataset. ``protocol``: the run's resolved protocol (``protocol_of(ds)``);
    ``analysis``: its phase-space analysis, for the attractor measures (NaN without it);
    ``engine``: what simulates the networks, ``engine(net, inputs_bxtxi, noise) -> Rollout``
    (default: the network's own torch dynamics; ``bioplastic.simulate.Brian2Engine`` re-simulates
    them in brian2, in float64 - the dataset's ``engine`` attribute says which); ``progress(1, {})``
    after each condition. ``device``: where the torch simulations run (``cpu``, ``cuda``, ``auto`` or a
    torch device; default: the protocol's ``training.device``); with an ``engine`` the networks stay
    on the CPU (the engine simulates them)."""
    check_results(ds, "the predictions")
    if engine is not None:
        device = torch.device("cpu")
    field = "training.device" if device is None else "device"
    device = resolve_device(protocol.config.training.device if device is None else device, field)
    with device_scope(device):
        pred = _predict(ds, protocol, analysis, trials, engine, progress, device)
    pred.attrs["device"] = device_label(device)
    return pred


def _predict(ds, protocol, analysis, trials, engine, progress, device) -> xr.Dataset:
    root = protocol.config.seed
    task = protocol_task(protocol)
    tr = task.sample(numpy_rng(root, "prediction_trials"), int(trials))
    full_ramp_w = choose_period(tr.periods, RAMP_PERIODS, task.n_steps)
    ramp_w = cut_window(full_ramp_w)
    stat_w = input_free_period(tr)
    ts_period = stat_w.name if stat_w is not None else "none"
    ts_where = f"the {ts_period} period" if stat_w is not None else "no period (the task has no input-free period)"
    conds = protocol.condition_names
    seeds = ds["seed"].values
    C, S = len(conds), len(seeds)
    results = []
    dtype = torch.float64 if engine is not None else None  # brian2 simulates in double precision
    for cond in conds:
        net, ok = trained_network(ds, protocol, cond, plasticity=True, dtype=dtype, device=device)
        if net.plasticity is not None:  # the time course of |F| from the one rollout
            net.plasticity.record_F_abs = True
        blocked = trained_network(ds, protocol, cond, plasticity=False, dtype=dtype, device=device)[0] if _has_plasticity(net) else None
        res = _network_measures(net, ok, tr, task, root, seeds, ramp_w, stat_w, blocked, engine)
        res["net"].update(_attractors(analysis, cond, seeds, ok, task.n_steps * task.dt_ms))
        results.append(res)
        if progress:
            progress(1, {})
    N = max(r["unit"]["ramp_slope"].shape[1] for r in results)
    L_ac = results[0]["autocorrelation"].shape[-1]
    L_ramp = results[0]["mean_rate"].shape[-1]

    def stack_unit(key, fill):
        arr = np.full((C, S, N), fill, dtype=results[0]["unit"][key].dtype)
        for c, r in enumerate(results):
            arr[c, :, :r["unit"][key].shape[1]] = r["unit"][key]
        return arr

    pred = xr.Dataset(coords={"condition": conds, "seed": seeds, "unit": np.arange(N),
                              "lag": np.arange(L_ac) * task.dt_ms, "period_time": np.arange(L_ramp) * task.dt_ms,
                              "statistic": ["estimate", "ci_low", "ci_high", "p_value"],
                              "summary_statistic": ["median", "ci_low", "ci_high"]})
    cu = ("condition", "seed", "unit")
    unit_attrs = {
        "ramp_slope": ("1/s", f"slope of the rate over the {ramp_w.name} period (rate units per second; trial fixed effects)"),
        "ramp_slope_se": ("1/s", "cluster-robust (by trial) standard error of the ramp slope"),
        "ramp_p_value": ("1", "two-sided p-value of the ramp slope (t-test, cluster-robust SE, trials - 1 df)"),
        "ramping": ("1", f"significant ramp: Benjamini-Hochberg FDR {ALPHA} across the network's units"),
        "timescale_ms": ("ms", f"single-unit autocorrelation timescale in {ts_where} (NaN unless fitted)"),
        "timescale_amplitude": ("1", "A of the fit A (exp(-lag/tau) + B)"),
        "timescale_offset": ("1", "B of the fit A (exp(-lag/tau) + B)"),
        "timescale_status": ("1", "0 fitted, 1 no data, 2 fit failed, 3 longer than measurable"),
        "ramp_class": ("1", f"choice-resolved ramp over the {ramp_w.name} period for the unit's preferred choice: 0 none, "
                            "1 build-up (away from the pre-stimulus level), 2 decay (back towards it); -1 not measured"),
        "ramp_preferred_choice": ("1", "the choice whose trials move the unit furthest from its pre-stimulus level"),
        "ramp_slope_preferred": ("1/s", "ramp slope on the trials of the preferred choice (trial fixed effects)"),
    }
    for k, (units, long) in unit_attrs.items():
        fill = False if k == "ramping" else (1 if k == "timescale_status" else (-1 if k == "ramp_class" else np.nan))
        pred[k] = (cu, stack_unit(k, fill), {"units": units, "long_name": long})
    pred["timescale_status"].attrs.update(flag_values=[0, 1, 2, 3], flag_meanings=STATUS_MEANINGS)
    pred["ramp_class"].attrs.update(flag_values=[-1, 0, 1, 2], flag_meanings="not_measured " + RAMP_CLASSES)
    n_at = trials_at_time(full_ramp_w)
    pred["trials_at_time"] = (("period_time_full",), n_at,
                              {"units": "1", "long_name": f"held-out trials still in the {ramp_w.name} period at each step since its "
                                                          f"onset; ramps use the steps with at least {MIN_TRIALS_AT_TIME}"})
    pred.coords["period_time_full"] = np.arange(len(n_at)) * task.dt_ms
    pred["period_time_full"].attrs.update(units="ms", long_name=f"time since the onset of the {ramp_w.name} period (every step)")
    ac = np.full((C, S, N, L_ac), np.nan)
    mr = np.full((C, S, N, L_ramp), np.nan)
    for c, r in enumerate(results):
        n = r["autocorrelation"].shape[1]
        ac[c, :, :n], mr[c, :, :n] = r["autocorrelation"], r["mean_rate"]
    pred["autocorrelation"] = (cu + ("lag",), ac, {"units": "1", "long_name": f"across-trial autocorrelation of the rate in {ts_where}, mean over step pairs per lag"})
    pred["mean_rate"] = (cu + ("period_time",), mr, {"units": "1", "long_name": f"trial-averaged rate from the onset of the {ramp_w.name} period"})
    _figure_data(pred, results, tr, N, ramp_w.name)
    for k, (units, long) in MEASURES.items():
        pred[k] = (("condition", "seed"), np.stack([r["net"][k] for r in results]), {"units": units, "long_name": long})
    for k in GROUPED_MEASURES:
        units, long = MEASURES[k]
        pred[f"{k}{BY_CHOICE}"] = (("condition", "seed"), np.stack([r["net"][f"{k}{BY_CHOICE}"] for r in results]),
                                   {"units": units, "long_name": f"{long}; trials grouped by the network's own choice (as a "
                                                                 "recording without the rewarded side is grouped), not the rewarded side"})
    pred["psychometric_fit_status"] = (("condition", "seed"), np.stack([r["net"]["psychometric_fit_status"] for r in results]).astype(int),
                                       {"units": "1", "long_name": "psychometric fit: 0 fitted, 1 too few data (or no choice and evidence labels), "
                                                                   "2 steeper than resolvable (slope a lower bound), 3 not converged",
                                        "flag_values": [0, 1, 2, 3], "flag_meanings": FIT_STATUS_MEANINGS})
    pred["attractor_type"] = (("condition", "seed"), np.stack([r["net"]["attractor_type"] for r in results]).astype(int),
                              {"units": "1", "long_name": "attractor type at the final checkpoint (zero input)",
                               "flag_values": [-1, 0, 1, 2, 3], "flag_meanings": ATTRACTOR_TYPES})
    for mi, (k, (units, long)) in enumerate(MEASURES.items()):
        v = pred[k].values
        pred[f"{k}_summary"] = (("condition", "summary_statistic"),
                                condition_summary(v, lambda c, mi=mi: numpy_rng(root, "prediction_summary", mi, c)),
                                {"units": units, "long_name": f"median over seeds and 95 % bootstrap CI: {long}"})
        eff = np.full((C, 4), np.nan)
        paired = np.zeros(C, bool)
        for c in range(1, C):
            eff[c], paired[c] = paired_or_unpaired(v[0], v[c], numpy_rng(root, "prediction_effect", mi, c))
        pred[f"{k}_effect"] = (("condition", "statistic"), eff,
                               {"units": units, "long_name": f"effect vs {conds[0]} (median paired difference or difference of medians, 95 % bootstrap CI, Wilcoxon / Mann-Whitney p): {long}",
                                "paired": paired.astype(np.int8).tolist()})
    les = np.full((C, 4), np.nan)
    for c in range(C):
        les[c] = paired_or_unpaired(pred["accuracy_plasticity_blocked"].values[c], pred["accuracy"].values[c],
                                    numpy_rng(root, "lesion_effect", c))[0]
    pred["lesion_effect"] = (("condition", "statistic"), les,
                             {"units": "1", "long_name": "accuracy with plasticity minus with it blocked after training: median paired difference, 95 % bootstrap CI, Wilcoxon p"})
    coords = {"condition": ("", "experimental condition"), "seed": ("", "seed index (shared across conditions)"),
              "unit": ("", "recurrent unit"), "lag": ("ms", "time lag"), "period_time": ("ms", f"time since the onset of the {ramp_w.name} period"),
              "statistic": ("", "estimate, 95 % CI bounds and p-value"), "summary_statistic": ("", "median over seeds and 95 % CI bounds")}
    for name, (units, long) in coords.items():
        pred[name].attrs.update(units=units, long_name=long)
    pred.attrs.update({k: ds.attrs[k] for k in ("protocol", "protocol_name", "root_seed", "versions", "git_commit") if k in ds.attrs})
    pred.attrs.update(ramp_period=ramp_w.name, ramp_window_ms=float(len(trials_at_time(ramp_w)) * task.dt_ms),
                      min_trials_at_time=MIN_TRIALS_AT_TIME, timescale_period=ts_period, dt_ms=float(task.dt_ms),
                      timescale_window_ms=float((stat_w.stop_b - stat_w.start_b).min() * task.dt_ms) if stat_w is not None else float("nan"), alpha=ALPHA, n_trials=int(trials),
                      baseline=conds[0], checkpoint=int(ds["checkpoint"].values[-1]),
                      analysis_available=int(analysis is not None),
                      plasticity_course=("decay from its peak after stimulus offset" if "stimulus" in tr.periods
                                         else "build-up from trial start"))
    pred.attrs["engine"] = "torch" if engine is None else getattr(engine, "name", type(engine).__name__)
    pred.attrs.update(getattr(engine, "attrs", {}))
    return pred


# --------------------------------------------------------------------------------------------- in words
def _value(kind: str, x: float, signed: bool = False) -> str:
    sign = "+" if signed else ""
    if kind == "pct":
        return num(100 * x, ".0f") + " %" if not signed else num(100 * x, "+.0f") + " percentage points"
    if kind == "ms":
        return num(x, f"{sign}.0f") + " ms"
    return num(x, f"{sign}.2f") if abs(x) < 10 else num(x, f"{sign}.1f")


def _ci(kind: str, lo: float, hi: float, signed: bool = False) -> str:
    if kind == "pct":
        spec = "+.0f" if signed else ".0f"
        return f"95 % CI {num(100 * lo, spec)} to {num(100 * hi, spec)}" + ("" if signed else " %")
    return f"95 % CI {_value(kind, lo, signed)} to {_value(kind, hi, signed)}"


def _p(p: float) -> str:
    return "p = n/a" if not np.isfinite(p) else f"p = {p:.2g}"


#: measure -> (sentence template, value kind); {est} {ci} {cond} {b_est} {b_ci} {base} are filled in
SENTENCES = {
    "fraction_ramping": ("{est} ({ci}) of units ramp during the {ramp_period} with {cond} vs {b_est} ({b_ci}) in {base}", "pct"),
    "fraction_buildup": ("{est} ({ci}) of units build up their activity during the {ramp_period} for their preferred choice "
                         "(away from their pre-stimulus level; decays after the stimulus are not counted) with {cond} vs "
                         "{b_est} ({b_ci}) in {base}", "pct"),
    "population_ramp_slope": ("The population activity along the choice axis ramps at {est} per second ({ci}) during the "
                              "{ramp_period} with {cond} vs {b_est} ({b_ci}) in {base}", "num"),
    "timescale_median_ms": ("Median single-unit autocorrelation timescale during the {timescale_period}: {est} ({ci}) with "
                            "{cond} vs {b_est} ({b_ci}) in {base}", "ms"),
    "attractor_slow_tau_ms": ("Slowest Jacobian mode at the attractors (median time constant): {est} ({ci}) with {cond} vs "
                              "{b_est} ({b_ci}) in {base}", "ms"),
    "n_attractors": ("Attractors found (stable fixed points, zero input; a lower bound): {est} ({ci}) with {cond} vs "
                     "{b_est} ({b_ci}) in {base}", "num"),
    "participation_ratio": ("Participation ratio (dimensionality) of the activity: {est} ({ci}) with {cond} vs {b_est} "
                            "({b_ci}) in {base}", "num"),
    "accuracy": ("Held-out accuracy on the predictions' own trials (not those of results.nc's final accuracy): {est} "
                 "({ci}) with {cond} vs {b_est} ({b_ci}) in {base}", "pct"),
}


#: the timescale sentence when most units are longer than measurable
LONG_SENTENCE = ("{est} ({ci}) of units keep a trial-specific level through the {timescale_period} (autocorrelation "
                 "timescale longer than measurable in a window of {window}) with {cond} vs {b_est} ({b_ci}) in {base}; "
                 "the median timescale of the remaining, fitted units would be biased low", "pct")


def _long_dominates(pred: xr.Dataset) -> bool:
    """Whether most units of some condition (median over seeds) are longer than measurable."""
    if "fraction_timescale_long_summary" not in pred:
        return False
    med = pred["fraction_timescale_long_summary"].values[:, 0]
    return bool(np.any(med[np.isfinite(med)] > LONG_HEADLINE))


def _censored_clause(pred: xr.Dataset, conds: list[str], c: int) -> str:
    """How many units the timescale median stands for: fitted and censored (longer than
    measurable: not in the median), medians over seeds, in a condition and the baseline."""
    def part(k):
        fit, long = (pred[f"{m}_summary"].values[k, 0] if f"{m}_summary" in pred else np.nan
                     for m in ("fraction_timescale_fitted", "fraction_timescale_long"))
        return f"{_value('pct', fit)} fitted and {_value('pct', long)} censored with {conds[k]}"
    return (f"the median is over fitted units only ({part(c)}, {part(0)}; medians over seeds); censored units keep a "
            "trial-specific level through the window, their timescale longer than measurable")


def psychometric_sentences(pred: xr.Dataset) -> list[str]:
    """Per condition, the fitted psychometric function in words: slope, bias and lapse (medians
    over networks with 95 % bootstrap CIs), how many networks' fits are steeper than resolvable (their
    slope a lower bound: 'slope >=' when they are at least half), and against the baseline the
    lapse's and, when neither condition's slope is a lower bound, the slope's paired difference."""
    if "psychometric_slope_summary" not in pred or "psychometric_fit_status" not in pred:
        return []
    conds = [str(c) for c in pred["condition"].values]
    status = pred["psychometric_fit_status"].values
    bound = [slope_is_lower_bound(status[c]) for c in range(len(conds))]
    lines = []
    for c, cond in enumerate(conds):
        sl, bi, la = (pred[f"psychometric_{k}_summary"].values[c] for k in ("slope", "bias", "lapse"))
        if not np.isfinite(sl[0]):
            continue
        st = status[c]
        n_fit, n_steep = int(((st == 0) | (st == 2)).sum()), int((st == 2).sum())
        ge = ">= " if bound[c] else ""
        text = (f"Psychometric function with {cond} (P(choice right) against the signed evidence, fitted to each network's "
                f"held-out choices; {n_fit} of {st.size} networks fitted): slope {ge}{sl[0]:.3g} per unit of evidence "
                f"(95 % CI {sl[1]:.3g} to {sl[2]:.3g}), bias {bi[0]:+.3g} (95 % CI {bi[1]:+.3g} to {bi[2]:+.3g}), "
                f"lapse rate {100 * la[0]:.1f} % (95 % CI {100 * la[1]:.1f} to {100 * la[2]:.1f} %)")
        if n_steep:
            text += (f"; in {n_steep} of {n_fit} networks the choices switch within one evidence step, so that their slope "
                     "is a lower bound" + (" and so is the median" if bound[c] else ""))
        if c > 0:
            for k, name, bad in (("lapse", "lapse rate", False), ("slope", "slope", bound[0] or bound[c])):
                d = pred[f"psychometric_{k}_effect"].values[c]
                if bad or not np.isfinite(d[0]):
                    continue
                scale, unit = (100, " percentage points") if k == "lapse" else (1, "")
                text += (f"; {name} vs {conds[0]}: {num(scale * d[0], '+.3g')}{unit} (95 % CI {num(scale * d[1], '+.3g')} to "
                         f"{num(scale * d[2], '+.3g')}; {'Wilcoxon' if _paired(pred, f'psychometric_{k}_effect', c) else 'Mann-Whitney'} {_p(d[3])})")
        lines.append(text + ".")
    return lines


def _paired(pred: xr.Dataset, var: str, c: int) -> bool:
    paired = [int(v) for v in np.atleast_1d(pred[var].attrs.get("paired", [1] * pred.sizes["condition"]))]
    return bool(paired[c]) if c < len(paired) else True


def prediction_sentences(pred: xr.Dataset) -> list[str]:
    """The predictions in words, each with its numbers: medians over seeds with 95 % bootstrap CIs,
    the effect against the baseline condition with its CI and p-value, and the number of seeds.
    Measures that are NaN are left out."""
    conds = [str(c) for c in pred["condition"].values]
    base = conds[0]
    periods = {k: pred.attrs.get(k, "period") for k in ("ramp_period", "timescale_period")}
    window = float(pred.attrs.get("timescale_window_ms", float("nan")))
    periods["window"] = f"at least {window:.0f} ms" if np.isfinite(window) else "the period"
    lines = []
    for m, (template, kind) in SENTENCES.items():
        if m == "timescale_median_ms" and pred.attrs.get("timescale_period") == "none":
            lines.append("Single-unit autocorrelation timescales are not measured: the task has no input-free period "
                         f"of at least {MIN_TIMESCALE_STEPS} steps in every trial, and in periods with input they would "
                         "mostly reflect input-driven transients.")
            continue
        if m == "timescale_median_ms" and _long_dominates(pred):
            m, (template, kind) = "fraction_timescale_long", LONG_SENTENCE
        if f"{m}_summary" not in pred:
            continue
        summ, eff = pred[f"{m}_summary"].values, pred[f"{m}_effect"].values
        # a one-element list attribute comes back from netCDF as a scalar
        paired = [int(v) for v in np.atleast_1d(pred[f"{m}_effect"].attrs.get("paired", [1] * len(conds)))]
        b = summ[0]
        for c in range(1, len(conds)):
            s = summ[c]
            if not (np.isfinite(s[0]) and np.isfinite(b[0])):
                continue
            text = template.format(est=_value(kind, s[0]), ci=_ci(kind, s[1], s[2]), cond=conds[c],
                                   b_est=_value(kind, b[0]), b_ci=_ci(kind, b[1], b[2]), base=base, **periods)
            d = eff[c]
            n = int((np.isfinite(pred[m].values[c]) & np.isfinite(pred[m].values[0])).sum()) if paired[c] else None
            if np.isfinite(d[0]):
                what, test = (("median paired difference", "Wilcoxon") if paired[c] else ("difference of medians", "Mann-Whitney"))
                text += (f"; {what} {_value(kind, d[0], True)} ({_ci(kind, d[1], d[2], True)}; {test} {_p(d[3])}"
                         + (f"; {n} paired seeds)" if n else ")"))
            if m == "timescale_median_ms":
                text += "; " + _censored_clause(pred, conds, c)
            lines.append(text + ".")
    lines += psychometric_sentences(pred)
    for c, cond in enumerate(conds):
        if "plasticity_fraction_negative_summary" not in pred:  # a dataset without the plasticity measures
            break
        neg = pred["plasticity_fraction_negative_summary"].values[c]
        if not np.isfinite(neg[0]):
            continue
        mag = pred["plasticity_mean_abs_summary"].values[c]
        signed = pred["plasticity_mean_signed_summary"].values[c]
        tau = pred["plasticity_timescale_ms_summary"].values[c]
        text = (f"With {cond}, {_value('pct', neg[0])} ({_ci('pct', neg[1], neg[2])}) of the short-term synaptic changes "
                f"are negative at trial end (mean signed change {signed[0]:.3g}, mean size {mag[0]:.3g}, "
                f"95 % CI {mag[1]:.3g} to {mag[2]:.3g})")
        fitted = np.isfinite(pred["plasticity_timescale_ms"].values[c])
        text += (f"; the time constant of their mean magnitude ({pred.attrs.get('plasticity_course', 'over the trial')}) "
                 f"is {_value('ms', tau[0])} ({_ci('ms', tau[1], tau[2])}; exponential fitted in {fitted.sum()} of "
                 f"{fitted.size} networks)."
                 if np.isfinite(tau[0]) else ".")
        lines.append(text)
        on, off = pred["accuracy_summary"].values[c], pred["accuracy_plasticity_blocked_summary"].values[c]
        les = pred["lesion_effect"].values[c]
        if np.isfinite(off[0]) and np.isfinite(les[0]):
            # blocking's change (without minus with plasticity), one decimal: accuracies count trials
            lines.append(f"Blocking the plasticity of trained {cond} networks changes held-out accuracy from "
                         f"{100 * on[0]:.1f} % to {100 * off[0]:.1f} %, by {0.0 - 100 * les[0]:+.1f} points (95 % CI "
                         f"{0.0 - 100 * les[2]:+.1f} to {0.0 - 100 * les[1]:+.1f}; Wilcoxon {_p(les[3])}).")
    return lines
