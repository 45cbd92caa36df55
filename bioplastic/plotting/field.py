"""The figures of the field, drawn from the saved datasets: conditions overlaid on one loss panel,
the psychometric curve, choice-sorted PSTHs of example units and of the population's choice axis,
example trials, and the spectra of the recurrent weights and of the Jacobian at the attractors.
One colour per condition, the same in every figure here (:func:`condition_color`)."""
from __future__ import annotations

from . import use_file_backend  # noqa: E402

use_file_backend()
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from ..analysis.psychometric import psychometric_function, slope_is_lower_bound  # noqa: E402
from ..analysis.statistics import nanmedian  # noqa: E402
from .curves import COLORS, shade  # noqa: E402

#: markers of the conditions where points overlap
MARKERS = ("o", "s", "^", "D", "v")
#: line styles of the choices (two-choice tasks: solid and dashed)
CHOICE_STYLES = ("--", "-", ":", "-.")


def _no_data(ax, text: str):
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=9, wrap=True, transform=ax.transAxes)
    ax.set_axis_off()
    return ax


def condition_color(ds: xr.Dataset, cond) -> str:
    """The colour of a condition: its position in the dataset's conditions (the same across figures)."""
    return COLORS[list(map(str, ds["condition"].values)).index(str(cond)) % len(COLORS)]


def loss_overlay(results: xr.Dataset, ax=None):
    """Every condition on one panel: the median over seeds of the smoothed task loss (line) and the
    range between the 25th and 75th percentiles (band), log axis."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 3.6))
    loss = results["loss_smoothed"].values
    if not (np.isfinite(loss) & (loss > 0)).any():  # nothing a log axis can show
        return _no_data(ax, "no finite loss to draw: every network diverged (see the 'diverged' variable of results.nc)")
    it = results["iteration"].values
    for cond in results["condition"].values:
        v = results["loss_smoothed"].sel(condition=cond).values
        finite = np.isfinite(v).any(axis=0)
        q25, med, q75 = np.full((3, v.shape[1]), np.nan)
        if finite.any():  # (percentiles of the iterations where some seed has a finite loss: no all-NaN warnings)
            q25[finite], med[finite], q75[finite] = (np.nanpercentile(v[:, finite], q, axis=0) for q in (25, 50, 75))
        col = condition_color(results, cond)
        gone = "" if finite.any() else ", every seed diverged"
        ax.plot(it, med, color=col, lw=1.8, label=f"{cond} (median of {v.shape[0]}{gone})")
        ax.fill_between(it, q25, q75, color=col, alpha=0.2, lw=0)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("task loss (smoothed)")
    ax.set_title("all conditions: median and interquartile range over seeds", fontsize=9)
    ax.legend(fontsize=8)
    return ax


def fitted_parameters(pred: xr.Dataset, cond) -> tuple[float, float, float] | None:
    """The median over a condition's networks of the fitted psychometric slope, bias and lapse
    (networks whose fit converged: status 0 or 2); None when none did."""
    st = pred["psychometric_fit_status"].sel(condition=cond).values
    ok = (st == 0) | (st == 2)
    if not ok.any():
        return None
    return tuple(float(np.median(pred[f"psychometric_{k}"].sel(condition=cond).values[ok])) for k in ("slope", "bias", "lapse"))


def psychometric(pred: xr.Dataset, ax=None):
    """P(choice right) against the signed evidence per condition: the fraction of held-out trials on
    which the networks chose "right", median over seeds (dots; faint: each seed), and the
    psychometric function with the median of the networks' fitted slope, bias and lapse (line).
    Without the signed curve (an older predictions.nc, or a task without a two-valued choice and
    evidence label): accuracy against unsigned evidence strength, as before."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 3.6))
    if "p_right" not in pred:
        return _accuracy_by_strength(pred, ax)
    x = pred["evidence_level"].values
    grid = np.linspace(x.min(), x.max(), 200)
    conds = list(pred["condition"].values)
    shift = 0.012 * (np.ptp(x) or 1.0)
    for c, cond in enumerate(conds):
        v = pred["p_right"].sel(condition=cond).values
        col = condition_color(pred, cond)
        xc = x + (c - (len(conds) - 1) / 2) * shift
        for row in v:
            ax.plot(xc, row, MARKERS[c % len(MARKERS)], color=col, alpha=0.15, ms=3)
        label = str(cond)
        fit = fitted_parameters(pred, cond)
        if fit is not None:
            ax.plot(grid, psychometric_function(grid, *fit), "-", color=col, lw=1.6)
            # most fits at the slope's bound (choices switch within one evidence step): a lower bound
            steep = ">= " if slope_is_lower_bound(pred["psychometric_fit_status"].sel(condition=cond).values) else ""
            label += f" (slope {steep}{fit[0]:.2g}, bias {fit[1]:+.2g}, lapse {fit[2]:.2f})"
        ax.plot(xc, nanmedian(v, axis=0), MARKERS[c % len(MARKERS)], color=col, ms=5, label=label)
    ax.axhline(0.5, color="0.6", lw=0.8, ls=":")
    ax.axvline(0.0, color="0.6", lw=0.8, ls=":")
    ax.set_xlabel("signed evidence (positive favours right)")
    ax.set_ylabel("P(choice right)")
    ax.set_ylim(-0.02, 1.02)
    # above the axes: inside, the legend hides the curves' steep part near zero evidence
    ax.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0, 1.01), borderaxespad=0, frameon=False, alignment="left",
              title="psychometric curve (dots: median over seeds; faint: each seed; line: fit)", title_fontsize=8)
    return ax


