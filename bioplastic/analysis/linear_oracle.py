"""The linear-network oracle of a filtered-noise run: theory and measurement side by side (science.md §8).

From a results dataset whose task is ``filtered_noise`` this computes, recomputing no training:

- **theory**: every local optimum of the k-pole approximation of the target filter, k = 0 .. the
  target's order, with its error (the plateau level it predicts) and poles (analysis/pole_fit.py);
- **the staircase** of every network's task-loss curve: each plateau (level, start, length) and drop
  (onset, width) (analysis/staircase.py);
- **the spectrum** of the effective recurrence at every checkpoint, the Jacobian of the one-step map
  at the origin, ``diag(decay) + weights diag(phi'(0))`` (for the leaky network ``(1 - alpha) I +
  alpha W``; for a linear one the whole dynamics): its leading eigenvalues, the radius of its bulk and
  the **outliers**, eigenvalues further than ``OUTLIER_FACTOR`` bulk radii from the bulk's centre;
- **GR events**: the j-th event is the first checkpoint from which at least j outliers stay outside
  the bulk to the end of training; a drop to a plateau with j poles is paired with event j, and its
  **lead** = drop onset - event;
- **the optimum each plateau sits at**: the pole count k whose optimal error is nearest the plateau's
  level (difference relative to the target's variance), then among the optima with k poles the one
  whose poles are nearest the network's k leading eigenvalues on the plateau (median over the
  plateau's checkpoints; optimal assignment). Consecutive plateaus at the same optimum are one step
  of the staircase (merged; the fall between them is not counted as a drop).

:func:`staircase_dataset` returns it all as one dataset (``OUT/staircase.nc``; variables in
:data:`VARIABLES`).
"""
from __future__ import annotations

import itertools

import numpy as np
import torch
import xarray as xr

from ..networks.recurrence import phi, phi_prime
from ..seeds import numpy_rng
from ..storage.rebuild import protocol_task, trained_network
from .pole_fit import optimal_approximations
from .staircase import find_staircase
from .statistics import compare_conditions

#: the task kind the oracle applies to
TASK_KIND = "filtered_noise"
#: an outlier lies further than this many bulk radii from the bulk's centre
OUTLIER_FACTOR = 2.0
#: leading eigenvalues stored per checkpoint
N_EIGENVALUES = 8
#: an optimum whose error is below this fraction of the target's variance is an exact fit (level 0)
EXACT = 1e-9

