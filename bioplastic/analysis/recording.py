"""The prediction measures as functions of a **recording**: firing rates with trial labels, the
same for a trained network (the predictions simulate trials and build one) and for data
(``bioplastic compare``; readers in :mod:`bioplastic.storage.recordings`).

**A recording** is an xarray Dataset:

- ``rate`` (trial, time, unit): firing rate of each unit (any unit of rate; slopes are in rate
  units per second). NaN only outside the trial (e.g. after a short trial ends);
- ``time``: a uniform grid, time since each trial's start (or any common alignment), with a
  ``units`` attribute ``ms`` or ``s``; period boundaries are in the same units;
- trial coordinates, each (trial,):
  ``<period>_start`` and ``<period>_stop`` for every period (``stimulus``, ``delay``, ``fixation``,
  ...; ``[start, stop)``), read as the first time bin at or after the boundary (a bin belongs to a
  period when its start lies in it);
  ``choice`` - the subject's choice (two values, the larger is "right": -1 / +1, 0 / 1 or 1 / 2);
  ``evidence`` - the signed evidence (positive favours "right"; e.g. ``n_right - n_left``, signed
  coherence); ``target`` (optional) - the rewarded choice, in the values of ``choice``.

:func:`check_recording` refuses a recording that lacks what a measure needs, naming it.
:func:`measure_recording` computes every measure below and returns it as a Dataset;
:func:`make_recording` builds a recording from arrays on a grid of steps.

**Measures** (per unit, dim ``unit``; and per recording):

- **Ramping** (per unit). The period is the first of :data:`~.measures.RAMP_PERIODS` that the
  recording has with at least :data:`~.measures.MIN_PERIOD_STEPS` bins in every trial (``delay``;
  else ``stimulus``; else ``trial``, the whole time axis), ended where fewer than
  :data:`~.measures.MIN_TRIALS_AT_TIME` trials (or a quarter of them) remain. Rate is regressed on
  time since period onset (seconds) across all trials and bins, with one intercept per trial (trial
  fixed effects: trials differ in their level, e.g. by choice, which is not ramping):
  ``slope = sum x~ r~ / sum x~^2`` with ``x~, r~`` time and rate centred within each trial
  (rate units per second). Bins of one trial are autocorrelated, so the standard error is
  cluster-robust by trial (Liang & Zeger 1986, CR1: ``B / (B-1) sum_b (sum_t x~ e)^2 / (sum x~^2)^2``)
  and the two-sided p-value comes from Student's t with ``B - 1`` degrees of freedom (B: trials with
  at least 2 bins in the period). A unit **ramps** when its p-value passes the Benjamini-Hochberg
  procedure at false-discovery rate :data:`~.statistics.ALPHA` across the units of the recording;
  ``fraction_ramping`` is the fraction of units that ramp (``fraction_ramping_uncorrected``: p <
  ALPHA per unit, for comparison with papers that do not correct). A unit whose rate changes by less
  than :data:`~.measures.CONSTANT_TOL` within trials has slope 0 and p = 1.
- **Choice-resolved ramps** and **the population's choice axis**
  (:func:`~.measures.choice_resolved_ramps`): per choice, each unit's slope and its mean level over
  the ramp window against its pre-stimulus level (mean over the ``fixation`` period, else the first
  bin); a significant slope for the unit's preferred choice is a **build-up** (away from the
  pre-stimulus level: ``fraction_buildup``) or a **decay** (back towards it: ``fraction_decay``);
  ``fraction_opposite_ramps``: significant slopes of opposite sign for the two choices. The
  **choice axis**: the mean rate over the window on trials of the larger choice minus the smaller
  (unit length); ``population_ramp_slope``: the slope of the rate projected on it, signed by the
  choice, with its p-value; ``psth_by_choice`` / ``projection_by_choice``: the trial-averaged rates
  and the projection from the window's onset, by choice. Trials are grouped by ``target`` when the
  recording has it (the model's predictions group by the rewarded choice), else by ``choice``.
- **Single-unit autocorrelation timescale** (per unit), as in cortical recordings (Murray et al.
  2014, Nat Neurosci 17:1661), in an **input-free** period: the one named (the predictions name the
  first period of the task without input), else the first of
  :data:`~.measures.STATIONARY_PERIODS` with at least :data:`~.measures.MIN_TIMESCALE_STEPS` bins in
  every trial (``delay``, else ``fixation``). The Pearson correlation across trials of the rate at
  bins i and j of the period (bin i counted from period onset; only trials in which both bins lie in
  the period, at least :data:`~.measures.MIN_TRIALS_PER_PAIR` of them), averaged over the pairs of
  each lag ``j - i``; then ``R(lag) = A (exp(-lag / tau) + B)`` is fitted by weighted least squares
  (weights: number of pairs per lag; parametrised as ``A exp(-lag/tau) + C`` with ``A`` in [0, 2]
  and ``C = A B`` in [-1, 1]) over lags 1 .. L-1 bins (``tau`` in ms). Status per unit
  (``timescale_status``): 0 fitted; 1 no data (too few trials or no variance across trials, e.g. a
  noise-free network in a period with identical input; or no such period); 2 fit failed (no
  convergence, fewer than 4 lags, a correlation at the first lag below ``3 / sqrt(trials)`` (none
  measurable), non-finite covariance, ``A`` not above twice its standard error, the standard error
  of ``tau`` above ``tau``, or ``tau`` at its lower bound ``dt / 10``: faster than resolvable); 3
  longer than measurable (censored: ``tau`` beyond the longest lag fitted, where the decay cannot be
  told apart from the offset ``B`` - the fit's upper bound is 10 x the period's length - or a fitted
  curve that falls by less than :data:`~.measures.MIN_DECAY_FRACTION` of its first-lag value over
  the lags fitted: the unit holds a trial-specific level, with no decay to measure in the window). ``timescale_ms``
  is NaN unless the status is 0. Per recording: ``timescale_median_ms`` over fitted units,
  ``fraction_timescale_long`` (status 3) and ``fraction_timescale_fitted`` (status 0). In memory
  tasks many units hold a trial-specific level through the delay (status 3); the median is over
  fitted units only, so read it together with ``fraction_timescale_long``.
- **Participation ratio** of the rates (all trials and bins inside the trials).
- **Psychometric curve** (:mod:`~.psychometric`): P(choice right) against the signed evidence per
  evidence level (``p_right``), and the fitted ``psychometric_slope``, ``psychometric_bias``,
  ``psychometric_lapse`` (``psychometric_fit_status``); NaN without ``choice`` and ``evidence``.
- **Accuracy**: the fraction of trials whose ``choice`` is the ``target`` (NaN without ``target``).
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from .geometry import participation_ratio
from .measures import (
    MIN_PERIOD_STEPS,
    MIN_TIMESCALE_STEPS,
    RAMP_CLASSES,
    RAMP_PERIODS,
    STATIONARY_PERIODS,
    STATUS_MEANINGS,
    Window,
    across_trial_autocorrelation,
    aligned,
    choice_means,
    choice_resolved_ramps,
    choice_sorted,
    choose_period,
    cut_window,
    fit_autocorrelation_timescale,
    ramp_slopes,
)
from .psychometric import FIT_STATUS_MEANINGS, fit_psychometric, psychometric_curve
from .statistics import ALPHA, benjamini_hochberg

#: time units a recording may use, and their length in ms
TIME_UNITS = {"ms": 1.0, "s": 1000.0}
#: relative tolerance of the uniform time grid
GRID_TOL = 1e-6
#: a grouping label needs between 2 and this many distinct values
MAX_CHOICES = 8

#: the per-recording measures (the network-level measures of the predictions that a recording has)
RECORDING_MEASURES: dict[str, tuple[str, str]] = {
    "fraction_ramping": ("1", "fraction of units with a significant ramp (cluster-robust t-test, Benjamini-Hochberg FDR 0.05)"),
    "fraction_ramping_uncorrected": ("1", "fraction of units with ramp p-value < 0.05 (no multiple-comparison correction)"),
    "median_abs_ramp_slope": ("1/s", "median over units of |ramp slope| (rate units per second)"),
    "fraction_buildup": ("1", "fraction of units whose rate builds up (moves away from its pre-stimulus level) over the ramp period for their preferred choice (significant, FDR 0.05)"),
    "fraction_decay": ("1", "fraction of units whose rate decays back towards its pre-stimulus level over the ramp period for their preferred choice (significant, FDR 0.05)"),
    "fraction_opposite_ramps": ("1", "fraction of units with significant ramps of opposite sign for the two choices (a pooled slope cancels them)"),
    "population_ramp_slope": ("1/s", "slope of the choice-signed projection of the population rate on the choice axis over the ramp period (trial fixed effects)"),
    "population_ramp_p_value": ("1", "two-sided p-value of population_ramp_slope (cluster-robust t-test by trial)"),
    "timescale_median_ms": ("ms", "median single-unit autocorrelation timescale over fitted units"),
    "fraction_timescale_fitted": ("1", "fraction of units whose autocorrelation timescale was fitted"),
    "fraction_timescale_long": ("1", "fraction of units whose autocorrelation timescale exceeds the measurable range"),
    "participation_ratio": ("1", "participation ratio of the rate trajectories (dimensionality)"),
    "accuracy": ("1", "fraction of trials whose choice is the rewarded one"),
    "psychometric_slope": ("1", "slope of the fitted psychometric function P(right) = lapse + (1 - 2 lapse) / (1 + exp(-slope (evidence - bias))), per unit of evidence"),
    "psychometric_bias": ("1", "bias of the fitted psychometric function: the signed evidence at which P(right) = 0.5 (evidence units)"),
    "psychometric_lapse": ("1", "lapse rate of the fitted psychometric function (P saturates at lapse and 1 - lapse)"),
}
#: the per-recording measures that depend on how trials are grouped by choice (:func:`grouping`)
GROUPED_MEASURES = ("fraction_buildup", "fraction_decay", "fraction_opposite_ramps", "population_ramp_slope", "population_ramp_p_value")
#: suffix of these measures with the trials grouped by the subject's (the network's) own choice,
#: beside the same measures grouped by the rewarded side (``target``) in the predictions
BY_CHOICE = "_by_choice"
#: per-unit measures: name -> (units, long_name)
UNIT_MEASURES: dict[str, tuple[str, str]] = {
    "ramp_slope": ("1/s", "slope of the rate over the ramp period (rate units per second; trial fixed effects)"),
    "ramp_slope_se": ("1/s", "cluster-robust (by trial) standard error of the ramp slope"),
    "ramp_p_value": ("1", "two-sided p-value of the ramp slope (t-test, cluster-robust SE, trials - 1 df)"),
    "ramping": ("1", f"significant ramp: Benjamini-Hochberg FDR {ALPHA} across the units"),
    "timescale_ms": ("ms", "single-unit autocorrelation timescale in the input-free period (NaN unless fitted)"),
    "timescale_amplitude": ("1", "A of the fit A (exp(-lag/tau) + B)"),
    "timescale_offset": ("1", "B of the fit A (exp(-lag/tau) + B)"),
    "timescale_status": ("1", "0 fitted, 1 no data, 2 fit failed, 3 longer than measurable"),
    "ramp_class": ("1", "choice-resolved ramp over the ramp period for the unit's preferred choice: 0 none, 1 build-up "
                        "(away from the pre-stimulus level), 2 decay (back towards it); -1 not measured"),
    "ramp_preferred_choice": ("1", "the choice whose trials move the unit furthest from its pre-stimulus level"),
    "ramp_slope_preferred": ("1/s", "ramp slope on the trials of the preferred choice (trial fixed effects)"),
}


class RecordingError(ValueError):
    """A recording that lacks what the measures need; the message names what is missing."""


# --------------------------------------------------------------------------------------------- layout
def make_recording(rate_bxtxn, dt_ms: float, periods: dict[str, np.ndarray], *, choice=None, evidence=None,
                   target=None, attrs: dict | None = None) -> xr.Dataset:
    """A recording (module docstring) from rates on a grid of steps: ``rate_bxtxn`` (trial, time,
    unit), ``dt_ms`` the step, ``periods`` name -> (trial, 2) ``[start, stop)`` steps (the task's
    convention), and the optional per-trial labels. Time and boundaries are in ms (step x dt_ms)."""
    rate = np.asarray(rate_bxtxn, float)
    B, T, N = rate.shape
    coords: dict = {"trial": np.arange(B), "time": ("time", np.arange(T) * float(dt_ms), {"units": "ms", "long_name": "time since trial start"}),
                    "unit": np.arange(N)}
    for name, se in periods.items():
        se = np.asarray(se)
        coords[f"{name}_start"] = ("trial", se[:, 0] * float(dt_ms), {"units": "ms", "long_name": f"start of the {name} period"})
        coords[f"{name}_stop"] = ("trial", se[:, 1] * float(dt_ms), {"units": "ms", "long_name": f"end of the {name} period"})
    for name, v in (("choice", choice), ("evidence", evidence), ("target", target)):
        if v is not None:
            coords[name] = ("trial", np.asarray(v))
    return xr.Dataset({"rate": (("trial", "time", "unit"), rate, {"units": "1", "long_name": "firing rate"})}, coords=coords,
                      attrs=dict(attrs or {}))


def period_names(rec: xr.Dataset) -> list[str]:
    """The periods of a recording (those with both ``<name>_start`` and ``<name>_stop``), in the
    order of their coordinates."""
    return [str(k)[:-6] for k in rec.coords if str(k).endswith("_start") and f"{str(k)[:-6]}_stop" in rec.coords]


def time_step_ms(rec: xr.Dataset) -> float:
    """The recording's time step in ms (its time grid checked: 1-D, uniform, units ms or s)."""
    if "time" not in rec.coords:
        raise RecordingError("the recording has no 'time' coordinate (time since trial start, units 'ms' or 's')")
    units = rec["time"].attrs.get("units")
    if units not in TIME_UNITS:
        raise RecordingError(f"the recording's 'time' coordinate needs a units attribute 'ms' or 's'; got {units!r}")
    t = np.asarray(rec["time"].values, float)
    if t.ndim != 1 or len(t) < 2 or not np.isfinite(t).all():
        raise RecordingError(f"'time' must be a finite 1-D grid of at least 2 bins; got shape {t.shape}")
    d = np.diff(t)
    if d[0] <= 0 or np.abs(d - d[0]).max() > GRID_TOL * d[0]:
        raise RecordingError(f"'time' must be increasing and uniform (rates binned on one grid); steps range from {d.min():g} to {d.max():g} {units}")
    return float(d[0]) * TIME_UNITS[units]


