"""Geometry of trajectories and fixed-point sets, and geometric-restructuring (GR) events (science.md §5).

Pure functions: numpy in, numpy out, deterministic, inputs never modified.

- :func:`pca_frame` / :func:`project`: a fixed PCA frame (e.g. of the final checkpoint's
  trajectories) in which fixed-point sets of all checkpoints are compared. Component signs are fixed
  as in scikit-learn's ``svd_flip`` (v-based): the entry of largest magnitude of each component is
  positive, so the frame does not depend on the SVD implementation.
- :func:`chamfer_distance` between two point sets; :func:`participation_ratio` of a state cloud;
  :func:`linear_cka` and :func:`procrustes_distance` between two trajectory matrices of the same
  samples (rows: the same trial and time in both).

**GR event rule** (:func:`gr_events`). For a GR metric ``m_c`` at checkpoints ``c = 0, 1, ...``
(e.g. the Chamfer distance between the fixed points of checkpoints c-1 and c):

    baseline = median of m over the first ``baseline`` checkpoints          (default 3)
    scale    = max(MAD of those values, scale_floor_rel * |baseline|, scale_floor_abs)
    event at checkpoint c (c >= baseline) where  m_c > baseline + threshold * scale   (default 3)
                                             and  m_c > min_change                      (default 0)

MAD is the (unscaled) median absolute deviation from the baseline median. Non-finite metric values
are ignored (they never make an event and do not enter the baseline); with no finite baseline value,
there is no event. The floor keeps a constant baseline (MAD = 0) from turning rounding noise into
events. ``min_change`` is an absolute floor on the metric itself: when the network barely changes
(a long plateau with tiny updates), the baseline sits at numerical noise (e.g. 1e-9) and a change
of 1e-7 would exceed it many times over; with ``min_change`` > 0 such a change is no event. The
phase-space analysis (:mod:`bioplastic.analysis.phase_space`) sets it per metric from
``analysis.gr_min_change``; the default 0 here is the rule without that floor. **Lead time** = drop
onset minus the iteration of the first GR event (positive when the GR event precedes the drop; NaN
when either is missing).
"""
from __future__ import annotations

import ast
from dataclasses import dataclass

import numpy as np

from ..seeds import numpy_rng
from .statistics import bootstrap_ci

#: defaults of the GR event rule (see the module docstring)
GR_BASELINE = 3
GR_THRESHOLD = 3.0
GR_SCALE_FLOOR_REL = 0.05
GR_SCALE_FLOOR_ABS = 1e-12


