"""Staircase metrics on synthetic staircases whose plateaus and drops are known, with the noise of
real SGD curves: multiplicative step-to-step noise (larger at low loss, with spikes), a slowly
correlated component, and a slow drift of a plateau's level."""
from __future__ import annotations

import numpy as np
import pytest

from bioplastic.analysis.learning_curves import curve_metrics
from bioplastic.analysis.staircase import find_staircase

WINDOW = 50


def logistic_step(k: np.ndarray, centre: float, width: float) -> np.ndarray:
    """1 before the step, 0 after; ``width``: its 10-90 % time."""
    return 1.0 / (1.0 + np.exp((k - centre) / (width / (2 * np.log(9)))))


def staircase_curve(levels, centres, widths, n: int, drifts=None) -> np.ndarray:
    """A noise-free staircase from ``levels[0]`` down to ``levels[-1]`` through logistic drops:
    ``level_last + sum_i (level_i - level_{i+1}) step_i``, where plateau i's level drifts down
    linearly by ``drifts[i]`` of it from its start to the next drop's centre (the last: to the end)."""
    k = np.arange(n)
    bounds = [0, *centres, n]
    drifts = drifts or [0.0] * len(levels)

    def level(i):
        return levels[i] * (1 - drifts[i] * np.clip((k - bounds[i]) / (bounds[i + 1] - bounds[i]), 0, 1))

    curve = level(len(levels) - 1)
    for i, (c, w) in enumerate(zip(centres, widths)):
        curve = curve + (level(i) - level(i + 1)) * logistic_step(k, c, w)
    return curve


def sgd_noise(curve: np.ndarray, rng: np.random.Generator, sigma: float = 0.1, low_sigma: float = 0.6,
              spikes: float = 0.03, correlated: float = 0.05) -> np.ndarray:
    """Multiplicative noise with mean 1: lognormal step to step (sigma on high loss, low_sigma once the
    loss is below 5 % of its start, where SGD's relative noise is large), AR(1) correlated noise
    (time constant 100 iterations), and spikes (x 5) with probability ``spikes`` at low loss."""
    n = len(curve)
    s = np.where(curve < 0.05 * curve[0], low_sigma, sigma)
    ar = np.zeros(n)
    e = rng.normal(size=n)
    for i in range(1, n):
        ar[i] = 0.99 * ar[i - 1] + np.sqrt(1 - 0.99 ** 2) * e[i]
    noise = np.exp(s * rng.normal(size=n) - s ** 2 / 2 + correlated * ar)
    spike = (rng.random(n) < spikes) & (curve < 0.05 * curve[0])
    return curve * noise * np.where(spike, 5.0, 1.0)


LEVELS, CENTRES, WIDTHS, N = (0.86, 0.345, 0.004), (300, 4300), (80, 180), 6000


def true_onset(centre: float, width: float) -> float:
    """The 10 % point of a logistic step."""
    return centre - width / 2


@pytest.mark.parametrize("seed", range(12))
def test_three_plateaus_and_two_drops_under_realistic_noise(seed):
    rng = np.random.default_rng(seed)
    loss = sgd_noise(staircase_curve(LEVELS, CENTRES, WIDTHS, N, drifts=[0.0, 0.08, 0.0]), rng)
    st = find_staircase(loss, WINDOW)
    assert len(st.plateaus) == 3 and len(st.drops) == 2 and st.ends_on_plateau
    first, second, third = st.plateaus
    # each level against the mean of the noisy loss over the true plateau (what the noise left of it)
    bounds = [0, *(true_onset(c, w) for c, w in zip(CENTRES, WIDTHS))]
    ends = [c + w / 2 for c, w in zip(CENTRES, WIDTHS)]
    assert first.level == pytest.approx(loss[:int(bounds[1])].mean(), rel=0.04)
    span = slice(int(ends[0]), int(bounds[2]))
    clean = staircase_curve(LEVELS, CENTRES, WIDTHS, N, drifts=[0.0, 0.08, 0.0])[span]
    assert second.level == pytest.approx(np.median(clean) * loss[span].mean() / clean.mean(), rel=0.04)  # drifting: its median
    assert third.level == pytest.approx(0.004, rel=0.35)  # spikes and large noise at the bottom
    assert first.start <= WINDOW
    for drop, c, w in zip(st.drops, CENTRES, WIDTHS):
        assert abs(drop.onset - true_onset(c, w)) <= WINDOW
        assert 0.5 * w <= drop.width <= 2 * w + WINDOW
    # plateaus tile the curve: each from the end of the drop before it to the onset of the next
    assert first.start + first.length == st.drops[0].onset and second.start == st.drops[0].end
    assert second.start + second.length == st.drops[1].onset and third.start == st.drops[1].end
    assert second.length == pytest.approx(CENTRES[1] - CENTRES[0], rel=0.1)


