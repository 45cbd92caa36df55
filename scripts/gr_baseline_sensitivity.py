"""Claim 2's lead under later GR-rule baselines, recomputed from a run's stored GR metrics (no
re-analysis): for each baseline length (checkpoints), the first GR event of every network by the
analysis's own rule (bioplastic.analysis.phase_space.first_gr_events on trajectory_change and
fp_distance, with the run's threshold and floors), its lead to the drop's departure, networks whose
drop departs by the first flaggable checkpoint left out (as claim 2 does), and a sign test.

    python scripts/gr_baseline_sensitivity.py RUN [RUN ...] [--baselines 3 5 8]

Prints one markdown table row per run. Used for docs/results.md ("The flip-flop with the PLRNN").
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import xarray as xr
from scipy.stats import binomtest

from bioplastic.analysis.geometry import earliest_event, gr_rule
from bioplastic.analysis.phase_space import first_gr_events


def leads(analysis: xr.Dataset, baseline: int) -> np.ndarray:
    """The leads (departure minus first GR event) of the networks claim 2 would keep, with the run's
    own GR rule (:func:`~bioplastic.analysis.geometry.gr_rule`) but its baseline over ``baseline``
    checkpoints."""
    rule = gr_rule(analysis)
    ck = analysis["checkpoint"].values
    metrics = {m: analysis[m].transpose("condition", "seed", "checkpoint").values for m in ("trajectory_change", "fp_distance")}
    _, first = first_gr_events(metrics, ck, analysis["fp_distance_floor"].transpose("condition", "seed").values,
                               baseline=baseline, threshold=rule["threshold"], min_change=rule["min_change"])
    dep = analysis["drop_departure"].transpose("condition", "seed").values
    with np.errstate(invalid="ignore"):
        keep = np.isfinite(first) & np.isfinite(dep) & (dep > earliest_event(ck, baseline))
    return (dep - first)[keep]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="finished run folders with analysis.nc")
    ap.add_argument("--baselines", nargs="+", type=int, default=[3, 5, 8], help="baseline lengths, in checkpoints (>= 1)")
    a = ap.parse_args(argv)
    if any(b < 1 for b in a.baselines):
        print(f"error: --baselines: expected checkpoint counts >= 1, got {a.baselines}", file=sys.stderr)
        return 2
    need = ("trajectory_change", "fp_distance", "fp_distance_floor", "drop_departure")
    rows = []
    for run in a.runs:
        path = run / "analysis.nc"
        if not path.is_file():
            print(f"error: {run}: no analysis.nc (a run with an analysis: section, or `python -m bioplastic analyze {run}`)",
                  file=sys.stderr)
            return 2
        with xr.open_dataset(path) as an:
            missing = [v for v in need if v not in an]
            if missing:
                print(f"error: {path}: expected the GR metrics {', '.join(need)}; missing {', '.join(missing)} "
                      "(an analysis from before the drop departure; rerun `python -m bioplastic analyze`)", file=sys.stderr)
                return 2
            cells = []
            for b in a.baselines:
                lead = leads(an, b)
                pos, neg = int((lead > 0).sum()), int((lead < 0).sum())
                p = binomtest(pos, pos + neg).pvalue if pos + neg else float("nan")
                med = f"{np.median(lead):+.0f}" if lead.size else "n/a"
                cells.append(f"{pos}/{lead.size} first, median {med}, p = {p:.2g}")
            rows.append(f"| {run} | " + " | ".join(cells) + " |")
    print("| run | " + " | ".join(f"baseline {b} checkpoints" for b in a.baselines) + " |")
    print("|---|" + "---|" * len(a.baselines))
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
