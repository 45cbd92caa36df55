"""Several runs' sweep figures side by side in one PNG: iterations to criterion against the swept
field, one panel per run (bioplastic.plotting.curves.sweep, as each run's sweep.png draws it).

    python scripts/sweep_panels.py OUT.png --cols 3 RUN [RUN ...] [--titles "A" "B" ...]

Runs fill the panels row by row. Used for docs/claim4_adam.png (docs/results.md, "Claim 4 with Adam").
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from bioplastic.plotting import curves  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="the PNG to write")
    ap.add_argument("runs", nargs="+", type=Path, help="finished run folders (each with results.nc and a sweep)")
    ap.add_argument("--cols", type=int, default=3, help="panels per row")
    ap.add_argument("--titles", nargs="*", default=None, help="one title per run (default: protocol and root seed)")
    a = ap.parse_args(argv)
    if a.titles is not None and len(a.titles) != len(a.runs):
        ap.error(f"--titles: expected one title per run ({len(a.runs)}), got {len(a.titles)}")
    for run in a.runs:
        if not (run / "results.nc").is_file():
            ap.error(f"{run}: expected a finished run folder with results.nc, found none")
    rows = int(np.ceil(len(a.runs) / a.cols))
    fig, axes = plt.subplots(rows, a.cols, figsize=(4.6 * a.cols, 3.9 * rows), squeeze=False)
    for k, run in enumerate(a.runs):
        ax = axes.flat[k]
        with xr.open_dataset(run / "results.nc") as ds:
            if "sweep_dims" not in ds.attrs:
                ap.error(f"{run}: the run has no sweep")
            curves.sweep(ds.load(), axes=[ax])
            title = a.titles[k] if a.titles else f"{ds.attrs['protocol_name']}, root seed {ds.attrs['root_seed']}"
        ax.set_title(title, fontsize=10)
    for ax in axes.flat[len(a.runs):]:
        ax.set_visible(False)
    fig.tight_layout()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
