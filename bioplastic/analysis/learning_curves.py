"""Learning-curve metrics of abrupt learning (docs/science.md, section 5), per network.

They are computed on the **task** loss (never on the total loss, which includes the TCR term), from
``s``, its centered moving average over ``window`` iterations, up to a *horizon*: for a network
that learned, its iteration to criterion plus ``HORIZON_WINDOWS`` (5) windows, time for the drop to
complete (so training past that point, or stopping after it with ``stop_when_learned``, does not
change them); otherwise its last recorded iteration.

- ``final_loss``  L_f: the lowest smoothed loss up to the horizon.
- ``plateau_start`` t_p: the end of any initial transient, i.e. the first iteration at which the
  smoothed loss falls by less than ``settle`` (10 %) of its remaining distance to L_f over the next
  window: ``s[t] - s[t + window] < settle * (s[t] - L_f)``. On delayed addition, learning the
  target's mean is such a transient; the plateau follows it. A settled stretch counts only if the
  loss later falls at least to half of its level (``PLATEAU_DROP``) or the network never reaches its
  criterion (it is still searching there: no drop); if the curve never settles before its descent
  (it falls from the start), t_p = 0.
- ``plateau_loss`` L_p: the median of ``s`` over ``[t_p, t_p + window]``.
- drop: D = L_p - L_f. A curve with D < ``min_drop`` (30 %) * L_p has no drop (all drop metrics NaN).
- ``drop_onset``: first iteration >= t_p where ``s < L_p - 0.1 D``; ``search_phase`` = onset - t_p,
  the iterations spent on the plateau.
- ``drop_width``: iterations from the onset to the first iteration where ``s < L_p - 0.9 D`` (the
  10 %-90 % time); ``drop_time``: the steepest descent of ``s`` between those two.
- ``abruptness`` = drop width / search phase (small: abrupt).
- ``abrupt``: 1 when the network shows the phenomenon - a search phase of at least one window
  followed by a drop of width at most ``ABRUPT_RATIO`` (1/3) of the search phase; 0 otherwise
  (falling from the start, no drop, or a slow decline); NaN for a curve with no finite values.
- the **cliff**, the drop's steepest part, for drops that are not one sigmoid step (a cliff, then a
  slow tail or further steps): the descent rate ``r[t] = (s[t - h] - s[t + h]) / 2h`` (h = window / 2)
  peaks within the drop (from its onset to its 90 % point, where ``drop_time`` is); ``cliff_width``:
  how long it stays at or above half its peak (its full width at half maximum); ``cliff_fraction``:
  the fraction of the drop lost meanwhile (``s[first - h] - s[last + h]``, over D). One sharp sigmoid
  step loses ~0.9 of its drop in its cliff (measured: 0.77-0.98 on the default protocol); a cliff
  followed by a long tail, less. Only meaningful where the drop's descent rate stands well above the
  rate the noise gives one window: a drop hundreds of iterations wide after a long Adam plateau
  (synthetic, 300 wide, window 25) fragments into noise-made half-maxima, 0.13-0.56.

Iterations to criterion: the first evaluation at which held-out accuracy >= criterion, where it stays
>= criterion at 2 of the 3 evaluations from there (NaN if never; :data:`SUSTAIN`).
"""
from __future__ import annotations

import numpy as np
import xarray as xr
from scipy.ndimage import uniform_filter1d

from ..seeds import numpy_rng
from .statistics import censored, compare_conditions, nanmedian

METRICS = ("plateau_start", "plateau_loss", "final_loss", "drop_onset", "drop_time", "drop_width",
           "abruptness", "search_phase", "abrupt", "plateau_noise", "drop_departure", "cliff_width", "cliff_fraction")
