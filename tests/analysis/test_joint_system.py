"""The joint phase space of plastic networks (state and fast synaptic variables; science.md §5):
hand-derived Jacobians and steady states against the code, autograd and the network's own simulation."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bioplastic.analysis.fixed_points import SADDLE, STABLE, _Layout, find_fixed_points
from bioplastic.analysis.joint_system import (
    JointAntiHebbian,
    JointSystemError,
    JointTsodyksMarkram,
    _AntiHebbianResidual,
    anti_hebbian_spectrum,
    joint_points,
    joint_system,
    plastic_trajectories,
    rank_one_efficacies,
    tm_steady_state,
)
from bioplastic.networks import build_network
from bioplastic.regularizers.tcr_plasticity import PlasticityConfig, attach_plasticity

F64 = torch.float64
DT, TAU = 20.0, 100.0          # a = 0.2
A = DT / TAU


def _net(N=2, *, rule="anti_hebbian", W=None, h_star=None, seed=0, dtype=F64, n_inputs=1, **plastic):
    """A leaky tanh network (one member) with plasticity; with ``h_star`` the bias makes h_star a fixed
    point of the long-term weights alone (anti-Hebbian) or of the joint system (Tsodyks-Markram)."""
    net = build_network("leaky_rate", {"n_units": N, "g": 1.2, "tau_ms": TAU}, n_inputs=n_inputs, n_outputs=1, dt_ms=DT,
                        rngs=[np.random.default_rng(seed)], dtype=dtype)
    cfg = PlasticityConfig(rule=rule, **plastic)
    attach_plasticity(net, SimpleNamespace(form="plasticity", plasticity=cfg))
    with torch.no_grad():
        if W is not None:
            net.params["W"][0] = torch.as_tensor(W, dtype=dtype)
        if h_star is not None:
            h = torch.as_tensor(h_star, dtype=F64)
            r = torch.tanh(h)
            if rule == "tsodyks_markram":
                u, x = tm_steady_state(r, U=cfg.U, tau_f_ms=cfg.tau_facilitation_ms, tau_d_ms=cfg.tau_depression_ms,
                                       max_rate_hz=cfg.max_rate_hz)
                r = r * u * x / cfg.U
            net.params["b"][0] = (h - net.params["W"][0].to(F64) @ r).to(dtype)
    return net


W2 = [[0.9, -0.4], [0.6, 0.5]]
H2 = [0.5, -0.3]


def _hand_jacobian_2unit(W, h, eta, tau_F):
    """The 6 x 6 joint Jacobian of the 2-unit anti-Hebbian network at a fixed point (h' = h, F = 0),
    written entry by entry from the update (state order h1, h2, F11, F12, F21, F22):
    dh'_i/dh_k = (1-a) d_ik + a W_ik phi'(h_k);  dh'_i/dF_kl = a d_ik r_l;
    dF'_ij/dh_k = -eta (dh'_i/dh_k - d_ik) r_j;  dF'_ij/dF_kl = rho d_ik d_jl - eta a d_ik r_l r_j."""
    W, h = np.asarray(W), np.asarray(h)
    r, dphi = np.tanh(h), 1 - np.tanh(h) ** 2
    rho = 1 - DT / tau_F
    Jh = np.array([[(1 - A) * (i == k) + A * W[i, k] * dphi[k] for k in range(2)] for i in range(2)])
    J = np.zeros((6, 6))
    F_idx = {(i, j): 2 + 2 * i + j for i in range(2) for j in range(2)}
    for i in range(2):
        for k in range(2):
            J[i, k] = Jh[i, k]
        for (k, m), col in F_idx.items():
            J[i, col] = A * r[m] * (i == k)
    for (i, j), row in F_idx.items():
        for k in range(2):
            J[row, k] = -eta * (Jh[i, k] - (i == k)) * r[j]
        for (k, m), col in F_idx.items():
            J[row, col] = rho * (i == k) * (j == m) - eta * A * (i == k) * r[m] * r[j]
    return J, Jh


def _sorted(lam):
    lam = np.asarray(lam, complex)
    return lam[np.lexsort((lam.imag, lam.real))]


