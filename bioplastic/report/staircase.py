"""The report's staircase section (filtered-noise runs): theory (the k-pole optima) beside what the
networks did (every plateau and drop, the eigenvalues, the GR lead per drop), from staircase.nc."""
from __future__ import annotations

import numpy as np
import xarray as xr

from ..analysis.linear_oracle import EXACT
from ..analysis.statistics import nanmedian
from ..plotting import staircase as sfigs
from . import html as H  # html imports this module: only the module here, its helpers at call time

#: a plateau level "agrees" with theory within this relative difference
AGREE = 0.10


def _pole_list(poles) -> str:
    return ", ".join(sfigs._fmt_pole(complex(p)) for p in poles) or "&ndash;"


def optima_table(st: xr.Dataset) -> str:
    err = st["kpole_error"].values
    res = st["kpole_residue_real"].values + 1j * st["kpole_residue_imag"].values
    rows = []
    for k, i, e, poles in sfigs.optima_lines(st):
        level = "0 (exact fit)" if e <= EXACT * err[0, 0] else H.fmt(e)
        rows.append([str(k), "global" if i == 0 else f"local {i}", level, _pole_list(poles), _pole_list(res[k, i, :k])])
    target = st["target_pole_real"].values + 1j * st["target_pole_imag"].values
    tres = st["target_residue_real"].values + 1j * st["target_residue_imag"].values
    return (f"<p>Target filter: poles {H.esc(_pole_list(target))}, residues {H.esc(_pole_list(tres))}. Every local optimum of "
            f"its approximation by k poles (science.md §8; {int(np.isfinite(err).sum())} optima): the error is the task "
            "loss a network whose impulse response is that approximation has, on average over white-noise trials.</p>"
            + H.table(["k poles", "optimum", "predicted plateau level (expected task loss)", "poles", "residues"], rows))


def _plateau_rows(st: xr.Dataset) -> list[list[str]]:
    """One row per condition and k-pole optimum that some network sat at."""
    rows = []
    err = st["kpole_error"].values
    conds = list(st["condition"].values)
    for j, cond in enumerate(conds):
        c = st.sel(condition=cond)
        k_all, o_all = c["plateau_k"].values, c["plateau_optimum"].values
        for k, o in sorted({(int(k), int(o)) for k, o in zip(k_all[np.isfinite(k_all)], o_all[np.isfinite(o_all)])}):
            at = (k_all == k) & (o_all == o)                                     # (seed, plateau)
            nets = at.any(1)
            level = np.where(at, c["plateau_level"].values, np.nan)
            per_net = nanmedian(level, axis=1)[nets]
            exact = err[k, o] <= EXACT * err[0, 0]
            ratio = per_net / err[k, o]
            agree = ("predicted 0: an exact fit, reached only as far as SGD's noise allows" if exact else
                     f"{H.fmt(nanmedian(ratio))}; {int((np.abs(ratio - 1) <= AGREE).sum())}/{int(nets.sum())} within {AGREE:.0%}")
            if k:
                eig = (c["plateau_eig_real"].values + 1j * c["plateau_eig_imag"].values)[at][:, :k]
                med_eig = np.median(eig.real, 0) + 1j * np.median(eig.imag, 0)
                poles = st["kpole_pole_real"].values[k, o, :k] + 1j * st["kpole_pole_imag"].values[k, o, :k]
                eig_txt = f"{_pole_list(med_eig)} vs {_pole_list(poles)}"
            else:
                eig_txt = "&ndash;"
            t = c["time_on_level"].values[:, k, o]
            diff = ("reference" if j == 0 else
                    f"{H.fmt(float(c['time_on_level_difference'][k, o]), 'it', True)}"
                    f"{H.ci(float(c['time_on_level_difference_ci_low'][k, o]), float(c['time_on_level_difference_ci_high'][k, o]), 'it', True)}"
                    f", p = {H.pval(float(c['time_on_level_p_value'][k, o]))}")
            rows.append([H.esc(cond), f"{k}-pole {'global' if o == 0 else 'local'}: {'0' if exact else H.fmt(err[k, o])}",
                         f"{int(nets.sum())}/{nets.size}",
                         f"{H.fmt(nanmedian(per_net))} <span class='ci'>[{H.fmt(np.nanmin(per_net))}, {H.fmt(np.nanmax(per_net))}]</span>",
                         agree, eig_txt, H.fmt(nanmedian(np.where(at, c["plateau_start"].values, np.nan)), "it"),
                         f"{H.fmt(nanmedian(t), 'it')}", diff])
    return rows


