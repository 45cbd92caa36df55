"""Figures of learning: they take a results dataset and return Axes; they compute nothing."""
from __future__ import annotations

import io
from pathlib import Path

from . import use_file_backend  # noqa: E402

use_file_backend()
import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from ..analysis.learning_curves import still_on_plateau  # noqa: E402
from ..storage.io import atomic_write  # noqa: E402
from ..storage.results import sweep_points  # noqa: E402

COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


#: where the timelines' labels end, in axes coordinates: inside the right edge, with room for their box
LABEL_X = 0.98


def shade(color, k: int, n: int):
    """The k-th of n shades of ``color``, from lighter to darker: seeds keep their condition's hue, so
    that colour means condition in every figure."""
    rgb = np.array(mcolors.to_rgb(color))
    f = -0.45 + 0.8 * k / max(n - 1, 1)      # -0.45 (lighter) .. +0.35 (darker)
    return tuple(rgb + (1 - rgb) * -f if f < 0 else rgb * (1 - f))


def learning_curves(ds: xr.Dataset, axes=None):
    """Per condition (columns): the task loss (top; raw faint, smoothed bold, one colour per seed)
    with each seed's search phase drawn as a grey band along its curve and its drop in bold
    black; held-out accuracy (middle) with the criterion dashed; and a timeline per seed (bottom):
    search phase (grey), drop (the seed's colour), criterion reached (|), "plateau < 1 window" where a
    network learned without a search phase. A task with several outputs gets a fourth row: the same
    timeline for each output's own curve (one thin bar per output and seed), whose drops may come at
    staggered times. Returns the (3 or 4, conditions) array of Axes."""
    conds = list(ds["condition"].values)
    seeds = list(ds["seed"].values)
    per_output = "output_drop_onset" in ds
    if axes is None:
        heights = [3, 2, 0.8 + 0.18 * len(seeds)] + [0.8 + 0.12 * len(seeds) * ds.sizes.get("output", 1)] * per_output
        _, axes = plt.subplots(len(heights), len(conds), figsize=(4.4 * len(conds), 1.2 * sum(heights) + 1.0), sharex=True,
                               sharey="row", squeeze=False, gridspec_kw={"height_ratios": heights})
    crit = ds["iterations_to_criterion"].attrs.get("criterion", np.nan)
    it = ds["iteration"].values
    for j, cond in enumerate(conds):
        top, mid, line = axes[0, j], axes[1, j], axes[2, j]
        c = ds.sel(condition=cond)
        n_abrupt = int(np.nansum(c["abrupt"].values)) if "abrupt" in c else 0
        for row, s in enumerate(seeds):
            color = shade(COLORS[j % len(COLORS)], row, len(seeds))  # the condition's hue, one shade per seed
            x = c.sel(seed=s)
            raw = x["task_loss"] if "task_loss" in x else x["loss"]
            top.plot(it, raw, lw=0.4, color=color, alpha=0.2)
            sm = x["loss_smoothed"].values
            top.plot(it, sm, lw=1.2, color=color, label=f"seed {s}")
            tp, onset, width = (float(x[k]) if k in x else np.nan for k in ("plateau_start", "drop_onset", "drop_width"))
            if np.isfinite(onset):
                search = slice(int(tp), int(onset) + 1)
                top.plot(it[search], sm[search], lw=7, color="0.35", alpha=0.45, solid_capstyle="butt", zorder=0.5)
                drop = slice(int(onset), int(onset + width) + 1)
                top.plot(it[drop], sm[drop], lw=2.2, color="k")
                line.broken_barh([(tp, onset - tp)], (row - 0.35, 0.7), color="0.75")
                line.broken_barh([(onset, max(width, 1))], (row - 0.35, 0.7), color=color)
            elif bool(still_on_plateau(x)):
                # no drop, never learned: the plateau it settled on runs to the end of training
                end = float(x["final_iteration"]) if "final_iteration" in x else float(it[-1])
                line.broken_barh([(tp, end - tp)], (row - 0.35, 0.7), facecolor="0.85", hatch="...", edgecolor="0.6", linewidth=0)
            itc = float(x["iterations_to_criterion"])
            mid.plot(ds["evaluation"], x["accuracy"], lw=1, color=color)
            if np.isfinite(itc):
                line.plot([itc, itc], [row - 0.45, row + 0.45], color="k", lw=1.2)
            if "abrupt" in x and float(x["abrupt"]) == 0:
                # inside the panel's right edge (axes coordinates), its white box clear of the frame
                line.text(LABEL_X, row, _not_abrupt(x), ha="right", va="center", fontsize=6.5, color="0.2",
                          transform=line.get_yaxis_transform(), bbox=dict(fc="white", ec="none", alpha=0.75, pad=0.6))
        top.set_yscale("log")
        top.set_title(f"{cond}\n{n_abrupt}/{len(seeds)} seeds: search phase, then abrupt drop", fontsize=9)
        mid.axhline(crit, color="k", lw=0.8, ls="--")
        mid.set_ylim(0, 1.02)
        line.set_yticks(range(len(seeds)), [f"seed {s}" for s in seeds], fontsize=7)
        line.set_ylim(len(seeds) - 0.5, -0.5)
        line.set_xlabel("iteration")
    axes[0, 0].set_ylabel("task loss (log; faint: raw)\ngrey band: search phase; black: drop")
    axes[1, 0].set_ylabel(f"held-out accuracy\n-- criterion {crit:g}")
    axes[2, 0].set_xlim(it[0], it[-1])
    axes[2, 0].text(0, -0.9, "grey: search phase (dotted: to the end)   colour: drop (10-90 %)   |: criterion", fontsize=7,
                    transform=axes[2, 0].get_yaxis_transform(), va="bottom")
    if per_output:
        for j, cond in enumerate(conds):
            output_timeline(ds.sel(condition=cond), axes[3, j], COLORS[j % len(COLORS)])
            axes[2, j].set_xlabel("")
        axes[3, 0].set_ylabel("each output's own curve\nhatched: drop not abrupt", fontsize=7)
    if len(seeds) <= 12:
        axes[0, -1].legend(fontsize=6.5, loc="lower left", ncol=2)
    return axes