def period_steps(rec: xr.Dataset) -> dict[str, np.ndarray]:
    """Each period's per-trial ``[start, stop)`` as bins of the time grid: (trial, 2) ints, the
    first bin at or after each boundary (a bin counts when its start lies in the period)."""
    t = np.asarray(rec["time"].values, float)
    dt = t[1] - t[0]
    out = {}
    for name in period_names(rec):
        se = np.stack([np.asarray(rec[f"{name}_start"].values, float), np.asarray(rec[f"{name}_stop"].values, float)], 1)
        out[name] = np.clip(np.ceil((se - t[0]) / dt - GRID_TOL), 0, len(t)).astype(int)
    return out


def check_recording(rec) -> None:
    """Raise :class:`RecordingError` naming what a recording lacks: ``rate`` with dims (trial,
    time, unit), at least 2 trials and 1 unit, a uniform ``time`` grid with units, period
    boundaries as finite trial coordinates inside the time axis with ``start <= stop``, finite rates
    inside every period, and ``choice`` / ``evidence`` / ``target`` labels of one value per trial."""
    if not isinstance(rec, xr.Dataset):
        raise RecordingError(f"a recording is an xarray Dataset; got {type(rec).__name__}")
    if "rate" not in rec.data_vars:
        names = sorted(map(str, rec.data_vars))
        raise RecordingError(f"the recording has no 'rate' variable (trial, time, unit); it has {names[:8]}"
                             + (f" and {len(names) - 8} more" if len(names) > 8 else "")
                             + (" (a run's results.nc? the recording is compare's second argument)" if "loss" in names else ""))
    if tuple(rec["rate"].dims) != ("trial", "time", "unit"):
        raise RecordingError(f"'rate' must have dims ('trial', 'time', 'unit'); got {tuple(rec['rate'].dims)}")
    B, T, N = rec["rate"].shape
    if B < 2 or N < 1:
        raise RecordingError(f"the recording needs at least 2 trials and 1 unit; got {B} trials and {N} units")
    time_step_ms(rec)
    names = period_names(rec)
    half = [str(k) for k in rec.coords if (str(k).endswith("_start") and f"{str(k)[:-6]}_stop" not in rec.coords)
            or (str(k).endswith("_stop") and f"{str(k)[:-5]}_start" not in rec.coords)]
    if half:
        raise RecordingError(f"period boundaries come in pairs <period>_start / <period>_stop; {half} has no partner")
    if not names:
        raise RecordingError("the recording has no periods: give trial coordinates <period>_start and <period>_stop "
                             "(e.g. stimulus_start, stimulus_stop, delay_start, delay_stop) in the time coordinate's units")
    t = np.asarray(rec["time"].values, float)
    dt = t[1] - t[0]
    rate = np.asarray(rec["rate"].values, float)
    for name in names:
        for side in ("start", "stop"):
            c = rec[f"{name}_{side}"]
            if c.dims != ("trial",):
                raise RecordingError(f"'{name}_{side}' must be a trial coordinate (dims ('trial',)); got {c.dims}")
            v = np.asarray(c.values, float)
            bad = ~np.isfinite(v) | (v < t[0] - GRID_TOL * dt) | (v > t[-1] + dt * (1 + GRID_TOL))
            if bad.any():
                b = int(np.flatnonzero(bad)[0])
                raise RecordingError(f"'{name}_{side}' of trial {b} is {v[b]:g}, outside the time axis [{t[0]:g}, {t[-1] + dt:g}] "
                                     f"({int(bad.sum())} trials): the period must lie within the recorded time")
        short = rec[f"{name}_stop"].values < rec[f"{name}_start"].values
        if short.any():
            raise RecordingError(f"period '{name}' ends before it starts in {int(short.sum())} trials (first: trial {int(np.flatnonzero(short)[0])})")
    for name, se in period_steps(rec).items():
        for b in range(B):
            if not np.isfinite(rate[b, se[b, 0]:se[b, 1]]).all():
                raise RecordingError(f"'rate' is not finite inside the {name} period of trial {b} (time {t[se[b, 0]]:g} to "
                                     f"{rec[f'{name}_stop'].values[b]:g}): is the trial shorter than its periods?")
    for label in ("choice", "evidence", "target"):
        if label in rec.variables and rec[label].dims != ("trial",):
            raise RecordingError(f"'{label}' must be a trial coordinate (one value per trial); got dims {rec[label].dims}")
    if "choice" in rec.coords and len(_finite_values(rec["choice"].values)) > 2:
        raise RecordingError(f"'choice' must have two values (the larger is 'right'); got {_finite_values(rec['choice'].values)[:10].tolist()}")
    if "target" in rec.coords and "choice" in rec.coords:
        extra = np.setdiff1d(_finite_values(rec["target"].values), _finite_values(rec["choice"].values))
        if len(_finite_values(rec["choice"].values)) == 2 and len(extra):
            raise RecordingError(f"'target' has values {extra.tolist()} that 'choice' does not: they must share one coding")


