"""Prediction measures (science.md §6) against synthetic data with known answers, and predictions.nc of a
tiny run."""
import shutil

import numpy as np
import pytest
import torch
from scipy import stats

from bioplastic import load_protocol, run_protocol
from bioplastic.analysis.predictions import (
    ALPHA,
    MEASURES,
    Window,
    _run,
    across_trial_autocorrelation,
    benjamini_hochberg,
    choose_period,
    fit_autocorrelation_timescale,
    fit_exponential_timescale,
    paired_or_unpaired,
    plasticity_course,
    plasticity_end,
    plasticity_signatures,
    prediction_sentences,
    ramp_slopes,
)
from bioplastic.pipeline import compute_predictions
from bioplastic.storage.results import read_dataset

# one pytest-xdist worker runs this module, so that its module-scoped run (pred_run) is made once
pytestmark = pytest.mark.xdist_group("predictions")

DT = 20.0


def ar1(rng, B, T, N, tau_ms, dt_ms, sd=1.0):
    """Stationary Ornstein-Uhlenbeck process sampled every dt: autocorrelation exp(-lag / tau)."""
    a = np.exp(-dt_ms / tau_ms)
    x = np.empty((B, T, N))
    x[:, 0] = rng.standard_normal((B, N))
    for t in range(1, T):
        x[:, t] = a * x[:, t - 1] + np.sqrt(1 - a * a) * rng.standard_normal((B, N))
    return sd * x


def variable_window(rng, B, T, min_len):
    start = np.full(B, 5)
    return Window("delay", start, start + rng.integers(min_len, T - 5 + 1, B))


# ------------------------------------------------------------------------------------------- ramping
def test_ramp_slopes_recover_known_slopes_and_null_units_give_about_alpha_false_positives():
    rng = np.random.default_rng(0)
    B, T, n_null, n_ramp = 100, 45, 400, 40
    w = variable_window(rng, B, T, 20)
    true = np.r_[np.zeros(n_null), rng.choice([-1, 1], n_ramp) * rng.uniform(0.3, 1.0, n_ramp)]  # rate units / s
    t_s = (np.arange(T)[None, :] - w.start_b[:, None]) * DT / 1000
    # strongly autocorrelated noise (tau = 200 ms) and large per-trial offsets: neither is a ramp
    rate = (true[None, None, :] * t_s[..., None] + ar1(rng, B, T, n_null + n_ramp, 200.0, DT, 0.2)
            + rng.normal(0, 2.0, (B, 1, n_null + n_ramp)))
    fit = ramp_slopes(rate, w, DT)
    z = (fit.slope_n - true) / fit.se_n
    assert np.abs(np.median(z)) < 0.3 and 0.8 < np.std(z) < 1.25  # unbiased slopes, honest standard errors
    assert np.all(np.abs(fit.slope_n[n_null:] - true[n_null:]) < 0.15)
    false_pos = (fit.p_n[:n_null] < ALPHA).mean()
    assert 0.02 < false_pos < 0.09, false_pos  # binomial sd at 400 units is 0.011
    rej = benjamini_hochberg(fit.p_n)
    assert rej[n_null:].mean() > 0.95 and rej[:n_null].mean() < 0.02
    # the oracle has teeth: an OLS p-value that treats steps as independent is far too liberal on
    # the same null units (within-trial demeaned, so the offsets do not matter)
    inside = (np.arange(T)[None, :] >= w.start_b[:, None]) & (np.arange(T)[None, :] < w.stop_b[:, None])
    tb = np.where(inside, t_s, np.nan)
    tb = (tb - np.nanmean(tb, 1, keepdims=True))[inside]
    naive = [stats.linregress(tb, (r - np.nanmean(np.where(inside, r, np.nan), 1, keepdims=True))[inside]).pvalue
             for r in rate[:, :, :100].transpose(2, 0, 1)]
    assert (np.array(naive) < ALPHA).mean() > 0.15


def test_constant_units_do_not_ramp():
    rate = np.ones((20, 30, 3))
    rate[:, :, 2] += 1e-12 * np.arange(30)  # numerically flat
    fit = ramp_slopes(rate, Window("delay", np.zeros(20, int), np.full(20, 30)), DT)
    np.testing.assert_array_equal(fit.p_n, 1.0)
    np.testing.assert_array_equal(fit.slope_n, 0.0)