def output_timeline(c: xr.Dataset, ax, color) -> None:
    """One condition's per-output timeline: for each seed, one thin bar per output (search phase grey,
    drop in the condition's colour, darker for later outputs), and its stagger on the right."""
    seeds = list(c["seed"].values)
    O = c.sizes["output"]
    h = 0.8 / O
    for row, s in enumerate(seeds):
        x = c.sel(seed=s)
        for o in range(O):
            tp, onset, width = (float(x[f"output_{k}"].values[o]) for k in ("plateau_start", "drop_onset", "drop_width"))
            y = row - 0.4 + o * h
            if np.isfinite(onset):
                ax.broken_barh([(tp, onset - tp)], (y, 0.85 * h), color="0.75")
                gradual = float(x["output_abrupt"].values[o]) != 1
                ax.broken_barh([(onset, max(width, 1))], (y, 0.85 * h), facecolor=shade(color, o, O),
                               hatch="///" if gradual else None, edgecolor="white" if gradual else "none", linewidth=0)
        stagger = float(x["drop_stagger"]) if "drop_stagger" in x else np.nan
        k = int(np.nansum(x["output_abrupt"].values))
        ax.text(LABEL_X, row, f"{k}/{O} abrupt" + (f", stagger {stagger:.0f}" if np.isfinite(stagger) else ""),
                ha="right", va="center", fontsize=6, color="0.2", transform=ax.get_yaxis_transform(),
                bbox=dict(fc="white", ec="none", alpha=0.75, pad=0.4))
    ax.set_yticks(range(len(seeds)), [f"seed {s}" for s in seeds], fontsize=7)
    ax.set_ylim(len(seeds) - 0.5, -0.5)
    ax.set_xlabel("iteration")
    ax.set_title(f"per output (0..{O - 1} top to bottom)", fontsize=7)


