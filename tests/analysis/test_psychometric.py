"""The psychometric fit against choices drawn from known psychometric functions, its gradient against
finite differences, and its edge cases."""
import numpy as np
import pytest
from scipy.optimize import approx_fprime

from bioplastic.analysis.psychometric import (
    MAX_LEVELS,
    _neg_log_likelihood,
    evidence_bins,
    fit_psychometric,
    psychometric_curve,
    psychometric_function,
)


def draw(rng, slope, bias, lapse, n, levels=None):
    x = rng.choice(np.arange(-10.0, 11.0) if levels is None else levels, n)
    return x, (rng.random(n) < psychometric_function(x, slope, bias, lapse)).astype(float)


@pytest.mark.parametrize("slope, bias, lapse", [(0.5, 1.0, 0.05), (2.0, -0.5, 0.0), (-0.3, 0.0, 0.1)])
def test_the_fit_recovers_slope_bias_and_lapse(slope, bias, lapse):
    # 20000 trials: the maximum-likelihood estimates' standard errors are a few percent of slope,
    # ~0.05 evidence units of bias and < 0.01 of lapse; the tolerances are about 3 of them
    rng = np.random.default_rng(1)
    x, y = draw(rng, slope, bias, lapse, 20000)
    f = fit_psychometric(x, y)
    assert f.status == 0 and f.n_trials == 20000
    assert f.slope == pytest.approx(slope, rel=0.1)
    assert f.bias == pytest.approx(bias, abs=0.15 if abs(slope) > 0.4 else 0.4)
    assert f.lapse == pytest.approx(lapse, abs=0.02)


def test_the_fit_is_unbiased_over_repeated_experiments():
    rng = np.random.default_rng(2)
    fits = [fit_psychometric(*draw(rng, 0.4, 1.5, 0.05, 2000)) for _ in range(20)]
    est = np.array([(f.slope, f.bias, f.lapse) for f in fits])
    assert abs(est[:, 0].mean() - 0.4) < 0.03 and abs(est[:, 1].mean() - 1.5) < 0.15 and abs(est[:, 2].mean() - 0.05) < 0.015


def test_the_gradient_matches_finite_differences():
    x = np.arange(-5.0, 6.0)
    n = np.full(11, 30.0)
    r = np.round(n * psychometric_function(x, 0.7, 0.3, 0.05))
    for p in ([0.7, 0.3, 0.05], [0.1, -2.0, 0.2], [3.0, 1.0, 1e-3], [1.0, 0.0, 0.0]):
        p = np.array(p)
        num = approx_fprime(p, lambda q: _neg_log_likelihood(q, x, n, r)[0], 1e-7)
        np.testing.assert_allclose(_neg_log_likelihood(p, x, n, r)[1], num, rtol=1e-4, atol=1e-3)


def test_separated_choices_are_steeper_than_resolvable_and_too_few_give_no_fit():
    x = np.repeat(np.arange(-5.0, 6.0), 20)
    f = fit_psychometric(x, (x > 0.5).astype(float))
    assert f.status == 2 and f.slope >= 19.9 and 0 < f.bias < 1 and f.lapse < 1e-3
    assert fit_psychometric(x[:5], np.ones(5)).status == 1          # too few trials
    assert fit_psychometric(x, np.ones(len(x))).status == 1         # one choice only
    assert np.isnan(fit_psychometric(np.zeros(50), np.r_[np.ones(25), np.zeros(25)]).slope)  # one evidence level
    with pytest.raises(ValueError, match="1 \\(right\\) or 0 \\(left\\)"):
        fit_psychometric(x, np.where(x > 0, 1.0, -1.0))


def test_the_curve_has_each_level_or_quantile_bins():
    rng = np.random.default_rng(3)
    x, y = draw(rng, 0.5, 0.0, 0.0, 500, levels=np.array([-2.0, 0.0, 2.0]))
    levels, p, n = psychometric_curve(x, y)
    assert levels.tolist() == [-2.0, 0.0, 2.0] and n.sum() == 500
    np.testing.assert_allclose(p, [y[x == v].mean() for v in levels])
    xc = rng.normal(size=800)
    centres, index = evidence_bins(xc)
    assert len(centres) == 8 > MAX_LEVELS - 5 and np.all(np.diff(centres) > 0)
    np.testing.assert_allclose(np.bincount(index), 100)             # equal trial counts
