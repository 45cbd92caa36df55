"""The fitted psychometric function in the prediction sentences and the numbers table: slope, bias and
lapse per condition with CIs over networks, a slope at the fit's bound said to be a lower bound (and
not compared), and the censored timescales counted beside the fitted ones."""
from __future__ import annotations

import numpy as np
import xarray as xr

from bioplastic.analysis.predictions import prediction_sentences, psychometric_sentences
from bioplastic.analysis.psychometric import slope_is_lower_bound
from bioplastic.plotting.predictions import timescale_counts
from bioplastic.report.html import _prediction_numbers


def _pred(status_cxs) -> xr.Dataset:
    conds = ["baseline", "tcr_loss"]
    summ = {"slope": [[8.0, 6.5, 9.5], [20.0, 18.0, 20.0]], "bias": [[0.1, -0.2, 0.3], [-0.05, -0.1, 0.0]],
            "lapse": [[0.02, 0.0, 0.05], [0.1, 0.06, 0.12]]}
    eff = {"slope": [np.nan] * 4 + [12.0, 10.0, 13.0, 0.01], "bias": [np.nan] * 4 + [-0.15, -0.4, 0.1, 0.3],
           "lapse": [np.nan] * 4 + [0.08, 0.05, 0.1, 0.004]}
    ds = xr.Dataset(coords={"condition": conds, "seed": np.arange(4)})
    for k in ("slope", "bias", "lapse"):
        ds[f"psychometric_{k}_summary"] = (("condition", "summary_statistic"), np.array(summ[k]))
        ds[f"psychometric_{k}_effect"] = (("condition", "statistic"), np.array(eff[k]).reshape(2, 4), {"paired": [0, 1]})
        ds[f"psychometric_{k}"] = (("condition", "seed"), np.full((2, 4), summ[k][0][0]))
    ds["psychometric_fit_status"] = (("condition", "seed"), np.array(status_cxs))
    return ds


def test_lower_bound_rule():
    assert not slope_is_lower_bound([0, 0, 2, 1])
    assert slope_is_lower_bound([0, 2, 1, 1])          # half of the fitted ones
    assert not slope_is_lower_bound([1, 3, 1])         # none fitted
    assert slope_is_lower_bound(np.array([[2, 2], [0, 3]]))


def test_each_condition_states_its_fit_and_a_bound_slope_is_a_lower_bound():
    lines = psychometric_sentences(_pred([[0, 0, 0, 1], [2, 2, 2, 0]]))
    assert len(lines) == 2
    base, tcr = lines
    assert "with baseline" in base and "3 of 4 networks fitted" in base
    assert "slope 8 per unit of evidence (95 % CI 6.5 to 9.5), bias +0.1 (95 % CI -0.2 to +0.3)" in base
    assert "lapse rate 2.0 % (95 % CI 0.0 to 5.0 %)" in base and "lower bound" not in base
    assert "slope >= 20 per unit of evidence" in tcr
    assert "in 3 of 4 networks the choices switch within one evidence step, so that their slope is a lower bound and so is the median" in tcr
    # the lapse is compared (paired), the slope is not (a lower bound)
    assert "lapse rate vs baseline: +8 percentage points (95 % CI +5 to +10; Wilcoxon p = 0.004)" in tcr
    assert "slope vs baseline" not in tcr
    lines = psychometric_sentences(_pred([[0, 0, 0, 0], [0, 0, 2, 0]]))
    assert "slope vs baseline: +12 (95 % CI +10 to +13; Wilcoxon p = 0.01)" in lines[1]
    assert "in 1 of 4 networks" in lines[1] and "so is the median" not in lines[1] and "slope >=" not in lines[1]
    assert any(s.startswith("Psychometric function with tcr_loss") for s in prediction_sentences(_pred([[0] * 4, [2] * 4])))


def test_the_numbers_table_marks_a_lower_bound_and_does_not_compare_it():
    table = _prediction_numbers(_pred([[0, 0, 0, 1], [2, 2, 2, 0]]))
    assert "psychometric slope (per unit of signed evidence)" in table and "psychometric lapse rate" in table
    assert "&ge; 20 <span class='ci'>[18, 20]</span>" in table and "n/a: a lower bound" in table
    assert "the median slope is a lower bound" in table
    assert "<td>8 <span class='ci'>[6.5, 9.5]</span></td>" in table
    assert "+8.0 pp <span class='ci'>[+5.0 pp, +10.0 pp]</span>" in table  # the lapse is compared
    table = _prediction_numbers(_pred([[0] * 4, [0] * 4]))
    assert "&ge;" not in table and "+12 <span class='ci'>[+10, +13]</span>" in table


def test_timescale_legend_counts_fitted_and_censored_units():
    st = np.array([[[0, 0, 3, 3, 3], [0, 2, 3, 1, 3]], [[1] * 5, [0, 0, 0, 0, 3]]])
    pred = xr.Dataset({"timescale_status": (("condition", "seed", "unit"), st),
                       "accuracy": (("condition", "seed"), np.array([[0.9, 0.9], [np.nan, 0.9]]))},
                      coords={"condition": ["a", "b"]})
    assert timescale_counts(pred, "a").startswith("3 of 10 units fitted, 5 censored")
    assert timescale_counts(pred, "b").startswith("4 of 5 units fitted, 1 censored")  # a missing network has no units


def test_compare_marks_a_slope_that_is_a_lower_bound():
    from bioplastic.plotting.compare import psychometric_comparison
    from bioplastic.report.compare import _slope_bounds

    cmp = xr.Dataset({"data_psychometric_fit_status": ((), 2),
                      "psychometric_fit_status_networks": (("condition", "seed"), np.array([[2, 2, 0], [0, 0, 2]])),
                      "psychometric_slope": (("source", "statistic"), np.array([[3.0, 2, 4], [20.0, 18, 20], [5.0, 4, 6]])),
                      "psychometric_bias": (("source", "statistic"), np.zeros((3, 3))),
                      "psychometric_lapse": (("source", "statistic"), np.zeros((3, 3))),
                      "data_p_right": (("evidence_level",), [0.1, 0.9]), "data_n_trials_at_evidence": (("evidence_level",), [5, 5]),
                      "model_p_right": (("condition", "seed", "model_evidence_level"), np.tile([0.0, 1.0], (2, 3, 1)))},
                     coords={"source": ["data", "a", "b"], "statistic": ["estimate", "ci_low", "ci_high"], "condition": ["a", "b"],
                             "evidence_level": [-1.0, 1.0], "model_evidence_level": [-1.0, 1.0]})
    assert _slope_bounds(cmp, 3) == [True, True, False]
    ax_d, ax_m = psychometric_comparison(cmp)
    assert [t.get_text() for t in ax_d.get_legend().get_texts()] == ["data (slope >= 3, bias +0, lapse 0.00)"]
    assert [t.get_text().split(" (")[1][:9] for t in ax_m.get_legend().get_texts()] == ["slope >= ", "slope 5, "]
