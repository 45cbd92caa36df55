"""Tests of the three short-term-memory tasks: layout, statistics against exact oracles, scoring, configs."""
from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from bioplastic.tasks import TASKS, Task, Trials, build_task

KINDS = ["evidence_accumulation", "delayed_addition", "flipflop"]
DEFAULT_N_STEPS = {"evidence_accumulation": 65, "delayed_addition": 40, "flipflop": 50}


def window_bxt(period_bx2: np.ndarray, n_steps: int) -> np.ndarray:
    t = np.arange(n_steps)
    return (t >= period_bx2[:, :1]) & (t < period_bx2[:, 1:])


def sample(kind: str, n_trials: int = 256, seed: int = 0, **params) -> tuple[Task, Trials]:
    task = build_task(kind, params)
    return task, task.sample(np.random.default_rng(seed), n_trials)


# ---------------------------------------------------------------- common to every task


def test_registry_lists_the_three_tasks():
    assert set(KINDS) <= set(TASKS.names())
    for kind in KINDS:
        cls = TASKS.get(kind)
        assert cls.kind == kind
        assert {"paper", "tags"} <= set(cls.metadata)


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_dtypes_and_default_n_steps(kind):
    task, trials = sample(kind, n_trials=17)
    assert task.n_steps == DEFAULT_N_STEPS[kind]
    assert trials.n_trials == 17
    assert trials.inputs_bxtxi.shape == (17, task.n_steps, task.n_inputs)
    assert trials.targets_bxtxo.shape == (17, task.n_steps, task.n_outputs)
    assert trials.mask_bxtxo.shape == (17, task.n_steps, task.n_outputs)
    for arr in (trials.inputs_bxtxi, trials.targets_bxtxo, trials.mask_bxtxo):
        assert arr.dtype == np.float32
    assert set(np.unique(trials.mask_bxtxo)) <= {0.0, 1.0}
    assert set(trials.periods) >= set(task.period_names)
    for name, period in trials.periods.items():
        assert period.shape == (17, 2) and np.issubdtype(period.dtype, np.integer), name
    for name, label in trials.conditions.items():
        assert label.shape == (17,), name


