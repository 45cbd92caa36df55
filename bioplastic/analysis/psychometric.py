"""The psychometric curve as experimentalists read it: P(choice right) against the signed evidence,
with a fitted psychometric function.

**Function** (a lapse-bounded logistic; e.g. Wichmann & Hill 2001, Psychophys 63:1293)::

    P(right | x) = lapse + (1 - 2 lapse) / (1 + exp(-slope (x - bias)))

``x``: the trial's signed evidence (positive favours "right", the larger of the two choice labels;
e.g. ``n_right - n_left`` clicks, or coherence signed by the correct side); ``slope`` (per unit of
evidence): how steeply choices follow the evidence; ``bias`` (evidence units): the point of
subjective equality, where P = 0.5 (positive: the subject needs evidence for "right" to choose it
as often as "left", i.e. a leftward bias); ``lapse`` in [0, :data:`LAPSE_MAX`]: the fraction of
choices at either end that ignore the evidence (P saturates at ``lapse`` and ``1 - lapse``).

**Fit**: maximum likelihood over single trials (Bernoulli), scipy's L-BFGS-B from a few starting
points, with ``slope`` in ``[-SLOPE_MAX / spacing, SLOPE_MAX / spacing]`` (``spacing``: the smallest
gap between distinct evidence values) and ``bias`` within the evidence range widened by its span on
each side. **Status**: 0 fitted; 1 too few data (fewer than :data:`MIN_TRIALS` trials or fewer than
2 distinct evidence values, or only one choice made); 2 steeper than resolvable (``slope`` at its
bound: the choices switch within one evidence step, e.g. a noise-free network; ``slope`` is then a
lower bound and ``bias`` anywhere in that step); 3 the optimiser did not converge. Parameters are
NaN for status 1 and 3.

**Curve**: P(right) per evidence value when there are at most :data:`MAX_LEVELS` distinct values,
else in :data:`N_BINS` bins of equal trial counts (each at the mean evidence of its trials).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize
from scipy.special import expit, log_expit

#: upper bound of the lapse rate (P saturates at lapse and 1 - lapse)
LAPSE_MAX = 0.25
#: slope bound in units of 1 / (smallest evidence spacing): at the bound P goes from 0.5 to within
#: exp(-SLOPE_MAX) of saturation in one evidence step
SLOPE_MAX = 20.0
#: fewer trials than this give no fit (status 1)
MIN_TRIALS = 10
#: the curve shows each evidence value when there are at most this many, else N_BINS quantile bins
MAX_LEVELS = 12
N_BINS = 8
FIT_STATUS_MEANINGS = "fitted too_few_data steeper_than_resolvable not_converged"


@dataclass(frozen=True)
class PsychometricFit:
    """slope (1 / evidence unit), bias (evidence units), lapse (1), status (module docstring),
    n_trials, and the log-likelihood of the fit (nats)."""

    slope: float
    bias: float
    lapse: float
    status: int
    n_trials: int
    log_likelihood: float


def slope_is_lower_bound(status) -> bool:
    """Whether the median slope of a set of fits (``status`` per fit) is a lower bound: at least half
    of the fits that gave parameters (status 0 or 2) are steeper than resolvable (status 2), so that
    the median is the bound itself or below the networks' true slopes."""
    st = np.asarray(status).ravel()
    n = int(((st == 0) | (st == 2)).sum())
    return n > 0 and 2 * int((st == 2).sum()) >= n


def psychometric_function(x, slope: float, bias: float, lapse: float) -> np.ndarray:
    """P(right | x) of the module docstring."""
    return lapse + (1 - 2 * lapse) * expit(slope * (np.asarray(x, float) - bias))


def _log_p_q(params, x):
    """log P(right | x) and log P(left | x), without cancellation where P is near 0 or 1."""
    slope, bias, lapse = params
    z = slope * (x - bias)
    log_lapse = np.log(lapse) if lapse > 0 else -np.inf
    log_rest = np.log1p(-2 * lapse)
    return np.logaddexp(log_lapse, log_rest + log_expit(z)), np.logaddexp(log_lapse, log_rest + log_expit(-z)), z


def _neg_log_likelihood(params, x_k, n_k, r_k):
    """Bernoulli negative log-likelihood of r_k "right" choices out of n_k trials at evidence x_k,
    and its gradient with respect to (slope, bias, lapse)."""
    slope, bias, lapse = params
    log_p, log_q, z = _log_p_q(params, x_k)
    nll = -float(np.sum(r_k * log_p + (n_k - r_k) * log_q))
    # d log-likelihood / dP times dP/dz = (r / P - (n - r) / Q) (1 - 2 lapse) sigma (1 - sigma), each
    # ratio formed in logs: sigma (1 - sigma) / P and / Q stay finite where P or Q underflow
    log_s = np.log1p(-2 * lapse) + log_expit(z) + log_expit(-z)
    w = r_k * np.exp(log_s - log_p) - (n_k - r_k) * np.exp(log_s - log_q)
    with np.errstate(over="ignore", invalid="ignore"):  # 1 / P where P underflows only with no trials to weigh it (r = 0)
        d_lapse = (np.where(r_k > 0, r_k * np.exp(-log_p), 0.0) - np.where(n_k > r_k, (n_k - r_k) * np.exp(-log_q), 0.0)) * (1 - 2 * expit(z))
    grad = -np.array([np.sum(w * (x_k - bias)), np.sum(-w * slope), np.sum(d_lapse)])
    return nll, grad