@pytest.mark.parametrize("eta", [1.0, 40.0])
def test_anti_hebbian_joint_jacobian_at_a_fixed_point_matches_the_hand_derivation(eta):
    """2 units: the code's joint Jacobian equals the hand-derived one and autograd of the joint step;
    its eigenvalues are rho (N(N-1) = 2 times) and, for each eigenvalue lambda of W's Jacobian, the
    roots of mu^2 - (lambda + rho - k) mu + lambda rho - k with k = a eta |r*|^2."""
    tau_F = 500.0
    net = _net(W=W2, h_star=H2, eta_F=eta, tau_F_ms=tau_F)
    j = JointAntiHebbian(net, np.zeros((1, 1)))
    h = torch.tensor([[H2]], dtype=F64)
    F = torch.zeros(1, 1, 2, 2, dtype=F64)
    h1, F1 = j.step(h, F)
    torch.testing.assert_close(h1, h, atol=1e-14, rtol=0)            # h* is a joint fixed point at F = 0
    assert float(F1.abs().max()) < 1e-14
    J_hand, Jh = _hand_jacobian_2unit(W2, H2, eta, tau_F)
    J_code = j.jacobian(h, F)[0, 0].numpy()
    np.testing.assert_allclose(J_code, J_hand, atol=1e-14)

    def one_step(z):
        hh, FF = j.step(z[:2].reshape(1, 1, 2), z[2:].reshape(1, 1, 2, 2))
        return torch.cat([hh.reshape(-1), FF.reshape(-1)])
    J_auto = torch.autograd.functional.jacobian(one_step, torch.cat([h.reshape(-1), F.reshape(-1)])).numpy()
    np.testing.assert_allclose(J_code, J_auto, atol=1e-13)
    # the spectrum in closed form
    rho, k = 1 - DT / tau_F, A * eta * float(np.sum(np.tanh(H2) ** 2))
    tr, det = np.trace(Jh), np.linalg.det(Jh)
    lams = [tr / 2 + np.sqrt(complex(tr ** 2 / 4 - det)), tr / 2 - np.sqrt(complex(tr ** 2 / 4 - det))]
    mus = [rho, rho] + [m for lam in lams for m in np.roots([1, -(lam + rho - k), lam * rho - k])]
    np.testing.assert_allclose(_sorted(np.linalg.eigvals(J_hand)), _sorted(mus), atol=1e-12)
    lam_red, n_rho = anti_hebbian_spectrum(j, h, F)
    assert n_rho == 2
    np.testing.assert_allclose(_sorted(np.r_[lam_red[0, 0], [rho] * n_rho]), _sorted(mus), atol=1e-12)
    # W alone: stable (|lambda| < 1); jointly stable iff k < (1 + lambda)(1 + rho) / 2 for real lambda
    assert np.all(np.abs(lams) < 1)
    joint_stable = np.all(np.abs(mus) < 1)
    assert joint_stable == (eta == 1.0)


def test_anti_hebbian_joint_spectrum_away_from_fixed_points_is_the_reduced_one():
    """At any state (h, F) with F != 0 and h' != h, the full (N + N^2) joint spectrum (autograd of
    the joint step) is eig(M) plus rho N(N-1) times."""
    net = _net(N=3, eta_F=0.7, tau_F_ms=300.0, seed=2)
    j = JointAntiHebbian(net, np.zeros((1, 1)))
    g = torch.Generator().manual_seed(0)
    h = 0.8 * torch.randn(1, 1, 3, generator=g, dtype=F64)
    F = 0.3 * torch.randn(1, 1, 3, 3, generator=g, dtype=F64)
    N = 3

    def one_step(z):
        hh, FF = j.step(z[:N].reshape(1, 1, N), z[N:].reshape(1, 1, N, N))
        return torch.cat([hh.reshape(-1), FF.reshape(-1)])
    J_auto = torch.autograd.functional.jacobian(one_step, torch.cat([h.reshape(-1), F.reshape(-1)]))
    torch.testing.assert_close(j.jacobian(h, F)[0, 0], J_auto, atol=1e-13, rtol=0)
    lam_red, n_rho = anti_hebbian_spectrum(j, h, F)
    full = np.linalg.eigvals(J_auto.numpy())
    np.testing.assert_allclose(_sorted(full), _sorted(np.r_[lam_red[0, 0], [j.rho] * n_rho]), atol=1e-10)


def test_anti_hebbian_residual_is_the_joint_speed_at_the_rank_one_efficacies_and_its_jacobian_is_exact():
    net = _net(N=4, eta_F=0.5, tau_F_ms=200.0, seed=3)
    j = JointAntiHebbian(net, np.zeros((1, 1)))
    sys_ = _AntiHebbianResidual(j)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 8, generator=g, dtype=F64)
    lay = _Layout(torch.zeros(5, dtype=torch.long), 1)
    G = sys_.F(x, lay) - x
    h, v = x[None, :, :4], x[None, :, 4:]
    F = rank_one_efficacies(h, v, "tanh")
    torch.testing.assert_close(torch.einsum("eknm,ekm->ekn", F, torch.tanh(h)), v)       # F r = v
    torch.testing.assert_close(0.5 * (G ** 2).sum(-1), j.speed(h, F)[0], rtol=1e-12, atol=1e-14)
    # the smallest joint speed with F r = v is at the rank-one F: adding F_perp (F_perp r = 0) raises it
    r = torch.tanh(h)
    Fp = torch.randn(1, 5, 4, 4, generator=g, dtype=F64)
    Fp = Fp - torch.einsum("eknm,ekm->ekn", Fp, r)[..., None] * r[..., None, :] / (r * r).sum(-1)[..., None, None]
    assert bool((j.speed(h, F + 0.1 * Fp) > j.speed(h, F)).all())
    one = _Layout(torch.zeros(1, dtype=torch.long), 1)
    J_auto = torch.stack([torch.autograd.functional.jacobian(lambda z: sys_.F(z[None], one), xi) for xi in x])[:, 0]
    torch.testing.assert_close(sys_.jacobian_F(x, lay), J_auto, atol=1e-11, rtol=1e-10)