def test_benjamini_hochberg_matches_scipy():
    p = np.random.default_rng(1).uniform(0, 0.2, 50) ** 2
    adjusted = stats.false_discovery_control(p)
    np.testing.assert_array_equal(benjamini_hochberg(p, 0.05), adjusted <= 0.05)
    with_nan = np.r_[p, np.nan]
    assert not benjamini_hochberg(with_nan)[-1]
    np.testing.assert_array_equal(benjamini_hochberg(with_nan)[:-1], adjusted <= 0.05)


def test_periods_are_chosen_by_name_with_fallbacks():
    b = np.zeros((4, 2), int)
    periods = {"fixation": b + [0, 5], "stimulus": b + [5, 15], "delay": b + [15, 16], "response": b + [16, 20]}
    assert choose_period(periods, ("delay", "stimulus", "trial"), 20).name == "stimulus"  # delay too short
    periods["delay"] = b + [15, 19]
    assert choose_period(periods, ("delay", "stimulus", "trial"), 20).name == "delay"
    w = choose_period({"trial": b + [0, 20]}, ("delay", "fixation", "trial"), 20)
    assert w.name == "trial" and (w.stop_b == 20).all()
    with pytest.raises(ValueError, match="no period"):
        choose_period({"stimulus": b + [0, 1]}, ("delay", "stimulus"), 20)


# ------------------------------------------------------------------------------------------- timescales
@pytest.mark.parametrize("tau_ms,offset_sd", [(60.0, 0.0), (150.0, 0.0), (150.0, 0.7)])
def test_autocorrelation_timescale_of_an_ou_process(tau_ms, offset_sd):
    """Across-trial autocorrelation of OU units: exp(-lag / tau); a per-trial offset adds the
    constant B = offset variance / OU variance (Murray et al. 2014's A (exp(-lag/tau) + B))."""
    rng = np.random.default_rng(2)
    B, T, N = 300, 50, 12
    x = ar1(rng, B, T, N, tau_ms, DT) + offset_sd * rng.standard_normal((B, 1, N))
    w = variable_window(rng, B, T, 30)  # variable-length period: pairs use the trials that have both steps
    ac, pairs = across_trial_autocorrelation(x, w)
    np.testing.assert_allclose(ac[0], 1.0)
    assert (pairs[1:] > 0).all()
    fits = [fit_autocorrelation_timescale(ac[:, n], pairs, DT, B) for n in range(N)]
    assert all(f.status == 0 for f in fits)
    taus = np.array([f.tau_ms for f in fits])
    assert abs(np.median(taus) / tau_ms - 1) < 0.12, taus
    assert np.all(np.abs(taus / tau_ms - 1) < 0.5)
    expect_b = offset_sd ** 2
    assert abs(np.median([f.offset for f in fits]) - expect_b) < 0.15


def test_an_autocorrelation_that_hardly_decays_in_the_window_is_censored():
    """A unit that holds a trial-specific level (offset variance 16 x the OU variance: the
    autocorrelation stays above 0.94 over the window) has no measurable decay: status 3, tau NaN,
    although a tau below the longest lag fits its small decaying part; the same OU process with a
    smaller offset decays by more than MIN_DECAY_FRACTION and is fitted."""
    rng = np.random.default_rng(5)
    B, T, N = 300, 50, 6
    w = Window("delay", np.zeros(B, int), np.full(B, 30))
    ou = ar1(rng, B, T, N, 150.0, DT)
    held = ou + 4.0 * rng.standard_normal((B, 1, N))
    ac, pairs = across_trial_autocorrelation(held, w)
    assert np.nanmin(ac[1:], 0).min() > 0.9
    fits = [fit_autocorrelation_timescale(ac[:, n], pairs, DT, B) for n in range(N)]
    assert all(f.status == 3 and np.isnan(f.tau_ms) for f in fits), [(f.status, f.tau_ms) for f in fits]
    decays = ou + 0.7 * rng.standard_normal((B, 1, N))
    ac, pairs = across_trial_autocorrelation(decays, w)
    assert all(fit_autocorrelation_timescale(ac[:, n], pairs, DT, B).status == 0 for n in range(N))


def test_timescale_fit_failures_are_nan_with_a_status():
    rng = np.random.default_rng(3)
    B, T = 200, 40
    w = Window("delay", np.zeros(B, int), np.full(B, T))
    white = rng.standard_normal((B, T, 6))
    ac, pairs = across_trial_autocorrelation(white, w)
    for n in range(6):
        f = fit_autocorrelation_timescale(ac[:, n], pairs, DT, B)
        assert f.status == 2 and np.isnan(f.tau_ms)
    frozen = ar1(rng, B, T, 3, 1e6, DT)  # far longer than the window
    ac, pairs = across_trial_autocorrelation(frozen, w)
    f = fit_autocorrelation_timescale(ac[:, 0], pairs, DT, B)
    assert f.status == 3 and np.isnan(f.tau_ms)
    same = np.tile(rng.standard_normal((1, T, 2)), (B, 1, 1))  # no variance across trials
    ac, pairs = across_trial_autocorrelation(same, w)
    assert np.isnan(ac[1:]).all()
    f = fit_autocorrelation_timescale(ac[:, 0], pairs, DT, B)
    assert f.status == 1 and np.isnan(f.tau_ms)


