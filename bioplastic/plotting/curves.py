"""Figures of learning: they take a results dataset and return Axes; they compute nothing."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


def learning_curves(ds: xr.Dataset, axes=None):
    """Loss (top) and held-out accuracy (bottom) per condition; one thin line per seed, drop onsets
    marked with a dot, the criterion dashed. Returns the (2, conditions) array of Axes."""
    conds = list(ds["condition"].values)
    if axes is None:
        _, axes = plt.subplots(2, len(conds), figsize=(4.2 * len(conds), 6), sharex=True, sharey="row", squeeze=False)
    crit = ds["iterations_to_criterion"].attrs.get("criterion", np.nan)
    for j, cond in enumerate(conds):
        top, bottom = axes[0, j], axes[1, j]
        for s in ds["seed"].values:
            color = COLORS[int(s) % len(COLORS)]
            top.plot(ds["iteration"], ds["loss"].sel(condition=cond, seed=s), lw=0.5, color=color, alpha=0.25)
            loss = ds["loss_smoothed"].sel(condition=cond, seed=s)
            top.plot(ds["iteration"], loss, lw=1.4, color=color, label=f"seed {s}")
            onset = float(ds["drop_onset"].sel(condition=cond, seed=s))
            if np.isfinite(onset):
                top.plot(onset, float(loss.isel(iteration=int(onset))), "o", color=color, ms=5, mec="k", mew=0.5)
            bottom.plot(ds["evaluation"], ds["accuracy"].sel(condition=cond, seed=s), lw=1, color=color)
            itc = float(ds["iterations_to_criterion"].sel(condition=cond, seed=s))
            if np.isfinite(itc):
                bottom.axvline(itc, color=color, lw=0.6, ls=":")
        top.set_yscale("log")
        top.set_title(str(cond))
        bottom.axhline(crit, color="k", lw=0.8, ls="--")
        bottom.set_ylim(0, 1.02)
        bottom.set_xlabel("iteration")
    axes[0, 0].set_ylabel("training loss (log; faint: raw)\n• drop onset")
    axes[1, 0].set_ylabel(f"held-out accuracy\n-- criterion {crit:g}")
    axes[0, -1].legend(fontsize=7, loc="upper right")
    return axes


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


def save(fig_or_axes, path) -> None:
    fig = fig_or_axes.flat[0].figure if hasattr(fig_or_axes, "flat") else fig_or_axes.figure
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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