@pytest.mark.parametrize("F_max", [None, 0.02])
def test_joint_map_reproduces_the_network_simulation(F_max):
    """The joint step iterated from the trial start gives the states the network's own (fused) simulation
    gives, for the factorised and the explicit (clipped) path, and F_t r_t from the efficacies."""
    net = _net(N=6, eta_F=0.8, tau_F_ms=200.0, F_max=F_max, seed=4, n_inputs=2)
    u = torch.randn(1, 3, 25, 2, generator=torch.Generator().manual_seed(5), dtype=F64)
    states = net.run(u).state_exbxtxn.detach()
    traj = plastic_trajectories(net, u.numpy(), states.numpy(), check_trials=3, check_steps=25)
    assert np.abs(traj["v"]).max() > 1e-3
    if F_max is not None:
        assert (np.abs(traj["v"]) > 0).any()


def test_tsodyks_markram_joint_map_reproduces_the_network_simulation():
    net = _net(N=5, rule="tsodyks_markram", seed=6, n_inputs=2)
    u = torch.randn(1, 3, 30, 2, generator=torch.Generator().manual_seed(7), dtype=F64)
    states = net.run(u).state_exbxtxn.detach()
    traj = plastic_trajectories(net, u.numpy(), states.numpy(), check_trials=3, check_steps=30)
    assert np.abs(traj["u"] - 0.2).max() > 1e-3 and np.abs(traj["x"] - 1).max() > 1e-3
    # u_t, x_t are the values the step to h_{t+1} uses: stepping the joint map from (h_t, u_t, x_t) gives h_{t+1}
    j = JointTsodyksMarkram(net, np.zeros((1, 2)))
    drive = net.drive(u, None).detach()
    h1 = j.step(*(torch.as_tensor(traj[k][:, :, 10]) for k in "hux"), drive[:, :, 11])[0]
    np.testing.assert_allclose(h1.numpy(), states[:, :, 11].numpy(), atol=1e-12)


def test_a_joint_map_that_drifts_from_the_simulation_is_refused():
    net = _net(N=4, eta_F=0.8, tau_F_ms=200.0, seed=4)
    u = torch.randn(1, 2, 10, 1, generator=torch.Generator().manual_seed(5), dtype=F64)
    states = net.run(u).state_exbxtxn.detach().numpy()
    with pytest.raises(RuntimeError, match="disagrees with the network's simulation"):
        plastic_trajectories(net, u.numpy(), states + 1e-3)


def test_tsodyks_markram_steady_state_and_jacobian_in_closed_form():
    """One unit: the discrete update's fixed point (u*, x*) is the continuous-time steady state
    u* = U (1 + R tau_f) / (1 + U R tau_f), x* = 1 / (1 + u* R tau_d); the 3 x 3 joint Jacobian written
    by hand equals the code's and autograd's."""
    cfg = dict(U=0.3, tau_facilitation_ms=800.0, tau_depression_ms=150.0, max_rate_hz=40.0)
    net = _net(N=1, rule="tsodyks_markram", W=[[1.3]], h_star=[0.7], **cfg)
    j = JointTsodyksMarkram(net, np.zeros((1, 1)))
    r = np.tanh(0.7)
    R = 40.0 * r
    u_s = 0.3 * (1 + R * 0.8) / (1 + 0.3 * R * 0.8)
    x_s = 1 / (1 + u_s * R * 0.15)
    h, uu, xx = (torch.tensor([[[v]]], dtype=F64) for v in (0.7, u_s, x_s))
    for a, b in zip(j.step(h, uu, xx), (h, uu, xx)):
        torch.testing.assert_close(a, b, atol=1e-14, rtol=0)          # a joint fixed point
    # by hand: q = dt R / 1000, a_f = dt / tau_f, a_d = dt / tau_d, s = u x / U
    q, dq = DT * R / 1000, DT * 40.0 / 1000 * (1 - r ** 2)
    a_f, a_d, U, w = DT / 800, DT / 150, 0.3, A * 1.3
    dphi = 1 - r ** 2
    J_hand = np.array([
        [(1 - A) + w * u_s * x_s / U * dphi, w * x_s * r / U, w * u_s * r / U],
        [U * (1 - u_s) * dq, 1 - a_f - U * q, 0.0],
        [-u_s * x_s * dq, -x_s * q, 1 - a_d - u_s * q]])
    np.testing.assert_allclose(j.jacobian(h, uu, xx)[0, 0].numpy(), J_hand, atol=1e-14)
    J_auto = torch.autograd.functional.jacobian(lambda z: torch.cat([t.reshape(-1) for t in j.step(
        z[0].reshape(1, 1, 1), z[1].reshape(1, 1, 1), z[2].reshape(1, 1, 1))]), torch.tensor([0.7, u_s, x_s], dtype=F64))
    np.testing.assert_allclose(J_auto.numpy(), J_hand, atol=1e-14)


