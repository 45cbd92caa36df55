"""The bottom line quotes the datasets' own numbers, says what would test each, and never claims a
lead the CI does not support."""
from __future__ import annotations

import numpy as np
import xarray as xr

from bioplastic.report import verdicts as V
from bioplastic.report.bottom_line import MAX_SENTENCES, bottom_line, caveats
from bioplastic.report.html import _gr_table, _prediction_numbers
from bioplastic.report.text import condition_label, num

REF = [60, 50, 46, 108, 145, 53, 66, 49, 66, 72]


def results(search_ref, search_tcr, abrupt=1.0, conds=("baseline", "tcr")):
    S = len(search_ref)
    ds = xr.Dataset({"abrupt": (("condition", "seed"), np.full((2, S), abrupt)),
                     "search_phase": (("condition", "seed"), np.array([search_ref, search_tcr], float)),
                     "drop_width": (("condition", "seed"), np.full((2, S), 12.0))},
                    coords={"condition": list(conds), "seed": np.arange(S)})
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
    assert "With TCR, the search phase changes by -12 iterations" in lines[1] and "n = 10 paired networks" in lines[1]


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


def test_conditions_are_named_in_words_and_a_loss_term_has_no_manipulation_in_an_animal():
    """Prose names conditions as words; a loss term is said to have no biological counterpart (no
    "manipulation that stands for it"); short-term plasticity names the manipulation that tests it."""
    assert condition_label("tcr_loss") == "TCR loss" and condition_label("rflo_tcr_local_loss") == "RFLO TCR local loss"
    assert condition_label("baseline") == "baseline"
    for name, form, says, never in (("tcr_loss", "loss", "no biological counterpart", "stands for it"),
                                    ("tcr_plasticity", "plasticity", "block short-term synaptic plasticity", "stands for it")):
        ds = results(REF, [r - 12 for r in REF], conds=("baseline", name))
        lines = bottom_line(ds, conditions={"baseline": V.CondInfo(), name: V.CondInfo(tcr_form=form)})
        assert not any(name in s for s in lines), lines
        assert f"With {condition_label(name)}, the search phase changes by -12" in lines[1]
        assert says in lines[1] and never not in lines[1]
    # without knowing what the condition is, the generic test stays
    assert "stands for it" in bottom_line(results(REF, [r - 12 for r in REF]))[1]


def test_an_effect_below_the_smallest_effect_of_interest_carries_the_claims_sections_note():
    """-4 iterations against a reference median search phase of 63 (smallest effect of interest 6.3):
    significant, and said to be smaller than that, in the claims section's own words."""
    lines = bottom_line(results(REF, [r - 4 for r in REF]))
    assert "changes by -4 iterations" in lines[1]
    ev = V.search_phase_evidence(results(REF, [r - 4 for r in REF]), "baseline", "tcr", "", np.random.default_rng(0))
    assert ev.note.startswith("significant, but smaller than the smallest effect of interest (6.3")
    assert f"n = 10 paired networks): {ev.note}." in lines[1]
    big = bottom_line(results(REF, [r - 12 for r in REF]))[1]
    assert "smallest effect of interest" not in big


def test_a_build_up_finding_names_claim_7_when_that_claim_does_not_hold():
    pred = xr.Dataset({"fraction_buildup_summary": (("condition", "summary_statistic"), [[0.46, 0.44, 0.5], [0.55, 0.5, 0.59]]),
                       "fraction_buildup_effect": (("condition", "statistic"), [[np.nan] * 4, [0.085, 0.035, 0.13, 0.021]]),
                       "fraction_buildup": (("condition", "seed"), np.full((2, 10), 0.5))},
                      coords={"condition": ["baseline", "tcr_loss"]})
    fails = V.Verdict(7, V.FAILS, "does not hold (of 8 comparisons: 2 holds, 3 does not hold, 3 inconclusive)")
    line = next(s for s in bottom_line(results(REF, REF), predictions=pred, verdicts=[fails]) if "build up" in s)
    assert "with TCR loss, against 46 % with baseline (+8 points" in line
    assert ("This alone is not claim 7 (TCR promotes slow dynamics and ramping activity), which does not hold in this "
            "run") in line and "(of 8 comparisons: 2 holds, 3 does not hold, 3 inconclusive)" in line
    holds = V.Verdict(7, V.HOLDS, "holds")
    for vs in ([holds], None):
        line = next(s for s in bottom_line(results(REF, REF), predictions=pred, verdicts=vs) if "build up" in s)
        assert "claim 7" not in line


