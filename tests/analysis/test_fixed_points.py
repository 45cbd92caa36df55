"""The fixed-point finder against networks whose fixed points are known in closed form."""
import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import brentq

from bioplastic.analysis.fixed_points import (
    DEFAULTS,
    KIND_NAMES,
    SADDLE,
    STABLE,
    UNSTABLE,
    FixedPointOptions,
    find_fixed_points,
    plrnn_exact_fixed_points,
    sample_initial_states,
    time_constants_ms,
)
from bioplastic.networks import build_network

DT = 20.0
#: agreement of a float64 solution with a closed form (a few hundred eps of the state scale)
ATOL = 1e-11


def _net(kind, n_units, E, *, n_inputs=1, dtype=torch.float32, seed=0, **cfg):
    return build_network(kind, {"n_units": n_units, **cfg}, n_inputs=n_inputs, n_outputs=1, dt_ms=DT,
                         rngs=[np.random.default_rng(seed + e) for e in range(E)], dtype=dtype)


def _match(found_pxs, expected_pxs, atol):
    """Indices j such that found[i] ~ expected[j], one to one; fails otherwise."""
    assert len(found_pxs) == len(expected_pxs)
    d = np.abs(found_pxs[:, None, :] - expected_pxs[None]).max(-1)
    j = d.argmin(1)
    assert sorted(j.tolist()) == list(range(len(expected_pxs))), "points not matched one to one"
    assert d[np.arange(len(j)), j].max() <= atol
    return j


def test_linear_plrnn_single_fixed_point_and_its_jacobian():
    # W = 0: z' = A z + h + C u has the single fixed point (h + C u) / (1 - A), with Jacobian diag(A)
    E, N, I = 2, 4, 2
    net = _net("plrnn", N, E, n_inputs=I, dtype=torch.float64)
    rng = np.random.default_rng(1)
    A = np.array([[0.3, 0.5, 0.7, 0.9], [0.2, 0.6, 1.25, 0.95]])  # member 1: one unstable direction
    with torch.no_grad():
        net.params["W"].zero_()
        net.params["A"].copy_(torch.as_tensor(A))
        net.params["h"].copy_(torch.as_tensor(rng.normal(0, 1, (E, N))))
    u = rng.normal(0, 1, (E, I))
    p = {k: v.detach().numpy() for k, v in net.params.items()}
    z_star = (p["h"] + np.einsum("eni,ei->en", p["C"], u)) / (1 - A)
    x0 = rng.normal(0, 2 * np.abs(z_star).max(), (E, 16, N))
    for fp in (find_fixed_points(net, u, x0), plrnn_exact_fixed_points(net, u)):
        assert fp.n_points_e.tolist() == [1, 1]
        assert fp.is_fixed_exp[:, 0].all() and not fp.is_slow_exp.any()
        np.testing.assert_allclose(fp.x_expxs[:, 0], z_star, atol=ATOL * np.abs(z_star).max())
        lam = -np.sort(-A, axis=1)  # by modulus, descending
        np.testing.assert_allclose(fp.eigenvalues_expxs[:, 0].real, lam, atol=1e-12)
        np.testing.assert_array_equal(fp.eigenvalues_expxs[:, 0].imag, 0)
        np.testing.assert_allclose(fp.tau_ms_expxs[:, 0], -DT / np.log(lam), rtol=1e-9)
        assert fp.n_unstable_exp[:, 0].tolist() == [0, 1]
        assert fp.kind_exp[:, 0].tolist() == [STABLE, SADDLE]
        assert fp.kind_str_exp()[:, 0].tolist() == ["stable", "saddle"]


def _tanh_oracle(w, N, a):
    """Fixed points of decoupled units h = (1-a) h + a w tanh(h): every combination of the roots
    of h = w tanh(h); per-unit eigenvalue (1-a) + a w (1 - tanh(h)^2)."""
    roots = [0.0]
    if w > 1:
        hs = brentq(lambda h: h - w * np.tanh(h), 1e-3, 10 * w)
        roots = [-hs, 0.0, hs]
    pts = np.array(list(itertools.product(roots, repeat=N)))
    lam = (1 - a) + a * w * (1 - np.tanh(pts) ** 2)
    return pts, -np.sort(-lam, axis=1)