def _not_abrupt(x: xr.Dataset) -> str:
    """Why a network does not count as abrupt learning (see analysis/learning_curves.py)."""
    search, window = float(x["search_phase"]), x["loss_smoothed"].attrs.get("window", 1)
    if bool(still_on_plateau(x)):
        return "still on the plateau"
    if not np.isfinite(search):
        return "no drop"
    if search < window:
        # its only drop comes at the start: either it learned without a search phase, or that drop was
        # the initial transient and it never left the plateau after it
        return "plateau < 1 window" if np.isfinite(float(x["iterations_to_criterion"])) else "no drop after the start"
    return "drop not abrupt"


def iterations_to_criterion(ds: xr.Dataset, ax=None):
    """Iterations to criterion per condition: one dot per seed (unlearned networks drawn as open
    triangles at the budget), the median as a bar."""
    if ax is None:
        _, ax = plt.subplots(figsize=(1.6 + 1.3 * ds.sizes["condition"], 3.6))
    budget = int(ds.sizes["iteration"])
    for j, cond in enumerate(ds["condition"].values):
        v = ds["iterations_to_criterion"].sel(condition=cond).values
        x = j + np.linspace(-0.12, 0.12, len(v)) if len(v) > 1 else np.array([j])
        ok = np.isfinite(v)
        ax.plot(x[ok], v[ok], "o", color=COLORS[j % len(COLORS)])
        ax.plot(x[~ok], np.full((~ok).sum(), budget), "^", mfc="none", color=COLORS[j % len(COLORS)])
        if "itc_median" in ds and np.isfinite(float(ds["itc_median"][j])):
            # the median over seeds (unlearned at the budget) and its bootstrap 95 % CI
            med, lo, hi = (float(ds[k][j]) for k in ("itc_median", "itc_ci_low", "itc_ci_high"))
            ax.hlines(med, j - 0.25, j + 0.25, color="k")
            ax.vlines(j + 0.3, lo, hi, color="k", lw=1.5)
            if j > 0 and np.isfinite(float(ds["itc_p_value"][j])):
                ax.text(j, budget * 1.1, f"p={float(ds['itc_p_value'][j]):.2g}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(ds.sizes["condition"]), [str(c) for c in ds["condition"].values])
    ax.axhline(budget, color="0.6", lw=0.8, ls="--")
    ax.set_ylabel("iterations to criterion\n(△ not learned within budget)")
    ax.set_ylim(0, budget * 1.2)
    ax.set_title("median — with 95 % CI |; p vs first condition", fontsize=8)
    return ax


def png_bytes(fig_or_axes) -> bytes:
    """The figure of ``fig_or_axes`` (Axes or an array of them) as PNG bytes; the figure is closed."""
    fig = fig_or_axes.flat[0].figure if hasattr(fig_or_axes, "flat") else fig_or_axes.figure
    fig.tight_layout()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, dpi=120, format="png")
    finally:
        plt.close(fig)
    return buf.getvalue()


def save(fig_or_axes, path) -> None:
    """Write the figure as a PNG atomically (complete or absent, never half-written)."""
    data = png_bytes(fig_or_axes)
    atomic_write(Path(path), lambda p: Path(p).write_bytes(data))