def _finite_values(v) -> np.ndarray:
    v = np.asarray(v, float)
    return np.unique(v[np.isfinite(v)])


# --------------------------------------------------------------------------------------------- windows
def windows(periods: dict[str, np.ndarray], n_steps: int, ramp_period: str | None = None,
            timescale_period: str | None = None) -> tuple[Window, Window, Window | None]:
    """(the ramp period, the ramp window cut where few trials remain, the timescale period or None)
    from per-trial ``[start, stop)`` steps (module docstring). ``ramp_period`` / ``timescale_period``
    name the period to use (``"none"``: no timescale period); by default the first of
    :data:`~.measures.RAMP_PERIODS` / :data:`~.measures.STATIONARY_PERIODS` with enough bins."""
    full = choose_period(periods, RAMP_PERIODS if ramp_period is None else (ramp_period,), n_steps, MIN_PERIOD_STEPS)
    stat = None
    if timescale_period is None:
        for name in STATIONARY_PERIODS:
            if name in periods and (np.diff(periods[name], axis=1).min() >= MIN_TIMESCALE_STEPS):
                stat = Window(name, periods[name][:, 0].astype(int), periods[name][:, 1].astype(int))
                break
    elif timescale_period != "none":
        if timescale_period not in periods:
            raise RecordingError(f"timescale period {timescale_period!r} is not a period of the recording; it has {sorted(periods)}")
        se = np.asarray(periods[timescale_period]).astype(int)
        if (se[:, 1] - se[:, 0]).min() < MIN_TIMESCALE_STEPS:
            raise RecordingError(f"the {timescale_period} period needs at least {MIN_TIMESCALE_STEPS} bins in every trial for "
                                 f"timescales; its shortest trial has {int((se[:, 1] - se[:, 0]).min())}")
        stat = Window(timescale_period, se[:, 0], se[:, 1])
    return full, cut_window(full), stat


