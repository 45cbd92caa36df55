"""Figures of the predictions (``OUT/predictions.nc``): ramping examples, ramp-slope and timescale
distributions. They take the dataset and return Axes; they compute nothing beyond selecting what
is stored (and drawing the stored fit ``A exp(-lag/tau) + A B``)."""
from __future__ import annotations

import matplotlib
import matplotlib.ticker

from . import use_file_backend  # noqa: E402

use_file_backend()
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from ..analysis.statistics import nanmedian  # noqa: E402
from .curves import COLORS, shade  # noqa: E402

#: an across-trial autocorrelation that stays at or above this over every lag of the window has not decayed
#: measurably: its fitted timescale is shown as longer than the window (censored), not as a value
FLAT_AUTOCORRELATION = 0.9


def _first_seed_with(pred: xr.Dataset, cond, var: str):
    for s in pred["seed"].values:
        if np.isfinite(pred[var].sel(condition=cond, seed=s).values.astype(float)).any():
            return s
    return pred["seed"].values[0]


#: a ramp of the period changes steadily: at most this share of its change from the period's onset to its
#: end happens in the first third (a relaxation after the stimulus makes most of its change there)
EARLY_CHANGE_MAX = 0.5


def steady_ramp(rate_uxt: np.ndarray) -> np.ndarray:
    """(unit,) bool: the trace changes steadily over the period rather than relaxing right after its
    onset: the change over the first third of the steps where it is finite is at most
    :data:`EARLY_CHANGE_MAX` of the total (first-third change plus the change from there to the end)."""
    out = np.zeros(rate_uxt.shape[0], bool)
    for u, r in enumerate(rate_uxt):
        r = r[np.isfinite(r)]
        if r.size < 3:
            continue
        third = r.size // 3
        early, late = abs(r[third] - r[0]), abs(r[-1] - r[third])
        out[u] = early + late > 0 and early <= EARLY_CHANGE_MAX * (early + late)
    return out


def ramping_examples(pred: xr.Dataset, n_units: int = 3, axes=None):
    """Per condition (columns), the first seed: the ``n_units`` units that build up activity over the
    ramp period for their preferred choice (``ramp_class`` 1: away from their pre-stimulus level), steepest
    first, drawn on the trials of that choice (``psth_by_choice``), and the non-ramping unit with the
    smallest |slope| (grey dashed, all trials). Relaxations after the stimulus are not ramps of the
    period and are not drawn: units whose rate returns towards its pre-stimulus level (``ramp_class`` 2,
    decay), and units that make most of their change right after the period's onset (:func:`steady_ramp`).
    Legend: unit, preferred choice and slope (rate units per second). Datasets without the
    choice-resolved classes show the steepest significant ramps of the trial average."""
    conds = list(pred["condition"].values)
    if axes is None:
        _, axes = plt.subplots(1, len(conds), figsize=(4.2 * len(conds), 3.4), sharey=True, squeeze=False)
        axes = axes[0]
    period = pred.attrs.get("ramp_period", "period")
    t = pred["period_time"].values
    by_choice = "ramp_class" in pred and "psth_by_choice" in pred
    for j, cond in enumerate(conds):
        ax = axes[j]
        s = _first_seed_with(pred, cond, "ramp_slope")
        sub = pred.sel(condition=cond, seed=s)
        slope = sub["ramp_slope"].values
        ramp = sub["ramping"].values.astype(bool) & np.isfinite(slope)
        if by_choice:
            pref_slope = sub["ramp_slope_preferred"].values
            choices = list(pred["choice"].values)
            pref = [choices.index(float(c)) if float(c) in choices else 0 for c in sub["ramp_preferred_choice"].values]
            psth = sub["psth_by_choice"].values[np.arange(len(pref)), pref]  # (unit, period_time): preferred choice
            build = (sub["ramp_class"].values == 1) & np.isfinite(pref_slope) & steady_ramp(psth)
            order = np.argsort(-np.abs(np.where(build, pref_slope, 0)))
            shown = [u for u in order[:n_units] if build[u]]
            for k, u in enumerate(shown):
                ax.plot(t, psth[u], color=shade(COLORS[j % len(COLORS)], k, n_units), lw=1.5,
                        label=f"unit {u} (choice {choices[pref[u]]:+g}): {pref_slope[u]:+.2f} /s")
            frac = float(sub["fraction_buildup"]) if "fraction_buildup" in sub else np.nan
            what = "build up"
        else:
            order = np.argsort(-np.abs(np.where(ramp, slope, 0)))
            shown = [u for u in order[:n_units] if ramp[u]]
            for k, u in enumerate(shown):
                ax.plot(t, sub["mean_rate"].values[u], color=shade(COLORS[j % len(COLORS)], k, n_units), lw=1.5,
                        label=f"unit {u}: {slope[u]:+.2f} /s")
            frac, what = float(sub["fraction_ramping"]), "ramp"
        flat = np.flatnonzero(~ramp & np.isfinite(slope))
        if len(flat):
            u = flat[np.argmin(np.abs(slope[flat]))]
            ax.plot(t, sub["mean_rate"].values[u], color="0.5", ls="--", lw=1.2, label=f"unit {u}: not ramping")
        if not shown:
            ax.text(0.5, 0.5, f"no unit builds up steadily during the {period}\n(relaxations after the stimulus are "
                    "not ramps)",
                    ha="center", va="center", fontsize=8, transform=ax.transAxes)
        title = f"{cond}, seed {s}: {100 * frac:.0f} % of units {what}" if np.isfinite(frac) else f"{cond}, seed {s}"
        ax.set_xlabel(f"time from {period} onset (ms)")
        if shown or len(flat):  # above the axes: inside, it hides the traces
            ax.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0, 1.01), borderaxespad=0, frameon=False, title=title,
                      title_fontsize=9, alignment="left")
        else:
            ax.set_title(title, fontsize=9)
    axes[0].set_ylabel("rate (average over the preferred\nchoice's trials; dashed: all trials)" if by_choice
                       else "rate (trial average)")
    return axes


