"""The figure of ``bioplastic compare``, drawn from ``compare.nc``: the data's psychometric curve
beside the model's (each on its own evidence axis: a recording's evidence units need not be the
task's)."""
from __future__ import annotations

from . import use_file_backend

use_file_backend()
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from ..analysis.psychometric import psychometric_function, slope_is_lower_bound  # noqa: E402
from ..analysis.statistics import nanmedian  # noqa: E402
from .curves import COLORS  # noqa: E402
from .field import MARKERS, _no_data  # noqa: E402


def _curve(ax, x, p, params, color, label, marker="o", sizes=None, bound=False):
    ax.scatter(x, p, s=sizes if sizes is not None else 20, color=color, marker=marker, zorder=3)
    if params is not None and np.isfinite(params).all():
        grid = np.linspace(np.nanmin(x), np.nanmax(x), 200)
        ax.plot(grid, psychometric_function(grid, *params), color=color, lw=1.6,
                label=f"{label} (slope {'>= ' if bound else ''}{params[0]:.2g}, bias {params[1]:+.2g}, lapse {params[2]:.2f})")
    else:
        ax.plot([], [], color=color, label=f"{label} (no fit)")


def _above(title: str) -> dict:
    """A legend above its axes (inside, it hides the steep part of the curves)."""
    return dict(fontsize=7, loc="lower left", bbox_to_anchor=(0, 1.01), borderaxespad=0, frameon=False, title=title,
                title_fontsize=8, alignment="left")


def psychometric_comparison(cmp: xr.Dataset, axes=None):
    """Left: the recording's P(choice right) per evidence level (dot area: trials) and its fit.
    Right: each condition's networks (median over seeds) and the fit with the conditions' median
    parameters. Returns the two Axes."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9.6, 3.6))
    ax_d, ax_m = axes
    if "data_p_right" in cmp:
        n = cmp["data_n_trials_at_evidence"].values.astype(float)
        params = np.array([cmp[f"psychometric_{k}"].sel(source="data", statistic="estimate").item() for k in ("slope", "bias", "lapse")])
        bound = "data_psychometric_fit_status" in cmp and int(cmp["data_psychometric_fit_status"]) == 2
        _curve(ax_d, cmp["evidence_level"].values, cmp["data_p_right"].values, params, "black", "data",
               sizes=12 + 60 * n / max(n.max(), 1), bound=bound)
        ax_d.legend(**_above("data (dot area: trials)"))
        ax_d.set_xlabel("signed evidence (recording)")
        ax_d.set_ylabel("P(choice right)")
        ax_d.set_ylim(-0.02, 1.02)
    else:
        _no_data(ax_d, "the recording has no choice and evidence labels: no psychometric curve")
    if "model_p_right" in cmp:
        x = cmp["model_evidence_level"].values
        for c, cond in enumerate(cmp["condition"].values):
            params = np.array([cmp[f"psychometric_{k}"].sel(source=str(cond), statistic="estimate").item() for k in ("slope", "bias", "lapse")])
            bound = ("psychometric_fit_status_networks" in cmp
                     and slope_is_lower_bound(cmp["psychometric_fit_status_networks"].sel(condition=cond).values))
            _curve(ax_m, x, nanmedian(cmp["model_p_right"].sel(condition=cond).values, axis=0), params, COLORS[c % len(COLORS)],
                   str(cond), marker=MARKERS[c % len(MARKERS)], bound=bound)
        ax_m.legend(**_above("model: median over seeds"))
        ax_m.set_xlabel("signed evidence (the model's task)")
        ax_m.set_ylim(-0.02, 1.02)
    else:
        _no_data(ax_m, "the run's predictions have no psychometric curve")
    for ax in (ax_d, ax_m):
        if ax.axison:
            ax.axhline(0.5, color="0.6", lw=0.8, ls=":")
            ax.axvline(0.0, color="0.6", lw=0.8, ls=":")
    return np.array([ax_d, ax_m])
