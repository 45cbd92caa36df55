"""The linear oracle's figure: outlier eigenvalues through training against the poles theory names,
above the loss with its plateaus and the levels theory predicts. Takes the results and staircase
datasets and returns Axes; computes nothing (analysis/linear_oracle.py does)."""
from __future__ import annotations

from . import use_file_backend  # noqa: E402

use_file_backend()
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from .curves import COLORS  # noqa: E402


def _fmt_pole(z: complex) -> str:
    return f"{z.real:.3f}" if abs(z.imag) < 1e-9 else f"{z.real:.2f}{z.imag:+.2f}i"


def optima_lines(st: xr.Dataset) -> list[tuple[int, int, float, list[complex]]]:
    """(k, index, error, poles) of every k-pole optimum in the dataset."""
    out = []
    err = st["kpole_error"].values
    poles = st["kpole_pole_real"].values + 1j * st["kpole_pole_imag"].values
    for k in range(err.shape[0]):
        for i in range(err.shape[1]):
            if np.isfinite(err[k, i]):
                out.append((k, i, float(err[k, i]), list(poles[k, i, :k])))
    return out


def staircase(results: xr.Dataset, st: xr.Dataset, axes=None):
    """Per condition (columns). Top: the moduli of the leading eigenvalues of the effective
    recurrence at every checkpoint (log axis; seed 0 bold, other seeds faint), the bulk (grey band up
    to the outlier threshold, seed 0), the target poles (black dashed), the poles of the k-pole optima
    (dash-dotted: the global optimum of each k; dotted grey: local ones) and seed 0's GR events
    (triangles). Bottom: the smoothed task loss (log axis; seed 0 bold), the levels of the k-pole
    optima (dashed; k = target order: 0, not drawn), seed 0's plateaus (thick segments at their
    measured level) and its drop onsets (vertical lines). Returns the (2, conditions) Axes."""
    conds = list(st["condition"].values)
    seeds = list(st["seed"].values)
    if axes is None:
        _, axes = plt.subplots(2, len(conds), figsize=(4.4 * len(conds) + 2.6, 7.4), sharex=True, sharey="row", squeeze=False)
    ck = st["checkpoint"].values
    it = results["iteration"].values
    n_lead = max(1, st.sizes["target_pole"])
    target = st["target_pole_real"].values + 1j * st["target_pole_imag"].values
    optima = optima_lines(st)
    factor = float(st.attrs.get("outlier_factor", 2.0))
    for j, cond in enumerate(conds):
        top, bot = axes[0, j], axes[1, j]
        c, r = st.sel(condition=cond), results.sel(condition=cond)
        hue = COLORS[j % len(COLORS)]
        for s in seeds[::-1]:  # seed 0 last, on top
            first = s == seeds[0]
            color = hue if first else "0.55"
            lw, alpha = (1.6, 1.0) if first else (0.6, 0.35)
            lam = c["eig_real"].sel(seed=s).values + 1j * c["eig_imag"].sel(seed=s).values
            for e in range(n_lead):
                top.plot(ck, np.abs(lam[:, e] - float(c["bulk_centre"])), color=color, lw=lw, alpha=alpha,
                         ls="-" if e == 0 else "--", zorder=3 if first else 2)
            bot.plot(it, r["loss_smoothed"].sel(seed=s).values, color=color, lw=lw, alpha=alpha, zorder=3 if first else 2)
        s0 = c.sel(seed=seeds[0])
        top.fill_between(ck, 1e-6, factor * s0["bulk_radius"].values, color="0.85", zorder=0,
                         label=f"bulk, up to {factor:g} radii (seed 0)")
        for n, p in enumerate(target):
            top.axhline(abs(p), color="k", ls="--", lw=0.9, zorder=1,
                        label="target poles: " + ", ".join(_fmt_pole(q) for q in target) if n == 0 else None)
        floor = 1e-6 * optima[0][2]  # an exact fit (error ~1e-17) is drawn as no line
        for k, i, err, poles in optima:
            style = dict(color="tab:red" if i == 0 else "0.45", ls="-." if i == 0 else ":", lw=1.0, zorder=1)
            name = f"{k}-pole {'optimum' if i == 0 else 'local optimum'}"
            for n, p in enumerate(poles):
                top.axhline(abs(p), **style, label=f"{name}: {', '.join(_fmt_pole(q) for q in poles)}" if n == 0 else None)
            if k == 0:
                bot.axhline(err, color="k", ls="--", lw=0.9, label=f"0 poles (target variance): {err:.3f}")
            elif err > floor:
                bot.axhline(err, **style, label=f"{name}: {err:.3f}")
        for i in range(int(s0["n_plateaus"])):
            a, n, lev = (float(s0[f"plateau_{v}"][i]) for v in ("start", "length", "level"))
            bot.plot([a, a + n], [lev, lev], color="k", lw=4, alpha=0.45, solid_capstyle="butt", zorder=4)
        for i in range(int(s0["n_drops"])):
            onset, ev = float(s0["drop_onset"][i]), float(s0["gr_event"][i])
            bot.axvline(onset, color=hue, lw=0.8, ls="-")
            top.axvline(onset, color=hue, lw=0.8, ls="-")
            if np.isfinite(ev):
                top.plot([ev], [factor * float(s0["bulk_radius"].sel(checkpoint=ev, method="nearest"))], marker="v",
                         color="k", ms=7, zorder=5)
        leads, after = c["gr_lead"].values, c["drop_poles_after"].values
        lead_txt = ", ".join(f"to {j}: {np.nanmedian(np.where(after == j, leads, np.nan)):+.0f}"
                             for j in sorted({int(x) for x in after[np.isfinite(after)]})
                             if np.isfinite(np.where(after == j, leads, np.nan)).any())
        top.set_title(f"{cond}\nGR lead, median (drop to k poles): {lead_txt or 'n/a'}", fontsize=8.5)
        top.set_yscale("log")
        bot.set_yscale("log")
        bot.set_xlabel("iteration")
        if j == len(conds) - 1:
            top.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
            bot.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    axes[0, 0].set_ylabel("|eigenvalue - bulk centre|, effective recurrence\n"
                          "(solid: 1st, dashed: 2nd; v: GR events, seed 0)")
    axes[1, 0].set_ylabel("smoothed task loss (log)\n(thick: plateaus; lines: drop onsets; seed 0)")
    axes[0, 0].set_ylim(bottom=max(1e-4, 0.5 * float(np.nanmin(st["bulk_radius"].values))), top=1.5)
    sm = results["loss_smoothed"].values
    positive = sm[np.isfinite(sm) & (sm > 0)]
    if positive.size:
        axes[1, 0].set_ylim(0.5 * positive.min(), 2 * max(positive.max(), optima[0][2]))
    axes[0, 0].set_xlim(it[0], it[-1])
    return axes
