"""Numpy primitives of the prediction measures: periods as per-trial step windows, ramp slopes with
trial fixed effects and cluster-robust standard errors, choice-resolved ramps and the population's
choice axis, across-trial autocorrelations and their timescale fits.

Arrays are ``rate_bxtxn`` (trial, time step, unit) on a uniform time grid of ``dt_ms``; a period is
a :class:`Window` of per-trial ``[start, stop)`` steps. What each measure means, and the rules it
follows, are in :mod:`bioplastic.analysis.recording`, which applies these functions to a recording
(model or data). Pure functions: inputs are never modified.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from .statistics import benjamini_hochberg

#: ramping is measured in the first of these periods that every trial has with >= MIN_PERIOD_STEPS steps
RAMP_PERIODS = ("delay", "stimulus", "trial")
#: autocorrelation timescales are measured in the first of these (stationary) periods
STATIONARY_PERIODS = ("delay", "fixation")
#: the ramp window ends where fewer than this many trials (or than a quarter of them, whichever is
#: more) are still in the period: with variable delays the last steps rest on a few long trials
MIN_TRIALS_AT_TIME = 10
#: choice-resolved ramp class codes per unit
RAMP_CLASSES = "none buildup decay"
#: timescales are measured only in an input-free period of at least this many steps in every trial
MIN_TIMESCALE_STEPS = 5
MIN_PERIOD_STEPS = 3
#: Pearson correlations of a pair of steps need at least this many trials
MIN_TRIALS_PER_PAIR = 8
#: a rate that changes by less than this within trials is constant (not ramping)
CONSTANT_TOL = 1e-9
#: bounds of fitted timescales, in units of dt (lower) and of the fitted window's length (upper)
TAU_MIN_DT = 0.1
TAU_MAX_WINDOW = 10.0
#: a fitted autocorrelation that falls by less than this fraction of its value at the first lag over
#: the lags fitted has no measurable decay in the window: the window bounds the timescale from below
#: only (status 3, longer than measurable), however the fit places its small decaying part
MIN_DECAY_FRACTION = 0.1

STATUS_MEANINGS = "fitted no_data fit_failed longer_than_measurable"

@dataclass(frozen=True)
class Window:
    """A named period: per-trial [start, stop) steps."""

    name: str
    start_b: np.ndarray
    stop_b: np.ndarray


def choose_period(periods: dict[str, np.ndarray], preference, n_steps: int,
                  min_steps: int = MIN_PERIOD_STEPS) -> Window:
    """The first period of ``preference`` that every trial has with at least ``min_steps`` steps;
    ``trial`` (when not a period of the task) means the whole trial."""
    for name in preference:
        if name in periods:
            se = np.asarray(periods[name])
            if (se[:, 1] - se[:, 0]).min() >= min_steps:
                return Window(name, se[:, 0].astype(int), se[:, 1].astype(int))
        elif name == "trial":
            B = len(next(iter(periods.values()))) if periods else 0
            return Window("trial", np.zeros(B, int), np.full(B, n_steps))
    raise ValueError(f"no period of {preference} has {min_steps} steps in every trial; the task has {sorted(periods)}")



def aligned(values_bxtxn: np.ndarray, window: Window) -> tuple[np.ndarray, np.ndarray]:
    """Values from each trial's period onset: (B, L, N) with L the longest period, and the (B, L)
    mask of steps inside the period (values outside are 0)."""
    X = np.asarray(values_bxtxn, dtype=float)
    B, T = X.shape[:2]
    lengths = window.stop_b - window.start_b
    L = int(lengths.max())
    k = np.arange(L)
    mask = k[None, :] < lengths[:, None]
    idx = np.minimum(window.start_b[:, None] + k[None, :], T - 1)
    out = np.where(mask[..., None], X[np.arange(B)[:, None], idx], 0.0)  # NaN outside a recorded trial stays out
    return out, mask


def trials_at_time(window: Window) -> np.ndarray:
    """(L,) how many trials are still in the period at each step since its onset."""
    lengths = window.stop_b - window.start_b
    return (np.arange(int(lengths.max()))[:, None] < lengths[None, :]).sum(1)


def cut_window(window: Window, min_trials: int = MIN_TRIALS_AT_TIME) -> Window:
    """The window ended at the last step since onset where at least ``min_trials`` trials, and a
    quarter of the trials, remain (with a variable delay the last steps rest on a few long trials)."""
    n = trials_at_time(window)
    need = min(max(min_trials, -(-len(window.start_b) // 4)), len(window.start_b))
    keep = int(np.flatnonzero(n >= need)[-1]) + 1
    return Window(window.name, window.start_b, np.minimum(window.stop_b, window.start_b + keep))


def choice_means(rate_bxtxn: np.ndarray, window: Window, choice_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The choices (sorted) and each unit's mean rate over the window's steps of each choice's
    trials, (choice, N). The choice axis of a network is the last row minus the first."""
    values = np.unique(choice_b)
    R, M = aligned(rate_bxtxn, window)
    Mf = M[..., None].astype(float)
    return values, np.array([(R[choice_b == g] * Mf[choice_b == g]).sum((0, 1)) / max(Mf[choice_b == g].sum(), 1)
                             for g in values])