def sweep(ds: xr.Dataset, axes=None):
    """Iterations to criterion against the first swept field, one line (median) and dots (seeds) per
    condition; one panel per combination of the other swept dims. Unlearned networks are drawn at
    the budget as open triangles."""
    dims = ds.attrs["sweep_dims"].split(",")
    x_dim, rest = dims[0], dims[1:]
    panels = list(np.ndindex(*[ds.sizes[d] for d in rest])) or [()]
    if axes is None:
        _, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), squeeze=False, sharey=True)
    axes = np.asarray(axes).reshape(-1)
    budget = int(ds.sizes["iteration"])
    xs = ds[x_dim].values
    numeric = np.issubdtype(xs.dtype, np.number)
    xpos = xs.astype(float) if numeric else np.arange(len(xs), dtype=float)
    for ax, idx in zip(axes, panels):
        sub = ds.isel(dict(zip(rest, idx)))
        for j, cond in enumerate(sub["condition"].values):
            color = COLORS[j % len(COLORS)]
            itc = sub["iterations_to_criterion"].sel(condition=cond).transpose(x_dim, "seed").values
            jitter = (j - (sub.sizes["condition"] - 1) / 2) * 0.015 * (np.ptp(xpos) or 1)
            for s in range(itc.shape[1]):
                ok = np.isfinite(itc[:, s])
                ax.plot(xpos[ok] + jitter, itc[ok, s], "o", color=color, ms=3.5, alpha=0.6)
                ax.plot(xpos[~ok] + jitter, np.full((~ok).sum(), budget), "^", mfc="none", color=color, ms=4)
            med = np.median(np.where(np.isfinite(itc), itc, budget), axis=1)
            ax.plot(xpos, med, "-", color=color, lw=1.8, label=f"{cond} (median)")
        ax.axhline(budget, color="0.6", lw=0.8, ls="--")
        ax.set_xlabel(x_dim)
        if not numeric:
            ax.set_xticks(xpos, [str(x) for x in xs])
        title = ", ".join(f"{d}={sub[d].item()}" for d in rest)
        if title:
            ax.set_title(title)
    axes[0].set_ylabel("iterations to criterion\n(△ not learned: drawn at budget)")
    axes[0].set_ylim(0, budget * 1.08)
    axes[0].legend(fontsize=8)
    return axes


def regimes(ds: xr.Dataset, axes=None):
    """Where abrupt learning appears, one row per sweep point: the search phase of every network
    (filled: abrupt learning, open: a drop that is not abrupt or no plateau, x: no drop, drawn at the
    budget), the fraction of networks with abrupt learning, and the fraction that learned. One colour
    per condition. Returns the three Axes."""
    points = sweep_points(ds)
    conds = list(ds["condition"].values)
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(11, 1.2 + 0.36 * len(points) * max(1, len(conds) ** 0.5)), sharey=True,
                               gridspec_kw={"width_ratios": [3, 1, 1]})
    budget = int(ds.sizes["iteration"])
    h = 0.7 / len(conds)
    several_outputs = "output_abrupt" in ds and ds.sizes.get("output", 1) > 1
    for row, (idx, _) in enumerate(points):
        sub = ds.isel(idx)
        for j, cond in enumerate(conds):
            c = sub.sel(condition=cond)
            color = COLORS[j % len(COLORS)]
            y = row + (j - (len(conds) - 1) / 2) * h
            sp, ab = c["search_phase"].values, c["abrupt"].values
            jit = y + np.linspace(-h / 3, h / 3, len(sp))
            yes, drop = ab == 1, np.isfinite(sp)
            axes[0].plot(np.maximum(sp[yes], 1), jit[yes], "o", color=color, ms=3.5)
            axes[0].plot(np.maximum(sp[drop & ~yes], 1), jit[drop & ~yes], "o", mfc="none", color=color, ms=3.5)
            axes[0].plot(np.full((~drop).sum(), budget), jit[~drop], "x", color=color, ms=3.5)
            n = np.isfinite(ab).sum()
            axes[1].barh(y, np.nansum(ab) / n if n else 0, height=h * 0.9, color=color,
                         label=str(cond) if row == 0 else None)
            if several_outputs:  # the outputs' own drops (per-output metrics), a thinner hatched bar
                ob = c["output_abrupt"].values
                m = np.isfinite(ob).sum()
                axes[1].barh(y + h * 0.2, np.nansum(ob) / m if m else 0, height=h * 0.35, color="none",
                             edgecolor=color, hatch="////", lw=0.8)
            axes[2].barh(y, c["learned"].values.mean(), height=h * 0.9, color=color)
    axes[0].set_xscale("log")
    axes[0].axvline(budget, color="0.6", lw=0.8, ls="--")
    axes[0].set_xlabel("search phase (iterations, log)\n● abrupt  ○ not abrupt  × no drop (at budget)")
    axes[0].set_yticks(range(len(points)), [label for _, label in points], fontsize=7)
    axes[0].set_ylim(len(points) - 0.5, -0.5)
    axes[1].set_xlabel("fraction abrupt" + ("\n(hatched: of the outputs)" if several_outputs else ""))
    axes[2].set_xlabel("fraction learned")
    for ax in axes[1:]:
        ax.set_xlim(0, 1)
        ax.axvline(0.8, color="0.6", lw=0.8, ls=":")
    if len(conds) > 1:
        axes[1].legend(fontsize=7, loc="lower right")
    return axes