#: a drop counts as abrupt when its 10-90 % width is at most this fraction of the search phase
ABRUPT_RATIO = 1 / 3
#: end of the initial transient: the loss falls by less than this fraction of its remaining drop per window
SETTLE = 0.1
#: the metrics of a network that learned look this many smoothing windows past its criterion: held-out
#: accuracy (a sign test on evidence accumulation) can reach the criterion at the very start of the
#: drop, while the smoothed loss is still ~0.9 of its plateau (measured: lr 0.01 in the atlas)
HORIZON_WINDOWS = 5
#: a settled stretch is a plateau only if the loss later falls at least to this fraction of its level
PLATEAU_DROP = 0.5
#: a curve whose drop from the plateau is below this fraction of the plateau level has no drop: plain
#: SGD's batch noise alone moves a smoothed plateau (window 10, batch 32) by 10-20 %, which must not
#: count as a drop (measured on low-rank networks that never learned)
MIN_DROP = 0.3
#: the drop onset lies at least this many plateau-noise SDs below the plateau level, and the departure
#: (the width-free onset) exactly this many: on a long Adam plateau the smoothed loss wanders with an SD of
#: ~0.01 while 10 % of a drop from 1/6 is 0.016, so noise alone crossed the 10 % level hundreds of
#: iterations early (delayed addition, LSTM)
NOISE_SDS = 3.0
#: the onset level is never set deeper than this fraction of the drop (a plateau as noisy as its drop)
MAX_ONSET_FRACTION = 0.4
#: the plateau's noise is estimated only from at least this many smoothed values (else taken as 0)
MIN_NOISE_POINTS = 5
#: rounds of the plateau-noise estimate (each on the stretch before the previous round's departure)
NOISE_ROUNDS = 3


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


def _plateau_start(s: np.ndarray, window: int, l_final: float, learned: bool = True) -> int:
    """Index into ``s`` (finite values) of the end of the initial transient (see the module doc)."""
    w = min(window, len(s) - 1)
    for t in range(len(s) - w):
        remaining = s[t] - l_final
        if s[t] - s[t + w] < SETTLE * remaining:
            # settled; a plateau only if the loss later falls at least to half this level (else the
            # curve fell from the start and has settled near its end) - or if the network never
            # reached its criterion: then it is still searching on the plateau it settled on
            return t if remaining > PLATEAU_DROP * abs(s[t]) or not learned else 0
    return 0


def _leaves_for_good(s: np.ndarray, level: float, start: int, stop: int) -> int:
    """Index into ``s`` at which it leaves ``[level, inf)`` for good before ``stop``: one past the last
    index in ``[start, stop)`` where ``s >= level`` (``start`` when there is none). Noise that dips
    below ``level`` and comes back up before ``stop`` is not a departure."""
    above = np.flatnonzero(s[start:stop] >= level)
    return start + int(above[-1]) + 1 if len(above) else start


def plateau_noise(s_plateau: np.ndarray) -> float:
    """The noise of a stretch of the smoothed loss: 1.4826 x the median absolute deviation (the SD of
    Gaussian noise, unmoved by a few outliers) of its residuals from a straight line, so that a steady
    decline through the stretch is not counted as noise (wander about the line is)."""
    y = np.asarray(s_plateau, float)
    if len(y) < 2:
        return 0.0
    x = np.arange(len(y), dtype=float)
    r = y - np.polyval(np.polyfit(x, y, 1), x)
    return float(1.4826 * np.median(np.abs(r - np.median(r))))


