"""Statistics across networks: bootstrap confidence intervals (deterministic: explicit RNG)."""
from __future__ import annotations

import numpy as np


def bootstrap_ci(values, rng: np.random.Generator, stat=np.median, n_boot: int = 10000,
                 level: float = 0.95) -> tuple[float, float, float]:
    """(statistic, low, high): percentile bootstrap CI of ``stat`` over the finite ``values``.
    NaN for all three when no value is finite; a single value gives a zero-width interval."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return (np.nan, np.nan, np.nan)
    boots = stat(v[rng.integers(0, len(v), (n_boot, len(v)))], axis=1)
    alpha = (1 - level) / 2
    return float(stat(v)), float(np.quantile(boots, alpha)), float(np.quantile(boots, 1 - alpha))