def _matrix(a, name: str, min_rows: int = 0) -> np.ndarray:
    x = np.asarray(a, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (samples, features); got shape {x.shape}")
    if x.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows; got {x.shape[0]}")
    return x


@dataclass(frozen=True)
class PCAFrame:
    """A PCA frame: ``project(x) = (x - mean_s) @ components_cxs.T``.

    mean_s:                    (S,) the mean state (state units)
    components_cxs:            (C, S) orthonormal principal axes, sign-fixed
    explained_variance_c:      (C,) variance along each axis (state units squared)
    explained_variance_ratio_c: (C,) fraction of the total variance
    """

    mean_s: np.ndarray
    components_cxs: np.ndarray
    explained_variance_c: np.ndarray
    explained_variance_ratio_c: np.ndarray


def pca_frame(trajectories_nxs, n_components: int) -> PCAFrame:
    """PCA frame of a state cloud.

    trajectories_nxs: (..., S) states (leading dims are flattened, e.g. (trial, time, unit));
    rows with any non-finite entry (padding) are ignored. n_components: 1 <= C <= min(n, S).
    """
    X = np.asarray(trajectories_nxs, dtype=float)
    if X.ndim < 2:
        raise ValueError(f"trajectories_nxs must have shape (..., state); got {X.shape}")
    X = X.reshape(-1, X.shape[-1])
    X = X[np.isfinite(X).all(1)]
    n, S = X.shape
    if not (1 <= int(n_components) <= min(n, S)):
        raise ValueError(f"n_components must be between 1 and min(samples, state) = {min(n, S)}; got {n_components}")
    mean = X.mean(0)
    _, sv, Vt = np.linalg.svd(X - mean, full_matrices=False)
    # svd_flip (v-based): the largest-magnitude entry of each component is positive
    signs = np.sign(Vt[np.arange(len(Vt)), np.abs(Vt).argmax(1)])
    signs[signs == 0] = 1.0
    Vt = Vt * signs[:, None]
    var = sv ** 2 / max(n - 1, 1)
    total = var.sum()
    c = int(n_components)
    ratio = var[:c] / total if total > 0 else np.full(c, np.nan)
    return PCAFrame(mean, Vt[:c].copy(), var[:c].copy(), ratio)


def project(frame: PCAFrame, states_nxs) -> np.ndarray:
    """Coordinates (..., C) of states (..., S) in the frame; NaN rows stay NaN."""
    X = np.asarray(states_nxs, dtype=float)
    if X.shape[-1:] != frame.mean_s.shape:
        raise ValueError(f"states must have {frame.mean_s.shape[0]} features (the frame's); got shape {X.shape}")
    return (X - frame.mean_s) @ frame.components_cxs.T


def chamfer_distance(set_a, set_b) -> float:
    """Symmetric Chamfer distance ``1/2 (mean_a min_b |a-b| + mean_b min_a |a-b|)`` (Euclidean,
    units of the points). Rows with a non-finite entry (padding) are dropped first.
    Convention for empty sets: both empty -> 0.0 (nothing changed); exactly one empty -> NaN.
    """
    A, B = np.asarray(set_a, dtype=float), np.asarray(set_b, dtype=float)
    for name, M in (("set_a", A), ("set_b", B)):
        if M.ndim != 2:
            raise ValueError(f"{name} must be a 2-D array (points, dims); got shape {M.shape}")
    if A.shape[1] != B.shape[1]:
        raise ValueError(f"the two sets must have the same dimension; got {A.shape[1]} and {B.shape[1]}")
    A, B = A[np.isfinite(A).all(1)], B[np.isfinite(B).all(1)]
    if len(A) == 0 and len(B) == 0:
        return 0.0
    if len(A) == 0 or len(B) == 0:
        return float("nan")
    d = np.sqrt(np.maximum(((A[:, None, :] - B[None, :, :]) ** 2).sum(-1), 0.0))
    return float(0.5 * (d.min(1).mean() + d.min(0).mean()))


def participation_ratio(states_nxs) -> float:
    """``(sum lambda)^2 / sum lambda^2`` of the eigenvalues of the states' covariance: the
    effective dimension (between 1 and S). states_nxs: (..., S), non-finite rows dropped.
    NaN when there is no variance (fewer than 2 distinct states)."""
    X = np.asarray(states_nxs, dtype=float)
    if X.ndim < 2:
        raise ValueError(f"states_nxs must have shape (..., state); got {X.shape}")
    X = X.reshape(-1, X.shape[-1])
    X = X[np.isfinite(X).all(1)]
    if len(X) < 2:
        return float("nan")
    lam = np.linalg.svd(X - X.mean(0), compute_uv=False) ** 2  # proportional to the covariance eigenvalues
    s2 = (lam ** 2).sum()
    return float(lam.sum() ** 2 / s2) if s2 > 0 else float("nan")


def _paired(X, Y):
    X, Y = _matrix(X, "X", 2), _matrix(Y, "Y", 2)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y must have the same samples (rows); got {X.shape[0]} and {Y.shape[0]}")
    if not (np.isfinite(X).all() and np.isfinite(Y).all()):
        raise ValueError("X and Y must be finite")
    return X - X.mean(0), Y - Y.mean(0)


def linear_cka(X, Y) -> float:
    """Linear centered kernel alignment (Kornblith et al. 2019) between two representations of the
    same n samples: X (n, p), Y (n, q). In [0, 1]; invariant to orthogonal transforms and isotropic
    scaling of either. NaN if either has no variance."""
    Xc, Yc = _paired(X, Y)
    hsic = np.linalg.norm(Yc.T @ Xc) ** 2
    norm = np.linalg.norm(Xc.T @ Xc) * np.linalg.norm(Yc.T @ Yc)
    return float(hsic / norm) if norm > 0 else float("nan")


def procrustes_distance(X, Y) -> float:
    """Procrustes distance between two representations of the same n samples, X (n, p), Y (n, q)
    (the narrower one is zero-padded): after centring and scaling each to unit Frobenius norm,
    ``min_R ||X - Y R||_F`` over orthogonal R, i.e. ``sqrt(2 - 2 ||X^T Y||_*)``. In [0, sqrt(2)];
    0 when Y is a rotated/reflected, scaled and shifted copy of X. NaN if either has no variance.
    (scipy.spatial.procrustes reports ``disparity = 1 - ||X^T Y||_*^2`` for the same alignment.)"""
    Xc, Yc = _paired(X, Y)
    nx, ny = np.linalg.norm(Xc), np.linalg.norm(Yc)
    if nx == 0 or ny == 0:
        return float("nan")
    nuclear = np.linalg.svd((Xc / nx).T @ (Yc / ny), compute_uv=False).sum()
    return float(np.sqrt(max(0.0, 2.0 - 2.0 * min(nuclear, 1.0))))


def gr_events(metric_c, checkpoints_c, *, baseline: int = GR_BASELINE, threshold: float = GR_THRESHOLD,
              scale_floor_rel: float = GR_SCALE_FLOOR_REL, scale_floor_abs: float = GR_SCALE_FLOOR_ABS,
              min_change: float = 0.0) -> np.ndarray:
    """Iterations of the checkpoints where a GR metric rises above its baseline (the rule in the
    module docstring). metric_c: (C,) metric per checkpoint; checkpoints_c: (C,) their iterations;
    min_change: the metric must also exceed this absolute value (units of the metric; 0: no floor).
    Returns the event iterations, ascending (empty if none)."""
    m = np.asarray(metric_c, dtype=float)
    it = np.asarray(checkpoints_c)
    if m.ndim != 1 or it.shape != m.shape:
        raise ValueError(f"metric_c and checkpoints_c must be 1-D of equal length; got {m.shape} and {it.shape}")
    if int(baseline) < 1:
        raise ValueError(f"baseline must be >= 1 checkpoint; got {baseline}")
    if not threshold >= 0 or not scale_floor_rel >= 0 or not scale_floor_abs >= 0 or not min_change >= 0:
        raise ValueError("threshold, the scale floors and min_change must be >= 0")
    base = m[:baseline]
    base = base[np.isfinite(base)]
    if len(base) == 0 or len(m) <= baseline:
        return it[:0].copy()
    med = float(np.median(base))
    mad = float(np.median(np.abs(base - med)))
    scale = max(mad, scale_floor_rel * abs(med), scale_floor_abs)
    after = np.arange(len(m)) >= baseline
    with np.errstate(invalid="ignore"):
        hit = after & np.isfinite(m) & (m > med + threshold * scale) & (m > min_change)
    return np.sort(it[hit])


def first_gr_event(metric_c, checkpoints_c, **rule) -> float:
    """The iteration of the first GR event (NaN if none); ``rule`` (baseline, threshold, the scale
    floors, min_change) as in :func:`gr_events`."""
    ev = gr_events(metric_c, checkpoints_c, **rule)
    return float(ev[0]) if len(ev) else float("nan")


def gr_growth(metric_k, checkpoints_k, start: float, stop: float, min_points: int = 4) -> float:
    """Threshold-free growth of a GR metric through the plateau: the Spearman rank correlation of the
    metric with the iteration over the checkpoints in ``[start, stop)`` (e.g. from the plateau start
    to the drop's departure): +1 when the restructuring grows steadily through the search phase.
    NaN with fewer than ``min_points`` finite values there or a constant metric."""
    from scipy.stats import spearmanr

    m = np.asarray(metric_k, float)
    it = np.asarray(checkpoints_k, float)
    if not (np.isfinite(start) and np.isfinite(stop)):
        return float("nan")
    keep = (it >= start) & (it < stop) & np.isfinite(m)
    if keep.sum() < min_points or np.ptp(m[keep]) == 0:
        return float("nan")
    return float(spearmanr(it[keep], m[keep]).statistic)


def lead_key(analysis) -> str:
    """The analysis variable claim 2 and the report rest on: ``lead_time_departure`` (free of the
    drop's width), or ``lead_time`` in an analysis written before it existed."""
    return "lead_time_departure" if "lead_time_departure" in analysis else "lead_time"


def earliest_event(checkpoints, baseline: int = GR_BASELINE) -> float:
    """The iteration of the first checkpoint at which :func:`gr_events` can flag an event (the one at
    index ``baseline``, after the checkpoints that form the baseline); NaN with too few checkpoints."""
    ck = np.asarray(checkpoints, dtype=float)
    return float(ck[int(baseline)]) if ck.size > int(baseline) else float("nan")


def too_early(lead, drop_start, earliest: float) -> np.ndarray:
    """Where a lead time carries no information on the order of GR and drop: the drop starts (onset
    or departure) at or before ``earliest``, the first checkpoint a GR event can be flagged at, so
    its lead is <= 0 whatever the network does (bool, the shape of ``lead``)."""
    lead, start = np.asarray(lead, dtype=float), np.asarray(drop_start, dtype=float)
    if not np.isfinite(earliest):
        return np.zeros(lead.shape, bool)
    with np.errstate(invalid="ignore"):
        return np.isfinite(lead) & (start <= earliest)


def gr_rule(analysis) -> dict[str, float]:
    """The GR event rule an analysis dataset was made with: ``baseline``, ``threshold`` and
    ``min_change`` (from its attributes, or the settings in its ``analysis`` attribute in files written
    before they were stored on their own; the defaults where neither has them)."""
    try:
        settings = ast.literal_eval(str(analysis.attrs.get("analysis", "{}")))
    except (ValueError, SyntaxError):
        settings = {}
    settings = settings if isinstance(settings, dict) else {}
    return {"baseline": int(analysis.attrs.get("gr_baseline", settings.get("gr_baseline", GR_BASELINE))),
            "threshold": float(settings.get("gr_threshold", GR_THRESHOLD)),
            "min_change": float(analysis.attrs.get("gr_min_change", settings.get("gr_min_change", 0.0)))}


def earliest_gr_event(analysis) -> float:
    """:func:`earliest_event` of an analysis dataset, by its own rule (:func:`gr_rule`)."""
    return earliest_event(analysis["checkpoint"].values if "checkpoint" in analysis.coords else [], gr_rule(analysis)["baseline"])


def comparable_leads(analysis, key: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(lead_cs, left_out_cs): the lead times ``key`` (default :func:`lead_key`) of an analysis
    dataset, NaN where the drop starts at or before the first checkpoint a GR event can be flagged at
    (:func:`too_early`), and where that was so. Claim 2, the report's tables, its bottom line and the
    lead-time figure all read the leads through this, so they count the same networks; files written
    before the analysis left these out get the same treatment here."""
    key = key or lead_key(analysis)
    lead = analysis[key].values.astype(float).copy()
    start_key = "drop_onset" if key == "lead_time" else "drop_departure"
    left = np.zeros(lead.shape, bool)
    if key != "lead_time" and "lead_left_out" in analysis:
        left = analysis["lead_left_out"].values.astype(bool).copy()
    if start_key in analysis:
        left |= too_early(lead, analysis[start_key].values, earliest_gr_event(analysis))
    lead[left] = np.nan
    return lead, left


def lead_summary(analysis, condition_index: int, leads, key: str | None = None) -> tuple[float, float, float]:
    """(median, CI low, CI high) of one condition's lead times, from the stream the analysis stores
    its own CIs with (``{key}_bootstrap``), so the numbers match analysis.nc's for the same networks."""
    key = key or lead_key(analysis)
    rng = numpy_rng(int(analysis.attrs.get("root_seed", 0)), f"{key}_bootstrap", int(condition_index))
    return bootstrap_ci(leads, rng)


def lead_time(first_event_iteration, drop_onset):
    """Drop onset minus the first GR event (iterations): > 0 when restructuring precedes the drop.
    NaN where either is NaN. Works elementwise on arrays (e.g. one value per network)."""
    ev = np.asarray(first_event_iteration, dtype=float)
    onset = np.asarray(drop_onset, dtype=float)
    out = onset - ev  # NaN propagates
    return float(out) if out.ndim == 0 else out
