"""The brian2 re-simulation against the torch engine (the oracle, same Euler step, float64), the
continuous-time limit against a closed-form solution, and the bridge's bad-input paths."""
import numpy as np
import pytest
import torch
import xarray as xr

from bioplastic.networks import build_network
from bioplastic.regularizers.tcr_plasticity import PlasticityConfig, ShortTermPlasticity
from bioplastic.simulate import (
    Brian2ExportError,
    agreement,
    brian2_bridge,
    cython_available,
    discretisation_error,
    export_network,
    simulate_brian2,
    simulate_torch,
)

#: same Euler step in float64: both engines do the same arithmetic up to rounding order
TOL = 1e-6
#: plasticity must move the states at least this much for its agreement test to mean anything
EFFECT = 1e-3
N, I, O, DT, B, T = 6, 2, 2, 10.0, 3, 30

MODELS = {
    "leaky_rate": dict(kind="leaky_rate", g=1.5, tau_ms=50.0),
    "leaky_dale_mask": dict(kind="leaky_rate", g=1.5, tau_ms=50.0, connection_prob=0.6, frac_excitatory=0.5,
                            phi="softplus"),
    "low_rank": dict(kind="low_rank", rank=2, g=0.8, tau_ms=40.0, phi="relu"),
}
RULES = {
    "anti_hebbian_clipped": dict(rule="anti_hebbian", eta_F=0.8, tau_F_ms=200.0, F_max=0.05),
    "anti_hebbian": dict(rule="anti_hebbian", eta_F=0.8, tau_F_ms=200.0),
    "tsodyks_markram": dict(rule="tsodyks_markram", U=0.3, tau_facilitation_ms=300.0, tau_depression_ms=80.0,
                            max_rate_hz=60.0),
}


def make_net(model="leaky_rate", rule=None, members=2, **over):
    spec = {**MODELS[model], **over}
    kind = spec.pop("kind")
    net = build_network(kind, dict(n_units=N, **spec), n_inputs=I, n_outputs=O, dt_ms=DT,
                        rngs=[np.random.default_rng(10 + s) for s in range(members)], dtype=torch.float64)
    with torch.no_grad():  # nonzero biases and readout offsets, so every term of the update is exercised
        net.params["b"] = 0.2 * torch.randn(net.params["b"].shape, generator=torch.Generator().manual_seed(1),
                                            dtype=torch.float64)
        net.params["b_out"] = net.params["b_out"] + 0.3
    if rule is not None:
        net.plasticity = ShortTermPlasticity(PlasticityConfig(**RULES[rule]), net.dt_ms, net.n_members, net.dtype)
        if members > 1:  # members with different eta_F(k), as during training
            net.plasticity.eta_e = net.plasticity.eta_e * torch.linspace(1.0, 0.5, members, dtype=torch.float64)
    return net


def inputs(seed=0, trials=B, steps=T):
    return np.random.default_rng(seed).normal(size=(trials, steps, I))


def assert_same_layout(a: xr.Dataset, b: xr.Dataset):
    assert set(a.data_vars) == set(b.data_vars)
    for v in a.data_vars:
        assert a[v].dims == b[v].dims and a[v].attrs == b[v].attrs
    for c in a.coords:
        xr.testing.assert_identical(a[c], b[c])


@pytest.mark.parametrize("model", sorted(MODELS))
def test_same_euler_step_agrees_with_torch(model):
    net, u = make_net(model), inputs()
    b2 = simulate_brian2(net, 1, u, codegen="numpy")
    th = simulate_torch(net, 1, u)
    assert b2.attrs["brian2_codegen"] == "numpy" and b2.attrs["engine"] == "brian2"
    assert_same_layout(b2, th)
    assert b2["state"].dims == ("trial", "time", "unit") and b2["state"].shape == (B, T, N)
    err = agreement(b2, th)
    assert err["state"] <= TOL and err["readout"] <= TOL, err
    assert np.abs(th["state"].values).max() > 0.1  # a trivial (near-zero) trajectory would prove nothing


@pytest.mark.parametrize("model,rule", [("leaky_rate", "anti_hebbian_clipped"), ("leaky_dale_mask", "anti_hebbian"),
                                        ("low_rank", "anti_hebbian_clipped"), ("leaky_rate", "tsodyks_markram"),
                                        ("low_rank", "tsodyks_markram")])