@pytest.mark.parametrize("seed", range(4))
def test_a_drifting_noisy_plateau_is_one_plateau_without_drops(seed):
    """A plateau that drifts down by 25 % over the run, with noise and a slow correlated wander: no drop."""
    rng = np.random.default_rng(100 + seed)
    k = np.arange(5000)
    loss = sgd_noise(0.5 * (1 - 0.25 * k / k[-1]), rng, sigma=0.15, correlated=0.1)
    st = find_staircase(loss, WINDOW)
    assert len(st.plateaus) == 1 and not st.drops and st.ends_on_plateau
    assert st.plateaus[0].level == pytest.approx(0.5 * (1 - 0.125), rel=0.06)


@pytest.mark.parametrize("seed", range(4))
def test_the_first_drop_agrees_with_the_first_drop_metrics(seed):
    """On a single plateau-then-drop curve with white noise the staircase's drop is the first-drop
    metrics' drop. (With slowly correlated noise the first-drop metrics' 10 % threshold can be crossed
    by a dip on the plateau; the staircase's onset, found back from the drop's midpoint, is not.)"""
    rng = np.random.default_rng(200 + seed)
    loss = sgd_noise(staircase_curve((1.0, 0.02), (800,), (60,), 2000), rng, low_sigma=0.3, spikes=0.0, correlated=0.0)
    st = find_staircase(loss, WINDOW)
    m = curve_metrics(loss, WINDOW)
    assert len(st.drops) == 1
    assert abs(st.drops[0].onset - m["drop_onset"]) <= WINDOW / 2
    assert abs(st.drops[0].width - m["drop_width"]) <= WINDOW
    assert st.plateaus[0].level == pytest.approx(m["plateau_loss"], rel=0.05)
    wandering = sgd_noise(staircase_curve((1.0, 0.02), (800,), (60,), 2000), rng, low_sigma=0.3, spikes=0.0)
    assert abs(find_staircase(wandering, WINDOW).drops[0].onset - true_onset(800, 60)) <= WINDOW


def test_a_curve_ending_in_a_drop_and_one_that_diverged():
    rng = np.random.default_rng(7)
    loss = sgd_noise(staircase_curve((0.8, 0.3, 0.01), (400, 2880), (60, 150), 3000), rng, spikes=0.0)
    st = find_staircase(loss, WINDOW)
    assert len(st.drops) == 2 and len(st.plateaus) == 2 and not st.ends_on_plateau
    assert st.drops[-1].level_after < 0.5 * st.drops[-1].level_before
    # a divergence (NaN from iteration 2000) ends the curve there: the second drop is not seen
    diverged = loss.copy()
    diverged[2000:] = np.nan
    st = find_staircase(diverged, WINDOW)
    assert len(st.drops) == 1 and st.plateaus[-1].start + st.plateaus[-1].length <= 2000
    assert find_staircase(np.full(10, np.nan), WINDOW).plateaus == []