def choice_sorted(rate_exbxtxn: np.ndarray, window: Window, choice_b: np.ndarray, ok_e: np.ndarray) -> dict[str, np.ndarray]:
    """Trial-averaged rates from the window's onset sorted by choice: ``psth_by_choice`` (E, N, choice,
    L), and the population projection on each network's choice axis (:func:`choice_means`, unit
    length), ``projection_by_choice`` (E, choice, L); NaN where no trial of the choice is still in the
    window, and for missing networks."""
    values = np.unique(choice_b)
    E, _, _, N = rate_exbxtxn.shape
    L = int((window.stop_b - window.start_b).max())
    psth = np.full((E, N, len(values), L), np.nan)
    proj = np.full((E, len(values), L), np.nan)
    for e in range(E):
        if not ok_e[e]:
            continue
        R, M = aligned(rate_exbxtxn[e], window)
        for g, v in enumerate(values):
            sel = choice_b == v
            cnt = M[sel].sum(0)
            psth[e, :, g] = np.where(cnt > 0, (R[sel] * M[sel][..., None]).sum(0).T / np.maximum(cnt, 1), np.nan)
        means = choice_means(rate_exbxtxn[e], window, choice_b)[1]    # (choice, N)
        axis = means[-1] - means[0]
        if np.linalg.norm(axis) > 0:
            proj[e] = np.einsum("ngl,n->gl", psth[e], axis / np.linalg.norm(axis))
    return {"psth_by_choice": psth, "projection_by_choice": proj, "choice_values": values.astype(float)}


def _subset(window: Window, sel: np.ndarray) -> Window:
    return Window(window.name, window.start_b[sel], window.stop_b[sel])