def _clean(evidence_b, right_b) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(evidence_b, float)
    y = np.asarray(right_b, float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"evidence and choices must be 1-D arrays of the same length; got shapes {x.shape} and {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    bad = ~np.isin(y[ok], (0.0, 1.0))
    if bad.any():
        raise ValueError(f"choices must be 1 (right) or 0 (left); got {np.unique(y[ok][bad])[:5].tolist()}")
    return x[ok], y[ok].astype(bool)


def fit_psychometric(evidence_b, right_b, start: PsychometricFit | None = None) -> PsychometricFit:
    """Maximum-likelihood fit of the psychometric function (module docstring) to single trials:
    ``evidence_b`` (trial,) signed evidence, ``right_b`` (trial,) 1 where the choice was "right",
    0 where "left" (trials with a non-finite value in either are left out). ``start``: a previous
    fit to start from alone (e.g. for bootstrap resamples of the same data)."""
    x, y = _clean(evidence_b, right_b)
    n = len(x)
    levels = np.unique(x)
    nan = PsychometricFit(np.nan, np.nan, np.nan, 1, n, np.nan)
    if n < MIN_TRIALS or len(levels) < 2 or y.all() or not y.any():
        return nan
    spacing = float(np.diff(levels).min())
    span = float(np.ptp(x))
    s_max = SLOPE_MAX / spacing
    bounds = [(-s_max, s_max), (float(x.min()) - span, float(x.max()) + span), (0.0, LAPSE_MAX)]
    scale = float(np.std(x)) or spacing
    if start is not None and start.status in (0, 2):
        starts = [(start.slope, start.bias, start.lapse)]
    else:
        # the slope's sign from the choices' correlation with the evidence (starts of the wrong sign
        # can end at the bound of their side)
        sign = 1.0 if np.corrcoef(x, y)[0, 1] >= 0 else -1.0
        starts = [(sign * s / scale, b, lapse) for s in (0.5, 4.0) for b in (0.0, float(np.median(x))) for lapse in (0.01, 0.1)]
    # sufficient statistics: trials and "right" choices per evidence value
    index = np.searchsorted(levels, x)
    n_k = np.bincount(index, minlength=len(levels)).astype(float)
    r_k = np.bincount(index, weights=y.astype(float), minlength=len(levels))
    best = None
    for p0 in starts:
        p0 = tuple(float(np.clip(v, lo, hi)) for v, (lo, hi) in zip(p0, bounds))
        r = optimize.minimize(_neg_log_likelihood, p0, args=(levels, n_k, r_k), jac=True, method="L-BFGS-B", bounds=bounds)
        if np.isfinite(r.fun) and (best is None or r.fun < best.fun):
            best = r
    if best is None or not np.all(np.isfinite(best.x)):
        return PsychometricFit(np.nan, np.nan, np.nan, 3, n, np.nan)
    slope, bias, lapse = (float(v) for v in best.x)
    at_bound = abs(slope) >= s_max * (1 - 1e-3)
    if not best.success and not at_bound:
        return PsychometricFit(np.nan, np.nan, np.nan, 3, n, np.nan)
    return PsychometricFit(slope, bias, lapse, 2 if at_bound else 0, n, -float(best.fun))


def psychometric_curve(evidence_b, right_b) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(evidence_k, p_right_k, n_k): the fraction of "right" choices per evidence level (module
    docstring: each value, or quantile bins at the mean evidence of their trials) and the trials
    behind each (trials with a non-finite evidence or choice are left out)."""
    x, y = _clean(evidence_b, right_b)
    centres, index = evidence_bins(x)
    k = len(centres)
    n = np.bincount(index, minlength=k)[:k]
    right = np.bincount(index, weights=y.astype(float), minlength=k)[:k]
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(n > 0, right / np.maximum(n, 1), np.nan)
    return centres, p, n


def evidence_bins(evidence_b) -> tuple[np.ndarray, np.ndarray]:
    """(centres_k, index_b): each trial's bin of the psychometric curve (module docstring) and the
    bins' evidence (the value itself, or the mean evidence of the bin's trials)."""
    x = np.asarray(evidence_b, float)
    values = np.unique(x[np.isfinite(x)])
    if len(values) <= MAX_LEVELS:
        return values, np.searchsorted(values, x)
    edges = np.unique(np.quantile(x[np.isfinite(x)], np.linspace(0, 1, N_BINS + 1)))
    index = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
    centres = np.array([x[index == k].mean() if (index == k).any() else np.nan for k in range(len(edges) - 1)])
    return centres, index