VARIABLES: dict[str, tuple[str, str]] = {
    "target_pole_real": ("1", "target filter's poles (per step), real part"),
    "target_pole_imag": ("1", "target filter's poles (per step), imaginary part"),
    "target_residue_real": ("1", "target filter's residues, real part"),
    "target_residue_imag": ("1", "target filter's residues, imaginary part"),
    "kpole_error": ("1", "expected task loss of a local optimum of the k-pole approximation of the target filter "
                         "(least squares on the impulse response, weighted by the scored steps, times the input variance); "
                         "optimum 0 is the lowest found; NaN: fewer optima"),
    "kpole_pole_real": ("1", "poles of the k-pole optimum, real part (sorted by decreasing real part; NaN beyond k)"),
    "kpole_pole_imag": ("1", "poles of the k-pole optimum, imaginary part"),
    "kpole_residue_real": ("1", "residues of the k-pole optimum, real part"),
    "kpole_residue_imag": ("1", "residues of the k-pole optimum, imaginary part"),
    "n_plateaus": ("1", "plateaus of the task-loss curve (analysis/staircase.py)"),
    "n_drops": ("1", "drops of the task-loss curve"),
    "ends_on_plateau": ("1", "1: the curve ends on a plateau; 0: its last drop has no plateau after it"),
    "plateau_level": ("1", "plateau level: median of the smoothed task loss over the plateau's flat stretch"),
    "plateau_start": ("iterations", "plateau start (the first: end of the initial transient; later ones: end of the drop before)"),
    "plateau_length": ("iterations", "plateau length: from its start to the onset of the next drop (the last: to the end of its flat stretch)"),
    "drop_onset": ("iterations", "drop onset: 10 % of the way from the level before to the level after"),
    "drop_end": ("iterations", "drop end: 90 % of the way"),
    "drop_width": ("iterations", "drop width: end - onset (10-90 % time)"),
    "drop_level_before": ("1", "level of the plateau before the drop"),
    "drop_level_after": ("1", "level after the drop (the next plateau's, or the lowest smoothed loss after a last drop)"),
    "eig_real": ("1", "leading eigenvalues of the effective recurrence (Jacobian of the one-step map at the origin), "
                      "sorted by decreasing distance from the bulk's centre, real part"),
    "eig_imag": ("1", "leading eigenvalues of the effective recurrence, imaginary part"),
    "bulk_centre": ("1", "centre of the bulk of the effective recurrence's spectrum (the mean decay, 1 - alpha)"),
    "bulk_radius": ("1", "radius of the bulk: sqrt(2 mean |lambda - centre|^2) over all but the target-order + 2 "
                         "largest (the circular law's radius for a random matrix)"),
    "n_outliers": ("1", f"eigenvalues further than {OUTLIER_FACTOR:g} bulk radii from the bulk's centre"),
    "gr_event": ("iterations", "the drop's GR event: GR event j (j: drop_poles_after), the first checkpoint from which at "
                               "least j eigenvalues stay outside the bulk to the end (NaN: none)"),
    "gr_lead": ("iterations", "drop onset minus its GR event (> 0: the eigenvalue left the bulk before the drop)"),
    "drop_poles_after": ("1", "pole count j after the drop (of the plateau after it; a last drop: one more than before); "
                              "the drop is paired with GR event j"),
    "time_on_level": ("iterations", "iterations on plateaus at each k-pole optimum (sum of their lengths; 0: went below it "
                                    "without a plateau there; NaN: never reached it, no such optimum, or an exact fit, "
                                    "where the rest of training is spent)"),
    "plateau_k": ("1", "pole count of the optimum the plateau sits at (nearest error to its level)"),
    "plateau_optimum": ("1", "index of that optimum among the k-pole optima (0: the lowest error; matched by the poles)"),
    "plateau_predicted": ("1", "the matched optimum's error: the plateau level theory predicts (0 for an exact fit, "
                               "an error below 1e-9 x the target's variance)"),
    "plateau_ratio": ("1", "plateau level / predicted level (NaN where the optimum is an exact fit, predicted 0)"),
    "plateau_eig_real": ("1", "the network's k leading eigenvalues on the plateau (median over its checkpoints), real part"),
    "plateau_eig_imag": ("1", "the network's k leading eigenvalues on the plateau, imaginary part"),
    "plateau_pole_distance": ("1", "largest |eigenvalue - pole| between those eigenvalues and the matched optimum's poles"),
}


def applies(protocol) -> bool:
    """Whether the oracle applies to a protocol: a single point of the filtered-noise task."""
    return protocol.sweep is None and protocol.conditions[0].task_kind == TASK_KIND


# --------------------------------------------------------------------------------------------- spectra
def effective_recurrence(net) -> tuple[np.ndarray, np.ndarray]:
    """``(J (E, S, S), centre (E,))``, float64: the Jacobian of the one-step map at the origin under
    zero input, ``diag(decay) + weights diag(phi'(0))`` from the network's closed rate form, and the
    centre of its bulk, the mean decay (``1 - alpha`` for the leaky network)."""
    u = torch.zeros(net.n_members, net.n_inputs, dtype=net.dtype)
    with torch.no_grad():
        m = net.rate_map(u)
        if m is None:
            raise ValueError(f"the model kind {net.kind} has no closed rate form; the oracle needs one")
        zero = torch.zeros(1, m.weights_exsxs.shape[-1], dtype=torch.float64)
        slope = phi_prime(m.phi, zero, phi(m.phi, zero))[0].numpy()
        J = m.weights_exsxs.double().numpy() * slope[None, None, :]
        idx = np.arange(J.shape[-1])
        decay = m.decay_exs.double().numpy()
        J[:, idx, idx] += decay
    return J, decay.mean(1)