def baseline_level(rate_bxtxn: np.ndarray, periods: dict[str, np.ndarray]) -> np.ndarray:
    """Each unit's pre-stimulus level: its mean rate in the fixation period, else at the first bin."""
    if "fixation" in periods:
        se = np.asarray(periods["fixation"]).astype(int)
        if (se[:, 1] > se[:, 0]).all():
            R, M = aligned(rate_bxtxn, Window("fixation", se[:, 0], se[:, 1]))
            return (R * M[..., None]).sum((0, 1)) / M.sum()
    return rate_bxtxn[:, 0].mean(0)


def grouping(rec: xr.Dataset, prefer: tuple[str, ...] = ("target", "choice")) -> str | None:
    """The label the choice-resolved measures group trials by: the first of ``prefer`` that the
    recording has with 2 to :data:`MAX_CHOICES` values (by default ``target`` when the recording has
    it, else ``choice``); None when none has."""
    for name in prefer:
        if name in rec.coords and 2 <= len(np.unique(rec[name].values)) <= MAX_CHOICES:
            return name
    return None


def grouped_measures(rec: xr.Dataset, group: str, *, ramp_period: str | None = None) -> dict[str, float]:
    """The choice-resolved measures (:data:`GROUPED_MEASURES`) with the trials grouped by the label
    ``group`` (``target`` or ``choice``), as :func:`measure_recording` computes them; NaN when the
    recording's ``group`` does not have 2 to :data:`MAX_CHOICES` values. The predictions measure
    their networks both ways, so that a recording without ``target`` (grouped by the subject's
    choice) is compared with the networks grouped by their own choices."""
    if grouping(rec, (group,)) is None:
        return {k: np.nan for k in GROUPED_MEASURES}
    rate = np.asarray(rec["rate"].values, float)
    periods = period_steps(rec)
    _, ramp_w, _ = windows(periods, rate.shape[1], ramp_period, "none")
    cr = choice_resolved_ramps(rate, ramp_w, rec[group].values, baseline_level(rate, periods), time_step_ms(rec))
    return {k: float(cr[k]) for k in GROUPED_MEASURES}


