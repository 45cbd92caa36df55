"""scripts/gr_baseline_sensitivity.py: claim 2's lead under later GR-rule baselines, from stored metrics."""
from pathlib import Path

import numpy as np
import xarray as xr
from conftest import load_script


def _main(argv):
    return load_script("gr_baseline_sensitivity").main([str(a) for a in argv])


def _run(folder: Path, jumps, departures) -> Path:
    """An analysis whose trajectory change sits at 0.02 and jumps to 0.5 at a given iteration per network
    (None: never); fp_distance never passes its floor; the drops depart where given."""
    folder.mkdir()
    ck = np.arange(0, 310, 10)
    tc = np.full((1, len(jumps), len(ck)), 0.02)
    for s, j in enumerate(jumps):
        if j is not None:
            tc[0, s, ck >= j] = 0.5
    an = xr.Dataset({"trajectory_change": (("condition", "seed", "checkpoint"), tc),
                     "fp_distance": (("condition", "seed", "checkpoint"), np.zeros_like(tc)),
                     "fp_distance_floor": (("condition", "seed"), np.ones((1, len(jumps)))),
                     "drop_departure": (("condition", "seed"), np.array([departures], float))},
                    coords={"condition": ["baseline"], "seed": np.arange(len(jumps)), "checkpoint": ck},
                    attrs={"analysis": str({"gr_threshold": 3.0, "gr_baseline": 3}), "gr_min_change": 0.01})
    an.to_netcdf(folder / "analysis.nc")
    return folder


def test_leads_by_the_analysis_rule_at_each_baseline(tmp_path, capsys):
    # leads 50, 40, 30, -50; a drop at 20 (before any flaggable checkpoint: out); a network without an
    # event; a jump at 30 with the drop at 40: kept with a 3-checkpoint baseline (first event at 30),
    # left out with a 5-checkpoint one (nothing flaggable before 50)
    run = _run(tmp_path / "r", [100, 110, 120, 200, 60, None, 30], [150, 150, 150, 150, 20, 150, 40])
    assert _main([run, "--baselines", "3", "5"]) == 0
    row = capsys.readouterr().out.strip().splitlines()[-1]
    assert "| 4/5 first, median +30, p = 0.38 | 3/4 first, median +35, p = 0.62 |" in row, row


def test_refuses_runs_without_the_metrics_and_bad_baselines(tmp_path, capsys):
    empty = tmp_path / "e"
    empty.mkdir()
    assert _main([empty]) == 2 and "no analysis.nc" in capsys.readouterr().err
    old = tmp_path / "o"
    old.mkdir()
    xr.Dataset({"trajectory_change": (("checkpoint",), np.zeros(3))}, coords={"checkpoint": [0, 1, 2]}).to_netcdf(old / "analysis.nc")
    assert _main([old]) == 2 and "missing fp_distance, fp_distance_floor, drop_departure" in capsys.readouterr().err
    assert _main([_run(tmp_path / "r", [100], [150]), "--baselines", "0"]) == 2
    assert "--baselines: expected checkpoint counts >= 1" in capsys.readouterr().err