def annotated_curve(ds: xr.Dataset, condition, seed, ax=None):
    """One network's task loss with the learning-curve metrics drawn on it (the definitions of
    analysis/learning_curves.py): plateau start, plateau level L_p, the 10 % and 90 % levels of the
    drop, the search phase, the drop width, L_f and the iteration to criterion. Returns the Axes."""
    x = ds.sel(condition=condition, seed=seed)
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 4.2))
    it = ds["iteration"].values
    ax.plot(it, x["task_loss"], lw=0.5, color="0.6", label="task loss (per batch)")
    ax.plot(it, x["loss_smoothed"], lw=1.6, color="C0", label="smoothed (moving average)")
    tp, lp, lf, onset, width, itc = (float(x[k]) for k in ("plateau_start", "plateau_loss", "final_loss", "drop_onset",
                                                          "drop_width", "iterations_to_criterion"))
    d = lp - lf
    for level, text, va in ((lp, "$L_p$ plateau level ", "bottom"), (lp - 0.1 * d, "10 % of the drop ", "top"),
                            (lp - 0.9 * d, "90 % of the drop ", "bottom"),
                            (lf, "$L_f$: lowest smoothed loss up to criterion + 5 windows ", "top")):
        ax.axhline(level, color="k", lw=0.6, ls=":")
        ax.text(0.995, level, text, ha="right", va=va, fontsize=7, transform=ax.get_yaxis_transform())
    y = lp * 1.15
    ax.annotate("", (onset, y), (tp, y), arrowprops=dict(arrowstyle="<->", color="0.3"))
    ax.text((tp + onset) / 2, y * 1.03, f"search phase {onset - tp:.0f} it.", ha="center", fontsize=8)
    ax.axvspan(onset, onset + width, color="C3", alpha=0.25, lw=0)
    ax.text(onset + width, np.sqrt(lp * lf), f" drop width\n {width:.0f} it. (10-90 %)", fontsize=8, color="C3", va="center")
    ax.axvline(tp, color="0.3", lw=0.8)
    ax.text(tp, lf, " plateau start", rotation=90, va="bottom", fontsize=7)
    if np.isfinite(itc):
        ax.axvline(itc, color="C2", lw=1)
        ax.text(itc, lf, " criterion", rotation=90, va="bottom", fontsize=7, color="C2")
    abrupt = "abrupt learning" if float(x["abrupt"]) == 1 else "not abrupt"
    ax.set_title(f"{condition}, seed {seed}: abruptness = width / search phase = {width / max(onset - tp, 1):.2f} ({abrupt})",
                 fontsize=9)
    ax.set_yscale("log")
    ends = [v for v in (itc, onset + width) if np.isfinite(v)]  # zoom on the drop when there is one
    ax.set_xlim(it[0], min(it[-1], 1.8 * max(ends)) if ends else it[-1])
    ax.set_xlabel("iteration")
    ax.set_ylabel("task loss")
    ax.legend(fontsize=7, loc="lower left")
    return ax