def leading_eigenvalues(J_exsxs: np.ndarray, centre_e: np.ndarray, n_keep: int, n_excluded: int):
    """``(eigs (E, n_keep) complex, radius (E,), n_outliers (E,))``: the eigenvalues furthest from
    ``centre`` first, the bulk's radius (circular law, from all but the ``n_excluded`` furthest) and
    the number of eigenvalues further than ``OUTLIER_FACTOR`` radii."""
    lam = np.linalg.eigvals(J_exsxs)
    d = np.abs(lam - centre_e[:, None])
    order = np.argsort(-d, axis=1, kind="stable")
    lam, d = np.take_along_axis(lam, order, 1), np.take_along_axis(d, order, 1)
    radius = np.sqrt(2 * np.mean(d[:, n_excluded:] ** 2, axis=1))
    n_out = (d > OUTLIER_FACTOR * radius[:, None]).sum(1)
    keep = np.full((lam.shape[0], n_keep), np.nan + 0j)
    keep[:, :min(n_keep, lam.shape[1])] = lam[:, :n_keep]
    return keep, radius, n_out


def gr_events(n_outliers_c: np.ndarray, checkpoints_c: np.ndarray, n_events: int) -> np.ndarray:
    """(n_events,) the checkpoint iteration from which at least j outliers stay to the end, j = 1..n."""
    out = np.full(n_events, np.nan)
    n = np.asarray(n_outliers_c)
    for j in range(1, n_events + 1):
        below = np.flatnonzero(n < j)
        first = 0 if not len(below) else below[-1] + 1
        if first < len(n):
            out[j - 1] = checkpoints_c[first]
    return out


# --------------------------------------------------------------------------------------------- matching
def plateau_eigenvalues(eigs_cxn: np.ndarray, k: int) -> np.ndarray:
    """(k,) the k leading eigenvalues on a plateau: at each of its checkpoints (rows of ``eigs_cxn``,
    sorted by distance from the bulk's centre) the first k, put in a fixed order (decreasing real,
    then imaginary part), then the median of the real and of the imaginary parts over checkpoints."""
    top = eigs_cxn[:, :k]
    order = np.lexsort((-top.imag, -top.real), axis=-1) if top.size else np.zeros(top.shape, int)
    top = np.take_along_axis(top, order, 1)
    return np.median(top.real, 0) + 1j * np.median(top.imag, 0)


def match_optimum(level: float, eigs_k: dict[int, np.ndarray], optima: dict, variance0: float) -> tuple[int, int, float]:
    """``(k, index, pole distance)`` of the optimum a plateau at ``level`` sits at: k by the nearest
    error (relative to ``variance0``), then the k-pole optimum whose poles are nearest the network's
    k leading eigenvalues ``eigs_k[k]`` (max distance under the best assignment)."""
    best_k = min(optima, key=lambda k: min(abs(level - f.error) for f in optima[k]) / variance0)
    if best_k == 0 or not len(optima[best_k]):
        return best_k, 0, np.nan
    lam = eigs_k[best_k]
    dist = [min(np.abs(lam[list(perm)] - f.poles).max() for perm in itertools.permutations(range(best_k)))
            if np.isfinite(lam).all() else np.nan for f in optima[best_k]]
    if not np.isfinite(dist).any():
        return best_k, 0, np.nan
    i = int(np.nanargmin(dist))
    return best_k, i, float(dist[i])


# --------------------------------------------------------------------------------------------- dataset
def _theory(task) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """The k-pole optima of the task's filter, k = 0 .. its order, and as arrays: errors (k, optimum)
    and poles and residues (k, optimum, pole), NaN-padded."""
    order = task.order
    optima = optimal_approximations(task.impulse_response(), task.lag_weights(), order, task.config.input_std ** 2)
    n_opt, P = max(len(v) for v in optima.values()), max(order, 1)
    err = np.full((order + 1, n_opt), np.nan)
    poles = np.full((order + 1, n_opt, P), np.nan + 0j)
    res = np.full((order + 1, n_opt, P), np.nan + 0j)
    for k, fits in optima.items():
        for i, f in enumerate(fits):
            err[k, i] = f.error
            poles[k, i, :k], res[k, i, :k] = f.poles, f.residues
    return optima, err, poles, res