def _drop_rows(st: xr.Dataset) -> list[list[str]]:
    """One row per condition and pole count j after the drop (the drop is paired with GR event j)."""
    rows = []
    for cond in st["condition"].values:
        c = st.sel(condition=cond)
        after = c["drop_poles_after"].values
        for j in sorted({int(x) for x in after[np.isfinite(after)]}):
            at = after == j
            nets = at.any(1)
            per_net = {v: nanmedian(np.where(at, c[v].values, np.nan), axis=1)[nets]
                       for v in ("gr_lead", "drop_onset", "drop_width", "gr_event")}
            lead = per_net["gr_lead"]
            ok = np.isfinite(lead)
            rows.append([H.esc(cond), f"to {j} pole{'s' if j > 1 else ''}", f"{int(nets.sum())}/{nets.size}",
                         H.fmt(nanmedian(per_net["drop_onset"]), "it"),
                         H.fmt(nanmedian(per_net["drop_width"]), "it"), H.fmt(nanmedian(per_net["gr_event"]), "it") if ok.any() else "n/a",
                         (f"{H.fmt(nanmedian(lead), 'it', True)} <span class='ci'>[{H.fmt(np.nanmin(lead), 'it', True)}, "
                          f"{H.fmt(np.nanmax(lead), 'it', True)}]</span>") if ok.any() else "n/a",
                         f"{int((lead[ok] > 0).sum())}/{int(ok.sum())}"])
    return rows


def staircase_section(run) -> str:
    """The section's HTML (the unavailable note when staircase.nc is missing)."""
    st = run.staircase
    if st is None:
        return H.unavailable("staircase.nc")
    plateaus = H.table(["condition", "k-pole optimum: predicted level", "networks on a plateau there",
                      "measured level: median [range]", "measured / predicted",
                      "leading eigenvalues on it (median) vs the optimum's poles", "median start",
                      "median iterations on it", "vs reference: median paired difference [95 % CI]"],
                     _plateau_rows(st))
    drops = H.table(["condition", "drop", "networks with it", "median onset", "median width (10-90 %)",
                   "median GR event (eigenvalue leaves the bulk)", "GR lead: median [range]", "lead &gt; 0"], _drop_rows(st))
    return (optima_table(st)
            + "<h3>Plateaus: measured vs predicted</h3>"
            + "<p>Every plateau of every network's task loss (analysis/staircase.py) is assigned the optimum it sits at "
              "(the pole count by the nearest level, then the optimum by the nearest poles to the network's leading "
              "eigenvalues on the plateau); one row per optimum some network sat at. Iterations on it: 0 for a network "
              "that went below it without a plateau there; compared with the first condition, paired by seed "
              "(Wilcoxon signed-rank).</p>" + plateaus
            + "<h3>Drops and the eigenvalues that precede them</h3>"
            + f"<p>GR event j: the first checkpoint from which j eigenvalues of the effective recurrence stay more than "
              f"{H.esc(st.attrs.get('outlier_factor', '?'))} bulk radii from the bulk's centre; a drop to a plateau with j "
              "poles is paired with event j; lead = drop onset minus its event (&gt; 0: the eigenvalue left the bulk "
              "first).</p>" + drops
            + H.figure("fig-staircase", "The staircase: eigenvalues and loss against theory",
                     lambda: sfigs.staircase(run.results, st),
                     "Per condition. Top: distance of the leading eigenvalues of the effective recurrence from the bulk's "
                     "centre through training (seed 0 in colour, other seeds grey; solid: the first, dashed: the second), "
                     "the bulk up to the outlier threshold (grey band), the target poles (black dashed) and the poles of the "
                     "k-pole optima (red dash-dot: global, grey dotted: local), seed 0's GR events (triangles). Bottom: the "
                     "smoothed task loss, the optima's levels (same styles), seed 0's plateaus (thick) and drop onsets "
                     "(vertical lines).", "staircase.png", ("results.nc", "staircase.nc")))
