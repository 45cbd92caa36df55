"""Figures of the phase-space analysis: they take the datasets and return Axes; no computation
beyond selecting and projecting what is stored."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from ..analysis.geometry import lead_key  # noqa: E402
from .curves import COLORS, shade  # noqa: E402

KIND_STYLE = {0: ("stable", "o", "k"), 1: ("saddle", "x", "tab:red"), 2: ("unstable", "s", "tab:purple")}


def gr_alignment(results: xr.Dataset, analysis: xr.Dataset, axes=None):
    """Per condition (columns), every seed drawn: the smoothed task loss with each network's first
    GR event (large triangle; later events small) and drop onset (dot); the trajectory change
    between consecutive checkpoints (1 - CKA, log scale; dotted: the event floor); and the number of
    stable (solid) and saddle (dashed) fixed points at zero input - so the restructuring and the
    bifurcation at the drop are seen next to each other."""
    conds = list(analysis["condition"].values)
    if axes is None:
        _, axes = plt.subplots(3, len(conds), figsize=(4.4 * len(conds), 7.6), sharex=True, squeeze=False,
                               gridspec_kw={"height_ratios": [3, 2, 2]})
    it = analysis["checkpoint"].values
    floor = analysis.attrs.get("gr_min_change", None)
    for j, cond in enumerate(conds):
        top, mid, bottom = axes[0, j], axes[1, j], axes[2, j]
        seeds = list(analysis["seed"].values)
        for s in seeds:
            color = shade(COLORS[j % len(COLORS)], seeds.index(s), len(seeds))  # the condition's hue, a shade per seed
            loss = results["loss_smoothed"].sel(condition=cond, seed=s)
            top.plot(results["iteration"], loss, color=color, lw=1)
            ev = it[analysis["gr_event"].sel(condition=cond, seed=s).values]
            ev_loss = loss.sel(iteration=np.minimum(ev, results.sizes["iteration"] - 1)).values
            if len(ev):
                top.plot(ev[:1], ev_loss[:1], "v", color=color, ms=9, mec="k", mew=0.6)
                top.plot(ev[1:], ev_loss[1:], "v", color=color, ms=3, alpha=0.5)
            onset = float(results["drop_onset"].sel(condition=cond, seed=s))
            if np.isfinite(onset):
                top.plot(onset, float(loss.isel(iteration=int(onset))), "o", color=color, ms=5, mec="k", mew=0.5)
            mid.plot(it, np.maximum(analysis["trajectory_change"].sel(condition=cond, seed=s).values, 1e-6), color=color, lw=1)
            bottom.plot(it, analysis["n_stable"].sel(condition=cond, seed=s), "-", color=color, lw=1.2)
            bottom.plot(it, analysis["n_saddle"].sel(condition=cond, seed=s), "--", color=color, lw=1.2)
        top.set_yscale("log")
        top.set_title(str(cond))
        mid.set_yscale("log")
        if floor is not None:
            mid.axhline(float(floor), color="k", lw=0.8, ls=":")
        bottom.set_xlabel("iteration")
    axes[0, 0].set_ylabel("smoothed task loss\n▼ first GR event (▾ later)  • drop onset")
    axes[1, 0].set_ylabel("trajectory change\n1 - CKA (log; ··· event floor)")
    axes[2, 0].set_ylabel("fixed points (zero input)\n— stable  -- saddle")
    return axes


def portrait_checkpoints(results: xr.Dataset, analysis: xr.Dataset, cond) -> list[int]:
    """Checkpoint indices shown for a condition (seed 0): the first, the last at or before its drop
    onset, the first at or after the end of its drop (onset + width), and the last - so the phase
    portrait is seen just before and just after the drop. Without a drop: first, middle, last."""
    it = analysis["checkpoint"].values
    x = results.sel(condition=cond).isel(seed=0)
    onset, width = float(x["drop_onset"]), float(x["drop_width"]) if "drop_width" in x else 0.0
    if not np.isfinite(onset):
        return list(dict.fromkeys([0, len(it) // 2, len(it) - 1]))
    before = int(np.flatnonzero(it <= onset)[-1]) if (it <= onset).any() else 0
    end = onset + (width if np.isfinite(width) else 0.0)
    after = int(np.flatnonzero(it >= end)[0]) if (it >= end).any() else len(it) - 1
    return list(dict.fromkeys([0, before, after, len(it) - 1]))


def phase_portraits(results: xr.Dataset, analysis: xr.Dataset, axes=None):
    """Seed 0 of each condition (rows) at the checkpoints of :func:`portrait_checkpoints` (columns:
    start, just before the drop, just after it, end): stored trajectories (shades of the condition's
    colour by the trial's choice, when the task has one) and fixed points (zero input) on the first
    two axes of the final checkpoint's PCA frame."""
    conds = list(analysis["condition"].values)
    cols = {c: portrait_checkpoints(results, analysis, c) for c in conds}
    n_cols = max(len(v) for v in cols.values())
    if axes is None:
        _, axes = plt.subplots(len(conds), n_cols, figsize=(3.6 * n_cols, 3.4 * len(conds)), squeeze=False)
    ctx = "zero" if "zero" in analysis["context"].values else analysis["context"].values[0]
    for i, cond in enumerate(conds):
        for j, k in enumerate(cols[cond]):
            ax = axes[i, j]
            a = analysis.sel(condition=cond).isel(seed=0, checkpoint=k)
            traj = a["trajectory_pc"].values
            choice = analysis["trial_choice"].values if "trial_choice" in analysis else None
            values = list(np.unique(choice)) if choice is not None else []
            for b in range(traj.shape[0]):
                color = (shade(COLORS[i % len(COLORS)], values.index(choice[b]), len(values)) if choice is not None
                         else "0.65")
                ax.plot(traj[b, :, 0], traj[b, :, min(1, traj.shape[-1] - 1)], color=color, lw=0.7)
            f = a.sel(context=ctx)
            fixed = f["fp_valid"].values & f["fp_is_fixed"].values
            pts, kinds = f["fp_pc"].values[fixed], f["fp_kind"].values[fixed]
            for code, (name, marker, color) in KIND_STYLE.items():
                sel = kinds == code
                if sel.any():
                    ax.plot(pts[sel, 0], pts[sel, min(1, pts.shape[-1] - 1)], marker, color=color, ms=7,
                            mfc=color if code == 0 else "none", label=name)
            at = int(analysis["checkpoint"].values[k])
            onset = float(results["drop_onset"].sel(condition=cond).isel(seed=0))
            when = ("" if not np.isfinite(onset) or k in (0, len(analysis["checkpoint"]) - 1)
                    else " (before the drop)" if at < onset else " (at the drop onset)" if at == onset
                    else " (after the drop)")
            ax.set_title(f"{cond}, iteration {at}{when}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel("PC 2")
            if i == len(conds) - 1:
                ax.set_xlabel("PC 1")
    for i, cond in enumerate(conds):  # a condition with fewer distinct checkpoints leaves empty panels
        for j in range(len(cols[cond]), n_cols):
            axes[i, j].set_axis_off()
    handles = [plt.Line2D([], [], marker=m, color=c, ls="", mfc=c if code == 0 else "none", label=n)
               for code, (n, m, c) in KIND_STYLE.items()]
    if "trial_choice" in analysis:
        values = list(np.unique(analysis["trial_choice"].values))
        handles += [plt.Line2D([], [], color=shade(COLORS[0], k, len(values)), label=f"trajectory, choice {v:+g}")
                    for k, v in enumerate(values)]
    axes[0, len(cols[conds[0]]) - 1].legend(handles=handles, fontsize=7, loc="best")
    return axes


def lead_times(analysis: xr.Dataset, ax=None):
    """Lead time per condition, one dot per network: to the drop's departure from the plateau's noise
    band (filled; free of the drop's width) and, where the analysis has it, to the 10 % onset (open,
    beside it); networks with no GR event or no drop are counted in the label."""
    if ax is None:
        _, ax = plt.subplots(figsize=(1.8 + 1.6 * analysis.sizes["condition"], 3.6))
    labels = []
    key = lead_key(analysis)
    for j, cond in enumerate(analysis["condition"].values):
        v = analysis[key].sel(condition=cond).values
        ok = np.isfinite(v)
        x = j - 0.12 + np.linspace(-0.1, 0.1, max(1, ok.sum()))
        ax.plot(x[: ok.sum()], v[ok], "o", color=COLORS[j % len(COLORS)],
                label=("to the departure" if key != "lead_time" else "to the onset") if j == 0 else None)
        if ok.any():
            ax.hlines(np.median(v[ok]), j - 0.25, j + 0.01, color="k")
        if key != "lead_time":
            w = analysis["lead_time"].sel(condition=cond).values
            okw = np.isfinite(w)
            xw = j + 0.12 + np.linspace(-0.1, 0.1, max(1, okw.sum()))
            ax.plot(xw[: okw.sum()], w[okw], "o", mfc="none", color=COLORS[j % len(COLORS)],
                    label="to the 10 % onset" if j == 0 else None)
            if okw.any():
                ax.hlines(np.median(w[okw]), j + 0.01, j + 0.25, color="k", ls=":")
        labels.append(f"{cond}\n{ok.sum()} of {ok.size} networks" + (f"\n({(~ok).sum()} without a GR\nevent or a drop)"
                                                                      if (~ok).any() else ""))
    ax.axhline(0, color="0.5", lw=0.8, ls="--")
    ax.set_xticks(range(analysis.sizes["condition"]), labels)
    ax.set_ylabel("lead time (iterations)\n> 0: GR before the drop")
    if key != "lead_time":
        ax.legend(fontsize=7, loc="best")
    return ax