def test_exponential_timescale_of_decay_and_build_up():
    t = 500 + np.arange(60) * DT
    assert abs(fit_exponential_timescale(t, 0.2 + 1.5 * np.exp(-(t - 500) / 240.0)) / 240.0 - 1) < 1e-3
    assert abs(fit_exponential_timescale(t, 1.0 - np.exp(-(t - 500) / 100.0)) / 100.0 - 1) < 1e-3
    assert abs(fit_exponential_timescale(t[::3], 1.0 - np.exp(-(t[::3] - 500) / 100.0)) / 100.0 - 1) < 1e-3
    assert np.isnan(fit_exponential_timescale(t, np.full(60, 0.3)))
    assert np.isnan(fit_exponential_timescale(t, np.random.default_rng(4).standard_normal(60)))


# ------------------------------------------------------------------------------------------- plasticity
def test_plasticity_signatures_of_known_fast_efficacies():
    E, B, N, T, stop = 2, 6, 5, 40, 10
    F = -np.abs(np.random.default_rng(5).standard_normal((E, B, N, N)))
    F[0, :, 0, :2] = 0.5  # 10 of 150 entries positive in member 0 (2 per trial of 25)
    end = plasticity_end({"F_end_exbxnxn": torch.from_numpy(F)})
    t = np.arange(stop, T) * DT
    course = np.stack([0.1 + 0.9 * np.exp(-(t - t[0]) / 300.0), 0.5 - 0.4 * np.exp(-(t - t[0]) / 80.0)])
    sig = plasticity_signatures(end, t, course)
    np.testing.assert_allclose(sig["plasticity_fraction_positive"], [2 / 25, 0])
    np.testing.assert_allclose(sig["plasticity_fraction_negative"], [23 / 25, 1])
    np.testing.assert_allclose(sig["plasticity_mean_signed"], F.reshape(E, -1).mean(1))
    np.testing.assert_allclose(sig["plasticity_mean_abs"], np.abs(F).reshape(E, -1).mean(1))
    np.testing.assert_allclose(sig["plasticity_timescale_ms"], [300.0, 80.0], rtol=1e-3)  # decay, build-up
    rise_then_decay = np.r_[np.linspace(0.2, 0.9, 5), 0.1 + 0.9 * np.exp(-(t[5:] - t[5]) / 300.0)]
    sig = plasticity_signatures(end, t, np.stack([rise_then_decay, rise_then_decay]), from_peak=True)
    np.testing.assert_allclose(sig["plasticity_timescale_ms"], 300.0, rtol=1e-3)
    assert plasticity_end(None) is None and plasticity_end({}) is None


def test_tsodyks_markram_signatures_use_the_change_from_rest():
    E, B, T, N = 1, 3, 30, 4
    eff = np.ones((E, B, T, N))
    eff[..., :2] = 1.5  # facilitated
    eff[..., 2] = 0.5   # depressed; unit 3 at rest
    plast = {"efficacy_exbxtxn": torch.from_numpy(eff)}
    sig = plasticity_signatures(plasticity_end(plast))
    assert sig["plasticity_fraction_positive"][0] == 0.5 and sig["plasticity_fraction_negative"][0] == 0.25
    np.testing.assert_allclose(sig["plasticity_mean_signed"], 0.25 * (0.5 + 0.5 - 0.5))
    steps, course = plasticity_course(None, np.zeros((B, T, 1)), None, plast, 10)
    np.testing.assert_array_equal(steps, np.arange(10, T))
    np.testing.assert_allclose(course, 0.375)