def _accuracy_by_strength(pred: xr.Dataset, ax):
    """Held-out accuracy against evidence strength per condition: median over seeds (line, dots) and
    each seed (faint)."""
    if "accuracy_by_strength" not in pred:
        return _no_data(ax, "no psychometric curve: the task's trials have no two-valued choice with signed evidence, "
                            "nor an evidence-strength label")
    x = pred["strength"].values
    conds = list(pred["condition"].values)
    shift = 0.012 * (np.ptp(x) or 1.0)  # conditions side by side, so that equal curves stay visible
    for c, cond in enumerate(conds):
        v = pred["accuracy_by_strength"].sel(condition=cond).values
        col = condition_color(pred, cond)
        xc = x + (c - (len(conds) - 1) / 2) * shift
        for row in v:
            ax.plot(xc, row, color=col, alpha=0.15, lw=0.8)
        ax.plot(xc, nanmedian(v, axis=0), MARKERS[c % len(MARKERS)] + "-", color=col, lw=1.8, label=str(cond))
    ax.axhline(0.5, color="0.6", lw=0.8, ls=":")
    ax.set_xlabel("evidence strength (coherence)")
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(0.4, 1.02)
    ax.set_title("psychometric curve (median over seeds; faint: each seed)", fontsize=9)
    ax.legend(fontsize=8)
    return ax


def _example_units(sub: xr.Dataset, n: int) -> list[int]:
    """Units with a build-up ramp, steepest first (then any ramping units)."""
    cls = sub["ramp_class"].values
    slope = np.abs(np.nan_to_num(sub["ramp_slope_preferred"].values))
    order = [u for u in np.argsort(-slope) if cls[u] == 1]
    return (order + [u for u in np.argsort(-slope) if u not in order])[:n]


def choice_psth(pred: xr.Dataset, n_units: int = 3, axes=None):
    """Rows: conditions. Columns: ``n_units`` example units of the first seed (build-up units first)
    and the population projection on the choice axis (every seed faint, seed 0 bold); line style:
    choice. Time from the ramp period's onset; only steps where enough trials remain."""
    conds = list(pred["condition"].values)
    if "psth_by_choice" not in pred:
        _, ax = plt.subplots(figsize=(5, 2.5)) if axes is None else (None, np.asarray(axes).flat[0])
        return _no_data(ax, "no choice-sorted activity: the task's trials have no choice label")
    if axes is None:
        _, axes = plt.subplots(len(conds), n_units + 1, figsize=(3.1 * (n_units + 1), 2.5 * len(conds)), squeeze=False)
    t = pred["period_time"].values
    period = pred.attrs.get("ramp_period", "period")
    choices = pred["choice"].values
    for i, cond in enumerate(conds):
        col = condition_color(pred, cond)
        sub = pred.sel(condition=cond).isel(seed=0)
        for j, u in enumerate(_example_units(sub, n_units)):
            ax = axes[i, j]
            for g, ch in enumerate(choices):
                ax.plot(t, sub["psth_by_choice"].values[u, g], color=col, ls=CHOICE_STYLES[g % 4], label=f"choice {ch:+g}")
            kind = {1: "build-up", 2: "decay", 0: "no ramp"}.get(int(sub["ramp_class"].values[u]), "")
            ax.set_title(f"{cond}: unit {u} ({kind})", fontsize=8)
        ax = axes[i, n_units]
        for s in range(pred.sizes["seed"]):
            for g, _ch in enumerate(choices):
                ax.plot(t, pred["projection_by_choice"].sel(condition=cond).values[s, g], color=col,
                        ls=CHOICE_STYLES[g % 4], lw=1.8 if s == 0 else 0.6, alpha=1.0 if s == 0 else 0.3)
        ax.set_title(f"{cond}: population, choice axis", fontsize=8)
        axes[i, 0].set_ylabel("rate (trial average)")
    for ax in axes[-1]:
        ax.set_xlabel(f"time from {period} onset (ms)")
    axes[0, 0].legend(fontsize=7)
    return axes