def test_plasticity_runs_online_in_brian2_and_matches_torch(model, rule):
    net, u = make_net(model, rule), inputs(1)
    b2 = simulate_brian2(net, [1, 0], u, codegen="numpy")
    th = simulate_torch(net, [1, 0], u)
    assert_same_layout(b2, th)
    extra = "F_end" if rule.startswith("anti") else "efficacy"
    assert extra in b2 and b2["state"].dims == ("seed", "trial", "time", "unit")
    err = agreement(b2, th)
    assert set(err) == {"state", "readout", extra}
    assert max(err.values()) <= TOL, err
    # the plasticity acts: without it the states differ, and the fast variables moved
    static = make_net(model)
    off = simulate_torch(static, [1, 0], u)
    assert np.abs(off["state"].values - th["state"].values).max() > EFFECT
    moved = np.abs(th[extra].values - (0.0 if extra == "F_end" else 1.0)).max()
    assert moved > EFFECT
    if rule == "anti_hebbian_clipped":
        assert np.isclose(np.abs(b2["F_end"].values).max(), RULES[rule]["F_max"])  # the clip is active


def test_members_are_simulated_independently():
    net, u = make_net("leaky_rate", "anti_hebbian"), inputs(2)
    both = simulate_brian2(net, [0, 1], u, codegen="numpy")
    one = simulate_brian2(net, 1, u, codegen="numpy")
    np.testing.assert_array_equal(both["seed"].values, [0, 1])
    np.testing.assert_allclose(both["state"].sel(seed=1).values, one["state"].values, rtol=0, atol=1e-14)
    assert np.abs(both["state"].sel(seed=0).values - one["state"].values).max() > EFFECT


def test_given_noise_is_fed_to_both_engines():
    net, u = make_net("leaky_rate", sigma_h=0.4), inputs(3)
    xi = np.random.default_rng(4).normal(size=(B, T, N))
    b2 = simulate_brian2(net, 0, u, codegen="numpy", noise_bxtxn=xi)
    th = simulate_torch(net, 0, u, noise_bxtxn=xi)
    assert max(agreement(b2, th).values()) <= TOL
    quiet = simulate_torch(net, 0, u)
    assert np.abs(quiet["state"].values - th["state"].values).max() > EFFECT


def test_fine_step_converges_to_the_exact_solution_without_recurrence():
    """With W = 0 and inputs constant over each task step, tau dh/dt = -h + W_in u + b has the exact
    step map h_k = e^(-dt/tau) h_(k-1) + (1 - e^(-dt/tau)) (W_in u_k + b): forward Euler at dt/k
    approaches it with an error ~ 1/k, and the torch engine (k = 1) carries the largest error."""
    net, u = make_net("leaky_rate", members=1, phi="tanh"), inputs(5)
    with torch.no_grad():
        net.params["W"].zero_()
    drive = np.einsum("bti,ni->btn", u, net.params["W_in"][0].detach().numpy()) + net.params["b"][0].detach().numpy()
    decay = np.exp(-DT / net.config.tau_ms)
    h, exact = np.zeros((B, N)), np.zeros((B, T, N))
    for t in range(T):
        h = decay * h + (1 - decay) * drive[:, t]
        exact[:, t] = h
    errors = []
    for k in (1, 4, 16):
        fine = simulate_brian2(net, 0, u, dt_ms=DT / k, codegen="numpy")
        assert fine.attrs["dt_ms"] == DT / k and fine["state"].shape == (B, T, N)
        errors.append(np.abs(fine["state"].values - exact).max() / np.abs(exact).max())
    torch_err = np.abs(simulate_torch(net, 0, u)["state"].values - exact).max() / np.abs(exact).max()
    assert errors[0] == pytest.approx(torch_err, rel=1e-6)
    assert errors[2] < errors[1] < errors[0]
    assert errors[1] / errors[2] == pytest.approx(4, rel=0.15)  # first order in the step


def test_discretisation_error_reports_torch_against_finer_brian2():
    net, u = make_net("leaky_rate", "tsodyks_markram", members=1), inputs(6)
    d = discretisation_error(net, 0, u, refine=[1, 8, 16], codegen="numpy")
    e = d["relative_error_state"].values
    assert e[0] <= TOL  # refine 1 is the same Euler step
    assert e[1] > 100 * TOL and e[2] > 100 * TOL
    np.testing.assert_allclose(d["dt_ms"].values, [DT, DT / 8, DT / 16])
    assert d.attrs["brian2_codegen"] == "numpy" and "relative_error_readout" in d
    # converged: refining further changes the error by much less than the error itself
    assert abs(e[2] - e[1]) < 0.2 * e[2]


def test_global_numpy_random_state_is_untouched():
    np.random.seed(1234)
    before = np.random.get_state()
    expected = np.random.random(3)
    np.random.set_state(before)
    simulate_brian2(make_net("leaky_rate", members=1), 0, inputs(), codegen="numpy", seed=99)
    after = np.random.get_state()
    assert after[0] == before[0] and np.array_equal(after[1], before[1]) and after[2:] == before[2:]
    np.testing.assert_array_equal(np.random.random(3), expected)


