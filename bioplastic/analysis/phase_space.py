"""Phase-space analysis of a finished run, checkpoint by checkpoint (science.md §5), from its saved
weights only: ``analyze(results, protocol)`` returns the dataset the pipeline writes as
``OUT/analysis.nc`` (``python -m bioplastic analyze OUT``).

For every condition, seed and checkpoint the network is rebuilt from the checkpointed parameters
(never retrained), run on a fixed set of held-out trials (the same trials at every checkpoint), and
its fixed and slow points are found for each input context from states sampled on those
trajectories. GR metrics compare consecutive checkpoints:

- ``fp_distance``: Chamfer distance between the fixed-point sets (zero-input context) of checkpoints
  c-1 and c, in the fixed PCA frame of the final checkpoint's trajectories;
- ``fp_count_change``: |change| of the number of fixed points (zero-input context);
- ``trajectory_change``: 1 - linear CKA between the trajectories of checkpoints c-1 and c;
- ``participation_ratio`` of the trajectories (dimensionality) at each checkpoint.

A GR event is a checkpoint where ``fp_distance`` or ``trajectory_change`` rises above its baseline
(rule in :mod:`bioplastic.analysis.geometry`) and above an absolute floor (``analysis.gr_min_change``,
so that numerical noise on a plateau where the network barely changes is no event): the floor is
``gr_min_change`` itself for ``trajectory_change`` (1 - CKA) and ``gr_min_change`` times the RMS
radius of the final checkpoint's trajectories around their mean (sqrt of their total variance;
``fp_distance_floor``) for ``fp_distance``, so it is scale free. The first GR event of a network is
the earlier of the two. Lead time = drop onset (results.nc) minus the first GR event.

Per network, the numbers of stable and saddle fixed points (zero-input context) around the drop:
``n_stable_before_drop`` / ``n_saddle_before_drop`` at the last checkpoint at or before
``drop_onset``, ``n_stable_after_drop`` / ``n_saddle_after_drop`` at the first checkpoint at or
after ``drop_onset + drop_width`` (both from results.nc; NaN when there is no drop).

Finished (condition, checkpoint) parts go to an optional cache (the pipeline keeps them in
``OUT/analysis_parts``), so an interrupted analysis resumes.

The torch work (trajectories, the fixed-point search) runs on the protocol's ``training.device``
or the ``device`` given; everything returned is numpy on the CPU (attribute ``device`` says where).
"""
from __future__ import annotations

from collections.abc import Callable, MutableMapping

import numpy as np
import torch
import xarray as xr

from ..device import device_label, device_scope, resolve_device
from ..protocol.schema import AnalysisConfig
from ..seeds import numpy_rng
from ..storage.rebuild import trained_network
from ..tasks import build_task
from .fixed_points import KIND_NAMES, coverage_estimates, find_fixed_points, merge_fixed_points, sample_initial_states, segment_starts
from .geometry import (
    chamfer_distance,
    earliest_event,
    first_gr_event,
    gr_events,
    gr_growth,
    lead_time,
    linear_cka,
    participation_ratio,
    pca_frame,
    project,
    too_early,
)
from .joint_system import JOINT_MODES, joint_points, plastic_trajectories
from .labels import choice_of
from .learning_curves import STAMP
from .memory_probe import HOLD_TRIALS, hold_steps, memory_held
from .statistics import bootstrap_ci

#: trials whose projected trajectories are stored for phase portraits
PORTRAIT_TRIALS = 8
GR_METRICS = ("fp_distance", "trajectory_change")


class AnalysisError(Exception):
    """The folder cannot be analysed (not a finished run, missing or corrupt checkpoints)."""


def contexts(cfg: AnalysisConfig, n_inputs: int) -> list[tuple[str, np.ndarray]]:
    out = []
    if "zero" in cfg.contexts:
        out.append(("zero", np.zeros(n_inputs)))
    if "inputs" in cfg.contexts:
        out += [(f"input_{i}", np.eye(n_inputs)[i]) for i in range(n_inputs)]
    return out