def choice_resolved_ramps(rate_bxtxn, window: Window, choice_b, baseline_n, dt_ms: float) -> dict[str, np.ndarray]:
    """Ramps per choice, classified against each unit's pre-stimulus level ``baseline_n``.

    Per choice g: the slope of each unit (trial fixed effects, :func:`ramp_slopes`, on the trials of
    g) and its mean rate over the window, ``d_g = mean - baseline``. A unit's preferred choice is the
    one with the largest ``|d_g|``. For it, a significant slope (Benjamini-Hochberg across units) is
    a **build-up** when it moves the rate away from the baseline (``sign(slope) = sign(d)``) and a
    **decay** when it moves it back (e.g. the relaxation after the stimulus ends). **Opposite ramps**:
    significant slopes of opposite sign for the two extreme choices (they cancel in a pooled slope).
    The **population ramp**: rates projected on the choice axis (mean over the window for the
    largest choice minus the smallest, unit length), signed by the choice, regressed on time.
    Returns per unit ``ramp_class`` (0 none, 1 build-up, 2 decay), ``preferred_choice``,
    ``slope_preferred``, ``opposite``; per network ``fraction_buildup``, ``fraction_decay``,
    ``fraction_opposite_ramps``, ``population_ramp_slope``, ``population_ramp_p_value``.
    """
    rate = np.asarray(rate_bxtxn, float)
    choice_b = np.asarray(choice_b)
    values, means = choice_means(rate, window, choice_b)                  # (G, N)
    N = rate.shape[2]
    fits = [ramp_slopes(rate[choice_b == g], _subset(window, choice_b == g), dt_ms) for g in values]
    slopes = np.array([f.slope_n for f in fits])
    sig = np.array([benjamini_hochberg(f.p_n) for f in fits])
    dev = means - baseline_n
    pref = np.argmax(np.abs(dev), axis=0)
    s, d, k = slopes[pref, np.arange(N)], dev[pref, np.arange(N)], sig[pref, np.arange(N)]
    cls = np.where(k & (np.sign(s) == np.sign(d)) & (s != 0), 1, np.where(k & (np.sign(s) == -np.sign(d)) & (s != 0), 2, 0))
    lo, hi = 0, len(values) - 1
    opposite = sig[lo] & sig[hi] & (np.sign(slopes[lo]) * np.sign(slopes[hi]) < 0)
    axis = means[hi] - means[lo]
    norm = np.linalg.norm(axis)
    sign_b = np.where(choice_b == values[hi], 1.0, np.where(choice_b == values[lo], -1.0, 0.0))
    proj = (rate @ (axis / norm)) * sign_b[:, None] if norm > 0 else np.zeros(rate.shape[:2])  # (B, T)
    pop = ramp_slopes(proj[..., None], window, dt_ms)  # no choice axis: a constant, slope 0
    return {"ramp_class": cls, "preferred_choice": values[pref].astype(float), "slope_preferred": s, "opposite": opposite,
            "fraction_buildup": float((cls == 1).mean()), "fraction_decay": float((cls == 2).mean()),
            "fraction_opposite_ramps": float(opposite.mean()),
            "population_ramp_slope": float(pop.slope_n[0]), "population_ramp_p_value": float(pop.p_n[0])}


@dataclass(frozen=True)
class RampFit:
    """Per unit: slope_n (rate units per second), se_n (cluster-robust), p_n (two-sided), df (trials - 1)."""

    slope_n: np.ndarray
    se_n: np.ndarray
    p_n: np.ndarray
    df: int


def ramp_slopes(rate_bxtxn, window: Window, dt_ms: float) -> RampFit:
    """Slope of rate on time within ``window``, trial fixed effects, cluster-robust SE by trial
    (module docstring)."""
    R, M = aligned(rate_bxtxn, window)
    Mf = M.astype(float)
    n_b = Mf.sum(1)
    use = n_b >= 2
    Mf = Mf * use[:, None]
    n_safe = np.maximum(n_b, 1)
    x = np.arange(R.shape[1]) * dt_ms / 1000.0  # seconds since period onset
    xt = (x[None, :] - (Mf * x).sum(1, keepdims=True) / n_safe[:, None]) * Mf  # (B, L)
    rt = (R - (R * Mf[..., None]).sum(1, keepdims=True) / n_safe[:, None, None]) * Mf[..., None]  # (B, L, N)
    sxx = (xt ** 2).sum()
    B = int(use.sum())
    N = R.shape[2]
    if B < 2 or sxx <= 0:
        nan = np.full(N, np.nan)
        return RampFit(nan, nan.copy(), nan.copy(), max(B - 1, 0))
    slope = np.einsum("bl,bln->n", xt, rt) / sxx
    e = rt - slope[None, None, :] * xt[..., None]
    g = np.einsum("bl,bln->bn", xt, e)
    se = np.sqrt(B / (B - 1) * (g ** 2).sum(0)) / sxx
    constant = np.sqrt((rt ** 2).sum((0, 1)) / Mf.sum()) < CONSTANT_TOL
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, np.abs(slope) / se, np.where(slope == 0, 0.0, np.inf))
    p = 2 * stats.t.sf(t, B - 1)
    slope = np.where(constant, 0.0, slope)
    p = np.where(constant, 1.0, p)
    return RampFit(slope, se, p, B - 1)