def ramp_distributions(pred: xr.Dataset, axes=None):
    """Left: ramp slopes of all units of all seeds per condition (step histograms; significant
    units' share in the legend). Right: fraction of ramping units per network (one dot per seed),
    the median over seeds (bar) and its 95 % CI (vertical line)."""
    conds = list(pred["condition"].values)
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1.6, 1]})
    left, right = axes
    slopes = pred["ramp_slope"].values
    finite = slopes[np.isfinite(slopes)]
    lim = np.quantile(np.abs(finite), 0.99) if finite.size else 1.0
    bins = np.linspace(-lim, lim, 41) if lim > 0 else 41
    for j, cond in enumerate(conds):
        v = pred["ramp_slope"].sel(condition=cond).values.ravel()
        ok = np.isfinite(v)
        if ok.any():
            med = float(pred["fraction_ramping_summary"].sel(condition=cond).values[0])  # the table's number
            left.hist(np.clip(v[ok], -lim, lim), bins=bins, histtype="step", lw=1.5, color=COLORS[j % len(COLORS)],
                      label=f"{cond} ({100 * med:.0f} % ramp, median over seeds)")
    left.set_xlabel(f"ramp slope during the {pred.attrs.get('ramp_period', 'period')} (rate units / s)")
    left.set_ylabel("units (all seeds)")
    if finite.size:
        left.legend(fontsize=7)
    else:  # e.g. every network diverged
        left.text(0.5, 0.5, "no finite ramp slope", ha="center", va="center", fontsize=9, transform=left.transAxes)
    for j, cond in enumerate(conds):
        v = pred["fraction_ramping"].sel(condition=cond).values
        x = j + (np.linspace(-0.12, 0.12, len(v)) if len(v) > 1 else np.zeros(1))
        right.plot(x, 100 * v, "o", color=COLORS[j % len(COLORS)])
        med, lo, hi = pred["fraction_ramping_summary"].sel(condition=cond).values
        if np.isfinite(med):
            right.hlines(100 * med, j - 0.25, j + 0.25, color="k")
            right.vlines(j + 0.3, 100 * lo, 100 * hi, color="k", lw=1.5)
        p = pred["fraction_ramping_effect"].sel(condition=cond, statistic="p_value").values
        if j > 0 and np.isfinite(p):
            right.text(j, 103, f"p={float(p):.2g}", ha="center", va="bottom", fontsize=8)
    right.set_xticks(range(len(conds)), [str(c) for c in conds])
    right.set_ylim(0, 112)
    right.set_xlabel("condition")
    right.set_ylabel("ramping units (%)\n(BH FDR 5 %)")
    right.set_title("median — with 95 % CI |; p vs first condition", fontsize=8)
    return axes


