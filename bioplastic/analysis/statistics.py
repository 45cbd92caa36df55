"""Statistics across networks: bootstrap confidence intervals (deterministic: explicit RNG), and
the one significance level, confidence level and bootstrap size every test of the package uses."""
from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

#: significance level of every test (and false-discovery rate of the per-unit tests)
ALPHA = 0.05
#: level of every confidence interval
CI_LEVEL = 1 - ALPHA
#: bootstrap resamples of every percentile-bootstrap CI
N_BOOT = 10000


def nanmedian(values, axis=None):
    """Median over the finite values; NaN (without numpy's all-NaN warning) where there are none."""
    v = np.where(np.isfinite(np.asarray(values, float)), values, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = np.nanmedian(v, axis=axis)
    return float(out) if axis is None else out


def bootstrap_ci(values, rng: np.random.Generator, stat=np.median, n_boot: int = N_BOOT,
                 level: float = CI_LEVEL) -> tuple[float, float, float]:
    """(statistic, low, high): percentile bootstrap CI of ``stat`` over the finite ``values``.
    NaN for all three when no value is finite; a single value gives a zero-width interval."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return (np.nan, np.nan, np.nan)
    boots = stat(v[rng.integers(0, len(v), (n_boot, len(v)))], axis=1)
    alpha = (1 - level) / 2
    return float(stat(v)), float(np.quantile(boots, alpha)), float(np.quantile(boots, 1 - alpha))


def paired_comparison(treated_s, control_s, rng: np.random.Generator, n_boot: int = N_BOOT,
                      zero_method: str = "zsplit", level: float = CI_LEVEL) -> dict[str, float]:
    """Treated minus control, paired by seed, over seeds where both are finite: the median
    difference with its bootstrap CI, and the two-sided Wilcoxon signed-rank p-value (exact for
    small samples; 1.0 when every difference is 0, NaN without pairs). ``zero_method``: scipy's
    handling of zero differences ('zsplit' counts ties at the budget; 'wilcox' drops them)."""
    from scipy.stats import wilcoxon

    a, b = np.asarray(treated_s, float), np.asarray(control_s, float)
    ok = np.isfinite(a) & np.isfinite(b)
    diff = a[ok] - b[ok]
    est, lo, hi = bootstrap_ci(diff, rng, n_boot=n_boot, level=level)
    if len(diff) == 0:
        p = np.nan
    elif np.all(diff == 0):
        p = 1.0
    else:
        p = float(wilcoxon(diff, zero_method=zero_method).pvalue)
    return {"difference": est, "difference_ci_low": lo, "difference_ci_high": hi, "p_value": p, "n_pairs": float(len(diff))}


def censored(values, budget: float) -> np.ndarray:
    """Iterations to criterion with networks that never reached it counted at the budget (a lower
    bound on their true value; statistics over them are therefore conservative)."""
    v = np.asarray(values, float)
    return np.where(np.isfinite(v), v, float(budget))


def compare_conditions(values_cxs, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A per-network measure (rows: conditions, the first is the reference; columns: seeds): per
    condition the median and its bootstrap 95 % CI, and each condition against the first, paired by
    seed (median difference with CI, Wilcoxon signed-rank p). NaN entries (e.g. diverged networks)
    are left out; for iterations to criterion pass :func:`censored` values."""
    v = np.asarray(values_cxs, float)
    C = v.shape[0]
    out = {k: np.full(C, np.nan) for k in ("median", "ci_low", "ci_high", "difference", "difference_ci_low",
                                            "difference_ci_high", "p_value", "n_pairs")}
    for c in range(C):
        out["median"][c], out["ci_low"][c], out["ci_high"][c] = bootstrap_ci(v[c], rng)
        if c > 0:
            for k, x in paired_comparison(v[c], v[0], rng).items():
                out[k][c] = x
    return out


def clopper_pearson(k: int, n: int, level: float = CI_LEVEL) -> tuple[float, float]:
    """Exact (Clopper-Pearson) CI of a proportion k / n (scipy's ``binomtest``)."""
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def benjamini_hochberg(p_values, q: float = ALPHA) -> np.ndarray:
    """Rejections of the Benjamini-Hochberg step-up procedure at FDR ``q`` (scipy's
    ``false_discovery_control``); NaN p-values are never rejected and do not count among the tests."""
    p = np.asarray(p_values, dtype=float)
    out = np.zeros(p.shape, bool)
    finite = np.isfinite(p)
    if finite.any():
        out[finite] = stats.false_discovery_control(p[finite], method="bh") <= q
    return out


def num(x: float, spec: str) -> str:
    """``format(x, spec)`` without a negative zero: a value that rounds to zero prints as ``0``
    (``+0`` with a sign spec), never ``-0``."""
    s = format(x, spec)
    if s.startswith("-") and float(format(-x, spec.replace("+", ""))) == 0:
        return format(0.0, spec)
    return s