@pytest.mark.parametrize("kind", KINDS)
def test_periods_tile_the_trial_in_order(kind):
    task, trials = sample(kind)
    names = list(trials.periods)  # in temporal order
    starts = np.stack([trials.periods[n][:, 0] for n in names], axis=1)
    stops = np.stack([trials.periods[n][:, 1] for n in names], axis=1)
    assert (starts[:, 0] == 0).all() and (stops[:, -1] == task.n_steps).all()
    assert (stops[:, :-1] == starts[:, 1:]).all()
    assert (stops >= starts).all()


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_trials_different_seed_different(kind):
    _, a = sample(kind, seed=7)
    _, b = sample(kind, seed=7)
    _, c = sample(kind, seed=8)
    for field in ("inputs_bxtxi", "targets_bxtxo", "mask_bxtxo"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    for name in a.periods:
        np.testing.assert_array_equal(a.periods[name], b.periods[name])
    for name in a.conditions:
        np.testing.assert_array_equal(a.conditions[name], b.conditions[name])
    assert not np.array_equal(a.inputs_bxtxi, c.inputs_bxtxi)
    assert not np.array_equal(a.targets_bxtxo, c.targets_bxtxo)


@pytest.mark.parametrize("kind", KINDS)
def test_sample_leaves_the_global_numpy_rng_alone(kind):
    task = build_task(kind, {})
    np.random.seed(12345)
    before = np.random.get_state()
    task.sample(np.random.default_rng(0), 64)
    after = np.random.get_state()
    assert before[0] == after[0]
    np.testing.assert_array_equal(before[1], after[1])
    assert before[2:] == after[2:]


@pytest.mark.parametrize("kind", KINDS)
def test_score_is_one_for_targets_and_zero_for_negated_targets(kind):
    task, trials = sample(kind, n_trials=512)
    np.testing.assert_array_equal(task.score(trials.targets_bxtxo, trials), 1.0)
    assert task.accuracy(trials.targets_bxtxo, trials) == 1.0
    # addition: -s is within tolerance of s only if s < tolerance / 2 (probability ~2e-4)
    assert task.accuracy(-trials.targets_bxtxo, trials) <= 0.01
    # outside the scored steps, outputs do not matter
    noise = np.random.default_rng(1).normal(size=trials.targets_bxtxo.shape).astype(np.float32)
    off_window = np.where(trials.mask_bxtxo > 0, trials.targets_bxtxo, noise)
    np.testing.assert_array_equal(task.score(off_window, trials), 1.0)


@pytest.mark.parametrize("kind", KINDS)
def test_score_accepts_a_leading_ensemble_axis(kind):
    task, trials = sample(kind, n_trials=32)
    outputs = np.stack([trials.targets_bxtxo, -trials.targets_bxtxo])
    scores = task.score(outputs, trials)
    assert scores.shape == (2, 32)
    np.testing.assert_array_equal(scores[0], task.score(trials.targets_bxtxo, trials))
    np.testing.assert_array_equal(scores[1], task.score(-trials.targets_bxtxo, trials))


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_config_key_is_refused(kind):
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        build_task(kind, {"dt_msec": 10.0})


# ---------------------------------------------------------------- evidence accumulation


def test_evidence_layout_masks_and_go_cue():
    task, trials = sample("evidence_accumulation", n_trials=512)
    n = task.n_steps
    resp = window_bxt(trials.periods["response"], n)
    stim = window_bxt(trials.periods["stimulus"], n)
    pad = window_bxt(trials.periods["padding"], n)
    np.testing.assert_array_equal(trials.periods["fixation"], [[0, 5]] * 512)
    np.testing.assert_array_equal(trials.periods["stimulus"], [[5, 30]] * 512)
    np.testing.assert_array_equal(np.diff(trials.periods["response"], axis=1)[:, 0], 10)
    np.testing.assert_array_equal(np.diff(trials.periods["delay"], axis=1)[:, 0], trials.conditions["delay_steps"])
    np.testing.assert_array_equal(trials.mask_bxtxo[:, :, 0], resp)
    np.testing.assert_array_equal(trials.inputs_bxtxi[:, :, 2], resp)  # go cue
    # pulses only during the stimulus, binary; nothing at all in the padding
    assert not trials.inputs_bxtxi[:, :, :2][~stim].any()
    assert set(np.unique(trials.inputs_bxtxi[:, :, :2])) == {0.0, 1.0}
    assert not trials.inputs_bxtxi[pad].any() and not trials.mask_bxtxo[pad].any()
    assert pad.any()  # some trials are padded with the default delays


def test_evidence_target_is_the_side_with_more_pulses_and_there_are_no_ties():
    task, trials = sample("evidence_accumulation", n_trials=2000)
    c = trials.conditions
    n_left = trials.inputs_bxtxi[:, :, 0].sum(axis=1)
    n_right = trials.inputs_bxtxi[:, :, 1].sum(axis=1)
    np.testing.assert_array_equal(n_left, c["n_left"])
    np.testing.assert_array_equal(n_right, c["n_right"])
    assert (n_left != n_right).all()
    np.testing.assert_array_equal(c["side"], np.sign(n_right - n_left))
    resp = window_bxt(trials.periods["response"], task.n_steps)
    targets = trials.targets_bxtxo[:, :, 0]
    np.testing.assert_array_equal(targets[resp], np.repeat(c["side"], resp.sum(axis=1)))
    assert not targets[~resp].any()
    # the rates favour the favoured side, but counts can go against it on hard trials
    assert 0.5 < np.mean(c["side"] == c["favoured_side"]) < 1.0


def binomial_pmf(n: int, p: float) -> np.ndarray:
    return np.array([math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)])


def moments_without_ties(n: int, p_a: float, p_b: float) -> tuple[float, float]:
    """Exact mean and variance of count A ~ Bin(n, p_a) given A != B, B ~ Bin(n, p_b) independent."""
    joint = np.outer(binomial_pmf(n, p_a), binomial_pmf(n, p_b))
    np.fill_diagonal(joint, 0.0)
    pa = joint.sum(axis=1) / joint.sum()
    k = np.arange(n + 1)
    mean = float((k * pa).sum())
    return mean, float(((k - mean) ** 2 * pa).sum())