def _lesion_predictions():
    """The default run's lesion: with minus without plasticity -1.6 points, 8 of 10 networks exactly 2 of 128 trials."""
    on = np.array([0.9609375, 0.984375, 0.984375, 0.9765625, 0.984375, 0.984375, 0.953125, 0.984375, 0.984375, 0.984375])
    off = on + np.array([4, 2, 2, 2, 2, 2, 5, 2, 2, 2]) / 128
    return xr.Dataset({"lesion_effect": (("condition", "statistic"), np.array([[np.nan] * 4, [-0.015625, -0.0234375, -0.015625, 0.002]])),
                       "accuracy": (("condition", "seed"), np.vstack([np.ones(10), on])),
                       "accuracy_plasticity_blocked": (("condition", "seed"), np.vstack([np.full(10, np.nan), off]))},
                      coords={"condition": ["baseline", "tcr_plasticity"]}, attrs={"n_trials": 128})


def test_blocking_the_plasticity_reads_the_same_in_the_bottom_line_and_the_predictions_table():
    """One sign convention (blocking's change: without minus with plasticity) and one decimal in both
    places, so the CI is not rounded to a point; why its lower end is the estimate is said."""
    pred = _lesion_predictions()
    line = next(s for s in bottom_line(results(REF, REF), predictions=pred) if s.startswith("Blocking"))
    assert "trained TCR plasticity networks changes accuracy by +1.6 points (95 % CI +1.6 to +2.3;" in line
    assert "in steps of 0.8 points; 8 of 10 networks change by exactly +1.6, so the estimate is also an end of its CI" in line
    table = _prediction_numbers(pred)
    assert "change of accuracy (without minus with plasticity)" in table
    assert "+1.6 pp <span class='ci'>[+1.6 pp, +2.3 pp]</span>" in table and "-2 pp" not in table


def test_no_negative_zero_in_lead_times():
    assert num(-0.4, ".0f") == "0" and num(-0.4, "+.0f") == "+0" and num(-0.04, "+.1f") == "+0.0"
    assert num(-0.6, ".0f") == "-1" and num(0.0, "+.0f") == "+0" and num(-2.5, "+.1f") == "-2.5"
    lead = np.array([[-1.0, 0.0, 0.5, -0.5, 1.0, -1.0, 0.0, 0.0, 0.0, -0.5]])
    an = xr.Dataset({"lead_time": (("condition", "seed"), lead), "lead_time_median": (("condition",), [-0.25]),
                     "lead_time_ci": (("condition", "bound"), [[-0.5, 0.4]])},
                    coords={"condition": ["baseline"], "checkpoint": [0, 10, 20]}, attrs={"root_seed": 3})
    table = _gr_table(an)
    # the median (0) and its CI, recomputed from the leads on the analysis's own bootstrap stream
    assert "<td>0 <span class='ci'>[-1, 0]</span></td>" in table and "<td>-1, +0, +0, +0, +1, -1, +0, +0, +0, +0</td>" in table
    assert not any(t in table for t in ("-0 ", "-0]", "-0,", "[-0"))
    assert all("-0 " not in s and "-0;" not in s for s in bottom_line(results(REF, REF), an))


def _stalled(acc_end, rising):
    ds = results(REF, REF)
    n_eval = 20
    ramp = np.linspace(0.5, acc_end, n_eval) if rising else np.minimum(np.linspace(0.5, 1.5, n_eval), acc_end)
    ds["accuracy"] = (("condition", "seed", "evaluation"), np.broadcast_to(ramp, (2, 10, n_eval)).copy())
    ds["learned"] = (("condition", "seed"), np.zeros((2, 10), bool))
    ds["iterations_to_criterion"] = (("condition", "seed"), np.full((2, 10), np.nan), {"criterion": 0.95})
    return ds.assign_coords(iteration=np.arange(200))


def test_an_unreachable_criterion_is_not_answered_with_train_longer():
    """Networks whose accuracy stopped rising below the criterion: the caveat says training longer will
    not help and what may be wrong; networks still rising at the end are told to train longer (twice the
    budget, not a fixed number)."""
    (flat,) = caveats(_stalled(0.86, rising=False))[:1]
    assert flat.startswith("No network reached the criterion (held-out accuracy >= 0.95): the best reached 0.86")
    assert "training longer will not help" in flat and "--set training.iterations" not in flat
    assert "trials without evidence" in flat and "training.criterion" in flat
    (rising,) = caveats(_stalled(0.9, rising=True))[:1]
    assert "still rising" in rising and "--set training.iterations=400" in rising


def test_a_restructuring_after_the_drop_is_called_so_and_gradual_drops_are_named():
    ref = [60, 50, 46, 108, 145, 53, 66, 49, 66, 72]
    lags = [-500, -600, -550, -700, -450, -520, -610, -480, -530, -560]
    after = bottom_line(results(ref, ref, abrupt=0.0), analysis(lags))[-1]
    assert "after the loss starts to drop, not before it" in after and "around the drop" not in after
    assert "None of these 10 networks drops abruptly" in after
    assert "predicts they change no earlier than performance does" in after
    before = bottom_line(results(ref, ref), analysis([10, 20, 10, 30, 10, 20, 10, 10, 20, 10]))[-1]
    assert "drops abruptly" not in before and "predicts they change before performance does" in before