def across_trial_autocorrelation(rate_bxtxn, window: Window, min_trials: int = MIN_TRIALS_PER_PAIR
                                 ) -> tuple[np.ndarray, np.ndarray]:
    """Murray et al. (2014) autocorrelation: (L, N) mean over step pairs of each lag (0 .. L-1) of
    the Pearson correlation across trials, and (L,) the number of step pairs averaged per lag (pairs
    with fewer than ``min_trials`` trials or no variance are left out; lag rows without pairs are NaN)."""
    R, M = aligned(rate_bxtxn, window)
    Mf = M.astype(float)
    cnt = Mf.T @ Mf  # (L, L) trials with both steps in the period
    # centre each step by its mean over trials (reduces cancellation in the uncentred sums below)
    R = (R - (R * Mf[..., None]).sum(0) / np.maximum(Mf.sum(0), 1)[:, None]) * Mf[..., None]
    Rt = np.moveaxis(R, 2, 0)  # (N, B, L)
    sx = np.einsum("bi,nbj->nij", Mf, Rt)      # sum over shared trials of x_j (pairs (i, j))
    sxx = np.einsum("bi,nbj->nij", Mf, Rt ** 2)
    sxy = Rt.transpose(0, 2, 1) @ Rt          # (N, L, L)
    with np.errstate(divide="ignore", invalid="ignore"):
        n = cnt[None]
        mean_j = sx / n                        # mean of x_j over the trials shared with step i
        var_j = sxx / n - mean_j ** 2
        mean_i = mean_j.transpose(0, 2, 1)
        var_i = var_j.transpose(0, 2, 1)
        cov = sxy / n - mean_i * mean_j
        scale = np.maximum(np.abs(sxx / n), np.abs(sxx / n).transpose(0, 2, 1))
        ok = (n >= min_trials) & (var_i > 1e-12 * scale + 1e-300) & (var_j > 1e-12 * scale + 1e-300)
        corr = np.where(ok, cov / np.sqrt(np.where(ok, var_i * var_j, 1.0)), np.nan)
    L = R.shape[1]
    N = R.shape[2]
    out = np.full((L, N), np.nan)
    pairs = np.zeros(L, int)
    i, j = np.triu_indices(L)
    lag = j - i
    c = corr[:, i, j]  # (N, P)
    good = np.isfinite(c)
    for k in range(L):
        sel = lag == k
        g = good[:, sel]
        npair = g.sum(1)
        pairs[k] = int(npair.max()) if npair.size else 0
        with np.errstate(invalid="ignore", divide="ignore"):
            out[k] = np.where(npair > 0, np.where(g, c[:, sel], 0.0).sum(1) / np.maximum(npair, 1), np.nan)
    return out, pairs


@dataclass(frozen=True)
class TimescaleFit:
    """tau_ms (NaN unless status 0), amplitude A, offset B, status (0 fitted, 1 no data, 2 failed, 3 too long)."""

    tau_ms: float
    amplitude: float
    offset: float
    status: int