#: colours of a task's input channels: not the conditions' colours (colour means condition elsewhere)
INPUT_COLORS = ("#8c510a", "#01665e", "0.15", "#c51b7d", "#7fbc41", "#542788", "0.55")
#: line styles of a task's output channels (colour is the condition's)
OUTPUT_STYLES = ("-", "--", ":", "-.")


def example_trials(pred: xr.Dataset, n_trials: int = 2, axes=None, input_names=None, output_names=None):
    """Columns: example held-out trials. Top: the inputs, one colour per input channel named in the
    legend (``input_names``; default ``input i``); bottom: the target on the scored steps (thick grey)
    and each condition's output (seed 0; the condition's colour, one line style per output channel
    named by ``output_names``). Each row has one legend, outside the panels."""
    k = min(n_trials, pred.sizes["example_trial"])
    if axes is None:
        _, axes = plt.subplots(2, k, figsize=(4.0 * k + 2.6, 4.4), sharex=True, squeeze=False)
    n_in, n_out = pred.sizes["input"], pred.sizes["output"]
    input_names = list(input_names or [f"input {c}" for c in range(n_in)])
    output_names = list(output_names or [f"output {o}" for o in range(n_out)])
    t = pred["time"].values * float(pred.attrs.get("dt_ms", 1.0))
    for j in range(k):
        ax = axes[0, j]
        for c in range(n_in):
            ax.plot(t, pred["example_input"].values[j, :, c], lw=1.2, color=INPUT_COLORS[c % len(INPUT_COLORS)],
                    label=input_names[c])
        ax.set_title(f"example trial {j}", fontsize=9)
        ax = axes[1, j]
        for o in range(n_out):
            target = pred["example_target"].values[j, :, o]
            scored = pred["example_mask"].values[j, :, o] > 0
            # markers too: a decision period of one step is one point, which a line alone does not draw
            ax.plot(t, np.where(scored, target, np.nan), color="0.5", lw=4, alpha=0.5, solid_capstyle="butt", marker="s",
                    ms=5, label="target (scored steps)" if o == 0 else None)
            for cond in pred["condition"].values:
                ax.plot(t, pred["example_output"].sel(condition=cond).values[0, j, :, o], color=condition_color(pred, cond),
                        ls=OUTPUT_STYLES[o % len(OUTPUT_STYLES)], lw=1.2, label=str(cond) if o == 0 else None)
        ax.set_xlabel("time in the trial (ms)")
    axes[0, 0].set_ylabel("input")
    axes[1, 0].set_ylabel("output (seed 0)")
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), title="inputs", title_fontsize=7,
                       frameon=False)
    handles, labels = axes[1, -1].get_legend_handles_labels()
    if n_out > 1:  # the line style of each output channel
        for o in range(n_out):
            handles.append(plt.Line2D([], [], color="0.3", ls=OUTPUT_STYLES[o % len(OUTPUT_STYLES)], lw=1.2))
            labels.append(output_names[o])
    axes[1, -1].legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False,
                       title="outputs" if n_out > 1 else f"output: {output_names[0]}", title_fontsize=7)
    return axes


