"""Learning-curve metrics of abrupt learning (SPEC 5), per network.

With ``s`` the moving-average loss, ``L_0 = s[0]`` and ``L_final`` the mean of ``s`` over the last
smoothing window:

- drop onset: first iteration where ``s < L_0 - 0.1 (L_0 - L_final)``; search phase = drop onset
- drop end:   first iteration where ``s < L_0 - 0.9 (L_0 - L_final)``; drop width = end - onset
- drop time:  iteration of the steepest descent of ``s``
- abruptness: drop width / drop onset (small = abrupt)

A curve whose total drop is below ``min_drop`` (relative to L_0) has no drop: its metrics are NaN.
Iterations to criterion: the first evaluation at which held-out accuracy >= criterion (NaN if never).
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter1d

METRICS = ("drop_onset", "drop_time", "drop_width", "abruptness", "search_phase")


def smooth(loss_k: np.ndarray, window: int) -> np.ndarray:
    """Centered moving average over valid (finite) iterations; NaN elsewhere."""
    valid = np.isfinite(loss_k)
    out = np.full(loss_k.shape, np.nan)
    n = int(valid.sum())
    if n == 0:
        return out
    idx = np.flatnonzero(valid)
    out[idx] = uniform_filter1d(loss_k[idx].astype(float), size=max(1, min(window, n)), mode="nearest")
    return out


def curve_metrics(loss_k: np.ndarray, window: int, min_drop: float = 0.1) -> dict[str, float]:
    """Metrics of one loss curve (iterations are indices into ``loss_k``)."""
    nan = {m: np.nan for m in METRICS}
    s = smooth(np.asarray(loss_k, float), window)
    idx = np.flatnonzero(np.isfinite(s))
    if len(idx) < 3:
        return nan
    s_valid = s[idx]
    l0, lf = s_valid[0], s_valid[-min(window, len(s_valid)):].mean()
    if not (l0 - lf > min_drop * abs(l0)):
        return nan
    onset = idx[np.argmax(s_valid < l0 - 0.1 * (l0 - lf))]
    end = idx[np.argmax(s_valid < l0 - 0.9 * (l0 - lf))]
    slope = np.gradient(s_valid)
    drop_time = idx[np.argmin(slope)]
    width = float(end - onset)
    return {"drop_onset": float(onset), "drop_time": float(drop_time), "drop_width": width,
            "abruptness": width / onset if onset > 0 else np.nan, "search_phase": float(onset)}


def iterations_to_criterion(accuracy_n: np.ndarray, eval_iterations_n: np.ndarray, criterion: float) -> float:
    hit = np.flatnonzero(np.nan_to_num(np.asarray(accuracy_n, float), nan=-1.0) >= criterion)
    return float(eval_iterations_n[hit[0]]) if len(hit) else np.nan