def test_decoupled_self_exciting_tanh_units_all_27_points_and_no_other():
    E, N = 3, 3
    ws = [2.0, 3.0, 0.5]  # 27, 27 and 1 fixed points
    net = _net("leaky_rate", N, E, g=1.5)
    a = net.alpha
    with torch.no_grad():
        for e, w in enumerate(ws):
            net.params["W"][e] = w * torch.eye(N)
        net.params["b"].zero_()
    rng = np.random.default_rng(0)
    x0 = np.stack([rng.uniform(-1.5, 1.5, (400, N)) * max(1.0, _tanh_oracle(w, 1, a)[0].max()) for w in ws])
    fp = find_fixed_points(net, np.zeros((E, 1)), x0)
    assert fp.n_points_e.tolist() == [27, 27, 1]
    assert fp.x_expxs.shape == (E, 27, N) and not fp.valid_exp[2, 1:].any()
    assert np.isnan(fp.x_expxs[2, 1:]).all() and (fp.kind_exp[2, 1:] == -1).all()
    for e, w in enumerate(ws):
        m = fp.member(e)
        pts, lam = _tanh_oracle(w, N, a)
        j = _match(m["x_pxs"], pts, ATOL * 10)
        assert m["is_fixed_p"].all() and not m["is_slow_p"].any()
        np.testing.assert_allclose(m["eigenvalues_pxs"].real, lam[j], atol=1e-12)
        n_zero = (pts[j] == 0).sum(1)  # unit at 0 is unstable when w > 1
        assert m["n_unstable_p"].tolist() == (n_zero if w > 1 else np.zeros_like(n_zero)).tolist()
        np.testing.assert_allclose(m["tau_ms_pxs"], -DT / np.log(lam[j]), rtol=1e-9)
    counts = fp.counts()
    assert counts["stable"].tolist() == [8, 8, 1]
    assert counts["saddle"].tolist() == [18, 18, 0]  # 12 with one unstable unit, 6 with two
    assert counts["unstable"].tolist() == [1, 1, 0]
    assert (fp.n_unstable_exp[0][fp.valid_exp[0]] == [0] * 8 + [1] * 12 + [2] * 6 + [3]).all()  # sorted by kind
    assert KIND_NAMES[UNSTABLE] == "unstable"


def test_plrnn_finder_agrees_with_the_exact_region_solver():
    E, N, I = 3, 5, 2
    net = _net("plrnn", N, E, n_inputs=I, dtype=torch.float64, seed=3, g=2.0, a_init=0.5)
    rng = np.random.default_rng(3)
    with torch.no_grad():
        net.params["h"].copy_(torch.as_tensor(rng.normal(0, 1, (E, N))))
    u = rng.normal(0, 1, (E, I))
    exact = plrnn_exact_fixed_points(net, u)
    assert exact.n_points_e.sum() >= 4 and exact.n_points_e.max() >= 2  # a non-trivial case
    spread = np.nanmax(np.abs(exact.x_expxs), axis=(1, 2))
    x0 = rng.normal(0, 1, (E, 500, N)) * (2 * spread[:, None, None])
    found = find_fixed_points(net, u, x0)
    assert found.counts()["fixed"].tolist() == exact.n_points_e.tolist()
    for e in range(E):
        f, x = found.member(e), exact.member(e)
        fixed = f["is_fixed_p"]
        j = _match(f["x_pxs"][fixed], x["x_pxs"], 1e-9 * max(1.0, spread[e]))
        assert f["n_unstable_p"][fixed].tolist() == x["n_unstable_p"][j].tolist()
        np.testing.assert_allclose(f["eigenvalues_pxs"][fixed], x["eigenvalues_pxs"][j], atol=1e-9)