def test_the_bridge_seeds_brian2_with_the_callers_seed(monkeypatch):
    import brian2

    seen = []
    real = brian2.seed
    monkeypatch.setattr(brian2, "seed", lambda s=None: (seen.append(s), real(s)))
    simulate_brian2(make_net("leaky_rate", members=1), 0, inputs(), codegen="numpy", seed=42)
    assert seen == [42]


@pytest.mark.parametrize("kind", ["plrnn", "lstm"])
def test_unsupported_model_kinds_are_refused(kind):
    net = build_network(kind, {"n_units": 4}, n_inputs=I, n_outputs=O, dt_ms=DT, rngs=[np.random.default_rng(0)])
    with pytest.raises(ValueError, match=f"'{kind}'.*leaky_rate, low_rank"):
        export_network(net, 0)
    with pytest.raises(Brian2ExportError):
        simulate_brian2(net, 0, inputs(), codegen="numpy")


def test_unknown_plasticity_rule_is_refused():
    class Odd:
        class config:
            rule = "stdp"

    net = make_net("leaky_rate")
    net.plasticity = Odd()
    with pytest.raises(ValueError, match="'stdp'.*anti_hebbian, tsodyks_markram"):
        export_network(net, 0)


@pytest.mark.parametrize("kwargs,match", [(dict(dt_ms=3.0), "whole multiple"), (dict(dt_ms=-1.0), "positive"),
                                          (dict(codegen="cpp"), "cython, numpy")])
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_brian2(make_net("leaky_rate", members=1), 0, inputs(), **{"codegen": "numpy", **kwargs})


def test_bad_inputs_and_members_are_refused():
    net = make_net("leaky_rate")
    with pytest.raises(ValueError, match="2 inputs"):
        simulate_brian2(net, 0, np.zeros((2, 5, 3)), codegen="numpy")
    with pytest.raises(ValueError, match="member"):
        simulate_brian2(net, 2, inputs(), codegen="numpy")


def test_no_compiler_falls_back_to_numpy_with_a_warning(monkeypatch):
    monkeypatch.setattr(brian2_bridge, "cython_available", lambda cache_dir=None: (False, "no C++ compiler here"))
    net, u = make_net("leaky_rate", members=1), inputs()
    with pytest.warns(RuntimeWarning, match=r"no C\+\+ compiler here.*numpy"):
        ds = simulate_brian2(net, 0, u, codegen="cython")
    assert ds.attrs["brian2_codegen"] == "numpy"
    assert max(agreement(ds, simulate_torch(net, 0, u)).values()) <= TOL


def test_compile_failure_falls_back_but_model_errors_propagate(monkeypatch):
    class CompileError(Exception):
        pass

    real = brian2_bridge._run_target
    monkeypatch.setattr(brian2_bridge, "cython_available", lambda cache_dir=None: (True, ""))

    def failing_compile(exp, inputs, noise, dt, target, cache, seed, profile):
        if target == "cython":
            raise RuntimeError("error in code object") from CompileError("g++ exited with status 1")
        return real(exp, inputs, noise, dt, target, cache, seed, profile)

    monkeypatch.setattr(brian2_bridge, "_run_target", failing_compile)
    with pytest.warns(RuntimeWarning, match="compiling the generated cython code failed"):
        ds = simulate_brian2(make_net("leaky_rate", members=1), 0, inputs(), codegen="cython")
    assert ds.attrs["brian2_codegen"] == "numpy"

    def wrong_model(*args):
        raise KeyError("not a compiler problem")

    monkeypatch.setattr(brian2_bridge, "_run_target", wrong_model)
    with pytest.raises(KeyError):
        simulate_brian2(make_net("leaky_rate", members=1), 0, inputs(), codegen="cython")


@pytest.mark.slow
@pytest.mark.parametrize("rule", [None, "anti_hebbian_clipped", "tsodyks_markram"])
def test_cython_target_agrees_and_caches_in_the_given_folder(rule, tmp_path):
    ok, why = cython_available(tmp_path / "cache")
    if not ok:
        pytest.skip(f"no cython compilation here: {why}")
    net, u = make_net("low_rank", rule), inputs(7)
    ds = simulate_brian2(net, [0, 1], u, codegen="cython", cache_dir=tmp_path / "cache")
    assert ds.attrs["brian2_codegen"] == "cython"
    assert max(agreement(ds, simulate_torch(net, [0, 1], u)).values()) <= TOL
    assert any((tmp_path / "cache").rglob("*.so")) or any((tmp_path / "cache").rglob("*.pyd"))
    again = simulate_brian2(net, [0, 1], u, codegen="cython", cache_dir=tmp_path / "cache")
    xr.testing.assert_identical(again.drop_attrs(), ds.drop_attrs())
