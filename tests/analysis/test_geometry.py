"""Geometry and GR-event functions on inputs whose answers are known."""
import numpy as np
import pytest
from scipy.spatial import procrustes as scipy_procrustes
from scipy.stats import ortho_group

from bioplastic.analysis.geometry import (
    chamfer_distance,
    first_gr_event,
    gr_events,
    lead_time,
    linear_cka,
    participation_ratio,
    pca_frame,
    procrustes_distance,
    project,
)


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_chamfer_distance():
    A = _rng().normal(size=(20, 3))
    assert chamfer_distance(A, A) == 0.0
    assert chamfer_distance(A, A[::-1]) == 0.0  # order does not matter
    B = _rng(1).normal(size=(7, 3))
    assert chamfer_distance(A, B) == chamfer_distance(B, A) > 0
    # {0} vs {1, 3}: mean_a min_b = 1, mean_b min_a = (1 + 3) / 2 = 2
    assert chamfer_distance([[0.0]], [[1.0], [3.0]]) == pytest.approx(1.5)
    # padding rows (NaN) are dropped; empty-set conventions
    assert chamfer_distance([[0.0], [np.nan]], [[1.0], [3.0]]) == pytest.approx(1.5)
    assert chamfer_distance(np.zeros((0, 2)), np.zeros((0, 2))) == 0.0
    assert np.isnan(chamfer_distance(np.zeros((0, 2)), np.ones((1, 2))))
    with pytest.raises(ValueError, match="same dimension"):
        chamfer_distance(np.zeros((2, 2)), np.zeros((2, 3)))


def test_participation_ratio():
    iso = _rng().normal(size=(20000, 10))
    assert participation_ratio(iso) == pytest.approx(10, rel=0.03)
    rank1 = np.outer(_rng(1).normal(size=500), _rng(2).normal(size=6)) + 3.0
    assert participation_ratio(rank1) == pytest.approx(1.0, abs=1e-9)
    # two equal-variance directions -> 2, whatever the embedding
    two = _rng(3).normal(size=(20000, 2)) @ ortho_group.rvs(5, random_state=1)[:2]
    assert participation_ratio(two) == pytest.approx(2, rel=0.02)
    assert participation_ratio(iso.reshape(100, 200, 10)) == participation_ratio(iso)  # leading dims flattened
    assert np.isnan(participation_ratio(np.ones((5, 3))))


def test_linear_cka():
    X = _rng().normal(size=(300, 6))
    R = ortho_group.rvs(6, random_state=2)
    assert linear_cka(X, X @ R) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(X, 3.0 * X @ R + 5.0) == pytest.approx(1.0, abs=1e-12)
    Y = _rng(1).normal(size=(300, 4))
    assert 0 <= linear_cka(X, Y) < 0.1  # independent representations
    assert linear_cka(X, Y) == pytest.approx(linear_cka(Y, X))
    with pytest.raises(ValueError, match="same samples"):
        linear_cka(X, Y[:10])


def test_procrustes_distance():
    X = _rng().normal(size=(200, 5))
    R = ortho_group.rvs(5, random_state=3)
    assert procrustes_distance(X, 2.0 * X @ R - 1.0) == pytest.approx(0.0, abs=1e-6)
    Y = _rng(1).normal(size=(200, 5))
    d = procrustes_distance(X, Y)
    # scipy's disparity = 1 - ||X^T Y||_*^2 for the same normalisation: d^2 = 2 - 2 sqrt(1 - disparity)
    _, _, disparity = scipy_procrustes(X, Y)
    assert d ** 2 == pytest.approx(2 - 2 * np.sqrt(1 - disparity), rel=1e-9)
    assert d == pytest.approx(procrustes_distance(Y, X))
    assert 0 < procrustes_distance(X, X[:, :3]) < np.sqrt(2)  # narrower Y is zero-padded


def test_pca_frame_is_deterministic_and_sign_fixed():
    X = _rng().normal(size=(500, 4)) @ np.diag([5.0, 3.0, 1.0, 0.2]) + 1.0
    f = pca_frame(X, 3)
    np.testing.assert_allclose(f.components_cxs @ f.components_cxs.T, np.eye(3), atol=1e-12)
    big = np.abs(f.components_cxs).argmax(1)
    assert (f.components_cxs[np.arange(3), big] > 0).all()  # svd_flip rule
    np.testing.assert_allclose(f.explained_variance_c, project(f, X).var(0, ddof=1), rtol=1e-10)
    assert f.explained_variance_ratio_c.sum() < 1
    assert np.allclose(project(f, f.mean_s[None]), 0)
    # the same frame from permuted rows (SVD signs could differ without the sign fix)
    g = pca_frame(X[_rng(1).permutation(500)], 3)
    np.testing.assert_allclose(g.components_cxs, f.components_cxs, atol=1e-10)
    # (trial, time, unit) input with NaN padding
    T = np.concatenate([X.reshape(5, 100, 4), np.full((5, 3, 4), np.nan)], 1)
    np.testing.assert_allclose(pca_frame(T, 3).components_cxs, f.components_cxs, atol=1e-10)
    assert np.isnan(project(f, np.full((1, 4), np.nan))).all()
    with pytest.raises(ValueError, match="n_components"):
        pca_frame(X, 5)
    with pytest.raises(ValueError, match="4 features"):
        project(f, np.zeros((2, 3)))