def test_lstm_points_are_fixed_under_the_networks_own_map():
    E, N = 2, 6
    net = _net("lstm", N, E, n_inputs=2)
    rng = np.random.default_rng(0)
    x0 = rng.normal(0, 0.5, (E, 48, 2 * N))
    u = rng.normal(0, 1, (E, 2))
    fp = find_fixed_points(net, u, x0)
    assert (fp.counts()["fixed"] >= 1).all()
    net64 = _net("lstm", N, E, n_inputs=2, dtype=torch.float64)
    net64.params = {k: v.detach().to(torch.float64) for k, v in net.params.items()}
    for e in range(E):
        m = fp.member(e)
        assert (m["q_p"][m["is_fixed_p"]] <= fp.tol_q_e[e]).all()
        x = torch.as_tensor(np.broadcast_to(m["x_pxs"][:1], (E, 1, 2 * N)).copy())
        with torch.no_grad():
            drift = (net64.one_step(x, torch.as_tensor(u)) - x)[e].norm()
        assert float(drift) <= np.sqrt(2 * fp.tol_q_e[e])
        # eigenvalues against the Jacobian from torch.autograd.functional.jacobian at the point
        def step(x_s, e=e):
            X = torch.zeros(E, 1, 2 * N, dtype=torch.float64)
            X[e, 0] = x_s
            return net64.one_step(X, torch.as_tensor(u))[e, 0]
        J = torch.autograd.functional.jacobian(step, torch.as_tensor(m["x_pxs"][0]))
        lam = np.linalg.eigvals(J.numpy())
        lam = lam[np.lexsort((-lam.imag, -lam.real, -np.abs(lam)))]
        np.testing.assert_allclose(m["eigenvalues_pxs"][0], lam, atol=1e-10)


def test_a_ghost_is_a_slow_point_not_a_fixed_point():
    # one unit, w = 2: f(h) = 2 tanh(h) - h has a local maximum at h_c = arccosh(sqrt 2); with a bias
    # just below -f(h_c) the map has one fixed point (h < 0) and a ghost at h_c where
    # q = 1/2 (a delta)^2 > 0 is a local minimum: a slow point, not a fixed point
    net = _net("leaky_rate", 1, 1, dtype=torch.float64)
    a, delta = net.alpha, 1e-3
    h_c = np.arccosh(np.sqrt(2.0))
    bias = -(2 * np.tanh(h_c) - h_c) - delta
    with torch.no_grad():
        net.params["W"].fill_(2.0)
        net.params["b"].fill_(bias)
    h_fixed = brentq(lambda h: 2 * np.tanh(h) - h + bias, -10, 0)
    x0 = np.linspace(-3, 3, 61)[None, :, None]
    fp = find_fixed_points(net, np.zeros((1, 1)), x0)
    m = fp.member(0)
    assert m["is_fixed_p"].tolist() == [True, False] and m["is_slow_p"].tolist() == [False, True]
    np.testing.assert_allclose(m["x_pxs"][0], [h_fixed], atol=1e-12)
    np.testing.assert_allclose(m["x_pxs"][1], [h_c], atol=1e-5)
    np.testing.assert_allclose(m["q_p"][1], 0.5 * (a * delta) ** 2, rtol=1e-6)
    assert m["kind_p"][0] == STABLE


def _snapshot(net):
    return {k: (v, v.detach().clone(), v.requires_grad, v._version, v.grad) for k, v in net.params.items()}


@pytest.mark.parametrize("kind", ["leaky_rate", "low_rank", "plrnn", "lstm"])
def test_analysis_never_changes_the_network(kind):
    net = _net(kind, 4, 2, n_inputs=2)
    before = _snapshot(net)
    params_dict, buffers = net.params, {k: v.clone() for k, v in net.buffers.items()}
    x0 = np.random.default_rng(0).normal(0, 1, (2, 8, net.full_state_dim()))
    find_fixed_points(net, np.zeros((2, 2)), x0)
    if kind == "plrnn":
        plrnn_exact_fixed_points(net, np.zeros((2, 2)))
    assert net.params is params_dict and net.dtype == torch.float32
    for k, (obj, val, rg, version, grad) in before.items():
        assert net.params[k] is obj
        assert torch.equal(obj, val) and obj.dtype == torch.float32
        assert obj.requires_grad == rg and obj._version == version and obj.grad is grad
    for k, v in buffers.items():
        assert torch.equal(net.buffers[k], v)