def portrait_indices(checkpoints, onset: float, width: float) -> list[int]:
    """Checkpoint indices a phase portrait shows for a network with this drop (results.nc): the first,
    the last at or before the drop onset, the first at or after its end (onset + width), and the last;
    without a drop: first, middle, last. (The joint system's slow points are searched at these
    checkpoints of seed 0 of each plastic condition.)"""
    it = np.asarray(checkpoints)
    if not np.isfinite(onset):
        return list(dict.fromkeys([0, len(it) // 2, len(it) - 1]))
    before = int(np.flatnonzero(it <= onset)[-1]) if (it <= onset).any() else 0
    end = onset + (width if np.isfinite(width) else 0.0)
    after = int(np.flatnonzero(it >= end)[0]) if (it >= end).any() else len(it) - 1
    return list(dict.fromkeys([0, before, after, len(it) - 1]))


def check_results(ds: xr.Dataset, what: str = "the phase-space analysis") -> None:
    """Raise :class:`AnalysisError` unless ``ds`` is the results dataset of a finished single-point
    run whose checkpointed weights can be analysed (``what`` names the step in the message)."""
    missing = [v for v in ("loss", "drop_onset") if v not in ds]
    if not any(v.startswith("weight_") for v in ds.data_vars):
        missing.append("weight_* (checkpointed parameters)")
    if missing or "protocol" not in ds.attrs:
        raise AnalysisError(f"the dataset lacks {', '.join(missing) or 'the protocol attribute'}; not a bioplastic run")
    if ds.attrs.get("sweep_dims"):
        raise AnalysisError(f"{what} of sweeps is not supported; run the protocol at one point without its "
                            "sweep (--set sweep=null --set FIELD=VALUE) and use that run")
    weights = [v for v in ds.data_vars if v.startswith("weight_")]
    bad = [v for v in weights if not np.isfinite(ds[v].values).all()]
    # diverged or early-stopped networks have NaN weights at some checkpoints: analysed as missing
    if bad and not (ds["diverged"].any() or (ds["final_iteration"] < ds.sizes["iteration"]).any()):
        raise AnalysisError(f"checkpointed weights {', '.join(bad)} hold non-finite values; the file is corrupt")


def _trajectories(net, trials, n_seeds: int) -> np.ndarray:
    """Full dynamical states (E, trial, time, S) of the network on the analysis trials."""
    with torch.no_grad():
        u = torch.as_tensor(trials.inputs_bxtxi, dtype=net.dtype, device="cpu").to(net.device)
        u = u.expand(n_seeds, *trials.inputs_bxtxi.shape)
        return net.run(u.contiguous()).full_state.double().cpu().numpy()


def shared_pool(states: list[np.ndarray], oks: list[np.ndarray], n_states: int, noise_std: float,
                rng: np.random.Generator) -> np.ndarray:
    """Initial states for the fixed-point search at one checkpoint, the same for every condition:
    drawn from the trajectories of all conditions' networks of each seed (networks that diverged
    or stopped there are left out), so that counts compare between conditions (at checkpoint 0,
    where the weights are equal, they are equal). (E = seeds, n_states, S)."""
    X = np.concatenate(states, axis=1)                                               # (E, C*B, T, S)
    valid = np.concatenate([np.broadcast_to(ok[:, None, None], s.shape[:3]) for s, ok in zip(states, oks)], axis=1)
    none = ~valid.any((1, 2))
    valid[none] = True  # a seed missing in every condition: sampled anyway, masked out later
    return sample_initial_states(X, n_states, noise_std=noise_std, rng=rng, valid_exbxt=valid)


FP_FIELDS = ("x_expxs", "q_exp", "valid_exp", "is_fixed_exp", "is_slow_exp", "eigenvalues_expxs", "tau_ms_expxs",
             "n_unstable_exp", "kind_exp", "hits_exp")


def _fixed_points(net, u_exi: np.ndarray, x0: np.ndarray):
    """The search from the shared pool, then a targeted search for saddles from the segments between
    pairs of stable points, merged."""
    fp = find_fixed_points(net, u_exi, x0)
    seg = segment_starts(fp)
    if seg is not None:
        fp = merge_fixed_points(fp, find_fixed_points(net, u_exi, seg, tol_q=fp.tol_q_e, slow_q=fp.slow_q_e))
    return fp


#: initial states, drawn from the plastic trajectories of seed 0, of the joint slow-point search
JOINT_SLOW_STARTS = 32


def _slow_search_checkpoints(ds: xr.Dataset, protocol, plastic: list[bool]) -> list[set[int]]:
    """Per condition, the checkpoint indices where the joint slow points are searched: those the phase
    portrait of its seed 0 shows (:func:`portrait_indices`); none for a condition without plasticity."""
    out = []
    for ci, cond in enumerate(protocol.condition_names):
        if not plastic[ci]:
            out.append(set())
            continue
        x = ds.sel(condition=cond).isel(seed=0)
        width = float(x["drop_width"]) if "drop_width" in x else 0.0
        out.append(set(portrait_indices(ds["checkpoint"].values, float(x["drop_onset"]), width)))
    return out


def _joint(net, trials, states, fps: dict, pools, ctxs, cfg, *, search: bool, rng_key: tuple[int, int, int]) -> dict:
    """The joint system's points of a plastic network, per context: the fixed points everywhere, and
    when ``search`` the slow points of seed 0 (a search from ``JOINT_SLOW_STARTS`` states of its plastic
    trajectories; the portraits show seed 0)
    (``rng_key``: root seed, checkpoint index and condition index of the ``joint_slow_starts`` stream)."""
    S = net.n_members
    traj = None
    if search:
        u = np.broadcast_to(trials.inputs_bxtxi, (S,) + trials.inputs_bxtxi.shape)
        traj = plastic_trajectories(net, u, states)
    out = {}
    for x, (name, u_i) in enumerate(ctxs):
        fp = fps[name]
        fixed_h = [fp["x_expxs"][e][fp["valid_exp"][e] & fp["is_fixed_exp"][e]] for e in range(S)]
        out[name] = joint_points(net, np.repeat(u_i[None], S, 0), pool_exkxn=pools[x], fixed_h=fixed_h,
                                 trajectory=traj, n_starts=min(cfg.initial_states, JOINT_SLOW_STARTS) if search else 0,
                                 noise_std=cfg.noise_std, rng=numpy_rng(rng_key[0], "joint_slow_starts", rng_key[1], x, rng_key[2]),
                                 search_members=[0])
    return out


def analyze(ds: xr.Dataset, protocol, cfg: AnalysisConfig | None = None,
            progress: Callable[[int, dict], None] | None = None, cache: MutableMapping | None = None,
            device: str | torch.device | None = None) -> xr.Dataset:
    """The phase-space analysis of every checkpoint of a results dataset (module docstring).

    ``protocol``: the run's resolved protocol (``protocol_of(ds)`` reads it back from the dataset);
    ``cfg``: the analysis settings (default: the protocol's ``analysis:``, else defaults).
    ``cache``: an optional mapping keyed by ``"c{condition}-k{checkpoint}"`` that holds finished
    (condition, checkpoint) parts, so an interrupted analysis resumes (the pipeline passes a folder
    of files); ``progress(1, {})`` is called after each part. ``device``: where the torch work runs
    (``cpu``, ``cuda``, ``auto`` or a torch device; default: the protocol's ``training.device``).
    """
    check_results(ds)
    field = "training.device" if device is None else "device"
    device = resolve_device(protocol.config.training.device if device is None else device, field)
    with device_scope(device):
        result = _analyze(ds, protocol, cfg, progress, cache, device)
    result.attrs["device"] = device_label(device)
    return result


def _analyze(ds, protocol, cfg, progress, cache, device) -> xr.Dataset:
    cfg = cfg or protocol.config.analysis or AnalysisConfig()
    root = protocol.config.seed
    task_cond = protocol.conditions[0]
    task = build_task(task_cond.task_kind, task_cond.task.model_dump())
    trials = task.sample(numpy_rng(root, "gr_trials"), cfg.trials)
    ctxs = contexts(cfg, task.n_inputs)
    S, K = ds.sizes["seed"], ds.sizes["checkpoint"]
    cache = {} if cache is None else cache
    parts: dict[tuple[int, int], dict] = {}
    plastic = [c.tcr.form == "plasticity" for c in protocol.conditions]
    slow_search = _slow_search_checkpoints(ds, protocol, plastic)
    for j in range(K):
        todo = []
        for ci in range(len(protocol.conditions)):
            part = _from_torch(cache[f"c{ci}-k{j}"]) if f"c{ci}-k{j}" in cache else None
            if part is None or (plastic[ci] and "joint" not in part):  # (parts cached before the joint analysis)
                todo.append(ci)
                continue
            parts[ci, j] = part
            if progress:
                progress(1, {})
        if not todo:
            continue
        # trajectories with each condition's short-term plasticity (the GR metrics compare them); fp_*
        # are the fixed points of the long-term weights (plastic variables at rest), joint_* those of
        # the joint system of state and plastic variables (analysis/joint_system.py)
        nets = [trained_network(ds, protocol, c.name, checkpoint=j, device=device) for c in protocol.conditions]
        states = [_trajectories(net, trials, S) for net, _ in nets]
        oks = [ok for _, ok in nets]
        pools = [shared_pool(states, oks, cfg.initial_states, cfg.noise_std, numpy_rng(root, "fixed_point_starts", j, x))
                 for x in range(len(ctxs))]
        for ci in todo:
            net, ok = nets[ci]
            part = {"states": states[ci], "ok": ok, "fp": {}}
            for x, (name, u_i) in enumerate(ctxs):
                fp = _fixed_points(net, np.repeat(u_i[None], S, 0), pools[x])
                part["fp"][name] = {k: getattr(fp, k) for k in FP_FIELDS} | {"n_starts_e": fp.n_starts_e}
            if plastic[ci]:
                part["joint"] = _joint(net, trials, states[ci], part["fp"], pools, ctxs, cfg,
                                       search=j in slow_search[ci], rng_key=(root, j, ci))
                part["joint_searched"] = np.array(j in slow_search[ci])
            parts[ci, j] = part
            cache[f"c{ci}-k{j}"] = _to_torch(part)
            if progress:
                progress(1, {})
    result = assemble(ds, protocol, parts, ctxs, cfg)
    add_attractor_formation(result, task.attractors_needed)
    add_memory_held(result, ds, protocol, task, device)
    choice = choice_of(trials)
    if choice is not None:  # the choice of each stored trajectory (phase portraits colour by it)
        result["trial_choice"] = (("trial",), np.asarray(choice[:result.sizes["trial"]], float),
                                  {"units": "1", "long_name": "the choice of the analysis trial (the task's label)"})
    return result


def attractor_formation(n_stable_csk: np.ndarray, checkpoints_k: np.ndarray, needed: int) -> np.ndarray:
    """(condition, seed) iteration of the first checkpoint at which a network has at least ``needed``
    stable fixed points at zero input (NaN: never within the run). Counts are lower bounds (the search
    may miss a point), so this is an upper bound on when they appear, at checkpoint resolution."""
    n = np.asarray(n_stable_csk)
    if needed < 1:
        raise ValueError(f"needed: expected at least 1 stable fixed point, got {needed}")
    formed = n >= needed
    first = np.argmax(formed, axis=-1)
    return np.where(formed.any(-1), np.asarray(checkpoints_k, float)[first], np.nan)


def first_gr_events(metrics: dict[str, np.ndarray], checkpoints, fp_floor_cs, *, baseline: int, threshold: float,
                    min_change: float) -> tuple[np.ndarray, np.ndarray]:
    """(events_csk, first_cs): the GR events of every network (condition, seed) at each checkpoint and
    the iteration of its first (NaN: none), by the rule of :func:`~bioplastic.analysis.geometry.gr_events`
    on each of :data:`GR_METRICS` (``metrics``: name -> (C, S, K)), with the floor ``min_change`` for
    ``trajectory_change`` and ``fp_floor_cs`` (C, S) for ``fp_distance``; an event of either counts."""
    checkpoints = np.asarray(checkpoints)
    C, S = np.shape(fp_floor_cs)
    events = np.zeros((C, S, len(checkpoints)), bool)
    first = np.full((C, S), np.nan)
    for ci in range(C):
        for s in range(S):
            firsts = []
            for m in GR_METRICS:
                floor = min_change if m == "trajectory_change" else fp_floor_cs[ci, s]
                rule = dict(baseline=baseline, threshold=threshold, min_change=float(floor) if np.isfinite(floor) else 0.0)
                events[ci, s] |= np.isin(checkpoints, gr_events(metrics[m][ci, s], checkpoints, **rule))
                firsts.append(first_gr_event(metrics[m][ci, s], checkpoints, **rule))
            first[ci, s] = np.nanmin(firsts) if np.isfinite(firsts).any() else np.nan
    return events, first


def add_attractor_formation(result: xr.Dataset, needed: int | None) -> None:
    """``attractor_formation`` (condition, seed) in an analysis dataset, for tasks whose solution is a
    set of point attractors (``Task.attractors_needed``); nothing for the others."""
    if needed is None or "n_stable" not in result:
        return
    result["attractor_formation"] = (("condition", "seed"), attractor_formation(result["n_stable"].values, result["checkpoint"].values, needed),
                                     {"units": "iterations", "needed": int(needed),
                                      "long_name": f"first checkpoint with at least {needed} stable fixed points at zero input "
                                                   "(the attractors the task needs; NaN: never)"})


def add_memory_held(result: xr.Dataset, ds: xr.Dataset, protocol, task, device) -> None:
    """``memory_held`` (condition, seed, hold): the fraction of the task's memory states each network
    holds after 1 and 10 trial lengths of zero input (analysis/memory_probe.py), at its last
    checkpoint with weights (``memory_checkpoint``; a network that stopped early, at its stop); NaN
    for a network without any and for one that diverged (its last weights are those of a blow-up).
    Nothing for a task without memory probes. At the last checkpoint only: a plastic network's long
    holds cost ~10 ms per step on one core."""
    if task.memory_probes(0) is None:
        return
    steps_h = hold_steps(task)
    conds, S, K = protocol.condition_names, ds.sizes["seed"], ds.sizes["checkpoint"]
    weights = [v for v in ds.data_vars if str(v).startswith("weight_")]
    held = np.full((len(conds), S, len(steps_h)), np.nan)
    at = np.full((len(conds), S), np.nan)
    for ci, cond in enumerate(conds):
        finite_sxk = np.ones((S, K), bool)
        for w in weights:
            finite_sxk &= np.isfinite(ds[w].sel(condition=cond).transpose("seed", "checkpoint", ...).values.reshape(S, K, -1)).all(-1)
        last_s = np.where(finite_sxk.any(1), K - 1 - np.argmax(finite_sxk[:, ::-1], axis=1), -1)
        for j in sorted(set(last_s.tolist()) - {-1}):
            seeds = np.flatnonzero(last_s == j)
            net, _ = trained_network(ds, protocol, cond, checkpoint=int(j), device=device, seed=[int(x) for x in ds["seed"].values[seeds]])
            held[ci, seeds] = memory_held(net, task, steps_h)
            at[ci, seeds] = float(ds["checkpoint"].values[j])
        if "diverged" in ds:
            gone = ds["diverged"].sel(condition=cond).values.astype(bool)
            held[ci, gone], at[ci, gone] = np.nan, np.nan
    dt = float(task.config.dt_ms)
    result.coords["hold_ms"] = ("hold_ms", np.array(steps_h, float) * dt,
                                {"units": "ms", "long_name": "zero-input hold before the read-out", "trial_lengths": list(HOLD_TRIALS)})
    result["memory_held"] = (("condition", "seed", "hold_ms"), held,
                             {"units": "1", "long_name": "fraction of the task's memory states held after a hold of zero input, at "
                                                         "memory_checkpoint (1: every state; an attractor solution holds them at every hold)"})
    result["memory_checkpoint"] = (("condition", "seed"), at, {"units": "iterations", "long_name": "the checkpoint memory_held probes "
                                                                                                   "(the network's last with weights)"})


def _to_torch(part: dict) -> dict:
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    out = {"states": t(part["states"]), "ok": t(part["ok"])}
    for group in ("fp", "joint"):
        if group in part:
            out[group] = {name: {k: (t(v.real), t(v.imag)) if np.iscomplexobj(v) else t(v) for k, v in d.items()}
                          for name, d in part[group].items()}
    if "joint_searched" in part:
        out["joint_searched"] = t(part["joint_searched"])
    return out


def _from_torch(saved: dict) -> dict:
    out = {"states": saved["states"].numpy(), "ok": saved["ok"].numpy()}
    for group in ("fp", "joint"):
        if group in saved:
            out[group] = {name: {k: (v[0].numpy() + 1j * v[1].numpy()) if isinstance(v, tuple) else v.numpy()
                                 for k, v in d.items()} for name, d in saved[group].items()}
    if "joint_searched" in saved:
        out["joint_searched"] = saved["joint_searched"].numpy()
    return out


def assemble(ds: xr.Dataset, protocol, parts: dict, ctxs, cfg: AnalysisConfig) -> xr.Dataset:
    conds = protocol.condition_names
    C, S, K = len(conds), ds.sizes["seed"], ds.sizes["checkpoint"]
    names = [n for n, _ in ctxs]
    P = max(p["fp"][n]["x_expxs"].shape[1] for p in parts.values() for n in names)
    D = parts[0, 0]["fp"][names[0]]["x_expxs"].shape[2]
    shape = (C, S, K, len(names), P)
    arr = {"fp_x": np.full(shape + (D,), np.nan), "fp_q": np.full(shape, np.nan), "fp_valid": np.zeros(shape, bool),
           "fp_is_fixed": np.zeros(shape, bool), "fp_is_slow": np.zeros(shape, bool),
           "fp_eig_real": np.full(shape + (D,), np.nan), "fp_eig_imag": np.full(shape + (D,), np.nan),
           "fp_tau_ms": np.full(shape + (D,), np.nan), "fp_n_unstable": np.full(shape, -1),
           "fp_kind": np.full(shape, -1), "fp_hits": np.full(shape, -1)}
    src = {"fp_x": "x_expxs", "fp_q": "q_exp", "fp_valid": "valid_exp", "fp_is_fixed": "is_fixed_exp",
           "fp_is_slow": "is_slow_exp", "fp_tau_ms": "tau_ms_expxs", "fp_n_unstable": "n_unstable_exp",
           "fp_kind": "kind_exp", "fp_hits": "hits_exp"}
    n_starts = int(parts[0, 0]["fp"][names[0]]["n_starts_e"][0])
    for (ci, j), part in parts.items():
        for x, n in enumerate(names):
            fp = part["fp"][n]
            p = fp["valid_exp"].shape[1]
            for key, k in src.items():
                arr[key][ci, :, j, x, :p] = fp[k]
            arr["fp_eig_real"][ci, :, j, x, :p] = fp["eigenvalues_expxs"].real
            arr["fp_eig_imag"][ci, :, j, x, :p] = fp["eigenvalues_expxs"].imag
            bad = ~part["ok"]
            for key in arr:  # networks missing at this checkpoint (diverged / stopped): no points
                if arr[key].dtype == bool:
                    arr[key][ci, bad, j, x] = False
                elif arr[key].dtype.kind == "f":
                    arr[key][ci, bad, j, x] = np.nan
                else:
                    arr[key][ci, bad, j, x] = -1
    # GR metrics between consecutive checkpoints, per network
    gr = {m: np.full((C, S, K), np.nan) for m in GR_METRICS + ("fp_count_change", "participation_ratio")}
    counts = {f"n_{kind}": np.zeros((C, S, K), int) for kind in KIND_NAMES}
    counts["n_fixed"] = np.zeros((C, S, K), int)
    counts["n_slow"] = np.zeros((C, S, K), int)
    zero = names.index("zero") if "zero" in names else 0
    n_pc = min(cfg.pca_components, D)
    n_tr = min(PORTRAIT_TRIALS, parts[0, 0]["states"].shape[1])
    T = parts[0, 0]["states"].shape[2]
    traj_pc = np.full((C, S, K, n_tr, T, n_pc), np.nan)
    fp_pc = np.full(shape + (n_pc,), np.nan)
    radius = np.full((C, S), np.nan)  # RMS radius of the final trajectories around their mean (state units)
    frames = {}
    for ci in range(C):
        final = parts[ci, K - 1]["states"]
        for s in range(S):
            X = [parts[ci, j]["states"][s].reshape(-1, final.shape[-1]) for j in range(K)]
            radius[ci, s] = _rms_radius(X[-1]) if parts[ci, K - 1]["ok"][s] else np.nan
            frame = frames[ci, s] = pca_frame(X[-1], n_pc)
            for j in range(K):
                if parts[ci, j]["ok"][s]:
                    traj_pc[ci, s, j] = project(frame, parts[ci, j]["states"][s, :n_tr].reshape(-1, D)).reshape(n_tr, T, n_pc)
                    v = arr["fp_valid"][ci, s, j]
                    fp_pc[ci, s, j][v] = project(frame, arr["fp_x"][ci, s, j][v])
            fx = [arr["fp_x"][ci, s, j, zero][arr["fp_valid"][ci, s, j, zero] & arr["fp_is_fixed"][ci, s, j, zero]]
                  for j in range(K)]
            for j in range(K):
                ok = bool(parts[ci, j]["ok"][s])
                for kind_code, kind in enumerate(KIND_NAMES):
                    counts[f"n_{kind}"][ci, s, j] = int(((arr["fp_kind"][ci, s, j, zero] == kind_code)
                                                        & arr["fp_is_fixed"][ci, s, j, zero]).sum())
                counts["n_fixed"][ci, s, j] = len(fx[j])
                counts["n_slow"][ci, s, j] = int(arr["fp_is_slow"][ci, s, j, zero].sum())
                if not ok:
                    continue
                gr["participation_ratio"][ci, s, j] = participation_ratio(X[j])
                if j == 0 or not parts[ci, j - 1]["ok"][s]:
                    continue
                gr["trajectory_change"][ci, s, j] = 1.0 - linear_cka(X[j - 1], X[j])
                gr["fp_distance"][ci, s, j] = chamfer_distance(_projected(frame, fx[j - 1]), _projected(frame, fx[j]))
                gr["fp_count_change"][ci, s, j] = abs(len(fx[j]) - len(fx[j - 1]))
    checkpoints = ds["checkpoint"].values
    fp_floor = cfg.gr_min_change * radius
    events, first = first_gr_events(gr, checkpoints, fp_floor, baseline=cfg.gr_baseline, threshold=cfg.gr_threshold,
                                    min_change=cfg.gr_min_change)

    dims5 = ("condition", "seed", "checkpoint", "context", "fp")
    out = xr.Dataset(coords={"condition": conds, "seed": ds["seed"].values, "checkpoint": checkpoints,
                             "context": names, "fp": np.arange(P), "unit": np.arange(D), "mode": np.arange(D),
                             "trial": np.arange(n_tr), "time": np.arange(T), "pc": np.arange(n_pc)})
    out["fp_x"] = (dims5 + ("unit",), arr["fp_x"], {"units": "1", "long_name": "fixed or slow point (state space)"})
    out["fp_hits"] = (dims5, arr["fp_hits"], {"units": "1", "long_name": "searches from the shared pool of initial states "
                                                                          "that ended at the point (0: found by the targeted "
                                                                          "saddle search only; -1: padding)"})
    out["fp_q"] = (dims5, arr["fp_q"], {"units": "1", "long_name": "q = 1/2 ||F(x) - x||^2 at the point"})
    out["fp_valid"] = (dims5, arr["fp_valid"], {"units": "1", "long_name": "a point is present (padding otherwise)"})
    out["fp_is_fixed"] = (dims5, arr["fp_is_fixed"], {"units": "1", "long_name": "q below the fixed-point tolerance"})
    out["fp_is_slow"] = (dims5, arr["fp_is_slow"], {"units": "1", "long_name": "slow point: q small but above the fixed-point tolerance"})
    out["fp_eig_real"] = (dims5 + ("mode",), arr["fp_eig_real"], {"units": "1", "long_name": "real part of the Jacobian eigenvalues of the one-step map, by modulus descending"})
    out["fp_eig_imag"] = (dims5 + ("mode",), arr["fp_eig_imag"], {"units": "1", "long_name": "imaginary part of the Jacobian eigenvalues"})
    out["fp_tau_ms"] = (dims5 + ("mode",), arr["fp_tau_ms"], {"units": "ms", "long_name": "mode time constant -dt / ln|lambda| (negative: growing)"})
    out["fp_n_unstable"] = (dims5, arr["fp_n_unstable"], {"units": "1", "long_name": "number of unstable modes (|lambda| > 1); -1: padding"})
    out["fp_kind"] = (dims5, arr["fp_kind"], {"units": "1", "long_name": "0 stable, 1 saddle, 2 unstable, -1 padding",
                                              "flag_values": [-1, 0, 1, 2], "flag_meanings": "padding stable saddle unstable"})
    out["fp_pc"] = (dims5 + ("pc",), fp_pc, {"units": "1", "long_name": "points projected on the PCA frame of the final checkpoint's trajectories"})
    out["trajectory_pc"] = (("condition", "seed", "checkpoint", "trial", "time", "pc"), traj_pc,
                            {"units": "1", "long_name": f"trajectories of the first {n_tr} analysis trials in the PCA frame of the final checkpoint"})
    dims3 = ("condition", "seed", "checkpoint")
    for k, v in counts.items():
        out[k] = (dims3, v, {"units": "1", "long_name": f"number of {k[2:]} points found (zero-input context); a lower "
                                                         "bound of the number there are (see n_fixed_chao1)"})
    zero_hits = arr["fp_hits"][:, :, :, zero]
    cov = coverage_estimates(zero_hits, arr["fp_is_fixed"][:, :, :, zero], np.full((C, S, K), n_starts))
    missing = ~np.array([[parts[ci, j]["ok"] for j in range(K)] for ci in range(C)]).transpose(0, 2, 1)
    out["n_fixed_chao1"] = (dims3, np.where(missing, np.nan, cov["chao1"]),
                            {"units": "1", "long_name": "Chao1 estimate of the number of fixed points the search's initial "
                                                        "states reach (zero input), from how many searches found each: above "
                                                        "n_fixed, the count is incomplete"})
    out["fp_unseen_probability"] = (dims3, np.where(missing, np.nan, cov["unseen_probability"]),
                                    {"units": "1", "long_name": "Good-Turing probability that one more initial state "
                                                                "finds a fixed point not yet found (zero input)"})
    long = {"fp_distance": "Chamfer distance between the fixed points of consecutive checkpoints (PCA frame of the final trajectories)",
            "trajectory_change": "1 - linear CKA between the trajectories of consecutive checkpoints",
            "fp_count_change": "|change| of the number of fixed points between consecutive checkpoints",
            "participation_ratio": "participation ratio of the trajectories (dimensionality)"}
    for k, v in gr.items():
        out[k] = (dims3, v, {"units": "1", "long_name": long[k]})
    out["gr_event"] = (dims3, events, {"units": "1", "long_name": "GR event at this checkpoint (fp_distance or trajectory_change above baseline)",
                                      "rule": (f"baseline = median of the first {cfg.gr_baseline} checkpoints; event where metric > baseline + "
                                               f"{cfg.gr_threshold} * MAD and metric > its floor: {cfg.gr_min_change:g} for trajectory_change "
                                               f"(1 - CKA), {cfg.gr_min_change:g} * the RMS radius of the final checkpoint's trajectories "
                                               "for fp_distance (variable fp_distance_floor)")})
    out["fp_distance_floor"] = (("condition", "seed"), fp_floor,
                                {"units": "1", "long_name": "fp_distance below which no GR event fires: gr_min_change times the RMS "
                                                            "radius of the final checkpoint's trajectories around their mean (NaN: no floor)"})
    out["first_gr_event"] = (("condition", "seed"), first, {"units": "iterations", "long_name": "iteration of the first GR event (NaN: none)"})
    for name, long_name in (("condition", "experimental condition"), ("seed", "seed index"), ("checkpoint", "iteration of the checkpoint"),
                            ("context", "constant input context of the fixed-point search"), ("fp", "point index (padded)"),
                            ("unit", "state dimension"), ("mode", "eigenmode index (by modulus descending)"),
                            ("trial", "analysis trial"), ("time", "time step"), ("pc", "principal component")):
        out[name].attrs.update(units="iterations" if name == "checkpoint" else "", long_name=long_name)
    add_drop_relative(out, ds, protocol.config.seed, cfg.gr_baseline)
    out.attrs.update({k: ds.attrs[k] for k in ("protocol", "protocol_name", "root_seed", "versions", "git_commit") if k in ds.attrs})
    out.attrs["analysis"] = str(cfg.model_dump())
    out.attrs["gr_min_change"] = float(cfg.gr_min_change)
    out.attrs["gr_baseline"] = int(cfg.gr_baseline)  # the first checkpoint a GR event can be flagged at is this index
    out.attrs["n_initial_states"] = n_starts
    if any("joint" in p for p in parts.values()):
        _add_joint(out, parts, protocol, names, frames, zero, min(cfg.initial_states, JOINT_SLOW_STARTS))
    out.attrs["initial_states"] = ("a pool shared by every condition at a checkpoint: states drawn from the trajectories "
                                   "of all conditions' networks of the seed, plus a targeted search for saddles from the "
                                   "segments between pairs of stable points")
    return out


#: analysis variables measured against the drop of results.nc (its onset, departure, width and the
#: plateau's start): :func:`add_drop_relative` writes them, and rewrites them when the learning
#: statistics are recomputed (``python -m bioplastic recompute``)
DROP_RELATIVE = ("n_stable_before_drop", "n_saddle_before_drop", "n_stable_after_drop", "n_saddle_after_drop",
                 "drop_onset", "lead_time", "drop_departure", "lead_time_departure", "lead_left_out", "gr_growth",
                 "lead_time_median", "lead_time_ci", "fraction_gr_first", "lead_time_departure_median",
                 "lead_time_departure_ci")


#: the analysis variables :func:`add_drop_relative` measures from (an analysis.nc without one of them
#: predates it and needs the analysis run again)
DROP_RELATIVE_INPUTS = ("n_fixed_chao1", "first_gr_event", "trajectory_change", "n_stable", "n_saddle")


def present(analysis: xr.Dataset) -> np.ndarray:
    """(condition, seed, checkpoint) bool: the network was there to analyse (not diverged or stopped
    before the checkpoint); the Chao1 estimate is NaN exactly where it was not."""
    return np.isfinite(analysis["n_fixed_chao1"].values)


def add_drop_relative(out: xr.Dataset, ds: xr.Dataset, root_seed: int, gr_baseline: int) -> xr.Dataset:
    """The analysis variables measured against each network's drop (:data:`DROP_RELATIVE`), from the
    analysis dataset's GR metrics, first GR events and fixed-point counts and the drop of the results
    dataset ``ds`` (``drop_onset``, ``drop_departure``, ``drop_width``, ``plateau_start``); in place."""
    conds = [str(c) for c in out["condition"].values]
    C, S = out.sizes["condition"], out.sizes["seed"]
    checkpoints = out["checkpoint"].values
    first = out["first_gr_event"].values
    counts = {k: out[k].values for k in ("n_stable", "n_saddle")}
    onset = ds["drop_onset"].sel(condition=conds).values
    # a drop that starts at or before the first checkpoint a GR event can be flagged at has a lead <= 0
    # whatever the network does: no lead (NaN), and counted (`lead_left_out`; science.md §5)
    earliest = earliest_event(checkpoints, gr_baseline)
    lead = lead_time(first, onset)
    lead[too_early(lead, onset, earliest)] = np.nan
    # the width-free lead: to the drop's departure from the plateau's noise band (results.nc), which a
    # wider drop starting at the same time does not move (science.md §5)
    departure = ds["drop_departure"].sel(condition=conds).values if "drop_departure" in ds else np.full((C, S), np.nan)
    lead_departure = lead_time(first, departure)
    left_out = too_early(lead_departure, departure, earliest)
    lead_departure[left_out] = np.nan
    start = ds["plateau_start"].sel(condition=conds).values if "plateau_start" in ds else np.zeros((C, S))
    growth = np.array([[gr_growth(out["trajectory_change"].values[ci, s], checkpoints, start[ci, s], departure[ci, s])
                        for s in range(S)] for ci in range(C)])
    width = ds["drop_width"].sel(condition=conds).values if "drop_width" in ds else np.full((C, S), np.nan)
    ok_csk = present(out)
    at_drop = _counts_at_drop(counts, ok_csk, checkpoints, onset, width)
    for k, v in at_drop.items():
        when = ("the last checkpoint at or before drop_onset" if k.endswith("before_drop")
                else "the first checkpoint at or after drop_onset + drop_width")
        out[k] = (("condition", "seed"), v, {"units": "1", "long_name": f"number of {k.split('_')[1]} fixed points (zero-input context) "
                                                                         f"at {when} (NaN: no drop or no such checkpoint)"})
    out["drop_onset"] = (("condition", "seed"), onset, {"units": "iterations", "long_name": "drop onset (from results.nc)"})
    out["lead_time"] = (("condition", "seed"), lead, {"units": "iterations", "long_name": "drop onset minus first GR event (> 0: GR precedes the drop); "
                                                                               "NaN where the onset comes at or before the first checkpoint a GR event can be flagged at"})
    out["drop_departure"] = (("condition", "seed"), departure, {"units": "iterations", "long_name": "width-free drop onset: departure from the plateau's noise band (from results.nc)"})
    out["lead_time_departure"] = (("condition", "seed"), lead_departure,
                                  {"units": "iterations", "long_name": "drop departure minus first GR event (> 0: GR precedes the drop); "
                                                                       "free of the drop's width, unlike lead_time; NaN where lead_left_out"})
    out["lead_left_out"] = (("condition", "seed"), left_out,
                            {"units": "1", "earliest_gr_event": earliest,
                             "long_name": "no lead: the drop departs at or before the first checkpoint a GR event can be flagged at "
                                          "(earliest_gr_event), so GR cannot come first (a lead <= 0 by construction)"})
    out["gr_growth"] = (("condition", "seed"), growth,
                        {"units": "1", "long_name": "Spearman correlation of trajectory_change with the iteration over the checkpoints "
                                                    "from plateau_start to drop_departure (> 0: restructuring grows through the search phase)"})
    stats = np.array([bootstrap_ci(lead[ci], numpy_rng(root_seed, "lead_time_bootstrap", ci)) for ci in range(C)])
    frac = np.array([(lead[ci][np.isfinite(lead[ci])] > 0).mean() if np.isfinite(lead[ci]).any() else np.nan
                     for ci in range(C)])
    out["lead_time_median"] = (("condition",), stats[:, 0], {"units": "iterations", "long_name": "median lead time over networks with a GR event and a drop"})
    out["lead_time_ci"] = (("condition", "bound"), stats[:, 1:], {"units": "iterations", "long_name": "95 % percentile-bootstrap CI of the median lead time (10000 resamples)"})
    out["fraction_gr_first"] = (("condition",), frac, {"units": "1", "long_name": "fraction of networks (with a GR event and a drop) whose lead time is positive"})
    stats_dep = np.array([bootstrap_ci(lead_departure[ci], numpy_rng(root_seed, "lead_time_departure_bootstrap", ci))
                          for ci in range(C)])
    out["lead_time_departure_median"] = (("condition",), stats_dep[:, 0], {"units": "iterations", "long_name": "median lead_time_departure over networks with a GR event and a drop"})
    out["lead_time_departure_ci"] = (("condition", "bound"), stats_dep[:, 1:], {"units": "iterations", "long_name": "95 % percentile-bootstrap CI of lead_time_departure_median (10000 resamples)"})
    out.coords["bound"] = ["low", "high"]
    out["bound"].attrs.update(units="", long_name="confidence interval bound")
    # the definitions of the drop these were measured against (results.nc's; none recorded before 2026-12-07)
    if STAMP in ds.attrs:
        out.attrs[STAMP] = ds.attrs[STAMP]
    else:
        out.attrs.pop(STAMP, None)
    return out


def _rms_radius(states_nxs: np.ndarray) -> float:
    """sqrt of the total variance of a state cloud: the RMS distance of the states from their mean."""
    X = states_nxs[np.isfinite(states_nxs).all(1)]
    return float(np.sqrt(((X - X.mean(0)) ** 2).sum(1).mean())) if len(X) else float("nan")


def _counts_at_drop(counts: dict, ok_csk: np.ndarray, checkpoints: np.ndarray, onset_cs: np.ndarray,
                    width_cs: np.ndarray) -> dict[str, np.ndarray]:
    """Stable and saddle fixed-point counts per network at the last checkpoint at or before the drop
    onset and at the first checkpoint at or after onset + width (NaN: no drop, no such checkpoint,
    or the network missing there)."""
    C, S = onset_cs.shape
    out = {f"n_{kind}_{when}_drop": np.full((C, S), np.nan) for when in ("before", "after") for kind in ("stable", "saddle")}
    for ci in range(C):
        for s in range(S):
            onset, width = float(onset_cs[ci, s]), float(width_cs[ci, s])
            if not np.isfinite(onset):
                continue
            before = np.flatnonzero(checkpoints <= onset)
            after = np.flatnonzero(checkpoints >= onset + width) if np.isfinite(width) else np.array([], int)
            for when, idx in (("before", before[-1:]), ("after", after[:1])):
                if len(idx) and ok_csk[ci, s, idx[0]]:
                    for kind in ("stable", "saddle"):
                        out[f"n_{kind}_{when}_drop"][ci, s] = counts[f"n_{kind}"][ci, s, idx[0]]
    return out


def _projected(frame, points_pxs: np.ndarray) -> np.ndarray:
    return project(frame, points_pxs) if len(points_pxs) else np.zeros((0, frame.components_cxs.shape[0]))


#: what fp_* are for a condition with short-term plasticity (dataset attribute ``fixed_points_of``)
FP_OF = ("fp_*: fixed and slow points of the one-step map of the long-term weights; for a condition with short-term "
         "plasticity that map has the plastic variables at their trial-start values (F = 0; Tsodyks-Markram u = U, "
         "x = 1), which are not what the network has within a trial: joint_* are the fixed and slow points of its "
         "joint system (state and plastic variables)")
JOINT_OF = ("joint_*: points of the joint one-step map of state and plastic variables, exactly as the simulation steps "
            "them (analysis/joint_system.py, science.md §5). anti_hebbian: every fixed point has F = 0 and is a fixed point "
            "of the long-term weights (fp_*), classified by the joint Jacobian, whose spectrum is that of a 2N x 2N matrix "
            "plus 1 - dt/tau_F N(N-1) times; slow points: minima of the joint speed 1/2 (|h' - h|^2 + |F' - F|^2) "
            "(at the rank-one F = v r^T / |r|^2 that minimises it for given F r = v). tsodyks_markram: fixed points with "
            "u, x at their rate-dependent steady values, found by Newton's method on the 3N-dimensional joint map; slow "
            "points: minima of 1/2 (|h' - h|^2 + |u' - u|^2 + |x' - x|^2). Slow points are searched only where "
            "joint_slow_searched marks (seed 0, at the checkpoints of its phase portrait)")


def _add_joint(out: xr.Dataset, parts: dict, protocol, names: list[str], frames: dict, zero: int, n_slow: int) -> None:
    """The joint system's points of the plastic conditions (NaN / -1 / False elsewhere); ``n_slow``: the
    initial states per network of the slow-point search."""
    conds = protocol.condition_names
    C, S, K = out.sizes["condition"], out.sizes["seed"], out.sizes["checkpoint"]
    D, n_pc = out.sizes["unit"], out.sizes["pc"]
    joint = {key: part["joint"] for key, part in parts.items() if "joint" in part}
    P = max([j[n]["valid"].shape[1] for j in joint.values() for n in names] + [1])
    shape = (C, S, K, len(names), P)
    vec = ("h", "plastic_input", "u", "x")
    present = {k for j in joint.values() for n in names for k in j[n]}
    arr = {k: np.full(shape + (D,), np.nan) for k in vec if k in present}
    arr.update({k: np.full(shape, np.nan) for k in ("q", "F_norm") if k in present})
    arr.update({k: np.zeros(shape, bool) for k in ("valid", "is_fixed", "is_slow")})
    arr.update({k: np.full(shape, -1) for k in ("n_unstable", "n_unstable_frozen", "kind", "hits")})
    eig = np.full(shape + (JOINT_MODES,), np.nan + 1j * np.nan)
    pc = np.full(shape + (n_pc,), np.nan)
    searched = np.zeros((C, S, K), bool)
    for (ci, j), jp in joint.items():
        searched[ci, 0, j] = bool(parts[ci, j].get("joint_searched", False))  # (seed 0 only)
        ok = parts[ci, j]["ok"]
        for x, n in enumerate(names):
            p = jp[n]["valid"].shape[1]
            for k in arr:
                if k in jp[n]:  # (u, x: Tsodyks-Markram only; F_norm: anti-Hebbian only)
                    arr[k][ci, :, j, x, :p] = jp[n][k]
            eig[ci, :, j, x, :p] = jp[n]["eigenvalues"]
            for s in range(S):
                if not ok[s]:  # networks missing at this checkpoint: no points
                    for k in arr:
                        arr[k][ci, s, j, x] = False if arr[k].dtype == bool else (np.nan if arr[k].dtype.kind == "f" else -1)
                    eig[ci, s, j, x] = np.nan
                    continue
                v = arr["valid"][ci, s, j, x]
                if v.any() and (ci, s) in frames:
                    pc[ci, s, j, x][v] = project(frames[ci, s], arr["h"][ci, s, j, x][v])
    dims5 = ("condition", "seed", "checkpoint", "context", "jp")
    out.coords["jp"] = np.arange(P)
    out["jp"].attrs.update(units="", long_name="point of the joint system (padded)")
    out.coords["joint_mode"] = np.arange(JOINT_MODES)
    out["joint_mode"].attrs.update(units="", long_name="leading joint eigenmode (by modulus descending)")
    rules = {c.name: c.tcr.plasticity.rule for c in protocol.conditions if c.tcr.form == "plasticity"}
    out.attrs["joint_rules"] = ", ".join(f"{k}: {v}" for k, v in rules.items())
    out.attrs["fixed_points_of"] = FP_OF
    out.attrs["joint_system"] = JOINT_OF
    out.attrs["joint_slow_starts"] = int(n_slow)
    info = {
        "h": ("joint_h", "1", "state h of the point of the joint system"),
        "plastic_input": ("joint_plastic_input", "1", "recurrent input the plasticity adds at the point: a F r (anti_hebbian) "
                                                      "or a W ((s - 1) r) with s = u x / U (tsodyks_markram)"),
        "u": ("joint_u", "1", "Tsodyks-Markram facilitation variable u at the point"),
        "x": ("joint_x", "1", "Tsodyks-Markram resource variable x at the point"),
        "q": ("joint_q", "1", "joint speed 1/2 (|h' - h|^2 + |plastic variables' change|^2) at the point"),
        "F_norm": ("joint_F_norm", "1", "anti_hebbian: Frobenius norm of F at the point (0 at every fixed point)"),
        "valid": ("joint_valid", "1", "a point is present (padding otherwise)"),
        "is_fixed": ("joint_is_fixed", "1", "fixed point of the joint system (joint speed below the fixed-point tolerance)"),
        "is_slow": ("joint_is_slow", "1", "slow point of the joint system: a minimum of the joint speed above the tolerance"),
        "n_unstable": ("joint_n_unstable", "1", "number of unstable modes of the joint Jacobian (state and plastic "
                                                "variables); -1: padding"),
        "n_unstable_frozen": ("joint_n_unstable_frozen", "1", "number of unstable modes of dh'/dh with the plastic variables "
                                                              "held at the point's values (at an anti_hebbian fixed point: "
                                                              "those of the long-term weights alone); -1: padding"),
        "kind": ("joint_kind", "1", "0 stable, 1 saddle, 2 unstable (joint Jacobian), -1 padding"),
        "hits": ("joint_hits", "1", "searches that ended at the point (-1: padding)"),
    }
    for k, a in arr.items():
        name, units, long = info[k]
        dims = dims5 + (("unit",) if a.ndim == 6 else ())
        out[name] = (dims, a, {"units": units, "long_name": long})
    out["joint_kind"].attrs.update(flag_values=[-1, 0, 1, 2], flag_meanings="padding stable saddle unstable")
    out["joint_eig_real"] = (dims5 + ("joint_mode",), eig.real, {"units": "1", "long_name": "real part of the leading "
                                                                 "eigenvalues of the joint Jacobian, by modulus descending"})
    out["joint_eig_imag"] = (dims5 + ("joint_mode",), eig.imag, {"units": "1", "long_name": "imaginary part of the "
                                                                 "leading eigenvalues of the joint Jacobian"})
    out["joint_pc"] = (dims5 + ("pc",), pc, {"units": "1", "long_name": "state h of the joint points projected on the PCA "
                                                                        "frame of the final checkpoint's trajectories"})
    out["joint_slow_searched"] = (("condition", "seed", "checkpoint"), searched,
                                  {"units": "1", "long_name": "the joint slow points were searched for this network at this "
                                                              "checkpoint (seed 0, at the checkpoints of its phase portrait; "
                                                              "elsewhere only the joint fixed points)"})
    plastic = np.array([c in rules for c in conds])
    fixed, valid = arr["is_fixed"][:, :, :, zero], arr["valid"][:, :, :, zero]
    kind = arr["kind"][:, :, :, zero]
    missing = ~np.array([[parts[ci, j]["ok"] for j in range(K)] for ci in range(C)]).transpose(0, 2, 1)
    blank = ~plastic[:, None, None] | missing
    counts = {f"n_joint_{name}": (fixed & valid & (kind == code)).sum(-1) for code, name in enumerate(KIND_NAMES)}
    counts["n_joint_slow"] = np.where(searched, (arr["is_slow"][:, :, :, zero] & valid).sum(-1), np.nan)
    stable_joint, stable_frozen = arr["n_unstable"][:, :, :, zero] == 0, arr["n_unstable_frozen"][:, :, :, zero] == 0
    counts["n_joint_stability_changed"] = (fixed & valid & (stable_joint != stable_frozen)).sum(-1)
    longs = {"n_joint_slow": "number of slow points of the joint system found (zero input; NaN where not searched)",
             "n_joint_stability_changed": "number of joint fixed points (zero input) that are stable for the state with the "
                                          "plastic variables held but not for the joint system, or the reverse"}
    for k, v in counts.items():
        out[k] = (("condition", "seed", "checkpoint"), np.where(blank, np.nan, v.astype(float)),
                  {"units": "1", "long_name": longs.get(k, f"number of {k[8:]} fixed points of the joint system (zero input; "
                                                           "NaN: no plasticity)")})