def _spectra(ds: xr.Dataset, protocol, n_excluded: int, progress=None):
    """Per condition, seed and checkpoint: the leading eigenvalues of the effective recurrence, the
    bulk's radius and the number of outliers; per condition the bulk's centre."""
    conds, S, ck = list(ds["condition"].values), ds.sizes["seed"], ds["checkpoint"].values
    C = len(conds)
    eig = np.full((C, S, len(ck), N_EIGENVALUES), np.nan + 0j)
    radius = np.full((C, S, len(ck)), np.nan)
    n_out = np.zeros((C, S, len(ck)), np.int64)
    centre = np.full(C, np.nan)
    for c, cond in enumerate(conds):
        for j in range(len(ck)):
            net, ok = trained_network(ds, protocol, cond, checkpoint=j, dtype=torch.float64, plasticity=False)
            J, centre_e = effective_recurrence(net)
            centre[c] = float(centre_e.mean())
            e, r, n = leading_eigenvalues(J, centre_e, N_EIGENVALUES, n_excluded)
            eig[c, :, j], radius[c, :, j], n_out[c, :, j] = np.where(ok[:, None], e, np.nan), np.where(ok, r, np.nan), n
            if progress:
                progress(1, {})
    return eig, radius, n_out, centre


def network_staircase(stair, eig_kxn, n_out_k, ck, optima, err, variance0):
    """One network's plateaus (with the optimum each sits at) and drops (with the GR event each is
    paired with: the event of the pole count after the drop). Consecutive plateaus at the same
    optimum are one step of the staircase (the fall between them - SGD's noise floor sinking towards
    an exact fit, or a dip within a plateau - is no transition between optima): they are merged, with
    the length-weighted mean level, and a last drop from the exact fit is left out likewise."""
    K = err.shape[0]
    plateaus = []
    for p in stair.plateaus:
        on = (ck >= p.start) & (ck <= p.start + p.length)
        if not on.any():
            mid = p.start + p.length / 2
            on = np.abs(ck - mid) == np.abs(ck - mid).min()
        eigs_k = {k: plateau_eigenvalues(eig_kxn[on], k) for k in range(1, K)}
        k, i_opt, dist = match_optimum(p.level, eigs_k, optima, variance0)
        plateaus.append(dict(level=p.level, start=p.start, length=p.length, k=k, optimum=i_opt, dist=dist,
                             eig=eigs_k.get(k, np.zeros(0, complex))))
    merged, kept = plateaus[:1], []
    for i, p in enumerate(plateaus[1:], 1):
        q = merged[-1]
        if (p["k"], p["optimum"]) == (q["k"], q["optimum"]):
            q["level"] = (q["level"] * q["length"] + p["level"] * p["length"]) / max(q["length"] + p["length"], 1)
            q["length"] = p["start"] + p["length"] - q["start"]
        else:
            kept.append(stair.drops[i - 1])
            merged.append(p)
    for p in merged:
        exact = err[p["k"], p["optimum"]] <= EXACT * variance0
        p["predicted"] = 0.0 if exact else err[p["k"], p["optimum"]]
        p["ratio"] = np.nan if exact else p["level"] / p["predicted"]
    if len(stair.drops) == len(stair.plateaus) and merged and merged[-1]["predicted"] > 0:
        kept.append(stair.drops[-1])
    events = gr_events(n_out_k, ck, K - 1)
    drops = []
    for i, d in enumerate(kept):
        after = merged[i + 1]["k"] if i + 1 < len(merged) else min(merged[i]["k"] + 1, K - 1)
        event = events[after - 1] if 1 <= after <= K - 1 else np.nan
        drops.append(dict(onset=d.onset, end=d.end, width=d.width, before=d.level_before, after=d.level_after,
                          poles_after=after, event=event, lead=d.onset - event))
    return merged, drops