def test_results_are_deterministic_sorted_and_members_independent():
    net = _net("leaky_rate", 20, 2, g=2.5)
    x0 = np.random.default_rng(5).normal(0, 2, (2, 64, 20))
    fp1 = find_fixed_points(net, np.zeros((2, 1)), x0)
    fp2 = find_fixed_points(net, np.zeros((2, 1)), x0.copy())
    for name in ("x_expxs", "q_exp", "eigenvalues_expxs", "tau_ms_expxs", "n_unstable_exp", "kind_exp"):
        np.testing.assert_array_equal(getattr(fp1, name), getattr(fp2, name))
    # member 1 analysed alone gives the same points as within the ensemble
    alone = _net("leaky_rate", 20, 1, g=2.5)
    alone.params = net.select([1])
    fa = find_fixed_points(alone, np.zeros((1, 1)), x0[1:])
    assert fa.n_points_e[0] == fp1.n_points_e[1]
    np.testing.assert_allclose(fa.member(0)["x_pxs"], fp1.member(1)["x_pxs"], atol=1e-9)
    assert fa.member(0)["n_unstable_p"].tolist() == fp1.member(1)["n_unstable_p"].tolist()
    mod = np.abs(fp1.eigenvalues_expxs[fp1.valid_exp])
    assert (np.diff(mod, axis=1) <= 0).all()
    for e in range(2):  # fixed before slow, then by n_unstable
        m = fp1.member(e)
        key = np.stack([~m["is_fixed_p"], m["n_unstable_p"]], 1)
        assert (np.diff(key[:, 0].astype(int)) >= 0).all()
        same = np.diff(key[:, 0].astype(int)) == 0
        assert (np.diff(key[:, 1])[same] >= 0).all()


def test_time_constants():
    lam = np.array([1.0, -1.0, 0.5, 2.0, 0.0, 0.6 + 0.8j])
    tau = time_constants_ms(lam, 10.0)
    assert tau[0] == np.inf and tau[1] == np.inf and tau[4] == 0.0 and tau[5] == np.inf
    np.testing.assert_allclose(tau[[2, 3]], [10 / np.log(2), -10 / np.log(2)])


def test_sample_initial_states_draws_from_valid_steps_only():
    X = np.zeros((2, 3, 5, 4))
    X[..., 0] = np.arange(5)  # the time index
    valid = np.zeros((2, 3, 5), bool)
    valid[:, :, 2] = True
    x0 = sample_initial_states(X, 7, noise_std=0.0, rng=np.random.default_rng(0), valid_exbxt=valid)
    assert x0.shape == (2, 7, 4) and (x0[..., 0] == 2).all()
    noisy = sample_initial_states(X, 7, noise_std=0.1, rng=np.random.default_rng(0))
    assert noisy.std() > 0


def test_bad_input_is_refused_with_a_clear_message():
    net = _net("leaky_rate", 3, 2)
    x0 = np.zeros((2, 4, 3))
    with pytest.raises(ValueError, match=r"u_exi must have shape \(members, inputs\) = \(2, 1\)"):
        find_fixed_points(net, np.zeros((1, 1)), x0)
    with pytest.raises(ValueError, match=r"x0_exkxs must have shape"):
        find_fixed_points(net, np.zeros((2, 1)), np.zeros((2, 4, 5)))
    with pytest.raises(ValueError, match="NaN"):
        find_fixed_points(net, np.zeros((2, 1)), np.full((2, 4, 3), np.nan))
    with pytest.raises(ValueError, match="tol_q must be a positive"):
        find_fixed_points(net, np.zeros((2, 1)), x0, tol_q=-1.0)
    with pytest.raises(ValueError, match="max_iter"):
        find_fixed_points(net, np.zeros((2, 1)), x0, max_iter=0)
    with pytest.raises(ValueError, match="dedup_rtol must be > 0"):
        FixedPointOptions(dedup_rtol=0.0)
    with pytest.raises(ValueError, match="needs a PLRNN"):
        plrnn_exact_fixed_points(net, np.zeros((2, 1)))
    big = _net("plrnn", 13, 1)
    with pytest.raises(ValueError, match="exceeds max_units = 12"):
        plrnn_exact_fixed_points(big, np.zeros((1, 1)))
    with pytest.raises(ValueError, match="numpy Generator"):
        sample_initial_states(np.zeros((1, 1, 2, 3)), 2, noise_std=0.1, rng=0)
    assert DEFAULTS.max_iter >= 1