def test_evidence_pulse_rates_match_their_probabilities_given_no_tie():
    # Ties are redrawn, so each count is Binomial(n_stim, p) conditioned on "the two counts differ":
    # the exact oracle. (The unconditioned mean is off by ~0.1 pulse at c = 0.1: this test sees that.)
    task, trials = sample("evidence_accumulation", n_trials=20000, seed=3)
    c = trials.conditions
    n_stim, pulse_prob = task.stimulus_steps, task.config.pulse_prob
    right = c["favoured_side"] > 0
    n_fav = np.where(right, c["n_right"], c["n_left"])
    n_oth = np.where(right, c["n_left"], c["n_right"])
    previous_gap = 0.0
    for coherence in task.config.coherences:
        sel = c["coherence"] == coherence
        assert sel.sum() > 5000
        p_fav, p_oth = pulse_prob * (1 + coherence) / 2, pulse_prob * (1 - coherence) / 2
        for counts, p_a, p_b in ((n_fav[sel], p_fav, p_oth), (n_oth[sel], p_oth, p_fav)):
            mean, var = moments_without_ties(n_stim, p_a, p_b)
            se = math.sqrt(var / counts.size)
            assert abs(counts.mean() - mean) < 4 * se, (coherence, p_a, counts.mean(), mean)
        gap = (n_fav[sel] - n_oth[sel]).mean()
        assert gap > previous_gap  # favoured side gets more pulses, more so at higher coherence
        previous_gap = gap
    # both sides and all coherences equiprobable
    assert abs(right.mean() - 0.5) < 4 * math.sqrt(0.25 / right.size)


def test_evidence_full_coherence_silences_the_other_channel():
    _, trials = sample("evidence_accumulation", coherences=[1.0])
    c = trials.conditions
    n_oth = np.where(c["favoured_side"] > 0, c["n_left"], c["n_right"])
    assert not n_oth.any()
    np.testing.assert_array_equal(c["side"], c["favoured_side"])


def test_evidence_delays_are_uniform_over_their_range():
    task, trials = sample("evidence_accumulation", n_trials=20000, seed=5)
    delays = trials.conditions["delay_steps"]
    values = np.arange(5, 26)  # 100..500 ms at 20 ms
    assert (task.delay_min_steps, task.delay_max_steps) == (5, 25)
    counts = np.array([(delays == v).sum() for v in values])
    assert counts.sum() == delays.size  # nothing outside the range
    expected = delays.size / values.size
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 45.3  # chi-square, 20 degrees of freedom, p = 0.001


def test_evidence_delays_are_the_multiples_of_dt_inside_the_range():
    task, trials = sample("evidence_accumulation", n_trials=3000, dt_ms=30.0)
    delays = trials.conditions["delay_steps"]
    assert (task.delay_min_steps, task.delay_max_steps) == (4, 16)  # 120..480 ms within 100..500
    assert delays.min() == 4 and delays.max() == 16


def test_evidence_zero_delay_is_allowed():
    task, trials = sample("evidence_accumulation", delay_min_ms=0.0, delay_max_ms=0.0)
    assert task.n_steps == 5 + 25 + 10
    np.testing.assert_array_equal(trials.periods["delay"][:, 0], trials.periods["delay"][:, 1])


def test_evidence_score_uses_the_sign_of_the_window_mean():
    task, trials = sample("evidence_accumulation", n_trials=64)
    side = trials.conditions["side"].astype(np.float32)
    resp = window_bxt(trials.periods["response"], task.n_steps)
    # wrong sign on most steps but right on average over the window: correct
    out = np.where(resp, -0.1 * side[:, None], 0.0)
    first = trials.periods["response"][:, 0]
    out[np.arange(64), first] = 5.0 * side
    np.testing.assert_array_equal(task.score(out[:, :, None], trials), 1.0)
    # a zero mean output is wrong
    np.testing.assert_array_equal(task.score(np.zeros_like(trials.targets_bxtxo), trials), 0.0)


def test_evidence_config_lists_load_from_yaml_style_lists():
    task = build_task("evidence_accumulation", {"coherences": [0.2, 1]})
    assert task.config.coherences == (0.2, 1.0)


# ---------------------------------------------------------------- delayed addition


def test_addition_layout_masks_and_go_cue():
    task, trials = sample("delayed_addition", n_trials=512)
    n = task.n_steps
    resp = window_bxt(trials.periods["response"], n)
    pad = window_bxt(trials.periods["padding"], n)
    np.testing.assert_array_equal(trials.periods["stimulus"], [[0, 20]] * 512)
    np.testing.assert_array_equal(np.diff(trials.periods["response"], axis=1)[:, 0], 5)
    np.testing.assert_array_equal(np.diff(trials.periods["delay"], axis=1)[:, 0], trials.conditions["delay_steps"])
    np.testing.assert_array_equal(trials.mask_bxtxo[:, :, 0], resp)
    np.testing.assert_array_equal(trials.inputs_bxtxi[:, :, 2], resp)
    values = trials.inputs_bxtxi[:, :, 0]
    assert (values[:, :20] >= 0).all() and (values[:, :20] < 1).all() and (values[:, :20] > 0).mean() > 0.99
    assert not values[:, 20:].any() and not trials.inputs_bxtxi[:, 20:, 1].any()
    assert not trials.inputs_bxtxi[pad].any() and not trials.mask_bxtxo[pad].any()
    delays = trials.conditions["delay_steps"]
    assert delays.min() == 5 and delays.max() == 15