def right_choices(rec: xr.Dataset) -> np.ndarray | None:
    """1 where the trial's choice is "right" (the larger of the two choice values, taken from
    ``target`` when present so that a subject that always chose one side still has two), 0 where
    "left", NaN where the choice is missing; None without a two-valued ``choice``."""
    if "choice" not in rec.coords:
        return None
    choice = np.asarray(rec["choice"].values, float)
    values = _finite_values(rec["target"].values if "target" in rec.coords else choice)
    if len(values) != 2:
        values = _finite_values(choice)
    if len(values) != 2:
        return None
    return np.where(np.isfinite(choice), (choice == values[1]).astype(float), np.nan)


# --------------------------------------------------------------------------------------------- measures
def measure_recording(rec: xr.Dataset, *, ramp_period: str | None = None, timescale_period: str | None = None,
                      check: bool = True) -> xr.Dataset:
    """Every measure of the module docstring on one recording, as a Dataset: per-recording measures
    (scalars, :data:`RECORDING_MEASURES`), per-unit measures (dim ``unit``), the autocorrelation
    (``unit, lag``), the trial-averaged rate over the ramp window (``unit, period_time``), rates and
    projection by choice (``choice``) and the psychometric curve (``evidence_level``).
    ``ramp_period`` / ``timescale_period``: the periods to use (default: the module docstring's
    rules; ``timescale_period="none"``: no timescales). ``check``: validate the recording first."""
    if check:
        check_recording(rec)
    dt = time_step_ms(rec)
    rate = np.asarray(rec["rate"].values, float)
    B, T, N = rate.shape
    periods = period_steps(rec)
    full_w, ramp_w, stat_w = windows(periods, T, ramp_period, timescale_period)
    out: dict[str, object] = {k: np.nan for k in RECORDING_MEASURES}
    unit = {k: np.full(N, np.nan) for k in ("ramp_slope", "ramp_slope_se", "ramp_p_value", "timescale_ms",
                                            "timescale_amplitude", "timescale_offset", "ramp_preferred_choice",
                                            "ramp_slope_preferred")}
    unit["timescale_status"] = np.ones(N, int)
    unit["ramp_class"] = np.full(N, -1)
    fit = ramp_slopes(rate, ramp_w, dt)
    rej = benjamini_hochberg(fit.p_n)
    unit["ramp_slope"], unit["ramp_slope_se"], unit["ramp_p_value"], unit["ramping"] = fit.slope_n, fit.se_n, fit.p_n, rej
    finite = np.isfinite(fit.p_n)
    if finite.any():
        out["fraction_ramping"] = rej[finite].mean()
        out["fraction_ramping_uncorrected"] = (fit.p_n[finite] < ALPHA).mean()
        out["median_abs_ramp_slope"] = np.median(np.abs(fit.slope_n[finite]))
    group = grouping(rec)
    data_vars: dict[str, tuple] = {}
    L_ramp = int((ramp_w.stop_b - ramp_w.start_b).max())
    if group is not None:
        group_b = rec[group].values
        cr = choice_resolved_ramps(rate, ramp_w, group_b, baseline_level(rate, periods), dt)
        unit["ramp_class"] = cr["ramp_class"]
        unit["ramp_preferred_choice"], unit["ramp_slope_preferred"] = cr["preferred_choice"], cr["slope_preferred"]
        data_vars["ramp_opposite"] = (("unit",), cr["opposite"], {"units": "1", "long_name": "significant ramps of opposite sign for the two extreme choices"})
        for k in ("fraction_buildup", "fraction_decay", "fraction_opposite_ramps", "population_ramp_slope", "population_ramp_p_value"):
            out[k] = cr[k]
        sorted_ = choice_sorted(rate[None], ramp_w, group_b, np.array([True]))
        means = choice_means(rate, ramp_w, group_b)[1]
        axis = means[-1] - means[0]
        data_vars["choice_axis"] = (("unit",), axis / np.linalg.norm(axis) if np.linalg.norm(axis) > 0 else np.zeros(N),
                                    {"units": "1", "long_name": f"the population's choice axis: each unit's mean rate over the {ramp_w.name} "
                                                                f"window on trials of the larger {group} minus the smaller, unit length"})
        data_vars["psth_by_choice"] = (("unit", "choice", "period_time"), sorted_["psth_by_choice"][0],
                                       {"units": "1", "long_name": f"trial-averaged rate by {group} from the onset of the {ramp_w.name} period"})
        data_vars["projection_by_choice"] = (("choice", "period_time"), sorted_["projection_by_choice"][0],
                                             {"units": "1", "long_name": f"rate projected on the choice axis, by {group}"})
        choice_values = sorted_["choice_values"]
    R, M = aligned(rate, ramp_w)
    cnt = M.sum(0)
    mean_rate = np.where(cnt[:, None] > 0, R.sum(0) / np.maximum(cnt, 1)[:, None], np.nan).T
    L_ac = 1
    ac_nxl = np.full((N, 1), np.nan)
    if stat_w is not None:  # no input-free period: no timescales (status 1, no data)
        ac, pairs = across_trial_autocorrelation(rate, stat_w)
        ac_nxl, L_ac = ac.T, ac.shape[0]
        for n in range(N):
            tf = fit_autocorrelation_timescale(ac[:, n], pairs, dt, B)
            unit["timescale_ms"][n], unit["timescale_amplitude"][n] = tf.tau_ms, tf.amplitude
            unit["timescale_offset"][n], unit["timescale_status"][n] = tf.offset, tf.status
        st = unit["timescale_status"]
        out["fraction_timescale_fitted"] = (st == 0).mean()
        out["fraction_timescale_long"] = (st == 3).mean()
        out["timescale_median_ms"] = np.median(unit["timescale_ms"][st == 0]) if (st == 0).any() else np.nan
    out["participation_ratio"] = participation_ratio(rate)
    right = right_choices(rec)
    if "target" in rec.coords and "choice" in rec.coords:
        ok = np.isfinite(np.asarray(rec["choice"].values, float)) & np.isfinite(np.asarray(rec["target"].values, float))
        out["accuracy"] = float((rec["choice"].values[ok] == rec["target"].values[ok]).mean()) if ok.any() else np.nan
    psy_status = 1
    if right is not None and "evidence" in rec.coords:
        ev = np.asarray(rec["evidence"].values, float)
        pf = fit_psychometric(ev, right)
        out["psychometric_slope"], out["psychometric_bias"], out["psychometric_lapse"], psy_status = pf.slope, pf.bias, pf.lapse, pf.status
        levels, p_right, n_at = psychometric_curve(ev, right)
        data_vars["p_right"] = (("evidence_level",), p_right, {"units": "1", "long_name": "fraction of 'right' choices at each evidence level"})
        data_vars["n_trials_at_evidence"] = (("evidence_level",), n_at, {"units": "1", "long_name": "trials at each evidence level"})
    ds = xr.Dataset(coords={"unit": rec["unit"].values if "unit" in rec.coords else np.arange(N),
                            "lag": np.arange(L_ac) * dt, "period_time": np.arange(L_ramp) * dt})
    for k, (units, long) in RECORDING_MEASURES.items():
        ds[k] = ((), float(out[k]), {"units": units, "long_name": long})
    ds["psychometric_fit_status"] = ((), int(psy_status), {"units": "1", "long_name": "psychometric fit: " + FIT_STATUS_MEANINGS.replace(" ", ", "),
                                                             "flag_values": [0, 1, 2, 3], "flag_meanings": FIT_STATUS_MEANINGS})
    for k, (units, long) in UNIT_MEASURES.items():
        ds[k] = (("unit",), unit[k], {"units": units, "long_name": long})
    ds["timescale_status"].attrs.update(flag_values=[0, 1, 2, 3], flag_meanings=STATUS_MEANINGS)
    ds["ramp_class"].attrs.update(flag_values=[-1, 0, 1, 2], flag_meanings="not_measured " + RAMP_CLASSES)
    ds["autocorrelation"] = (("unit", "lag"), ac_nxl, {"units": "1", "long_name": "across-trial autocorrelation of the rate, mean over bin pairs per lag"})
    ds["mean_rate"] = (("unit", "period_time"), mean_rate, {"units": "1", "long_name": f"trial-averaged rate from the onset of the {ramp_w.name} period"})
    if group is not None:
        ds.coords["choice"] = ("choice", choice_values, {"units": "1", "long_name": f"the trial's {group}"})
    if "p_right" in data_vars:
        ds.coords["evidence_level"] = ("evidence_level", levels, {"units": "1", "long_name": "signed evidence (each value, or the mean of a bin)"})
    for k, v in data_vars.items():
        ds[k] = v
    ds["lag"].attrs.update(units="ms", long_name="time lag")
    ds["period_time"].attrs.update(units="ms", long_name=f"time since the onset of the {ramp_w.name} period")
    ds["unit"].attrs.update(units="", long_name="unit")
    ds.attrs.update(ramp_period=ramp_w.name, ramp_window_ms=float(L_ramp * dt),
                    timescale_period=stat_w.name if stat_w is not None else "none", dt_ms=float(dt),
                    timescale_window_ms=float((stat_w.stop_b - stat_w.start_b).min() * dt) if stat_w is not None else float("nan"),
                    grouped_by=group or "none", n_trials=int(B), n_units=int(N), alpha=ALPHA)
    ds.attrs["full_ramp_window_steps"] = int((full_w.stop_b - full_w.start_b).max())
    return ds