def test_gr_events_find_a_jump_above_the_baseline():
    it = np.arange(0, 80, 10)
    metric = np.array([1.0, 1.1, 0.9, 1.0, 1.05, 5.0, 1.0, 6.0])
    # baseline median 1.0, MAD 0.1 -> events where m > 1.3, after the 3 baseline checkpoints
    assert gr_events(metric, it).tolist() == [50, 70]
    assert first_gr_event(metric, it) == 50
    assert gr_events(metric, it, threshold=45).tolist() == [70]  # 1 + 45 * 0.1 = 5.5
    # a flat baseline (MAD 0): the floor 0.05 * |median| = 0.1 sets the scale -> events where m > 2.3
    flat = np.array([2.0, 2.0, 2.0, 2.01, 2.2, 2.5])
    assert gr_events(flat, np.arange(6)).tolist() == [5]
    # NaN never makes an event; no finite baseline -> no event
    assert gr_events(np.array([1.0, np.nan, 1.0, np.nan, 9.0]), np.arange(5)).tolist() == [4]
    assert gr_events(np.array([np.nan] * 3 + [9.0]), np.arange(4)).size == 0
    assert np.isnan(first_gr_event(np.ones(6), np.arange(6)))
    with pytest.raises(ValueError, match="equal length"):
        gr_events(metric, it[:-1])


def test_gr_events_min_change_ignores_noise_on_a_plateau():
    it = np.arange(0, 80, 10)
    # a network that barely changes: the metric sits at numerical noise, then moves by 1e-7
    noise = np.array([1e-9, 1.2e-9, 0.9e-9, 1e-9, 1.1e-9, 1e-7, 1e-9, 1e-9])
    assert gr_events(noise, it).tolist() == [50]  # without a floor: 1e-7 >> 1e-9 + 3 MAD
    assert gr_events(noise, it, min_change=0.01).size == 0
    assert np.isnan(first_gr_event(noise, it, min_change=0.01))
    # a real change on the same plateau still fires, and the floor is a strict lower bound
    real = noise.copy()
    real[6] = 0.2
    assert gr_events(real, it, min_change=0.01).tolist() == [60]
    assert first_gr_event(real, it, min_change=0.01) == 60
    assert gr_events(real, it, min_change=0.2).size == 0
    # the floor never adds events: the baseline rule still applies above it
    metric = np.array([1.0, 1.1, 0.9, 1.0, 1.05, 5.0, 1.0, 6.0])
    assert gr_events(metric, it, min_change=0.01).tolist() == [50, 70]
    assert gr_events(metric, it, min_change=5.5).tolist() == [70]
    with pytest.raises(ValueError, match="min_change"):
        gr_events(metric, it, min_change=-1.0)


def test_lead_time_signs():
    assert lead_time(50, 200) == 150  # GR event before the drop: positive
    assert lead_time(300, 200) == -100
    assert np.isnan(lead_time(np.nan, 200)) and np.isnan(lead_time(50, np.nan))
    np.testing.assert_array_equal(lead_time(np.array([10.0, np.nan]), np.array([40.0, 40.0])), [30.0, np.nan])


def test_inputs_are_not_modified():
    X = _rng().normal(size=(50, 3))
    Y = _rng(1).normal(size=(50, 3))
    X0, Y0 = X.copy(), Y.copy()
    for fn in (chamfer_distance, linear_cka, procrustes_distance):
        fn(X, Y)
    participation_ratio(X)
    pca_frame(X, 2)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(Y, Y0)


def test_bootstrap_ci_brackets_the_median_and_is_reproducible():
    from bioplastic.analysis.statistics import bootstrap_ci

    v = np.arange(21.0)
    med, lo, hi = bootstrap_ci(v, np.random.default_rng(0))
    assert med == 10 and lo < 10 < hi and (lo, hi) == bootstrap_ci(v, np.random.default_rng(0))[1:]
    assert np.isnan(bootstrap_ci([np.nan], np.random.default_rng(0))).all()
    assert bootstrap_ci([5.0], np.random.default_rng(0)) == (5.0, 5.0, 5.0)


def test_paired_comparison_and_condition_table():
    from bioplastic.analysis.statistics import censored, compare_conditions, paired_comparison

    rng = np.random.default_rng(0)
    base = np.array([100.0, 120, 90, 110, 130, 95, 105, 115])
    faster = base - 40
    r = paired_comparison(faster, base, rng)
    assert r["difference"] == -40 and r["difference_ci_low"] == -40 and r["difference_ci_high"] == -40
    assert r["p_value"] < 0.01 and r["n_pairs"] == 8
    same = paired_comparison(base, base, rng)
    assert same["difference"] == 0 and same["p_value"] == 1.0
    itc = censored(np.array([[100, np.nan, 90], [50, 60, np.nan]]), budget=300)
    np.testing.assert_array_equal(itc, [[100, 300, 90], [50, 60, 300]])
    table = compare_conditions(itc, rng)
    assert table["median"][0] == 100 and table["median"][1] == 60
    assert np.isnan(table["difference"][0]) and table["difference"][1] == -50  # (-50, -240, +210) -> median -50
    assert table["ci_low"][0] <= 100 <= table["ci_high"][0]


def test_gr_growth_is_the_rank_correlation_over_the_search_phase():
    from bioplastic.analysis.geometry import gr_growth

    it = np.arange(0, 200, 10)
    rising = 1e-6 * 10 ** (it / 50.0)
    assert gr_growth(rising, it, 0, 150) == 1.0
    assert gr_growth(rising[::-1], it, 0, 150) == -1.0
    # only the checkpoints in [start, stop): what comes after the departure does not count
    spiky = np.where(it >= 150, 0.0, rising)
    assert gr_growth(spiky, it, 0, 150) == 1.0 and gr_growth(spiky, it, 0, 200) < 1.0
    assert np.isnan(gr_growth(rising, it, 0, 30))          # 3 checkpoints: too few
    assert np.isnan(gr_growth(rising, it, 0, np.nan))      # no departure
    assert np.isnan(gr_growth(np.ones(len(it)), it, 0, 150))  # a constant metric
