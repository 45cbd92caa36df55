"""Learning-curve metrics on curves whose answers are known."""
import numpy as np

from bioplastic.analysis.learning_curves import HORIZON_WINDOWS, curve_metrics, iterations_to_criterion, metrics_horizon
from bioplastic.regularizers.schedules import AdaptiveConfig, CosineDecayConfig, LinearDecayConfig, StepConfig, WarmupConfig, build_schedule


def test_step_drop_metrics():
    # loss[300 + j] = 1 - (j + 1) / 20 for j = 0..19, then 0: L_p = 1, L_f = 0
    loss = np.r_[np.full(300, 1.0), np.linspace(1.0, 0.0, 21)[1:], np.zeros(180)]
    m = curve_metrics(loss, window=1)
    assert m["plateau_start"] == 0 and m["plateau_loss"] == 1.0 and m["final_loss"] == 0.0
    assert m["drop_onset"] == 302  # first value strictly below 0.9 is 0.85
    assert m["search_phase"] == m["drop_onset"]
    assert m["drop_onset"] + m["drop_width"] == 318  # first value strictly below 0.1 is 0.05
    assert 300 <= m["drop_time"] <= 319
    assert np.isclose(m["abruptness"], m["drop_width"] / m["search_phase"])
    assert m["abrupt"] == 1


def _noisy(curve, seed=0, rel=0.05):
    return curve * (1 + rel * np.random.default_rng(seed).standard_normal(len(curve)))


def test_plateau_then_drop_is_abrupt():
    k = np.arange(1000)
    curve = 0.02 + 0.98 / (1 + np.exp((k - 400) / 5))  # flat at 1, sigmoid drop around 400
    m = curve_metrics(_noisy(curve), window=25)
    assert m["plateau_start"] < 25
    assert 370 <= m["drop_onset"] <= 400 and m["search_phase"] >= 350
    assert m["drop_width"] <= 40 and m["abrupt"] == 1


def test_falling_from_the_start_has_no_plateau():
    k = np.arange(1000)
    m = curve_metrics(_noisy(0.02 + np.exp(-k / 80)), window=25)
    assert m["plateau_start"] == 0
    assert m["search_phase"] < 25  # the loss falls from the first iterations
    assert m["abrupt"] == 0


def test_initial_transient_then_plateau_then_drop():
    # delayed addition: learning the target's mean is a fast transient (1.2 -> 0.1), then the plateau
    k = np.arange(1500)
    curve = 0.1 + 1.1 * np.exp(-k / 4) - 0.09 / (1 + np.exp(-(k - 900) / 8))
    m = curve_metrics(_noisy(curve, 1, 0.03), window=25)
    assert 10 <= m["plateau_start"] <= 60  # the plateau starts after the transient
    assert np.isclose(m["plateau_loss"], 0.1, rtol=0.05)
    assert 850 <= m["drop_onset"] <= 900  # the drop is the late one, not the transient at 2-6
    assert m["search_phase"] >= 780 and m["abrupt"] == 1


def test_metrics_ignore_training_past_the_horizon():
    # metrics of a learned network look at the curve up to criterion + 5 windows: training on, or
    # stopping a window after that, gives the same numbers
    k = np.arange(1200)
    curve = _noisy(0.05 + 0.95 / (1 + np.exp((k - 300) / 6)) - 0.04 * (k > 600) * (k - 600) / 600)
    itc, w = 330, 25
    horizon = metrics_horizon(itc, w)
    full = curve_metrics(curve, w, horizon=horizon)
    stopped = curve_metrics(np.where(k < itc + (HORIZON_WINDOWS + 1) * w, curve, np.nan), w, horizon=horizon)
    assert full == stopped
    assert full["abrupt"] == 1


def test_flat_curve_has_no_drop():
    m = curve_metrics(np.full(100, 0.5) + 1e-3 * np.sin(np.arange(100)), window=5)
    assert all(np.isnan(m[k]) for k in ("drop_onset", "drop_width", "search_phase", "abruptness"))
    assert m["abrupt"] == 0


def test_iterations_to_criterion():
    acc = np.array([0.5, 0.6, 0.96, 0.9, 0.97])
    assert iterations_to_criterion(acc, np.array([0, 10, 20, 30, 40]), 0.95) == 20
    assert np.isnan(iterations_to_criterion(acc[:2], np.array([0, 10]), 0.95))


def test_schedules():
    lam = np.array([0.2])
    assert build_schedule(WarmupConfig(iterations=10), lam).value(5) == 0.1
    lin = build_schedule(LinearDecayConfig(start=10, iterations=10, final=0.5), lam)
    assert lin.value(0) == 0.2 and np.isclose(lin.value(15), 0.15) and np.isclose(lin.value(100), 0.1)
    cos = build_schedule(CosineDecayConfig(iterations=10), lam)
    assert np.isclose(cos.value(5), 0.1) and np.isclose(cos.value(10), 0.0)
    step = build_schedule(StepConfig(milestones=[5, 8], factor=0.5), lam)
    assert [float(step.value(k)[0]) for k in (4, 5, 8)] == [0.2, 0.1, 0.05]


def test_adaptive_controller_holds_the_ratio_and_switches_off():
    ctrl = build_schedule(AdaptiveConfig(target_ratio=0.1, gain=0.5, off_when_learned=True), np.array([1.0, 1.0]))
    term, task = np.array([1.0, 1.0]), np.array([1.0, 1.0])
    for k in range(200):
        ctrl.observe(k, task, term, np.array([False, k > 100]))
    lam = ctrl.value(200)
    assert np.isclose(lam[0] * term[0] / task[0], 0.1, rtol=1e-3) and lam[1] == 0


def test_activity_floor_lowers_the_strength_only_below_its_floor():
    from bioplastic.regularizers.schedules import ActivityFloorConfig, build_schedule

    absolute = build_schedule(ActivityFloorConfig(target=0.5, gain=0.5), np.array([2.0, 2.0]))
    for k in range(5):
        absolute.observe(k, np.ones(2), np.array([1.0, 0.125]), np.zeros(2, bool))
    # above the floor: capped at max_factor 1; below it: (0.125 / 0.5)^0.5 = 0.5 per iteration
    np.testing.assert_allclose(absolute.value(5), [2.0, 2.0 * 0.5 ** 5])
    relative = build_schedule(ActivityFloorConfig(target=0.5, relative=True, reference_iterations=4, gain=1.0),
                              np.array([1.0, 1.0]))
    for k in range(4):  # the reference: mean term 0.2 and 0.02 (the networks' own noise floors)
        relative.observe(k, np.ones(2), np.array([0.2, 0.02]), np.zeros(2, bool))
    np.testing.assert_allclose(relative.value(4), [1.0, 1.0])  # no control while the reference forms
    relative.observe(4, np.ones(2), np.array([0.05, 0.02]), np.zeros(2, bool))
    np.testing.assert_allclose(relative.value(5), [0.5, 1.0])  # 0.05 / (0.5 * 0.2); 0.02 is above 0.5 * 0.02


def test_criterion_at_the_start_of_the_drop_still_sees_the_drop():
    # held-out accuracy can reach the criterion while the smoothed loss is still near its plateau
    k = np.arange(600)
    curve = 0.05 + 0.95 / (1 + np.exp((k - 160) / 4))
    m = curve_metrics(curve, 10, horizon=metrics_horizon(150, 10))
    assert m["abrupt"] == 1 and 140 <= m["drop_onset"] <= 155 and m["final_loss"] < 0.1