def test_addition_exactly_two_markers_within_their_ranges():
    _, trials = sample("delayed_addition", n_trials=4000)
    markers = trials.inputs_bxtxi[:, :, 1]
    assert set(np.unique(markers)) == {0.0, 1.0}
    np.testing.assert_array_equal(markers.sum(axis=1), 2)
    m1, m2 = trials.conditions["marker_1"], trials.conditions["marker_2"]
    rows = np.arange(m1.size)
    assert (markers[rows, m1] == 1).all() and (markers[rows, m2] == 1).all()
    assert (m1 != m2).all()
    # first 10 % of 20 steps = steps {0, 1}; first half = steps 0..9; every allowed step occurs
    np.testing.assert_array_equal(np.unique(m1), [0, 1])
    np.testing.assert_array_equal(np.unique(m2), np.arange(10))
    # marker 2 is uniform over the first half minus marker 1's step
    for first in (0, 1):
        counts = np.bincount(m2[m1 == first], minlength=10)
        assert counts[first] == 0
        others = np.delete(counts, first)
        assert np.abs(others - others.mean()).max() < 5 * math.sqrt(others.mean())


def test_addition_target_is_the_sum_of_the_marked_values():
    task, trials = sample("delayed_addition", n_trials=1000)
    c = trials.conditions
    rows = np.arange(1000)
    values = trials.inputs_bxtxi[:, :, 0]
    np.testing.assert_array_equal(values[rows, c["marker_1"]], c["value_1"])
    np.testing.assert_array_equal(values[rows, c["marker_2"]], c["value_2"])
    resp = window_bxt(trials.periods["response"], task.n_steps)
    expected = (values * trials.inputs_bxtxi[:, :, 1]).sum(axis=1)  # independent oracle
    targets = trials.targets_bxtxo[:, :, 0]
    np.testing.assert_allclose(targets[resp], np.repeat(expected, resp.sum(axis=1)), rtol=0, atol=1e-6)
    assert not targets[~resp].any()


def test_addition_score_uses_the_tolerance():
    # the default: Hochreiter & Schmidhuber's 0.04 of the target's range, which is 2 here: |error| < 0.08
    task, trials = sample("delayed_addition", n_trials=64)
    mask = trials.mask_bxtxo
    np.testing.assert_array_equal(task.score(trials.targets_bxtxo + 0.07 * mask, trials), 1.0)
    np.testing.assert_array_equal(task.score(trials.targets_bxtxo - 0.09 * mask, trials), 0.0)
    assert task.config.absolute_tolerance == 0.08
    strict = build_task("delayed_addition", {"relative_tolerance": 0.02})
    np.testing.assert_array_equal(strict.score(trials.targets_bxtxo + 0.05 * mask, trials), 0.0)
    np.testing.assert_array_equal(strict.score(trials.targets_bxtxo + 0.035 * mask, trials), 1.0)
    # the earlier absolute criterion, 0.04, is a field
    old = build_task("delayed_addition", {"tolerance": 0.04})
    np.testing.assert_array_equal(old.score(trials.targets_bxtxo + 0.03 * mask, trials), 1.0)
    np.testing.assert_array_equal(old.score(trials.targets_bxtxo - 0.05 * mask, trials), 0.0)


# ---------------------------------------------------------------- flip-flop


