"""Figures of the phase-space analysis: they take the datasets and return Axes; no computation
beyond selecting and projecting what is stored."""
from __future__ import annotations

from . import use_file_backend  # noqa: E402

use_file_backend()
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ..analysis.geometry import comparable_leads, lead_key  # noqa: E402
from ..analysis.phase_space import portrait_indices  # noqa: E402
from .curves import COLORS, shade  # noqa: E402

KIND_STYLE = {0: ("stable", "o", "k"), 1: ("saddle", "x", "tab:red"), 2: ("unstable", "s", "tab:purple")}


def gr_alignment(results: xr.Dataset, analysis: xr.Dataset, axes=None):
    """Per condition (columns), every seed drawn: the smoothed task loss with each network's first
    GR event (large triangle; later events small) and drop onset (dot); the trajectory change
    between consecutive checkpoints (1 - CKA, log scale; dotted: the event floor); and the number of
    stable (solid) and saddle (dashed) fixed points at zero input - so the restructuring and the
    bifurcation at the drop are seen next to each other. Each row shares its y axis across conditions;
    the counts have integer ticks."""
    conds = list(analysis["condition"].values)
    if axes is None:
        # one scale per row: the conditions' losses, trajectory changes and counts compare across columns
        _, axes = plt.subplots(3, len(conds), figsize=(4.4 * len(conds), 7.6), sharex=True, sharey="row", squeeze=False,
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
        if not np.isfinite(analysis["trajectory_change"].values).any():  # every network diverged: nothing drawn
            level = float(floor) if floor is not None and float(floor) > 0 else 1e-2
            mid.set_ylim(level / 10, level * 10)
        if floor is not None:
            mid.axhline(float(floor), color="k", lw=0.8, ls=":")
        bottom.set_xlabel("iteration")
        bottom.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts of fixed points: whole numbers
    axes[0, 0].set_ylabel("smoothed task loss\n▼ first GR event (▾ later)  • drop onset")
    axes[1, 0].set_ylabel("trajectory change\n1 - CKA (log; ··· event floor)")
    axes[2, 0].set_ylabel("fixed points (zero input)\n— stable  -- saddle")
    return axes


def portrait_checkpoints(results: xr.Dataset, analysis: xr.Dataset, cond) -> list[int]:
    """Checkpoint indices shown for a condition (seed 0): the first, the last at or before its drop
    onset, the first at or after the end of its drop (onset + width), and the last - so the phase
    portrait is seen just before and just after the drop. Without a drop: first, middle, last
    (:func:`bioplastic.analysis.phase_space.portrait_indices`, where the joint slow points are searched)."""
    x = results.sel(condition=cond).isel(seed=0)
    width = float(x["drop_width"]) if "drop_width" in x else 0.0
    return portrait_indices(analysis["checkpoint"].values, float(x["drop_onset"]), width)


#: markers of the joint system's points that differ from the fixed points' (KIND_STYLE)
CHANGED_STYLE = ("o", "tab:orange")      # ring: joint stability differs from the state's alone
SLOW_STYLE = ("d", "tab:orange")         # joint slow point


def _plastic_rules(analysis: xr.Dataset) -> dict[str, str]:
    """Condition -> rule of its short-term plasticity, for the conditions whose joint system is stored."""
    text = analysis.attrs.get("joint_rules", "") if "joint_valid" in analysis else ""
    return dict(item.split(": ") for item in text.split(", ") if item)


def portrait_caption(analysis: xr.Dataset) -> str:
    """The exact statement of what :func:`phase_portraits` draws for these datasets, and what it leaves out."""
    conds = [str(c) for c in analysis["condition"].values]
    rules = _plastic_rules(analysis)
    plain = [c for c in conds if c not in rules]
    ctx = "zero" if "zero" in analysis["context"].values else str(analysis["context"].values[0])
    n_tr = analysis.sizes["trial"]
    text = [f"Seed 0 of each condition (rows) at its first checkpoint, the last at or before its drop onset, the first at "
            f"or after the end of its drop, and its last (without a drop: first, middle, last). Lines: the state h on the "
            f"first {n_tr} analysis trials, simulated as in training (with the condition's short-term plasticity, if any), "
            f"shaded by the trial's choice, projected on the first two principal components of the final checkpoint's "
            f"trajectories (per condition and seed). Markers: points at constant input '{ctx}' "
            f"(● stable, × saddle, □ unstable)."]
    if plain:
        text.append(f"{', '.join(plain)}: fixed points of the one-step map of the network's weights; slow points are not drawn.")
    for cond, rule in rules.items():
        n = int(analysis.attrs.get("joint_slow_starts", 0))
        slow = (f"◆: slow points of the joint speed (local minima above the fixed-point tolerance), searched from {n} states "
                "of the network's plastic trajectories (seed 0, at these checkpoints only)")
        if rule == "anti_hebbian":
            text.append(
                f"{cond} (anti-Hebbian fast efficacies F): fixed points of the joint system of h and F, classified by the "
                "joint Jacobian (state and F). Every joint fixed point has F = 0 and is a fixed point of the long-term "
                "weights W, so it sits where W's fixed point does; within a trial F is not 0 and holds the activity where "
                "it is, which is why the trajectories need not approach these points. ◯: a fixed point whose joint "
                f"stability differs from W's alone. {slow}. Left out: F itself (N² variables; only h is projected), "
                "the N(N-1) modes of F with eigenvalue 1 - dt/tau_F (always stable), W's slow points.")
        else:
            text.append(
                f"{cond} (Tsodyks-Markram u, x): fixed points of the joint system of h, u and x, with u and x at their "
                "rate-dependent steady values (effective weights W diag(u x / U), not W), classified by the joint "
                f"Jacobian. ◯: joint stability differs from that of h with u, x held. {slow}. Left out: u and x "
                "themselves (only h is projected), and the fixed points of W alone (u = U, x = 1), which are not fixed "
                "points of this network.")
    text.append("Points at other inputs than the one named are not drawn.")
    return " ".join(text)


def phase_portraits(results: xr.Dataset, analysis: xr.Dataset, axes=None):
    """Seed 0 of each condition (rows) at the checkpoints of :func:`portrait_checkpoints` (columns:
    start, just before the drop, just after it, end): stored trajectories (shades of the condition's
    colour by the trial's choice, when the task has one) and fixed points (zero input) on the first
    two axes of the final checkpoint's PCA frame. For a condition with short-term plasticity the
    points are those of its joint system (joint_* of analysis.nc: fixed points by joint stability, a
    ring where it differs from the state's alone, and the joint slow points). When it makes the
    figure, its last row holds :func:`portrait_caption`."""
    conds = list(analysis["condition"].values)
    cols = {c: portrait_checkpoints(results, analysis, c) for c in conds}
    n_cols = max(len(v) for v in cols.values())
    rules = _plastic_rules(analysis)
    if axes is None:  # the grid of panels, and a last row for the caption
        fig = plt.figure(figsize=(3.6 * n_cols, 3.4 * len(conds) + 1.9))
        grid = fig.add_gridspec(len(conds) + 1, n_cols, height_ratios=[3.4] * len(conds) + [1.9])
        axes = np.array([[fig.add_subplot(grid[i, j]) for j in range(n_cols)] for i in range(len(conds))])
        cap = fig.add_subplot(grid[-1, :])
        cap.set_axis_off()
        cap.text(0, 1, portrait_caption(analysis), va="top", ha="left", fontsize=7, wrap=True, transform=cap.transAxes)
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
            joint = str(cond) in rules
            pre = "joint" if joint else "fp"
            fixed = f[f"{pre}_valid"].values & f[f"{pre}_is_fixed"].values
            pts, kinds = f[f"{pre}_pc"].values[fixed], f[f"{pre}_kind"].values[fixed]
            y = min(1, pts.shape[-1] - 1)
            for code, (name, marker, color) in KIND_STYLE.items():
                sel = kinds == code
                if sel.any():
                    ax.plot(pts[sel, 0], pts[sel, y], marker, color=color, ms=7,
                            mfc=color if code == 0 else "none", label=name)
            if joint:
                changed = ((f["joint_n_unstable"].values == 0) != (f["joint_n_unstable_frozen"].values == 0))[fixed]
                if changed.any():
                    ax.plot(pts[changed, 0], pts[changed, y], CHANGED_STYLE[0], color=CHANGED_STYLE[1], ms=13, mfc="none", mew=1.2)
                slow = f["joint_valid"].values & f["joint_is_slow"].values
                sp = f["joint_pc"].values[slow]
                if len(sp):
                    ax.plot(sp[:, 0], sp[:, y], SLOW_STYLE[0], color=SLOW_STYLE[1], ms=5)
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
    if rules:
        handles += [plt.Line2D([], [], marker=CHANGED_STYLE[0], color=CHANGED_STYLE[1], ls="", mfc="none", ms=9,
                               label="joint stability differs"),
                    plt.Line2D([], [], marker=SLOW_STYLE[0], color=SLOW_STYLE[1], ls="", label="joint slow point")]
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
    leads, left = comparable_leads(analysis, key)
    onset_leads = comparable_leads(analysis, "lead_time")[0]
    for j, cond in enumerate(analysis["condition"].values):
        v = leads[j]
        ok = np.isfinite(v)
        x = j - 0.12 + np.linspace(-0.1, 0.1, max(1, ok.sum()))
        ax.plot(x[: ok.sum()], v[ok], "o", color=COLORS[j % len(COLORS)],
                label=("to the departure" if key != "lead_time" else "to the onset") if j == 0 else None)
        if ok.any():
            ax.hlines(np.median(v[ok]), j - 0.25, j + 0.01, color="k")
        if key != "lead_time":
            w = onset_leads[j]
            okw = np.isfinite(w)
            xw = j + 0.12 + np.linspace(-0.1, 0.1, max(1, okw.sum()))
            ax.plot(xw[: okw.sum()], w[okw], "o", mfc="none", color=COLORS[j % len(COLORS)],
                    label="to the 10 % onset" if j == 0 else None)
            if okw.any():
                ax.hlines(np.median(w[okw]), j + 0.01, j + 0.25, color="k", ls=":")
        missing = int((~ok).sum() - left[j].sum())
        labels.append(f"{cond}\n{ok.sum()} of {ok.size} networks" + (f"\n({missing} without a GR\nevent or a drop)" if missing else "")
                      + (f"\n({int(left[j].sum())} drop before GR\ncan be flagged)" if left[j].any() else ""))
    ax.axhline(0, color="0.5", lw=0.8, ls="--")
    ax.set_xticks(range(analysis.sizes["condition"]), labels)
    ax.set_ylabel("lead time (iterations)\n> 0: GR before the drop")
    if key != "lead_time":
        ax.legend(fontsize=7, loc="best")
    return ax