def _curve_fit(f, x, y, p0, lower, upper, sigma=None):
    """scipy's curve_fit: (parameters, their standard errors), or None on non-convergence or an
    undetermined covariance."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", optimize.OptimizeWarning)
        try:
            p, cov = optimize.curve_fit(f, x, y, p0=p0, bounds=(lower, upper), sigma=sigma, max_nfev=2000)
        except (RuntimeError, ValueError, optimize.OptimizeWarning):
            return None
    if not (np.isfinite(p).all() and np.isfinite(np.diag(cov)).all()):
        return None
    return p, np.sqrt(np.maximum(np.diag(cov), 0.0))


def fit_autocorrelation_timescale(ac_l, pairs_l, dt_ms: float, n_trials: int) -> TimescaleFit:
    """Fit ``A (exp(-lag/tau) + B)`` to the autocorrelation ``ac_l`` at lags 1 .. L-1 steps
    (lag 0 is 1 by construction and not fitted), weighted by the pairs per lag. ``n_trials``: the
    trials behind each correlation (its null standard deviation is about ``1 / sqrt(n_trials)``).
    Status 3 (longer than measurable, tau NaN) when the fitted tau is beyond the longest lag, or when
    the fitted curve falls by less than :data:`MIN_DECAY_FRACTION` of its first-lag value over the
    lags fitted (censored: no decay to measure within the window)."""
    ac = np.asarray(ac_l, float)
    pairs = np.asarray(pairs_l, float)
    lags = np.arange(len(ac))
    use = (lags >= 1) & np.isfinite(ac) & (pairs > 0)
    if use.sum() == 0:
        return TimescaleFit(np.nan, np.nan, np.nan, 1)
    if use.sum() < 4:
        return TimescaleFit(np.nan, np.nan, np.nan, 2)
    x, y = lags[use] * dt_ms, ac[use]
    if not y[0] > 3 / np.sqrt(max(n_trials, 1)):  # no measurable autocorrelation at the first lag
        return TimescaleFit(np.nan, np.nan, np.nan, 2)
    t_lo, t_hi = TAU_MIN_DT * dt_ms, TAU_MAX_WINDOW * len(ac) * dt_ms
    # fitted as A exp(-lag/tau) + C with C = A B (A and C bounded; B = C / A can be large when a
    # unit holds a stable trial-to-trial difference on top of a small decaying part)
    c0 = float(np.clip(y[-1], -0.99, 0.99))
    target = c0 + (y[0] - c0) / np.e
    below = np.flatnonzero(y < target)
    tau0 = float(np.clip(x[below[0]] if len(below) else x[-1] / 2, 2 * t_lo, t_hi / 2))
    a0 = float(np.clip((y[0] - c0) * np.exp(x[0] / tau0), 1e-3, 1.9))

    def f(lag, A, tau, C):
        return A * np.exp(-lag / tau) + C

    fit = _curve_fit(f, x, y, (a0, tau0, c0), (0.0, t_lo, -1.0), (2.0, t_hi, 1.0), sigma=1 / np.sqrt(pairs[use]))
    if fit is None:
        return TimescaleFit(np.nan, np.nan, np.nan, 2)
    p, se = fit
    offset = float(p[2] / p[0]) if p[0] > 0 else np.nan
    if p[1] >= x[-1]:  # beyond the longest lag fitted, the decay cannot be told from the offset
        return TimescaleFit(np.nan, float(p[0]), offset, 3)
    # an autocorrelation that hardly falls within the window (e.g. >= 0.9 throughout): the unit holds
    # a trial-specific level; a tau fitted to its small decaying part is not the unit's timescale
    first, last = f(x[0], *p), f(x[-1], *p)
    if first - last < MIN_DECAY_FRACTION * abs(first):
        return TimescaleFit(np.nan, float(p[0]), offset, 3)
    # no decaying component distinguishable from zero, or tau undetermined / below resolution
    if p[0] <= 2 * se[0] or se[1] > p[1] or p[1] <= t_lo * 1.001:
        return TimescaleFit(np.nan, np.nan, np.nan, 2)
    return TimescaleFit(float(p[1]), float(p[0]), offset, 0)


def fit_exponential_timescale(t_ms, y_t) -> float:
    """tau (ms) of ``y(t) = c + a exp(-(t - t_0) / tau)`` fitted to samples ``y_t`` at times ``t_ms``
    (decay when a > 0, build-up when a < 0); NaN when it fails, when ``a`` is not above twice its
    standard error, the standard error of ``tau`` exceeds ``tau``, or ``tau`` is at a bound
    (a tenth of the smallest sampling interval; 10 x the time span)."""
    x = np.asarray(t_ms, float)
    y = np.asarray(y_t, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok] - x[ok].min(), y[ok]
    if len(y) < 4 or np.ptp(y) <= CONSTANT_TOL * max(1.0, np.abs(y).max()):
        return float("nan")
    t_lo, t_hi = TAU_MIN_DT * np.diff(np.sort(x)).min(), TAU_MAX_WINDOW * np.ptp(x)
    span = float(np.ptp(y))
    target = y[-1] + (y[0] - y[-1]) / np.e
    cross = np.flatnonzero(np.sign(y - target) != np.sign(y[0] - target))
    tau0 = float(np.clip(x[cross[0]] if len(cross) else x[-1] / 2, 2 * t_lo, t_hi / 2))
    fit = _curve_fit(lambda t, c, a, tau: c + a * np.exp(-t / tau), x, y, (y[-1], y[0] - y[-1], tau0),
                     (y.min() - 10 * span, -10 * span, t_lo), (y.max() + 10 * span, 10 * span, t_hi))
    if fit is None:
        return float("nan")
    p, se = fit
    if not (t_lo * 1.001 < p[2] < t_hi * 0.999) or abs(p[1]) <= 2 * se[1] or se[2] > p[2]:
        return float("nan")
    return float(p[2])
