"""Staircase-aware learning-curve metrics: every plateau and every drop of a loss curve (science.md §8).

The first-drop metrics of analysis/learning_curves.py describe one plateau and one drop. A linear
network learning a filter with several poles descends a staircase (Saxe et al. 2014; Bordelon et al.
2025): plateau, drop, plateau, drop, ... Here every step is found, robustly to SGD's batch noise
(multiplicative, step to step) and to a slow drift of a plateau's level:

1. ``z`` = the log of the loss through a running median and then a centered moving average, both
   over ``window`` iterations (batch noise is multiplicative: a log keeps a plateau at 0.002 as
   visible as one at 0.8; the median ignores SGD's spikes), and ``s`` = the moving average of the
   loss itself (:func:`learning_curves.smooth`; for levels and the 10-90 % times).
2. *Flat* iterations: ``|z[t + w/2] - z[t - w/2]| < flat_tol + NOISE_Z * 1.77 sigma_t / sqrt(w)``:
   the log-loss changes over one window by less than ``flat_tol`` (0.1, about 10 %) plus three
   standard errors of that change, where ``sigma_t`` is the local noise of the log-loss (1.4826 x
   the running median, over 2 windows, of its absolute deviation from the running median; 1.77 /
   sqrt(w): the standard deviation of the difference of two medians of w samples). Near the end of
   learning SGD's relative noise grows (measured: 0.04 on the first plateau, 0.1 on the second,
   over 1 in the last), and a fixed tolerance would see no plateau there.
3. *Plateau candidates*: runs of flat iterations at least ``min_plateau`` windows (2) long; their
   level is the median of ``s`` over the run.
4. Consecutive candidates whose levels differ by less than ``min_drop`` (30 %, as the first-drop
   metrics) are one plateau (a bump or a noisy stretch split it); otherwise a **drop** separates them.
   After the last plateau, a further fall of the smoothed loss by at least ``min_drop`` to its level
   at the end (the median of ``s`` over the last window) is a last drop (to that level) with no
   plateau after it (``ends_on_plateau`` False).
5. A drop from level ``L_a`` to ``L_b`` (D = L_a - L_b): its midpoint is the first iteration after
   the plateau's start where ``s < L_a - 0.5 D``; its **onset** the first iteration after the last
   one before the midpoint with ``s >= L_a - 0.1 D`` (a drift or a noise dip before the drop does not
   move it); its **end** the first iteration after the midpoint with ``s < L_a - 0.9 D``;
   **width** = end - onset (the 10-90 % time, as the first-drop metrics).
6. A plateau's **start**: for the first, the start of its flat run (the end of any initial
   transient); for the others, the end of the drop before it. Its **length**: from its start to
   the onset of the drop after it (the last plateau: to the end of its flat run). Its **level**:
   the median of ``s`` over its flat runs before the drop's onset (a flat run may reach into the start
   of a drop within the noise allowance; the drop is then found again from this level).

Plain functions of a curve (iterations are indices into it); the dataset-level code is in
analysis/linear_oracle.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import median_filter

from .learning_curves import MIN_DROP, smooth

#: a flat iteration: the smoothed log-loss changes by less than this over one window (~10 %), plus
#: NOISE_Z standard errors of that change
FLAT_TOL = 0.1
NOISE_Z = 3.0
#: a plateau is a flat run at least this many windows long
MIN_PLATEAU_WINDOWS = 2.0
#: the loss floor under the logarithm (an exact zero would be -inf)
LOG_FLOOR = 1e-30


@dataclass(frozen=True)
class Plateau:
    """level: median smoothed loss on it; start, length: iterations (see the module docstring)."""

    level: float
    start: int
    length: int


@dataclass(frozen=True)
class Drop:
    """onset, end: iterations (10 % and 90 % of the way from ``level_before`` to ``level_after``);
    width = end - onset; midpoint: the first iteration below halfway."""

    onset: int
    end: int
    midpoint: int
    level_before: float
    level_after: float

    @property
    def width(self) -> int:
        return self.end - self.onset


@dataclass(frozen=True)
class Staircase:
    """The plateaus and drops of one curve, in order (drop i follows plateau i)."""

    plateaus: list[Plateau] = field(default_factory=list)
    drops: list[Drop] = field(default_factory=list)
    #: whether the curve ends on a plateau (False: the last drop has no plateau after it)
    ends_on_plateau: bool = True


def _runs(flag: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of every run of True."""
    d = np.diff(np.r_[0, flag.astype(np.int8), 0])
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def robust_log_smooth(loss: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """``(z, sigma)``: the log-loss through a running median and a moving average (``window``), and
    its local noise (1.4826 x the running median over 2 windows of the absolute deviation of the
    log-loss from its running median)."""
    x = np.log(np.maximum(loss, LOG_FLOOR))
    med = median_filter(x, size=window, mode="nearest")
    sigma = 1.4826 * median_filter(np.abs(x - med), size=2 * window, mode="nearest")
    return smooth(med, window), sigma


def flat_iterations(z: np.ndarray, window: int, flat_tol: float = FLAT_TOL, sigma: np.ndarray | None = None) -> np.ndarray:
    """Boolean: where the smoothed log-loss ``z`` changes over one window (centered difference; at
    the ends, one-sided, scaled to a window) by less than ``flat_tol`` plus ``NOISE_Z`` standard
    errors of the change given the local noise ``sigma`` (None: no noise allowance)."""
    n = len(z)
    h = max(1, window // 2)
    lo, hi = np.clip(np.arange(n) - h, 0, n - 1), np.clip(np.arange(n) + h, 0, n - 1)
    change = np.abs(z[hi] - z[lo]) * (2 * h) / np.maximum(hi - lo, 1)
    tol = flat_tol + (0.0 if sigma is None else NOISE_Z * 1.77 * sigma / np.sqrt(window))
    return np.isfinite(change) & (change < tol)


def _drop(s: np.ndarray, after: int, la: float, lb: float) -> Drop | None:
    D = la - lb
    t = np.arange(len(s))
    below_half = np.flatnonzero((t >= after) & (s < la - 0.5 * D))
    if not len(below_half):
        return None
    mid = int(below_half[0])
    above = np.flatnonzero((t < mid) & (t >= after) & (s >= la - 0.1 * D))
    onset = int(above[-1]) + 1 if len(above) else after
    done = np.flatnonzero((t >= mid) & (s < la - 0.9 * D))
    end = int(done[0]) if len(done) else len(s) - 1
    return Drop(onset, end, mid, float(la), float(lb))


def find_staircase(loss_k: np.ndarray, window: int, flat_tol: float = FLAT_TOL, min_drop: float = MIN_DROP,
                   min_plateau_windows: float = MIN_PLATEAU_WINDOWS) -> Staircase:
    """Every plateau and drop of the loss curve ``loss_k`` (one value per iteration; non-finite
    values, e.g. after a divergence, end the curve). See the module docstring for the definitions."""
    loss = np.asarray(loss_k, float)
    bad = np.flatnonzero(~np.isfinite(loss))
    if len(bad):
        loss = loss[:bad[0]]
    if len(loss) < 3:
        return Staircase()
    window = max(1, min(int(window), len(loss)))
    z, sigma = robust_log_smooth(loss, window)
    s = smooth(loss, window)
    flat = flat_iterations(z, window, flat_tol, sigma)
    runs = [(a, b) for a, b in _runs(flat) if b - a >= min_plateau_windows * window]
    # merge candidates whose levels differ by less than min_drop (in either direction)
    groups: list[list[tuple[int, int]]] = []
    for a, b in runs:
        level = float(np.median(s[a:b]))
        if groups:
            prev = float(np.median(np.concatenate([s[x:y] for x, y in groups[-1]])))
            if not level < (1 - min_drop) * prev:
                groups[-1].append((a, b))
                continue
        groups.append([(a, b)])
    plateaus, drops = [], []
    start = groups[0][0][0] if groups else 0
    nxt = None
    for i, g in enumerate(groups):
        flat_g = np.zeros(len(s), bool)
        for x, y in g:
            flat_g[x:y] = True
        level = float(np.median(s[flat_g])) if nxt is None else nxt
        flat_end = g[-1][1]
        if i + 1 < len(groups):
            after = np.zeros(len(s), bool)
            for x, y in groups[i + 1]:
                after[x:y] = True
            nxt = float(np.median(s[after]))
        else:
            nxt = float(np.median(s[-window:]))
            if not (flat_end < len(s) and nxt < (1 - min_drop) * level):
                nxt = None
        drop = None if nxt is None else _drop(s, start, level, nxt)
        if drop is not None:
            # the flat run can reach into the start of the drop (within the noise allowance): the
            # level is taken again before the onset, and the drop found again from it
            before = flat_g & (np.arange(len(s)) < drop.onset)
            if before.any():
                level = float(np.median(s[before]))
                drop = _drop(s, start, level, nxt) or drop
        if drop is None:
            plateaus.append(Plateau(level, int(start), int(flat_end - start)))
            break
        plateaus.append(Plateau(level, int(start), int(drop.onset - start)))
        drops.append(drop)
        start = drop.end
    ends = len(drops) < len(plateaus)
    return Staircase(plateaus, drops, ends)