def time_on_levels(plateaus: list[dict], drops: list[dict], err: np.ndarray, exact: float = 0.0) -> np.ndarray:
    """(k, optimum) iterations one network spent on plateaus at each optimum: the sum of the lengths
    of those matched to it; 0 for an optimum it never sat at but went below (its last level is
    lower); NaN for one it never sat at nor reached, where the optimum does not exist, and for an
    exact fit (error <= ``exact``: the rest of training, not a plateau)."""
    out = np.full(err.shape, np.nan)
    last = min([p["level"] for p in plateaus] + [d["after"] for d in drops], default=np.inf)
    below = np.isfinite(err) & (err > last)
    out[below] = 0.0
    for p in plateaus:
        k, i = p["k"], p["optimum"]
        out[k, i] = (0.0 if not np.isfinite(out[k, i]) else out[k, i]) + p["length"]
    out[np.isfinite(err) & (err <= exact)] = np.nan
    return out


def staircase_dataset(ds: xr.Dataset, protocol, progress=None) -> xr.Dataset:
    """The oracle's dataset of a filtered-noise run (see the module docstring)."""
    if not applies(protocol):
        raise ValueError(f"the linear oracle needs a single-point run of the {TASK_KIND} task; this protocol's task is "
                         f"{protocol.conditions[0].task_kind}" + (" with a sweep" if protocol.sweep is not None else ""))
    task = protocol_task(protocol)
    order = task.order
    optima, err, poles, res = _theory(task)
    variance0 = float(err[0, 0])
    K, n_opt, P = err.shape[0], err.shape[1], max(order, 1)
    conds, S, ck = list(ds["condition"].values), ds.sizes["seed"], ds["checkpoint"].values
    C = len(conds)
    window = int(ds["loss_smoothed"].attrs.get("window", protocol.conditions[0].training.loss_smoothing))
    n_excluded = order + 2
    eig, radius, n_out, centre = _spectra(ds, protocol, n_excluded, progress)

    nets = [[network_staircase(find_staircase(ds["task_loss"].values[c, s], window), eig[c, s], n_out[c, s], ck, optima, err,
                      variance0) for s in range(S)] for c in range(C)]
    NP = max(1, max(len(pl) for row in nets for pl, _ in row))
    ND = max(1, max(len(dr) for row in nets for _, dr in row))
    pl_keys, dr_keys = ("level", "start", "length", "k", "optimum", "predicted", "ratio", "dist"), \
        ("onset", "end", "width", "before", "after", "poles_after", "event", "lead")
    pl = {k: np.full((C, S, NP), np.nan) for k in pl_keys}
    pl_eig = np.full((C, S, NP, P), np.nan + 0j)
    dr = {k: np.full((C, S, ND), np.nan) for k in dr_keys}
    on_level = np.full((C, S, K, n_opt), np.nan)
    n_pl, n_dr, ends = (np.zeros((C, S)) for _ in range(3))
    for c in range(C):
        for s in range(S):
            plateaus, drops = nets[c][s]
            n_pl[c, s], n_dr[c, s], ends[c, s] = len(plateaus), len(drops), float(len(drops) < len(plateaus))
            for i, p in enumerate(plateaus):
                for key in pl_keys:
                    pl[key][c, s, i] = p[key]
                pl_eig[c, s, i, :len(p["eig"])] = p["eig"]
            for i, d in enumerate(drops):
                for key in dr_keys:
                    dr[key][c, s, i] = d[key]
            on_level[c, s] = time_on_levels(plateaus, drops, err, EXACT * variance0)

    out = xr.Dataset(coords={"condition": conds, "seed": np.arange(S), "checkpoint": ck, "k": np.arange(K),
                             "optimum": np.arange(n_opt), "pole": np.arange(P), "target_pole": np.arange(order),
                             "plateau": np.arange(NP), "drop": np.arange(ND), "eig": np.arange(N_EIGENVALUES)})
    cs = ("condition", "seed")
    out["target_pole_real"], out["target_pole_imag"] = (("target_pole",), task.poles_j.real), (("target_pole",), task.poles_j.imag)
    out["target_residue_real"] = (("target_pole",), task.residues_j.real)
    out["target_residue_imag"] = (("target_pole",), task.residues_j.imag)
    out["kpole_error"] = (("k", "optimum"), err)
    for name, arr in (("kpole_pole", poles), ("kpole_residue", res)):
        out[f"{name}_real"], out[f"{name}_imag"] = (("k", "optimum", "pole"), arr.real), (("k", "optimum", "pole"), arr.imag)
    out["n_plateaus"], out["n_drops"], out["ends_on_plateau"] = (cs, n_pl), (cs, n_dr), (cs, ends)
    for key, name in (("level", "level"), ("start", "start"), ("length", "length"), ("k", "k"), ("optimum", "optimum"),
                      ("predicted", "predicted"), ("ratio", "ratio"), ("dist", "pole_distance")):
        out[f"plateau_{name}"] = (cs + ("plateau",), pl[key])
    out["plateau_eig_real"], out["plateau_eig_imag"] = (cs + ("plateau", "pole"), pl_eig.real), (cs + ("plateau", "pole"), pl_eig.imag)
    for key in dr_keys:
        name = {"event": "gr_event", "lead": "gr_lead", "before": "drop_level_before", "after": "drop_level_after"}.get(key, f"drop_{key}")
        out[name] = (cs + ("drop",), dr[key])
    out["time_on_level"] = (cs + ("k", "optimum"), on_level)
    out["eig_real"], out["eig_imag"] = (cs + ("checkpoint", "eig"), eig.real), (cs + ("checkpoint", "eig"), eig.imag)
    out["bulk_centre"] = (("condition",), centre)
    out["bulk_radius"], out["n_outliers"] = (cs + ("checkpoint",), radius), (cs + ("checkpoint",), n_out)
    add_level_comparisons(out, protocol.config.seed)
    for name in out.data_vars:
        units, long = VARIABLES.get(name, COMPARISONS.get(name, (None, None)))
        out[name].attrs.update(units=units, long_name=long)
    out.attrs.update(protocol=ds.attrs.get("protocol", ""), protocol_name=ds.attrs.get("protocol_name", ""),
                     title=f"bioplastic linear oracle: {ds.attrs.get('protocol_name', '')}", window=window,
                     outlier_factor=OUTLIER_FACTOR, n_excluded=n_excluded, input_variance=float(task.config.input_std ** 2))
    return out


