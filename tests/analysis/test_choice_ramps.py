"""Choice-resolved ramps on synthetic units with known answers, and the window cut where few trials remain."""
from __future__ import annotations

import numpy as np

from bioplastic.analysis.predictions import Window, choice_resolved_ramps, cut_window, ramp_slopes, trials_at_time

B, T, DT = 40, 30, 20.0


def synthetic():
    rng = np.random.default_rng(0)
    choice = np.where(np.arange(B) % 2 == 0, 1, -1)
    t = np.arange(T) * DT / 1000
    rate = np.zeros((B, T, 4))
    rate[:, :, 0] = choice[:, None] * 2.0 * t[None]                  # opposite ramps for the two choices
    rate[:, :, 1] = np.exp(-t / 0.2)[None]                           # decay back to baseline after a stimulus
    rate[:, :, 2] = np.where(choice[:, None] > 0, 3.0 * t[None], 0)  # build-up for one choice only
    rate += 0.01 * rng.standard_normal(rate.shape)                   # unit 3: noise only
    return rate, choice, Window("delay", np.zeros(B, int), np.full(B, T))


def test_units_are_classified_as_their_construction_says():
    rate, choice, w = synthetic()
    cr = choice_resolved_ramps(rate, w, choice, np.zeros(4), DT)
    assert cr["ramp_class"].tolist() == [1, 2, 1, 0]  # build-up, decay, build-up, none
    assert cr["preferred_choice"][2] == 1
    np.testing.assert_allclose(cr["slope_preferred"][:3], [2.0, -1.46, 3.0], atol=0.05)
    assert cr["fraction_buildup"] == 0.5 and cr["fraction_decay"] == 0.25 and cr["fraction_opposite_ramps"] == 0.25
    assert cr["population_ramp_slope"] > 0 and cr["population_ramp_p_value"] < 1e-6


def test_a_pooled_slope_misses_opposite_ramps():
    rate, _, w = synthetic()
    pooled = ramp_slopes(rate, w, DT)
    assert abs(pooled.slope_n[0]) < 0.05 and pooled.p_n[0] > 0.01  # cancelled: why the ramp is resolved by choice


def test_the_window_ends_where_fewer_than_the_minimum_or_a_quarter_of_the_trials_remain():
    lengths = np.r_[np.full(30, 10), np.full(5, 20)]  # 30 trials of 10 steps, 5 of 20
    w = Window("delay", np.zeros(35, int), lengths)
    assert trials_at_time(w).tolist() == [35] * 10 + [5] * 10
    cut = cut_window(w, min_trials=10)
    assert (cut.stop_b == 10).all()
    assert (cut_window(w, min_trials=5).stop_b == 10).all()  # 5 trials are fewer than a quarter of 35
    few = np.r_[np.full(12, 10), np.full(4, 20)]       # 4 of 16 trials are a quarter
    assert (cut_window(Window("delay", np.zeros(16, int), few), min_trials=4).stop_b == few).all()


def test_the_figures_use_the_same_choice_axis_as_the_population_ramp():
    from bioplastic.analysis.predictions import choice_means, choice_sorted

    rate, choice, w = synthetic()
    values, means = choice_means(rate, w, choice)
    axis = (means[-1] - means[0]) / np.linalg.norm(means[-1] - means[0])
    fig = choice_sorted(rate[None], w, choice, np.array([True]))
    np.testing.assert_allclose(fig["projection_by_choice"][0], np.einsum("ngl,n->gl", fig["psth_by_choice"][0], axis))
    # the population ramp regresses the same projection, signed by choice: build-up for choice +1
    proj_plus = fig["projection_by_choice"][0, list(values).index(1)]
    assert proj_plus[-1] > proj_plus[0]
