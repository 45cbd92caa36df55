"""Figures of the torch vs brian2 cross-check (``OUT/brian2.nc``): they take the dataset and return
Axes; they compute nothing beyond selecting what is stored."""
from __future__ import annotations

from . import use_file_backend  # noqa: E402

use_file_backend()
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from .curves import COLORS  # noqa: E402

#: the agreement target of the same-step cross-check (relative error, float64)
TARGET = 1e-6
#: relative errors of exactly 0 are drawn at this floor (a log axis has no 0)
FLOOR = 1e-17
MARKERS = {"state": "o", "readout": "s", "plasticity": "^"}


def example_network(b2: xr.Dataset) -> tuple[str, int, int]:
    """(condition, seed, unit) of the example trace: the first network that was re-simulated, and its
    unit whose torch state varies most over trial 0."""
    ok = b2["network_ok"].values.astype(bool)
    c, s = (np.argwhere(ok)[0] if ok.any() else (0, 0))
    state = b2["state_torch"].values[c, s, 0]          # (time, unit)
    unit = int(np.nanargmax(np.nanstd(state, axis=0))) if np.isfinite(state).any() else 0
    return str(b2["condition"].values[c]), int(b2["seed"].values[s]), unit


def agreement(b2: xr.Dataset, axes=None):
    """Left: per-network relative error max|torch - brian2| / max|brian2| of the state, the readout
    and (where present) the plasticity signature, per condition, on a log axis with the 1e-6 target.
    Right: one unit's hidden state in trial 0 in both engines (torch line, brian2 dots) against time
    (ms). Returns the two Axes."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1, 1.3]})
    left, right = axes
    conds = [str(c) for c in b2["condition"].values]
    seeds = b2.sizes["seed"]
    for k, var in enumerate(("state", "readout", "plasticity")):
        v = b2[f"agreement_{var}"].values  # (condition, seed)
        if not np.isfinite(v).any():
            continue
        for j in range(len(conds)):
            x = j + (k - 1) * 0.22 + (np.linspace(-0.06, 0.06, seeds) if seeds > 1 else np.zeros(1))
            y = v[j]
            ok = np.isfinite(y)
            left.plot(x[ok], np.maximum(y[ok], FLOOR), MARKERS[var], color=COLORS[k], ms=5, mfc="none",
                      label=var if j == 0 else None)
    left.axhline(TARGET, color="k", ls="--", lw=1, label=f"target {TARGET:g}")
    left.set_yscale("log")
    left.set_xticks(range(len(conds)), conds)
    left.set_xlim(-0.6, len(conds) - 0.4)
    left.set_ylabel("relative error, torch vs brian2\nmax|diff| / max|brian2| (one marker per network)")
    same = b2.attrs.get("dt_ms") == b2.attrs.get("task_dt_ms")
    left.set_title(f"brian2 ({b2.attrs.get('brian2_codegen', '?')}) at dt {b2.attrs.get('dt_ms', float('nan')):g} ms"
                   + ("" if same else f" vs torch at {b2.attrs.get('task_dt_ms', float('nan')):g} ms"), fontsize=9)
    left.legend(fontsize=8, loc="best")
    cond, seed, unit = example_network(b2)
    dt = float(b2.attrs.get("dt_ms", 1.0))
    sel = dict(condition=cond, seed=seed, trial=0, unit=unit)
    torch_t, brian_t = b2["state_torch"].sel(**sel).values, b2["state_brian2"].sel(**sel).values
    t_ms = (np.arange(torch_t.size) + 1) * float(b2.attrs.get("task_dt_ms", dt))
    right.plot(t_ms, torch_t, "-", color=COLORS[0], lw=1.5, label="torch")
    right.plot(t_ms, brian_t, "o", color=COLORS[1], ms=3, label="brian2")
    err = float(np.nanmax(np.abs(torch_t - brian_t))) if np.isfinite(brian_t).any() else float("nan")
    right.set_xlabel("time in trial (ms)")
    right.set_ylabel(f"hidden state h of unit {unit} (a.u.)")
    right.set_title(f"{cond}, seed {seed}, trial 0: max |torch - brian2| = {err:.1e}", fontsize=9)
    right.legend(fontsize=8, loc="best")
    return axes