#: per condition and optimum: the time spent on it, and against the first condition (paired by seed)
COMPARISONS: dict[str, tuple[str, str]] = {
    "time_on_level_median": ("iterations", "median over seeds of time_on_level (networks where it is defined)"),
    "time_on_level_ci_low": ("iterations", "bootstrap 95 % CI of time_on_level_median, lower end"),
    "time_on_level_ci_high": ("iterations", "bootstrap 95 % CI of time_on_level_median, upper end"),
    "time_on_level_difference": ("iterations", "median paired (same seed) difference of time_on_level, condition minus the first"),
    "time_on_level_difference_ci_low": ("iterations", "bootstrap 95 % CI of time_on_level_difference, lower end"),
    "time_on_level_difference_ci_high": ("iterations", "bootstrap 95 % CI of time_on_level_difference, upper end"),
    "time_on_level_p_value": ("1", "two-sided Wilcoxon signed-rank p of the paired time_on_level differences"),
    "time_on_level_n_pairs": ("1", "seeds in the paired time_on_level comparison"),
}


def add_level_comparisons(out: xr.Dataset, root_seed: int) -> None:
    """The time on each optimum's plateau per condition (median, CI) and against the first
    condition, paired by seed (:func:`statistics.compare_conditions`)."""
    rng = numpy_rng(root_seed, "staircase_comparisons")
    T = out["time_on_level"].values                                                  # (C, S, k, optimum)
    res = {k: np.full((T.shape[0],) + T.shape[2:], np.nan) for k in COMPARISONS}
    for k in range(T.shape[2]):
        for i in range(T.shape[3]):
            if np.isfinite(T[:, :, k, i]).any():
                for key, v in compare_conditions(T[:, :, k, i], rng).items():
                    res[f"time_on_level_{key}"][:, k, i] = v
    for key, v in res.items():
        out[key] = (("condition", "k", "optimum"), v)