def test_tsodyks_markram_joint_fixed_points_are_found_at_the_steady_efficacies():
    """Two units with a fixed point placed at h* with u, x at their steady values (which differ from
    rest): the joint search finds it, with u*, x* in closed form, though h* is no fixed point of W."""
    cfg = dict(U=0.2, tau_facilitation_ms=1500.0, tau_depression_ms=200.0, max_rate_hz=50.0)
    net = _net(rule="tsodyks_markram", W=W2, h_star=H2, **cfg)
    u0 = np.zeros((1, 1))
    Wfp = find_fixed_points(net, u0, np.array([[H2]]))            # W alone, from h*: elsewhere
    assert np.linalg.norm(Wfp.x_expxs[0, 0] - H2) > 1e-2
    pool = np.array([H2])[None] + 0.05 * np.random.default_rng(0).standard_normal((1, 4, 2))
    out = joint_points(net, u0, pool_exkxn=pool)
    fixed = out["valid"][0] & out["is_fixed"][0]
    i = np.flatnonzero(fixed & (np.linalg.norm(out["h"][0] - H2, axis=-1) < 1e-8))
    assert len(i) == 1
    r = np.tanh(H2)
    R = 50.0 * np.maximum(r, 0)
    u_s = 0.2 * (1 + 1.5 * R) / (1 + 0.2 * 1.5 * R)
    np.testing.assert_allclose(out["u"][0, i[0]], u_s, atol=1e-10)
    np.testing.assert_allclose(out["x"][0, i[0]], 1 / (1 + 0.2 * u_s * R), atol=1e-10)
    assert out["q"][0, i[0]] < 1e-20
    lam = np.linalg.eigvals(JointTsodyksMarkram(net, u0).jacobian(*(torch.tensor(v, dtype=F64).reshape(1, 1, 2) for v in (
        H2, out["u"][0, i[0]], out["x"][0, i[0]])))[0, 0].numpy())
    assert out["n_unstable"][0, i[0]] == int((np.abs(lam) > 1 + 1e-9).sum())


def test_joint_points_of_anti_hebbian_network_classify_w_fixed_points_jointly():
    """The joint fixed points are W's, at F = 0; with a strong eta_F a fixed point that is stable for
    W alone is a saddle of the joint system (the period-2 overshoot), and the result says both."""
    for eta, kind in ((1.0, STABLE), (40.0, SADDLE)):
        net = _net(W=W2, h_star=H2, eta_F=eta, tau_F_ms=500.0)
        u0 = np.zeros((1, 1))
        out = joint_points(net, u0, fixed_h=[np.array([H2])])
        i = np.flatnonzero(out["valid"][0] & out["is_fixed"][0] & (np.linalg.norm(out["h"][0] - H2, axis=-1) < 1e-8))
        assert len(i) == 1
        assert out["kind"][0, i[0]] == kind and out["n_unstable_frozen"][0, i[0]] == 0
        assert out["F_norm"][0, i[0]] < 1e-8 and np.abs(out["plastic_input"][0, i[0]]).max() < 1e-8
        assert np.abs(out["eigenvalues"][0, i[0], 0]) == pytest.approx(
            np.abs(np.r_[anti_hebbian_spectrum(JointAntiHebbian(net, u0), torch.tensor([[H2]], dtype=F64),
                                               torch.zeros(1, 1, 2, 2, dtype=F64))[0][0, 0], 1 - DT / 500]).max())


def test_networks_without_plasticity_have_no_joint_system():
    net = build_network("leaky_rate", {"n_units": 3}, n_inputs=1, n_outputs=1, dt_ms=DT, rngs=[np.random.default_rng(0)])
    with pytest.raises(JointSystemError, match="no short-term plasticity"):
        joint_system(net, np.zeros((1, 1)))
    with pytest.raises(JointSystemError, match="anti_hebbian"):
        JointAntiHebbian(_net(rule="tsodyks_markram"), np.zeros((1, 1)))