def test_anti_hebbian_time_course_matches_the_update_rule():
    """mean |F_t| from rollouts cut after step t equals the rule of science.md §3 run on the full rollout:
    F_t = (1 - dt/tau_F) F_{t-1} - eta_F (h_t - h_{t-1}) r_{t-1}^T, F_{-1} = 0, h_{-1} = 0."""
    from types import SimpleNamespace

    from bioplastic.networks import build_network
    from bioplastic.networks.recurrence import phi
    from bioplastic.regularizers.tcr_plasticity import PlasticityConfig, attach_plasticity
    from bioplastic.seeds import numpy_rng

    E, B, T, N = 2, 3, 16, 5
    net = build_network("leaky_rate", {"n_units": N, "g": 1.5}, n_inputs=2, n_outputs=1, dt_ms=DT,
                        rngs=[numpy_rng(0, "init", s) for s in range(E)], dtype=torch.float64)
    cfg = PlasticityConfig(eta_F=0.5, tau_F_ms=200.0)
    attach_plasticity(net, SimpleNamespace(form="plasticity", plasticity=cfg))
    u = np.random.default_rng(8).standard_normal((B, T, 2))
    roll = _run(net, u, None)
    h = roll.state_exbxtxn.double().numpy()
    r = phi("tanh", torch.from_numpy(h)).numpy()
    F = np.zeros((E, B, N, N))
    expect = []
    for t in range(T):
        dh = h[:, :, t] - (h[:, :, t - 1] if t else 0.0)
        r_prev = r[:, :, t - 1] if t else np.zeros((E, B, N))
        F = (1 - DT / cfg.tau_F_ms) * F - cfg.eta_F * dh[..., :, None] * r_prev[..., None, :]
        expect.append(np.abs(F).mean((1, 2, 3)))
    np.testing.assert_allclose(plasticity_end(roll.plasticity), F.reshape(E, -1), rtol=1e-9, atol=1e-12)
    steps, course = plasticity_course(net, u, None, roll.plasticity, 4)
    np.testing.assert_array_equal(steps, np.arange(4, T))
    np.testing.assert_allclose(course, np.stack(expect, 1)[:, 4:], rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------------------------------- statistics
def test_paired_effect_size_ci_and_wilcoxon():
    rng = np.random.default_rng(6)
    a = rng.normal(10, 3, 12)
    b = a + 2 + rng.normal(0, 0.1, 12)  # paired: a large between-seed spread, a constant shift
    eff, paired = paired_or_unpaired(a, b, np.random.default_rng(0))
    assert paired
    assert eff[1] <= 2 <= eff[2] and abs(eff[0] - 2) < 0.1 and eff[2] - eff[1] < 0.3
    assert eff[3] == pytest.approx(stats.wilcoxon(b - a).pvalue) and eff[3] < 0.001
    same, _ = paired_or_unpaired(a, a.copy(), np.random.default_rng(0))
    np.testing.assert_array_equal(same, [0, 0, 0, 1])


def test_unpaired_fallback_and_missing_values():
    rng = np.random.default_rng(7)
    a = np.r_[rng.normal(0, 1, 8), np.full(8, np.nan)]
    b = np.r_[np.full(8, np.nan), rng.normal(5, 1, 8)]  # no seed has both: difference of medians
    eff, paired = paired_or_unpaired(a, b, np.random.default_rng(0))
    assert not paired
    assert eff[0] == pytest.approx(np.nanmedian(b) - np.nanmedian(a))
    assert eff[1] <= eff[0] <= eff[2] and eff[1] > 2
    assert eff[3] == pytest.approx(stats.mannwhitneyu(b[8:], a[:8]).pvalue)
    eff, _ = paired_or_unpaired(np.array([1.0, np.nan]), np.array([np.nan, 2.0]), np.random.default_rng(0))
    assert np.isnan(eff).all()


# ------------------------------------------------------------------------------------------- end to end
RUN = """
name: tiny_predictions
seed: 11
seeds: 2
task:
  kind: evidence_accumulation
  stimulus_ms: 200
  delay_min_ms: 200
  delay_max_ms: 300
  response_ms: 60
model:
  kind: leaky_rate
  n_units: 10
  g: 1.5
  sigma_h: 0.1
training:
  lr: 1e-2
  iterations: 4
  batch_size: 8
  checkpoint_every: 2
  eval_every: 2
  eval_trials: 8
  dtype: float64
conditions:
  baseline: {}
  tcr_loss:
    tcr: {form: loss, lambda: 0.5}
  tcr_plasticity:
    tcr: {form: plasticity}
analysis:
  initial_states: 8
  trials: 4
  gr_baseline: 1
output:
  figures: false
"""


@pytest.fixture(scope="module")
def pred_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pred")
    path = tmp / "p.yaml"
    path.write_text(RUN)
    _, out = run_protocol(load_protocol(path), tmp / "run")
    return out


@pytest.fixture(scope="module")
def tiny_pred(pred_run):
    before = (pred_run / "results.nc").read_bytes()
    pred = compute_predictions(pred_run, trials=24)
    assert (pred_run / "results.nc").read_bytes() == before
    return pred


def test_predictions_nc_of_a_tiny_run(pred_run, tiny_pred):
    pred = tiny_pred
    stored = read_dataset(pred_run / "predictions.nc")
    import xarray as xr
    xr.testing.assert_identical(stored, pred)  # the file holds what was returned
    for name in list(stored.data_vars) + list(stored.coords):
        assert "units" in stored[name].attrs and stored[name].attrs["long_name"], name
    for k in ("ramp_slope", "ramp_p_value", "ramping", "timescale_ms", "timescale_status"):
        assert stored[k].dims == ("condition", "seed", "unit")
    for k in list(MEASURES) + ["attractor_type"]:
        assert stored[k].dims == ("condition", "seed"), k
    for k in MEASURES:
        assert stored[f"{k}_effect"].dims == ("condition", "statistic")
        assert stored[f"{k}_summary"].dims == ("condition", "summary_statistic")
    assert list(stored["statistic"].values) == ["estimate", "ci_low", "ci_high", "p_value"]
    assert stored.attrs["ramp_period"] == "delay" and stored.attrs["baseline"] == "baseline"
    # every network was simulated; ramp slopes and rates exist for every unit
    assert np.isfinite(stored["ramp_slope"]).all() and np.isfinite(stored["participation_ratio"]).all()
    assert np.isfinite(stored["fraction_ramping"]).all() and np.isfinite(stored["accuracy"]).all()
    # fraction_ramping is the fraction of BH-significant units
    np.testing.assert_allclose(stored["fraction_ramping"], stored["ramping"].mean("unit"))
    # attractors come from analysis.nc's final checkpoint
    a = read_dataset(pred_run / "analysis.nc").isel(checkpoint=-1)
    np.testing.assert_array_equal(stored["n_attractors"], a["n_stable"])
    # plasticity signatures and the lesion only where the networks are plastic
    plastic = stored["condition"] == "tcr_plasticity"
    for k in ("plasticity_mean_abs", "plasticity_fraction_negative", "accuracy_plasticity_blocked", "lesion_accuracy_drop"):
        assert np.isfinite(stored[k].sel(condition="tcr_plasticity")).all(), k
        assert np.isnan(stored[k].where(~plastic, drop=True)).all(), k
    assert (stored["plasticity_mean_abs"].sel(condition="tcr_plasticity") > 0).all()
    # the baseline has no effect against itself
    assert np.isnan(stored["fraction_ramping_effect"].sel(condition="baseline")).all()
    np.testing.assert_allclose(stored["accuracy_effect"].sel(condition="tcr_loss", statistic="estimate"),
                               np.median(stored["accuracy"].sel(condition="tcr_loss") - stored["accuracy"].sel(condition="baseline")))
    # deterministic
    again = compute_predictions(pred_run, trials=24, write=False)
    np.testing.assert_array_equal(again["ramp_slope"], pred["ramp_slope"])
    text = prediction_sentences(stored)
    assert any("of units ramp during the delay with tcr_plasticity vs" in s for s in text)
    assert any("Blocking the plasticity of trained tcr_plasticity networks" in s for s in text)
    # blocking's change (without minus with plasticity, the bottom line's and the table's convention)
    les = stored["lesion_effect"].sel(condition="tcr_plasticity").values
    assert any(f"by {0.0 - 100 * les[0]:+.1f} points (95 % CI {0.0 - 100 * les[2]:+.1f} to {0.0 - 100 * les[1]:+.1f}" in s
               for s in text), text
    assert all("nan" not in s for s in text)


def test_prediction_figures_draw_from_the_dataset(tiny_pred):
    import matplotlib.pyplot as plt

    from bioplastic.plotting import predictions as figs

    for draw in (figs.ramping_examples, figs.ramp_distributions, figs.timescale_distributions):
        axes = np.atleast_1d(draw(tiny_pred))
        assert all(ax.get_xlabel() for ax in axes), draw.__name__
        assert axes[0].get_ylabel(), draw.__name__
        plt.close(axes[0].figure)


def test_predictions_without_analysis_nc(pred_run, tmp_path):
    shutil.copy(pred_run / "results.nc", tmp_path / "results.nc")
    pred = compute_predictions(tmp_path, trials=16)
    assert (tmp_path / "predictions.nc").is_file()
    assert np.isnan(pred["n_attractors"]).all() and np.isnan(pred["attractor_slow_tau_ms"]).all()
    assert (pred["attractor_type"] == -1).all() and pred.attrs["analysis_available"] == 0
    assert np.isfinite(pred["fraction_ramping"]).all()
