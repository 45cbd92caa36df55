"""The bottom line quotes the datasets' own numbers, says what would test each, and never claims a
lead the CI does not support."""
from __future__ import annotations

import numpy as np
import xarray as xr

from bioplastic.report.bottom_line import MAX_SENTENCES, bottom_line


def results(search_ref, search_tcr, abrupt=1.0):
    S = len(search_ref)
    ds = xr.Dataset({"abrupt": (("condition", "seed"), np.full((2, S), abrupt)),
                     "search_phase": (("condition", "seed"), np.array([search_ref, search_tcr], float)),
                     "drop_width": (("condition", "seed"), np.full((2, S), 12.0))},
                    coords={"condition": ["baseline", "tcr"], "seed": np.arange(S)})
    ds.attrs["root_seed"] = 3
    return ds


def analysis(lead):
    ds = xr.Dataset({"lead_time": (("condition", "seed"), np.array([lead], float))},
                    coords={"condition": ["baseline"], "checkpoint": [0, 10, 20]})
    ds.attrs["root_seed"] = 3
    return ds


def test_learning_and_a_significant_speed_up_are_stated_with_numbers_and_a_test():
    ref = [60, 50, 46, 108, 145, 53, 66, 49, 66, 72]
    lines = bottom_line(results(ref, [r - 12 for r in ref]))
    assert lines[0].startswith("Learning is abrupt in 10 of 10 baseline networks") and "Test:" in lines[0]
    assert "median of 63 iterations" in lines[0]
    assert "With tcr, the search phase changes by -12 iterations" in lines[1] and "n = 10 paired networks" in lines[1]


def test_no_effect_no_sentence_and_at_most_six():
    ref = [60, 50, 46, 108, 145, 53, 66, 49, 66, 72]
    assert len(bottom_line(results(ref, ref))) == 1
    assert len(bottom_line(results(ref, [r - 12 for r in ref]), analysis([5] * 10))) <= MAX_SENTENCES


def test_a_lead_whose_ci_includes_zero_is_not_called_a_lead():
    ref = [60, 50, 46, 108, 145, 53, 66, 49, 66, 72]
    before = bottom_line(results(ref, ref), analysis([10, 20, 10, 30, 10, 20, 10, 10, 20, 10]))[-1]
    assert "before the drop" in before and "not clearly" not in before
    mixed = bottom_line(results(ref, ref), analysis([10, -10, 0, 20, -20, 0, 10, -10, 0, 5]))[-1]
    assert "not clearly before it" in mixed


def test_untrained_networks_give_no_prediction_and_a_caveat():
    ref = [60, 50, 46, 108, 145, 53, 66, 49, 66, 72]
    ds = results(ref, ref, abrupt=0.0)
    ds["learned"] = (("condition", "seed"), np.zeros((2, 10), bool))
    assert bottom_line(ds, analysis([5] * 10)) == []
    from bioplastic.report.bottom_line import caveats

    assert "No network reached the criterion" in caveats(ds)[0]
    few = results(ref[:2], ref[:2])
    assert any("With 2 seeds" in c for c in caveats(few))
    assert not any("nan" in s.split() for s in bottom_line(results(ref, ref, abrupt=0.0)))


def test_blocking_the_plasticity_is_stated_as_the_change_blocking_makes():
    """lesion_effect is with minus without plasticity: blocking that raises accuracy by 1.6 points
    (CI 1.6 to 2.3) is a positive change, and quantised accuracies keep their decimal."""
    ref = [60, 50, 46, 108, 145, 53, 66, 49, 66, 72]
    pred = xr.Dataset({"lesion_effect": (("condition", "statistic"), np.array([[np.nan] * 4, [-0.015625, -0.0234375, -0.015625, 0.002]])),
                       "accuracy_plasticity_blocked": (("condition", "seed"), np.vstack([np.full(10, np.nan), np.ones(10)]))},
                      coords={"condition": ["baseline", "tcr"]})
    lines = bottom_line(results(ref, ref), predictions=pred)
    line = next(s for s in lines if s.startswith("Blocking"))
    assert "changes accuracy by +1.6 points (95 % CI +1.6 to +2.3; Wilcoxon p = 0.002; n = 10 networks)" in line