def cliff(s: np.ndarray, start: int, end: int, window: int, drop: float) -> tuple[int, int, float]:
    """``(first, last, cliff_fraction)`` of the smoothed loss ``s`` within ``[start, end]`` (indices;
    see the module docstring): the first and last index at which the descent rate is at or above half
    its peak there (its full width at half maximum), and the fraction of ``drop`` lost across them."""
    n, h = len(s), max(1, window // 2)
    t = np.arange(n)
    lo, hi = np.clip(t - h, 0, n - 1), np.clip(t + h, 0, n - 1)
    rate = (s[lo] - s[hi]) / np.maximum(hi - lo, 1)
    peak = start + int(np.argmax(rate[start:end + 1]))
    first = last = peak
    while first > 0 and rate[first - 1] >= rate[peak] / 2:
        first -= 1
    while last < n - 1 and rate[last + 1] >= rate[peak] / 2:
        last += 1
    return first, last, float((s[lo[first]] - s[hi[last]]) / drop)


def curve_metrics(loss_k: np.ndarray, window: int, min_drop: float = MIN_DROP,
                  horizon: float | None = None, *, check_length: bool = True, learned: bool = True) -> dict[str, float]:
    """Metrics of one task-loss curve (iterations are indices into ``loss_k``); ``horizon``: last
    iteration taken into account (None: all). ``learned=False`` for a network that never reached its
    criterion: a loss that falls at first (an initial transient, e.g. learning the target's mean on
    delayed addition) and then settles for good is then a plateau the network has not left (no drop),
    not a fall from the start. A curve with no finite value (a network whose loss was NaN from the
    start) gets NaN everywhere; a curve shorter than two smoothing windows is refused."""
    loss_k = np.asarray(loss_k, float)
    if loss_k.ndim != 1:
        raise ValueError(f"loss_k: expected one curve (1-D, one value per iteration), got shape {loss_k.shape}")
    if int(window) < 1:
        raise ValueError(f"window: expected a smoothing window of at least 1 iteration, got {window}")
    if check_length and len(loss_k) < 2 * window:
        raise ValueError(f"loss_k has {len(loss_k)} iterations; the learning-curve metrics need at least two smoothing "
                         f"windows (2 x window = {2 * window}): train longer or use a window of at most {len(loss_k) // 2}")
    out = {m: np.nan for m in METRICS}
    s_all = smooth(loss_k, window)
    idx = np.flatnonzero(np.isfinite(s_all))
    if horizon is not None and np.isfinite(horizon):
        idx = idx[idx <= horizon]
    if len(idx) < 3:
        return out
    s = s_all[idx]
    l_final = float(s.min())
    out["final_loss"] = l_final
    out["abrupt"] = 0.0
    tp = _plateau_start(s, window, l_final, learned)
    l_plateau = float(np.median(s[tp:tp + window + 1]))
    out.update(plateau_start=float(idx[tp]), plateau_loss=l_plateau)
    if not l_plateau - l_final > min_drop * abs(l_plateau):
        return out
    n = len(s)
    # The plateau: from t_p until the loss leaves it for good. Its level and its own noise (the robust
    # spread of the smoothed loss about a line) are estimated from that stretch, which depends on them:
    # a few rounds, so that neither one window's wander on a long plateau nor the curvature at the
    # start of a wide drop is taken for the plateau.
    drop = l_plateau - l_final
    half = int(np.argmax((np.arange(n) >= tp) & (s < l_plateau - 0.5 * drop)))
    plateau_end, noise = _leaves_for_good(s, l_plateau - 0.1 * drop, tp, half), 0.0
    for _ in range(NOISE_ROUNDS):
        if plateau_end - tp < MIN_NOISE_POINTS:
            break
        l_plateau = float(np.median(s[tp:plateau_end]))
        noise = plateau_noise(s[tp:plateau_end])
        drop = l_plateau - l_final
        half = int(np.argmax((np.arange(n) >= tp) & (s < l_plateau - 0.5 * drop)))
        plateau_end = _leaves_for_good(s, l_plateau - min(NOISE_SDS * noise, MAX_ONSET_FRACTION * drop), tp, half)
    drop = l_plateau - l_final
    out["plateau_loss"] = l_plateau
    if not drop > min_drop * abs(l_plateau):
        return out
    # the loss passes halfway to its final level (for the first time) at `half`; the drop began before
    half = int(np.argmax((np.arange(n) >= tp) & (s < l_plateau - 0.5 * drop)))
    # onset: where the loss leaves the plateau for good, at least NOISE_SDS noise SDs below it (and at
    # least 10 % of the drop, as before), never deeper than MAX_ONSET_FRACTION of the drop
    onset = _leaves_for_good(s, l_plateau - min(max(0.1 * drop, NOISE_SDS * noise), MAX_ONSET_FRACTION * drop), tp, half)
    # departure: where the loss leaves the plateau's noise band (NOISE_SDS SDs below its level) for good;
    # the band depends on the noise, not on the drop, so a wider drop that starts at the same time
    # departs at nearly the same time, while its 10 % onset comes later
    departure = min(_leaves_for_good(s, l_plateau - min(NOISE_SDS * noise, MAX_ONSET_FRACTION * drop), tp, half), onset)
    end = int(np.argmax((np.arange(n) >= onset) & (s < l_plateau - 0.9 * drop)))
    slope = np.gradient(s) if n > 1 else np.zeros(1)
    steepest = onset + int(np.argmin(slope[onset:end + 1]))
    search = float(idx[onset] - idx[tp])
    width = float(idx[end] - idx[onset])
    first, last, cliff_fraction = cliff(s, onset, end, window, drop)
    out.update(drop_onset=float(idx[onset]), drop_time=float(idx[steepest]), drop_width=width,
               search_phase=search, abruptness=width / search if search > 0 else np.inf,
               abrupt=float(search >= window and width <= ABRUPT_RATIO * search),
               plateau_noise=noise, drop_departure=float(idx[departure]), cliff_width=float(idx[last] - idx[first] + 1),
               cliff_fraction=cliff_fraction)
    return out


def still_on_plateau(ds: xr.Dataset) -> np.ndarray:
    """Per network of ``ds`` (any selection of a results dataset): no drop, a plateau, the criterion
    never reached and no divergence - the network is still on its plateau at the end of training.
    False everywhere for results without the metrics this needs."""
    search = np.asarray(ds["search_phase"].values, float)
    if not all(k in ds for k in ("plateau_start", "iterations_to_criterion")):
        return np.zeros(search.shape, bool)
    diverged = np.isfinite(ds["diverged_at"].values) if "diverged_at" in ds else np.zeros(search.shape, bool)
    return (~np.isfinite(search) & np.isfinite(ds["plateau_start"].values)
            & ~np.isfinite(ds["iterations_to_criterion"].values) & ~diverged)


#: the criterion counts where held-out accuracy meets it at an evaluation and at SUSTAIN[0] of the
#: SUSTAIN[1] evaluations from there (itself included): one evaluation's sampling noise does not make
#: a network "learned" (docs/science.md §1)
SUSTAIN = (2, 3)


def iterations_to_criterion(accuracy_n: np.ndarray, eval_iterations_n: np.ndarray, criterion: float) -> float:
    """The first evaluated iteration at which held-out accuracy meets ``criterion`` and goes on meeting
    it at :data:`SUSTAIN` [0] of the :data:`SUSTAIN` [1] evaluations from there (NaN: never; an evaluation
    not made yet, NaN, does not meet it)."""
    ok = np.nan_to_num(np.asarray(accuracy_n, float), nan=-1.0) >= criterion
    need, of = SUSTAIN
    for i in np.flatnonzero(ok):
        if ok[i:i + of].sum() >= need:
            return float(eval_iterations_n[i])
    return np.nan


def settled(iteration, itc, window: int) -> np.ndarray:
    """Whether a network's learning-curve metrics are final at ``iteration``: it reached its criterion
    (``itc``; NaN: not yet) at least HORIZON_WINDOWS + 1 smoothing windows before (the metrics look
    HORIZON_WINDOWS windows past the criterion through a centered window). ``stop_when_learned`` stops
    when every network has settled or diverged."""
    return np.asarray(iteration) >= np.nan_to_num(np.asarray(itc, float), nan=np.inf) + (HORIZON_WINDOWS + 1) * window


def metrics_horizon(itc: float, window: int) -> float | None:
    """The last iteration the curve metrics of a network look at (see the module docstring)."""
    return float(itc) + HORIZON_WINDOWS * window if np.isfinite(itc) else None


def network_metrics(results: xr.Dataset, condition: str, seed: int, output: int | None = None) -> dict[str, float]:
    """The learning-curve metrics of one network of a results dataset, as stored (``output``: of that
    output's own curve, for tasks with several outputs). Unknown names get an error listing the known."""
    def check(name, value, known):
        if value not in list(known):
            raise ValueError(f"{name}: expected one of {', '.join(map(str, known))}; got {value!r}")

    check("condition", condition, results["condition"].values)
    check("seed", seed, results["seed"].values)
    x = results.sel(condition=condition, seed=seed)
    if output is None:
        return {m: float(x[m]) for m in METRICS if m in x}
    if "output_abrupt" not in results:
        raise ValueError(f"output: this run's task has {results.sizes.get('output', 1)} output(s) and no per-output "
                         f"curves; ask without output=")
    check("output", output, range(results.sizes["output"]))
    return {m: float(x[f"output_{m}"].values[output]) for m in OUTPUT_METRICS}


# --------------------------------------------------------------------------------------------- datasets
#: the date of the last change to the definitions of this module; results.nc records the one its
#: statistics were computed with (attribute ``learning_statistics``; absent: before 2026-12-07), and
#: ``python -m bioplastic recompute OUT`` recomputes an older run's from its stored curves
DEFINITIONS = "2026-12-07"
#: what changed at each date of :data:`DEFINITIONS` (the report names it for a run computed before)
DEFINITION_CHANGES = {
    "2026-12-07": "a network has learned where accuracy meets the criterion at an evaluation and at 2 of the 3 "
                  "evaluations from there (was: the first evaluation at or above it); a network that never reaches "
                  "its criterion keeps the plateau it settled on (its initial transient is no longer taken for a drop)",
}
#: results.nc attribute: the :data:`DEFINITIONS` its learning statistics were computed with
STAMP = "learning_statistics"


def statistics_date(ds: xr.Dataset) -> str | None:
    """The :data:`DEFINITIONS` a results (or analysis) dataset's learning statistics were computed with
    (None: before they were recorded, i.e. before 2026-12-07)."""
    return ds.attrs.get(STAMP)


def outdated(ds: xr.Dataset) -> list[str]:
    """The changes to the definitions since ``ds``'s learning statistics were computed (empty: current)."""
    date = statistics_date(ds)
    return [f"{d}: {what}" for d, what in sorted(DEFINITION_CHANGES.items()) if date is None or date < d]


def add_learning_statistics(ds: xr.Dataset, criterion: float, smoothing: int, root_seed: int) -> xr.Dataset:
    """Add every learning-curve metric, the TCR gradient ratio of the search phase and the
    comparisons between conditions to a results dataset of one protocol point (in place; returned),
    and record the definitions used (attribute :data:`STAMP`)."""
    add_curve_metrics(ds, criterion, smoothing)
    add_tcr_grad_ratio_search(ds)
    add_comparisons(ds, root_seed)
    ds.attrs[STAMP] = DEFINITIONS
    return ds


#: why a network has (or lacks) learning-curve metrics: the values of ``curve_metrics_status``
STATUS = {0: "computed", 1: "no finite task loss (NaN from the first iteration)",
          2: "run shorter than two smoothing windows (window cut to the run; not to be trusted)"}


def add_curve_metrics(ds: xr.Dataset, criterion: float, smoothing: int) -> None:
    """Learning-curve metrics per network (analysis/learning_curves.py), computed from the stored
    task-loss curves and held-out accuracies. A network whose loss is NaN throughout gets none (NaN);
    a run shorter than two smoothing windows gets them with the window cut to the run (as computed
    before; not to be trusted); ``curve_metrics_status`` says which applies to each network, and the
    dataset's ``curve_metrics_note`` names ``training.loss_smoothing`` for a short run."""

    C, S = ds.sizes["condition"], ds.sizes["seed"]
    out = {m: np.full((C, S), np.nan) for m in METRICS + ("iterations_to_criterion", "final_accuracy")}
    status = np.zeros((C, S), np.int8)
    evals = ds["evaluation"].values
    task = ds["task_loss"].transpose("condition", "seed", "iteration").values
    accuracy = ds["accuracy"].transpose("condition", "seed", "evaluation").values
    short = task.shape[-1] < 2 * smoothing
    for c in range(C):
        for s in range(S):
            acc = accuracy[c, s]
            itc = iterations_to_criterion(acc, evals, criterion)
            out["iterations_to_criterion"][c, s] = itc
            status[c, s] = 1 if not np.isfinite(task[c, s]).any() else 2 if short else 0
            if status[c, s] != 1:
                for m, v in curve_metrics(task[c, s], smoothing, horizon=metrics_horizon(itc, smoothing),
                                          check_length=False, learned=bool(np.isfinite(itc))).items():
                    out[m][c, s] = v
            finite = acc[np.isfinite(acc)]
            diverged = "diverged_at" in ds and np.isfinite(ds["diverged_at"].values[c, s])
            # a diverged network has no final accuracy (its last finite value predates the divergence)
            out["final_accuracy"][c, s] = finite[-1] if len(finite) and not diverged else np.nan
    for m, v in out.items():
        ds[m] = (("condition", "seed"), v)
    ds["curve_metrics_status"] = (("condition", "seed"), status,
                                  {"flag_values": list(STATUS), "flag_meanings": " ".join(v.replace(" ", "_") for v in STATUS.values())})
    if short:
        ds.attrs["curve_metrics_note"] = (f"training.loss_smoothing = {smoothing} needs at least {2 * smoothing} iterations "
                                          f"for the learning-curve metrics; this run has {task.shape[-1]}: they are computed "
                                          f"with the window cut to the run and are not to be trusted (set "
                                          f"training.loss_smoothing <= {max(1, task.shape[-1] // 2)} or train longer)")
    ds["loss_smoothed"] = (("condition", "seed", "iteration"), np.apply_along_axis(smooth, -1, task, smoothing),
                           {"window": int(smoothing)})
    ds["learned"] = np.isfinite(ds["iterations_to_criterion"])
    ds["iterations_to_criterion"].attrs["criterion"] = float(criterion)
    if "task_loss_output" in ds:
        add_output_curve_metrics(ds, criterion, smoothing)


#: per-output metrics (``output_<metric>``, dims condition x seed x output)
OUTPUT_METRICS = METRICS + ("iterations_to_criterion",)


def add_output_curve_metrics(ds: xr.Dataset, criterion: float, smoothing: int) -> None:
    """The learning-curve metrics of each output's own task-loss curve (``task_loss_output``), for
    tasks with several outputs: ``output_<metric>`` per network and output; each output's horizon
    comes from its own held-out accuracy (``accuracy_output``) where the task scores outputs alone,
    else from the network's. Per network: ``abrupt_outputs`` (how many outputs drop abruptly) and
    ``drop_stagger`` (the spread, last minus first, of the outputs' drop onsets)."""
    # by name: a sweep's points, cut from the combined dataset, may hold their axes in another order
    loss = ds["task_loss_output"].transpose("condition", "seed", "iteration", "output").values
    C, S, _, O = loss.shape
    acc = (ds["accuracy_output"].transpose("condition", "seed", "evaluation", "output").values if "accuracy_output" in ds
           else np.full((C, S, ds.sizes["evaluation"], O), np.nan))
    evals = ds["evaluation"].values
    out = {m: np.full((C, S, O), np.nan) for m in OUTPUT_METRICS}
    for c in range(C):
        for s in range(S):
            for o in range(O):
                if np.isfinite(acc[c, s, :, o]).any():
                    itc = iterations_to_criterion(acc[c, s, :, o], evals, criterion)
                else:
                    itc = float(ds["iterations_to_criterion"].values[c, s])
                out["iterations_to_criterion"][c, s, o] = itc
                if not np.isfinite(loss[c, s, :, o]).any():
                    continue
                for m, v in curve_metrics(loss[c, s, :, o], smoothing, horizon=metrics_horizon(itc, smoothing),
                                          check_length=False, learned=bool(np.isfinite(itc))).items():
                    out[m][c, s, o] = v
    for m, v in out.items():
        ds[f"output_{m}"] = (("condition", "seed", "output"), v)
    dropped = np.isfinite(out["drop_onset"])
    ds["abrupt_outputs"] = (("condition", "seed"), np.where(np.isfinite(out["abrupt"]).any(-1),
                                                            np.nansum(out["abrupt"], -1), np.nan))
    onsets = np.where(dropped, out["drop_onset"], np.inf)     # NaN onsets are outputs without a drop
    stagger = np.where(dropped.sum(-1) >= 2, np.where(dropped, onsets, -np.inf).max(-1) - onsets.min(-1), np.nan)
    ds["drop_stagger"] = (("condition", "seed"), stagger)


def add_tcr_grad_ratio_search(ds: xr.Dataset) -> None:
    """``tcr_grad_ratio_search``: per network, the median TCR / task gradient-norm ratio over the
    evaluations before its drop onset (read from ``drop_onset``, so after :func:`add_curve_metrics`)."""
    if "tcr_grad_ratio" not in ds:
        return
    ratio = ds["tcr_grad_ratio"].values                                              # (C, S, evaluation)
    before = ds["evaluation"].values[None, None, :] < ds["drop_onset"].values[..., None]  # NaN onset: none
    ds["tcr_grad_ratio_search"] = (("condition", "seed"), nanmedian(np.where(before, ratio, np.nan), axis=-1))


def compared_outcomes(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Iterations to criterion and final held-out accuracy as the comparisons between conditions take
    them (same shape as ``ds``'s networks): unlearned networks at the budget, diverged ones NaN."""
    diverged = np.isfinite(ds["diverged_at"].values) if "diverged_at" in ds else np.zeros(ds["final_accuracy"].shape, bool)
    itc = np.where(diverged, np.nan, censored(ds["iterations_to_criterion"].values, ds.sizes["iteration"]))
    return itc, np.where(diverged, np.nan, ds["final_accuracy"].values)


def add_comparisons(ds: xr.Dataset, root_seed: int) -> None:
    """Iterations to criterion (``itc_*``) and final held-out accuracy (``acc_*``) per condition with
    bootstrap CIs, and each condition against the first (the reference, e.g. baseline), paired by
    seed, with a rank test. Unlearned networks count at the budget; diverged ones are left out."""
    itc, acc = compared_outcomes(ds)
    rng = numpy_rng(root_seed, "learning_comparisons")
    for k, v in compare_conditions(itc, rng).items():
        ds[f"itc_{k}"] = ("condition", v)
    for k, v in compare_conditions(acc, rng).items():
        ds[f"acc_{k}"] = ("condition", v)