def plasticity_course(pred: xr.Dataset, ax=None):
    """The fast efficacies' time course: mean |short-term change| over trials and synapses (anti-
    Hebbian F, or Tsodyks-Markram efficacy minus 1) against time in the trial, per condition with
    plasticity, every seed (shades of the condition's colour)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 3.4))
    if "plasticity_course" not in pred:
        return _no_data(ax, "no short-term plasticity in this protocol's conditions")
    t = pred["time"].values * float(pred.attrs.get("dt_ms", 1.0))
    for cond in pred["condition"].values:
        v = pred["plasticity_course"].sel(condition=cond).values
        if not np.isfinite(v).any():
            continue
        col = condition_color(pred, cond)
        for s, row in enumerate(v):
            ok = np.isfinite(row)
            ax.plot(t[ok], row[ok], "-", color=shade(col, s, len(v)), lw=1.0, label=str(cond) if s == 0 else None)
    ax.set_xlabel("time in the trial (ms)")
    ax.set_ylabel("mean |short-term change|")
    ax.set_title("fast efficacies after the stimulus offset (one line per seed)", fontsize=9)
    if not ax.get_lines():  # e.g. every network with plasticity diverged
        return _no_data(ax, "no finite short-term change to draw (the networks with plasticity diverged)")
    ax.legend(fontsize=8)
    return ax


def spectra(analysis: xr.Dataset, weights: dict | None = None, axes=None):
    """Left: eigenvalues of the effective recurrent weight matrix at the last checkpoint (``weights``:
    condition -> (seeds, N, N) array; unit circle dashed). Then one panel per condition (``axes``: 1 +
    conditions of them): eigenvalues of the one-step map's Jacobian at that condition's attractors
    (stable fixed points, zero input) at the last checkpoint, every seed, on shared axes zoomed to where
    they lie (they crowd near 1, and one condition's cloud would hide another's); a mode near the unit
    circle is slow."""
    conds = list(analysis["condition"].values)
    if axes is None:
        _, axes = plt.subplots(1, 1 + len(conds), figsize=(4.4 + 3.0 * len(conds), 4.2),
                               gridspec_kw={"width_ratios": [1.45] + [1.0] * len(conds)})
    axes = np.asarray(axes).ravel()
    circle = np.exp(1j * np.linspace(0, 2 * np.pi, 400))
    for ax in axes:
        ax.plot(circle.real, circle.imag, color="0.6", ls="--", lw=0.8)
        ax.set_xlabel("real part")
    axes[0].set_aspect("equal")
    for cond, W in (weights or {}).items():
        lam = np.linalg.eigvals(W[np.isfinite(W).all((1, 2))])
        axes[0].plot(lam.real.ravel(), lam.imag.ravel(), ".", ms=2, alpha=0.5, color=condition_color(analysis, cond),
                     label=str(cond))
    axes[0].set_title("recurrent weights W (last checkpoint, every seed)", fontsize=9)
    axes[0].set_ylabel("imaginary part")
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=8, markerscale=4)
    last = analysis.isel(checkpoint=-1).sel(context="zero") if "context" in analysis.dims else analysis.isel(checkpoint=-1)
    lo, hi, top = np.inf, -np.inf, 0.0
    for c, cond in enumerate(conds):
        ax = axes[1 + c]
        a = last.sel(condition=cond)
        stable = ((a["fp_kind"] == 0) & a["fp_is_fixed"] & a["fp_valid"]).values
        re, im = a["fp_eig_real"].values[stable].ravel(), a["fp_eig_imag"].values[stable].ravel()
        ok = np.isfinite(re) & np.isfinite(im)
        ax.plot(re[ok], im[ok], MARKERS[c % len(MARKERS)], ms=3, mfc="none", alpha=0.5, color=condition_color(analysis, cond))
        ax.set_title(f"{cond}: Jacobian at {int(stable.sum())} attractors", fontsize=9)
        if not ok.any():
            ax.text(0.5, 0.5, "no attractor found", ha="center", va="center", fontsize=8, transform=ax.transAxes)
        else:
            lo, hi, top = min(lo, re[ok].min()), max(hi, re[ok].max()), max(top, np.abs(im[ok]).max())
    jac = axes[1:1 + len(conds)]
    if np.isfinite(lo):  # one zoom for every condition, the unit circle's arc near 1 in view
        x0, x1 = lo, max(hi, 1.0)
        pad = 0.08 * (x1 - x0 or 1.0)
        for ax in jac:
            ax.set_xlim(x0 - pad, x1 + pad)
            ax.set_ylim(-1.15 * top - pad, 1.15 * top + pad)
    for ax in jac[1:]:
        ax.tick_params(labelleft=False)
    jac[0].set_ylabel("imaginary part")
    return axes