def flipflop_oracle(inputs_txk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Explicit loop: hold the sign of the last pulse of each channel; mask from the first pulse on."""
    n_steps, k = inputs_txk.shape
    targets, mask = np.zeros((n_steps, k)), np.zeros((n_steps, k))
    for i in range(k):
        held = 0.0
        for t in range(n_steps):
            if inputs_txk[t, i] != 0:
                held = np.sign(inputs_txk[t, i])
            targets[t, i] = held
            mask[t, i] = held != 0
    return targets, mask


def test_flipflop_targets_and_masks_match_a_loop_oracle():
    _, trials = sample("flipflop", n_trials=12, pulse_prob=0.2)
    for b in range(12):
        targets, mask = flipflop_oracle(trials.inputs_bxtxi[b])
        np.testing.assert_array_equal(trials.targets_bxtxo[b], targets)
        np.testing.assert_array_equal(trials.mask_bxtxo[b], mask)
    # the oracle is not trivially satisfied: targets do flip within channels
    assert (np.diff(trials.targets_bxtxo, axis=1) < 0).any() and (np.diff(trials.targets_bxtxo, axis=1) > 0).any()


def test_flipflop_pulses_statistics_and_forced_early_pulse():
    task, trials = sample("flipflop", n_trials=4000, n_bits=4)
    inputs = trials.inputs_bxtxi
    assert inputs.shape[2] == 4 and task.n_outputs == 4
    assert set(np.unique(inputs)) == {-1.0, 0.0, 1.0}
    assert not np.signbit(inputs[inputs == 0]).any()  # no -0.0
    # every channel pulses in the first 10 % (5 steps), so it is scored from step 5 at the latest
    assert (inputs[:, :5] != 0).any(axis=1).all()
    assert (trials.mask_bxtxo[:, 5:] == 1).all()
    np.testing.assert_array_equal(trials.conditions["n_pulses"], (inputs != 0).sum(axis=(1, 2)))
    np.testing.assert_array_equal(trials.periods["trial"], [[0, 50]] * 4000)
    # after the forced window the pulse rate is pulse_prob; signs are equiprobable
    late = inputs[:, 5:] != 0
    p = task.config.pulse_prob
    assert abs(late.mean() - p) < 4 * math.sqrt(p * (1 - p) / late.size)
    pulses = inputs[inputs != 0]
    assert abs((pulses > 0).mean() - 0.5) < 4 * math.sqrt(0.25 / pulses.size)


def test_flipflop_score_is_the_fraction_of_correct_scored_steps():
    task, trials = sample("flipflop", n_trials=8)
    out = trials.targets_bxtxo.copy()
    scored = np.argwhere(trials.mask_bxtxo[0] > 0)
    out[0, scored[0][0], scored[0][1]] *= -1  # one wrong step in trial 0
    out[1] = 0.0  # zero output is never correct
    scores = task.score(out, trials)
    assert scores[0] == pytest.approx(1 - 1 / len(scored))
    assert scores[1] == 0.0
    np.testing.assert_array_equal(scores[2:], 1.0)


# ---------------------------------------------------------------- bad configs


@pytest.mark.parametrize(
    "kind, params, message",
    [
        ("evidence_accumulation", {"stimulus_ms": -100.0}, "greater than 0"),
        ("evidence_accumulation", {"delay_min_ms": -20.0}, "greater than or equal to 0"),
        ("evidence_accumulation", {"delay_min_ms": 600.0}, "larger than delay_max_ms"),
        ("evidence_accumulation", {"coherences": [0.0, 0.5]}, r"in \(0, 1\]"),
        ("evidence_accumulation", {"coherences": [1.5]}, r"in \(0, 1\]"),
        ("evidence_accumulation", {"coherences": [-0.2]}, r"in \(0, 1\]"),
        ("evidence_accumulation", {"coherences": []}, "at least 1"),
        ("evidence_accumulation", {"coherences": ["0.5"]}, "valid number"),
        ("evidence_accumulation", {"pulse_prob": 0.0}, "greater than 0"),
        ("evidence_accumulation", {"pulse_prob": 1.2}, "less than or equal to 1"),
        ("evidence_accumulation", {"stimulus_ms": 5.0}, "at least one step"),
        ("evidence_accumulation", {"dt_ms": 0.0}, "greater than 0"),
        ("evidence_accumulation", {"dt_ms": 40.0, "delay_min_ms": 100.0, "delay_max_ms": 110.0}, "no multiple"),
        ("delayed_addition", {"tolerance": 0.0}, "greater than 0"),
        ("delayed_addition", {"tolerance": -0.04}, "greater than 0"),
        ("delayed_addition", {"relative_tolerance": 0.0}, "greater than 0"),
        ("delayed_addition", {"relative_tolerance": 1.5}, "less than or equal to 1"),
        ("delayed_addition", {"response_ms": -100.0}, "greater than 0"),
        ("delayed_addition", {"delay_min_ms": 400.0}, "larger than delay_max_ms"),
        ("delayed_addition", {"stimulus_ms": 60.0}, "at least 2 steps"),
        ("delayed_addition", {"response_ms": 9.0}, "at least one step"),
        ("flipflop", {"n_bits": 0}, "greater than or equal to 1"),
        ("flipflop", {"n_bits": 2.5}, "valid integer"),
        ("flipflop", {"pulse_prob": 1.5}, "less than or equal to 1"),
        ("flipflop", {"trial_ms": -1000.0}, "greater than 0"),
        ("flipflop", {"trial_ms": 5.0}, "rounds to 0 steps"),
    ],
)
def test_bad_configs_are_refused(kind, params, message):
    with pytest.raises(ValidationError, match=message):
        build_task(kind, params)