def timescale_counts(pred: xr.Dataset, cond) -> str:
    """How many of a condition's units (all seeds) have a fitted timescale, and how many are
    censored (status 3: no measurable decay within the window; not drawn as a timescale)."""
    st = pred["timescale_status"].sel(condition=cond).values
    measured = pred["accuracy"].sel(condition=cond).values
    st = st[np.isfinite(measured)]  # units of networks that exist (a diverged network has none)
    return (f"{int((st == 0).sum())} of {st.size} units fitted, {int((st == 3).sum())} censored "
            "(timescale longer than the window; not drawn)")


def timescale_distributions(pred: xr.Dataset, axes=None):
    """Left: single-unit autocorrelation timescales of the fitted units of all seeds per condition
    (log axis; the legend counts the fitted units and the censored ones, which are not drawn: their
    timescale is longer than the window, status 3). Right:
    per condition, the across-trial autocorrelation of the fitted unit whose timescale is nearest
    the condition's median (dots) and its stored fit (line); an autocorrelation that stays at or above
    :data:`FLAT_AUTOCORRELATION` over the whole window is labelled "tau > window" (censored: the data
    bound the timescale from below only) and its fit dotted."""
    conds = list(pred["condition"].values)
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    left, right = axes
    tau = pred["timescale_ms"].values
    finite = tau[np.isfinite(tau) & (tau > 0)]
    period = pred.attrs.get("timescale_period", "period")
    if finite.size:
        bins = np.logspace(np.log10(finite.min()), np.log10(finite.max()) + 1e-9, 30)
        for j, cond in enumerate(conds):
            v = pred["timescale_ms"].sel(condition=cond).values.ravel()
            ok = np.isfinite(v)
            label = f"{cond}: {timescale_counts(pred, cond)}"
            if ok.any():
                left.hist(v[ok], bins=bins, histtype="step", lw=1.5, color=COLORS[j % len(COLORS)], label=label)
            else:  # named in the legend all the same: its units are censored or not measured
                left.plot([], [], lw=1.5, color=COLORS[j % len(COLORS)], label=label)
        left.set_xscale("log")
        # plain numbers on the log axis (a narrow range otherwise shows only minor "2 x 10^2" labels)
        left.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        # minor labels only where the range is narrow (under a decade), thinned so that they never collide
        narrow = finite.max() / finite.min() < 10
        left.xaxis.set_minor_formatter(matplotlib.ticker.LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4))
                                       if narrow else matplotlib.ticker.NullFormatter())
        left.tick_params(axis="x", which="minor", labelsize=6)
        # legend above the axes: inside, it hides the bars
        left.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0, 1.01), borderaxespad=0, frameon=False)
    else:
        left.text(0.5, 0.5, "no unit's timescale could be fitted", ha="center", va="center", transform=left.transAxes)
    left.set_xlabel(f"autocorrelation timescale during the {period} (ms)")
    left.set_ylabel("units (all seeds)")
    lag = pred["lag"].values
    for j, cond in enumerate(conds):
        sub = pred.sel(condition=cond)
        v = sub["timescale_ms"].values
        if not np.isfinite(v).any():
            continue
        med = nanmedian(v)
        s, u = np.unravel_index(np.nanargmin(np.abs(v - med)), v.shape)
        ac = sub["autocorrelation"].values[s, u]
        A, tau_u, B = (float(sub[k].values[s, u]) for k in ("timescale_amplitude", "timescale_ms", "timescale_offset"))
        color = COLORS[j % len(COLORS)]
        right.plot(lag[1:], ac[1:], "o", ms=3, color=color)
        seen = ac[1:][np.isfinite(ac[1:])]
        # an autocorrelation that hardly falls within the window does not measure a timescale: the fit's tau
        # (of the order of the window) is a lower bound, not a value
        flat = seen.size > 0 and seen.min() >= FLAT_AUTOCORRELATION
        what = (f"tau > window (censored: >= {seen.min():.2f} up to {lag[1:][np.isfinite(ac[1:])].max():.0f} ms)" if flat
                else f"tau = {tau_u:.0f} ms")
        right.plot(lag[1:], A * (np.exp(-lag[1:] / tau_u) + B), ":" if flat else "-", color=color,
                   label=f"{cond}, seed {sub['seed'].values[s]} unit {u}: {what}")
    right.set_xlabel("lag (ms)")
    right.set_ylabel("autocorrelation across trials")
    right.axhline(0, color="0.7", lw=0.8)
    if right.get_legend_handles_labels()[0]:  # above the axes, as on the left: inside, it hides the data
        right.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0, 1.01), borderaxespad=0, frameon=False,
                     title="A (exp(-lag/tau) + B) fits (line), data (dots)", title_fontsize=7, alignment="left")
    return axes
