"""Fixed and slow points of plastic networks' joint dynamics: the state together with the fast synaptic
variables (science.md §5, "Plastic networks' phase space"; docs/tcr_plasticity.md).

A network with TCR short-term plasticity is not the map ``h -> F(h)`` of its long-term weights: its
one-step map acts on the state *and* the fast variables, exactly as the simulation steps them
(regularizers/tcr_plasticity.py), with ``d = 1 - a``, ``Wc = a W`` (W the effective long-term
weights), ``c = a`` and ``o = a (W_in u* + b)`` for a constant input ``u*``.

**Anti-Hebbian** (joint state ``(h, F)``, dimension N + N^2; ``rho = 1 - dt / tau_F``)::

    h' = d h + (Wc + c F) r + o,                      r = phi(h)
    F' = clip(rho F - eta (h' - h) r^T)

*Fixed points.* ``h' = h`` makes the drive term vanish, so ``F = rho F``: ``F* = 0`` (``rho < 1``),
and then ``h* = d h* + Wc r* + o``: the joint fixed points are exactly the fixed points of the
long-term weights, at ``F = 0``. *Their stability can differ.* With ``J_h = diag(d) + (Wc + c F)
diag(phi'(h))``, ``p = |r|^2`` and ``D = h' - h``, the linearisation is

    dh' = J_h dh + c dF r
    dF' = rho dF - eta ((J_h - I) dh + c dF r) r^T - eta D (phi'(h) * dh)^T

The N(N-1)-dimensional subspace ``{dh = 0, dF r = 0}`` is invariant with eigenvalue ``rho`` (stable);
on the quotient, with coordinates ``(dh, w = dF r)``, the map is the 2N x 2N matrix

    M = [[ J_h,                                   c I              ],
         [ -eta p (J_h - I) - eta D (r phi')^T,   (rho - c eta p) I ]]

so the joint spectrum is ``eig(M)`` plus ``rho`` N(N-1) times (:func:`anti_hebbian_spectrum`). At a
fixed point (``D = 0``, ``F = 0``), for each eigenvalue ``lambda`` of ``J_h`` (the Jacobian of W
alone) the joint map has the two roots ``mu`` of

    mu^2 - (lambda + rho - k) mu + (lambda rho - k) = 0,      k = c eta |r*|^2

(the feedback gain of docs/tcr_plasticity.md). At ``mu = 1`` the polynomial is ``(1 - lambda)(1 -
rho)``: a real mode with ``lambda > 1`` stays unstable and ``lambda = 1`` stays marginal - the
plasticity cannot stabilise a saddle's real unstable mode; a real stable mode (``-1 < lambda < 1``)
stays stable if and only if ``k < (1 + lambda)(1 + rho) / 2`` (Jury's conditions); beyond that a
period-2 mode grows (the overshoot of a too strong eta_F). At ``r* = 0`` (tanh at the origin) F
decouples and the joint spectrum is W's plus ``rho``. The clip ``F_max`` is inactive at ``F = 0``.

*Slow points.* The joint speed ``q(h, F) = 1/2 (|h' - h|^2 + |F' - F|^2)`` depends on F through
``v = F r`` and ``|F|^2``: for given ``(h, v)`` it is smallest at the rank-one ``F = v r^T / p``,
where ``q = 1/2 |D|^2 + 1/2 |a_F v / sqrt(p) + eta sqrt(p) D|^2`` (``a_F = dt / tau_F``). Its local
minima are therefore found in 2N dimensions, as the zeros / least-squares minima of the residual
``(D, a_F v / sqrt(p) + eta sqrt(p) D)`` (:class:`_AntiHebbianResidual`), from states ``(h_t, F_t
r_t)`` of the plastic trajectories; with the clip active ``q`` is evaluated with it.

**Tsodyks-Markram** (joint state ``(h, u, x)``, dimension 3N; ``q_j = dt R_j / 1000``, ``a_f = dt /
tau_f``, ``a_d = dt / tau_d``)::

    h' = d h + Wc (u x / U * r) + o
    u' = clip(u + a_f (U - u) + U (1 - u) q, 0, 1),   x' = clip(x + a_d (1 - x) - u x q, 0, 1)

*Fixed points* have ``u`` and ``x`` at their rate-dependent steady values (the same as in continuous
time, Mongillo et al. 2008): ``u* = U (1 + R tau_f) / (1 + U R tau_f)``, ``x* = 1 / (1 + u* R tau_d)``
(:func:`tm_steady_state`), so the effective weights ``W diag(u* x* / U)`` differ from W; ``h*`` is a
fixed point of the map with the rate-dependent gain ``psi(h) = s*(phi(h)) phi(h)``. They are found by
Newton's method on the full 3N-dimensional map (closed-form Jacobian), from the shared pool of states
lifted to their steady efficacies and from the plastic trajectories, plus the targeted saddle search.

Everything is float64 on detached copies; the network is not modified.
"""
from __future__ import annotations

import numpy as np
import torch

from ..networks.base import Network
from ..networks.recurrence import phi as phi_fn
from ..networks.recurrence import phi_prime
from .fixed_points import (
    DEFAULTS,
    F64,
    SADDLE,
    STABLE,
    UNSTABLE,
    FixedPoints,
    _float64_copy,
    merge_fixed_points,
    sample_initial_states,
    search_system,
    segment_starts,
)

#: leading joint eigenvalues stored per point (by modulus)
JOINT_MODES = 8
#: floor of |r|^2 in the anti-Hebbian residual (r = 0 only where F has no effect)
P_FLOOR = 1e-12


class JointSystemError(ValueError):
    """The network has no plasticity whose joint system this module knows."""


class _Joint:
    """What every joint system holds: the rate form of the state's map (``d``, ``Wc``, ``o``, ``phi``;
    float64 copies) and the network's plasticity (``stp``), which must follow the class's ``rule``."""

    rule: str

    def __init__(self, network: Network, u_exi):
        stp = network.plasticity
        if stp is None or stp.rule != self.rule:
            raise JointSystemError(f"{type(self).__name__} needs a network with {self.rule} plasticity attached")
        net = _float64_copy(network)
        m = net.rate_map(torch.as_tensor(np.asarray(u_exi, float), dtype=F64, device="cpu").to(net.device))
        if m is None:
            raise JointSystemError(f"model kind {network.kind!r} has no rate form; the joint analysis needs one")
        self.stp = stp
        self.d, self.Wc, self.o, self.phi = m.decay_exs, m.weights_exsxs, m.offset_exs, m.phi
        self.n_members, self.n_units = self.d.shape


class JointAntiHebbian(_Joint):
    """The joint one-step map of a network with anti-Hebbian fast efficacies, for a constant input
    ``u_exi`` (E, I), float64. States are grids ``h_exkxn`` and ``F_exkxnxn`` (K states per member)."""

    rule = "anti_hebbian"

    def __init__(self, network: Network, u_exi):
        super().__init__(network, u_exi)
        stp = self.stp
        self.c = float(network.alpha)
        self.rho = 1.0 - stp.dt_ms / stp.config.tau_F_ms
        self.a_F = stp.dt_ms / stp.config.tau_F_ms
        self.eta = stp.eta_e.detach().to(F64).to(self.d.device)
        self.F_max = stp.config.F_max
        self.dim = self.n_units + self.n_units ** 2

    def _e(self, t, K):  # a per-member tensor broadcast over K states
        return t[:, None].expand(t.shape[0], K, *t.shape[1:])

    def step(self, h_exkxn, F_exkxnxn, offset_exkxn=None):
        """(h', F') exactly as the simulation steps them (``offset``: a time-varying drive instead of o)."""
        r = phi_fn(self.phi, h_exkxn)
        o = self.o[:, None] if offset_exkxn is None else offset_exkxn
        rec = torch.einsum("enm,ekm->ekn", self.Wc, r) + self.c * torch.einsum("eknm,ekm->ekn", F_exkxnxn, r)
        h1 = self.d[:, None] * h_exkxn + rec + o
        F1 = self.rho * F_exkxnxn - self.eta[:, None, None, None] * (h1 - h_exkxn)[..., :, None] * r[..., None, :]
        if self.F_max is not None:
            F1 = F1.clamp(-self.F_max, self.F_max)
        return h1, F1

    def speed(self, h_exkxn, F_exkxnxn):
        """The joint speed q = 1/2 (|h' - h|^2 + |F' - F|^2), (E, K)."""
        h1, F1 = self.step(h_exkxn, F_exkxnxn)
        return 0.5 * (((h1 - h_exkxn) ** 2).sum(-1) + ((F1 - F_exkxnxn) ** 2).sum((-2, -1)))

    def _parts(self, h, F):
        r = phi_fn(self.phi, h)
        dphi = phi_prime(self.phi, h, r)
        J_h = self.Wc[:, None] + self.c * F                    # (E, K, N, N)
        J_h = J_h * dphi[..., None, :]
        J_h.diagonal(dim1=-2, dim2=-1).add_(self.d[:, None])
        D = self.step(h, F)[0] - h
        return r, dphi, J_h, D

    def jacobian(self, h_exkxn, F_exkxnxn):
        """The full joint Jacobian (E, K, N + N^2, N + N^2), in closed form; F flattened row-major
        (``F[i, j]`` at index N + i N + j). Without the clip (as where no entry of F' is clipped).
        Dense: for small networks (tests); the analysis uses :meth:`reduced_jacobian`."""
        E, K, N = h_exkxn.shape
        r, dphi, J_h, D = self._parts(h_exkxn, F_exkxnxn)
        I = torch.eye(N, dtype=F64, device=h_exkxn.device)
        eta5 = self.eta[:, None, None, None, None]
        J = h_exkxn.new_zeros((E, K, N + N * N, N + N * N))
        J[..., :N, :N] = J_h
        # dh'_i / dF[k, l] = c delta_ik r_l                                     axes (i, k, l)
        J[..., :N, N:] = (self.c * I[:, :, None] * r[..., None, None, :]).reshape(E, K, N, N * N)
        # dF'[i, j] / dh_k = -eta (J_h - I)[i, k] r_j - eta D_i delta_jk phi'_k   axes (i, j, k)
        dFdh = (-eta5 * (J_h - I)[..., :, None, :] * r[..., None, :, None]
                - eta5 * D[..., :, None, None] * torch.diag_embed(dphi)[..., None, :, :])
        J[..., N:, :N] = dFdh.reshape(E, K, N * N, N)
        # dF'[i, j] / dF[k, l] = rho delta_ik delta_jl - eta c delta_ik r_j r_l   axes (i, j, k, l)
        rr = r[..., :, None] * r[..., None, :]
        dFdF = (self.rho * torch.eye(N * N, dtype=F64, device=h_exkxn.device).reshape(N, N, N, N)
                - self.c * eta5[..., None] * I[:, None, :, None] * rr[..., None, :, None, :])
        J[..., N:, N:] = dFdF.reshape(E, K, N * N, N * N)
        return J

    def reduced_jacobian(self, h_exkxn, F_exkxnxn):
        """M (E, K, 2N, 2N): the joint map on ``(dh, dF r)``; the rest of the spectrum is ``rho``."""
        E, K, N = h_exkxn.shape
        r, dphi, J_h, D = self._parts(h_exkxn, F_exkxnxn)
        p = (r * r).sum(-1)[..., None, None]
        eta = self.eta[:, None, None, None]
        I = torch.eye(N, dtype=F64, device=h_exkxn.device)
        M = h_exkxn.new_zeros((E, K, 2 * N, 2 * N))
        M[..., :N, :N] = J_h
        M[..., :N, N:] = self.c * I
        M[..., N:, :N] = -eta * p * (J_h - I) - eta * D[..., :, None] * (r * dphi)[..., None, :]
        M[..., N:, N:] = (self.rho - self.c * eta * p) * I
        return M

    def frozen_jacobian(self, h_exkxn, F_exkxnxn):
        """dh'/dh with F held (E, K, N, N): at F = 0, the Jacobian of the long-term weights alone."""
        return self._parts(h_exkxn, F_exkxnxn)[2]


def anti_hebbian_spectrum(system: JointAntiHebbian, h_exkxn, F_exkxnxn) -> tuple[np.ndarray, int]:
    """The joint eigenvalues: ``eig(M)`` (E, K, 2N) and the multiplicity N(N-1) of ``rho`` (the rest)."""
    M = system.reduced_jacobian(h_exkxn, F_exkxnxn)
    lam = torch.linalg.eigvals(M.cpu()).numpy()
    N = system.n_units
    return lam, N * (N - 1)


def rank_one_efficacies(h_exkxn, v_exkxn, phi_name: str):
    """``F = v r^T / |r|^2`` (E, K, N, N): the smallest F with ``F r = v`` (where the joint speed is
    smallest for given ``(h, F r)``)."""
    r = phi_fn(phi_name, h_exkxn)
    p = (r * r).sum(-1).clamp_min(P_FLOOR)
    return v_exkxn[..., :, None] * r[..., None, :] / p[..., None, None]


class _AntiHebbianResidual:
    """The finder's system for the anti-Hebbian joint speed in 2N dimensions, ``x = (h, v = F r)``:
    ``F(x) = x + G(x)`` with ``G = (D, a_F v / sqrt(p) + eta sqrt(p) D)``, ``1/2 |G|^2`` the joint
    speed at ``F = v r^T / p`` (module docstring); its zeros are the joint fixed points."""

    def __init__(self, joint: JointAntiHebbian):
        self.j = joint
        self.n_members = joint.n_members
        self.N = joint.n_units

    def F(self, x_bxs, lay):
        X = lay.to_grid(x_bxs)
        sub = _Sub(self.j, lay)
        h, v, r, p, _, D = self._pieces_sub(X, sub)
        sp = p.sqrt()
        g2 = sub.a_F * v / sp + sub.eta[:, None, None] * sp * D
        return lay.from_grid(X + torch.cat([D, g2], -1))

    def _pieces_sub(self, X, sub):
        N = self.N
        h, v = X[..., :N], X[..., N:]
        r = phi_fn(sub.phi, h)
        p = (r * r).sum(-1, keepdim=True)
        floored = p < P_FLOOR
        p = p.clamp_min(P_FLOOR)
        D = (sub.d[:, None] - 1) * h + torch.einsum("enm,ekm->ekn", sub.Wc, r) + sub.c * v + sub.o[:, None]
        return h, v, r, p, floored, D

    def jacobian_F(self, x_bxs, lay, shift: float = 0.0):
        X = lay.to_grid(x_bxs)
        sub = _Sub(self.j, lay)
        N = self.N
        h, v, r, p, floored, D = self._pieces_sub(X, sub)
        dphi = phi_prime(sub.phi, h, r)
        eta = sub.eta[:, None, None, None]
        sp = p.sqrt()[..., None]                                  # (M, K, 1, 1)
        JD = sub.Wc[:, None] * dphi[..., None, :]                 # dD/dh = diag(d - 1) + Wc diag(phi')
        JD.diagonal(dim1=-2, dim2=-1).add_(sub.d[:, None] - 1)
        I = torch.eye(N, dtype=X.dtype, device=X.device)
        # d sqrt(p) / dh = (r phi') / sqrt(p), d (1/sqrt(p)) / dh = -(r phi') / p^(3/2) (0 where p is floored)
        rp = torch.where(floored, 0.0, r * dphi)[..., None, :]    # (M, K, 1, N)
        dg2_dh = (-sub.a_F * v[..., :, None] * rp / sp ** 3 + eta * D[..., :, None] * rp / sp + eta * sp * JD)
        dg2_dv = (sub.a_F / sp + eta * sp * sub.c) * I
        top = torch.cat([JD, sub.c * I.expand_as(JD)], -1)
        bottom = torch.cat([dg2_dh, dg2_dv], -1)
        J = torch.cat([top, bottom], -2)
        J.diagonal(dim1=-2, dim2=-1).add_(1.0 + shift)
        return lay.from_grid(J)


class _Sub:
    """The per-member parameters of a joint system for the members a layout holds."""

    def __init__(self, j, lay):
        self.d, self.Wc, self.o = lay.take(j.d), lay.take(j.Wc), lay.take(j.o)
        self.phi, self.c = j.phi, getattr(j, "c", None)
        if hasattr(j, "eta"):
            self.eta, self.a_F = lay.take(j.eta), j.a_F


# -- Tsodyks-Markram -----------------------------------------------------------------------------

def tm_steady_state(r, *, U: float, tau_f_ms: float, tau_d_ms: float, max_rate_hz: float):
    """The steady ``(u*, x*)`` at constant presynaptic rate ``r`` (``R = max_rate_hz max(r, 0)``):
    ``u* = U (1 + R tau_f) / (1 + U R tau_f)``, ``x* = 1 / (1 + u* R tau_d)`` (times in s)."""
    R = max_rate_hz * torch.clamp(torch.as_tensor(r, dtype=F64), min=0)
    Rf, Rd = R * tau_f_ms / 1000.0, R * tau_d_ms / 1000.0
    u = U * (1 + Rf) / (1 + U * Rf)
    return u, 1.0 / (1 + u * Rd)


class JointTsodyksMarkram(_Joint):
    """The joint one-step map of a network with Tsodyks-Markram synapses, state ``z = (h, u, x)``
    (3N per state), for a constant input ``u_exi``; float64."""

    rule = "tsodyks_markram"

    def __init__(self, network: Network, u_exi):
        super().__init__(network, u_exi)
        stp = self.stp
        cfg = stp.config
        self.U, self.dt = cfg.U, stp.dt_ms
        self.a_f, self.a_d = stp.dt_ms / cfg.tau_facilitation_ms, stp.dt_ms / cfg.tau_depression_ms
        self.rate = stp.dt_ms * cfg.max_rate_hz / 1000.0
        self.cfg = cfg
        self.dim = 3 * self.n_units

    def steady(self, h):
        """``(u*(h), x*(h))`` at the rates ``phi(h)``."""
        c = self.cfg
        return tm_steady_state(phi_fn(self.phi, h), U=c.U, tau_f_ms=c.tau_facilitation_ms,
                               tau_d_ms=c.tau_depression_ms, max_rate_hz=c.max_rate_hz)

    def _raw(self, h, u, x, Wc, d, o):
        r = phi_fn(self.phi, h)
        q = self.rate * r.clamp(min=0)
        h1 = d[:, None] * h + torch.einsum("enm,ekm->ekn", Wc, u * x / self.U * r) + o
        u1 = u + self.a_f * (self.U - u) + self.U * (1 - u) * q
        x1 = x + self.a_d * (1 - x) - u * x * q
        return r, q, h1, u1, x1

    def step(self, h_exkxn, u_exkxn, x_exkxn, offset_exkxn=None):
        o = self.o[:, None] if offset_exkxn is None else offset_exkxn
        _, _, h1, u1, x1 = self._raw(h_exkxn, u_exkxn, x_exkxn, self.Wc, self.d, o)
        return h1, u1.clamp(0, 1), x1.clamp(0, 1)

    def jacobian_parts(self, h, u, x, Wc, d, o):
        """The 3N x 3N Jacobian in closed form (rows of a clipped variable are 0) and dh'/dh."""
        r, q, _, u1, x1 = self._raw(h, u, x, Wc, d, o[:, None])
        dphi = phi_prime(self.phi, h, r)
        dq = self.rate * dphi * (r > 0).to(h.dtype)
        s = u * x / self.U
        Wk = Wc[:, None]
        Jhh = Wk * (s * dphi)[..., None, :]
        Jhh.diagonal(dim1=-2, dim2=-1).add_(d[:, None])
        Jhu, Jhx = Wk * (x * r / self.U)[..., None, :], Wk * (u * r / self.U)[..., None, :]
        in_u = ((u1 >= 0) & (u1 <= 1)).to(h.dtype)
        in_x = ((x1 >= 0) & (x1 <= 1)).to(h.dtype)
        dg = torch.diag_embed
        Juh, Juu = dg(in_u * self.U * (1 - u) * dq), dg(in_u * (1 - self.a_f - self.U * q))
        Jxh, Jxu, Jxx = dg(-in_x * u * x * dq), dg(-in_x * x * q), dg(in_x * (1 - self.a_d - u * q))
        Z = torch.zeros_like(Juu)
        J = torch.cat([torch.cat([Jhh, Jhu, Jhx], -1), torch.cat([Juh, Juu, Z], -1),
                       torch.cat([Jxh, Jxu, Jxx], -1)], -2)
        return J, Jhh

    def jacobian(self, h_exkxn, u_exkxn, x_exkxn):
        """The joint Jacobian (E, K, 3N, 3N), state order (h, u, x)."""
        return self.jacobian_parts(h_exkxn, u_exkxn, x_exkxn, self.Wc, self.d, self.o)[0]

    def frozen_jacobian(self, h_exkxn, u_exkxn, x_exkxn):
        """dh'/dh with u and x held (E, K, N, N)."""
        return self.jacobian_parts(h_exkxn, u_exkxn, x_exkxn, self.Wc, self.d, self.o)[1]


class _TsodyksMarkramSystem:
    """The finder's system for the Tsodyks-Markram joint map on flat states ``z = (h, u, x)``."""

    def __init__(self, joint: JointTsodyksMarkram):
        self.j, self.n_members, self.N = joint, joint.n_members, joint.n_units

    def F(self, x_bxs, lay):
        Z, sub, N = lay.to_grid(x_bxs), _Sub(self.j, lay), self.N
        h, u, x = Z[..., :N], Z[..., N:2 * N], Z[..., 2 * N:]
        _, _, h1, u1, x1 = self.j._raw(h, u, x, sub.Wc, sub.d, sub.o[:, None])
        return lay.from_grid(torch.cat([h1, u1.clamp(0, 1), x1.clamp(0, 1)], -1))

    def jacobian_F(self, x_bxs, lay, shift: float = 0.0):
        Z, sub, N = lay.to_grid(x_bxs), _Sub(self.j, lay), self.N
        J = self.j.jacobian_parts(Z[..., :N], Z[..., N:2 * N], Z[..., 2 * N:], sub.Wc, sub.d, sub.o)[0]
        if shift:
            J.diagonal(dim1=-2, dim2=-1).add_(shift)
        return lay.from_grid(J)


# -- the joint analysis of one network at one checkpoint and context -----------------------------

def joint_system(network: Network, u_exi):
    """The joint one-step map of ``network``'s plasticity (:class:`JointAntiHebbian` or
    :class:`JointTsodyksMarkram`) for the constant input ``u_exi`` (E, I)."""
    if network.plasticity is None:
        raise JointSystemError("the network has no short-term plasticity; its phase space is that of its weights")
    return (JointAntiHebbian if network.plasticity.rule == "anti_hebbian" else JointTsodyksMarkram)(network, u_exi)


def plastic_trajectories(network: Network, inputs_exbxtxi, states_exbxtxn, *, check_trials: int = 2,
                         check_steps: int = 10) -> dict:
    """The fast variables along the network's own simulated trajectories, in float64: a dict with
    ``h`` (E, B, T, N, the states given) and ``v = F_t r_t`` (anti-Hebbian, from the factorised sum
    ``F_t r_t = -eta sum_{s<=t} rho^(t-s) dh_s (r_{s-1} . r_t)``; with a clip, F stepped explicitly)
    or ``u``, ``x`` (Tsodyks-Markram), each at the same step as h.

    The joint map, stepped explicitly from the trial start (h = 0, F = 0 or u = U, x = 1) over the first
    ``check_steps`` steps of ``check_trials`` trials, must give the same states (to the network dtype's
    rounding): this guards the joint map against drifting from the simulation."""
    E = network.n_members
    joint = joint_system(network, np.zeros((E, network.n_inputs)))
    net64 = _float64_copy(network)
    H = torch.as_tensor(np.array(states_exbxtxn, dtype=float))
    with torch.no_grad():
        inputs = torch.as_tensor(np.array(inputs_exbxtxi, dtype=float)).to(net64.device)
        drive = net64.drive(inputs.contiguous(), None).contiguous().cpu()     # (E, B, T, N): a (W_in u_t + b)
        _, B, T, N = drive.shape
        if H.shape != (E, B, T, N):
            raise ValueError(f"states_exbxtxn must have shape {(E, B, T, N)}; got {tuple(H.shape)}")
        out = {"h": H}
        h_prev = torch.cat([H.new_zeros((E, B, 1, N)), H[:, :, :-1]], 2)
        if joint.rule == "anti_hebbian":
            if joint.F_max is None:
                r, r_prev = phi_fn(joint.phi, H), phi_fn(joint.phi, h_prev)
                t = torch.arange(T, dtype=F64)
                lag = t[:, None] - t[None, :]
                decay = torch.where(lag >= 0, joint.rho ** lag.clamp(min=0), 0.0)           # rho^(t-s), s <= t
                gram = torch.einsum("ebtn,ebsn->ebts", r, r_prev) * decay
                out["v"] = -joint.eta.cpu()[:, None, None, None] * torch.einsum("ebts,ebsn->ebtn", gram, H - h_prev)
            else:
                out["v"] = _explicit(joint, drive, T)[1]
        else:
            u, x = H.new_full((E, B, N), joint.U), H.new_ones((E, B, N))
            out["u"], out["x"] = H.new_empty((E, B, T, N)), H.new_empty((E, B, T, N))
            for t in range(T):  # u_t, x_t from r_{t-1}: as the step from h_{t-1} (the update of the module docstring)
                _, u, x = joint.step(h_prev[:, :, t].to(joint.d.device), u.to(joint.d.device), x.to(joint.d.device),
                                     drive[:, :, t].to(joint.d.device))
                u, x = u.cpu(), x.cpu()
                out["u"][:, :, t], out["x"][:, :, t] = u, x
        n, b = min(check_steps, T), min(check_trials, B)
        h_check, extra = _explicit(joint, drive[:, :b, :n], n)
        eps = float(torch.finfo(network.dtype).eps)
        ref = H[:, :b, :n]
        err = float((h_check - ref).abs().max())
        if joint.rule == "anti_hebbian":
            err = max(err, float((extra - out["v"][:, :b, :n]).abs().max()))
        if not err <= 1e3 * eps * (1 + float(ref.abs().max())):
            raise RuntimeError(f"the joint map of the {joint.rule} plasticity disagrees with the network's simulation "
                               f"(max error {err:.3g} over the first {n} steps); update analysis/joint_system.py")
    return {k: v.numpy() for k, v in out.items()}


def _explicit(joint, drive, T: int):
    """The joint map stepped from the trial start: states h (E, B, T, N) and F_t r_t (anti-Hebbian) or None."""
    E, B, _, N = drive.shape
    dev = joint.d.device
    h = drive.new_zeros((E, B, N)).to(dev)
    hs, vs = [], []
    if joint.rule == "anti_hebbian":
        F = h.new_zeros((E, B, N, N))
        for t in range(T):
            h, F = joint.step(h, F, drive[:, :, t].to(dev))
            hs.append(h.cpu())
            vs.append(torch.einsum("ebnm,ebm->ebn", F, phi_fn(joint.phi, h)).cpu())
        return torch.stack(hs, 2), torch.stack(vs, 2)
    u, x = h.new_full((E, B, N), joint.U), h.new_ones((E, B, N))
    for t in range(T):
        h, u, x = joint.step(h, u, x, drive[:, :, t].to(dev))
        hs.append(h.cpu())
    return torch.stack(hs, 2), None


def _classify(lam_pxm: np.ndarray, dim: int, tol: float):
    """n_unstable and kind of each point from its joint eigenvalues (modes not in ``lam`` are stable)."""
    n_uns = (np.abs(lam_pxm) > 1 + tol).sum(-1)
    kind = np.where(n_uns == 0, STABLE, np.where(n_uns == dim, UNSTABLE, SADDLE))
    return n_uns, kind


def _leading(lam_pxm: np.ndarray, extra: np.ndarray) -> np.ndarray:
    """The JOINT_MODES leading eigenvalues (by modulus, ties by real then imaginary part descending)."""
    out = np.full((len(lam_pxm), JOINT_MODES), np.nan + 1j * np.nan)
    for i, li in enumerate(lam_pxm):
        li = np.concatenate([li, extra])
        li = li[np.lexsort((-li.imag, -li.real, -np.abs(li)))][:JOINT_MODES]
        out[i, :len(li)] = li
    return out


def joint_points(network: Network, u_exi, *, pool_exkxn=None, fixed_h: list[np.ndarray] | None = None,
                 trajectory: dict | None = None, n_starts: int = 0, noise_std: float = 0.0,
                 rng: np.random.Generator | None = None, search_members=None, options=DEFAULTS) -> dict:
    """Fixed and slow points of the joint system of a plastic network for one constant input.

    Anti-Hebbian: the joint fixed points are the fixed points of the long-term weights ``fixed_h``
    (per member, (P_e, N)) at ``F = 0`` (module docstring), classified by the joint Jacobian. Tsodyks-
    Markram: Newton's method on the joint map from ``pool_exkxn`` (E, K, N; states h lifted to their
    steady u*, x*), then the targeted saddle search. With ``trajectory`` (from
    :func:`plastic_trajectories`) and ``n_starts > 0``, ``n_starts`` joint states drawn from the
    trajectories (``rng``; plus ``noise_std`` noise on h) of each member in ``search_members`` (default:
    all) start a search for slow points (the minima of the joint speed) and further fixed points.

    Returns per member (E, P, ...) numpy arrays: ``h``, ``plastic_input`` (the recurrent input the
    plasticity adds at the point: ``c F r`` / ``Wc ((s - 1) r)``), ``F_norm`` (anti-Hebbian, |F|_F of
    the point's F = v r^T / p) or ``u``, ``x`` (Tsodyks-Markram), ``q`` (joint speed), ``valid``,
    ``is_fixed``, ``is_slow``, ``n_unstable`` and ``kind`` (joint Jacobian), ``n_unstable_frozen``
    (the state's Jacobian with the plastic variables held), ``eigenvalues`` (the JOINT_MODES leading
    joint eigenvalues) and ``hits``.
    """
    joint = joint_system(network, u_exi)
    E, N = joint.n_members, joint.n_units
    eps_net = float(torch.finfo(network.dtype).eps)
    dev = joint.d.device
    u = torch.as_tensor(np.asarray(u_exi, float), dtype=F64).to(dev)
    S = 2 * N if joint.rule == "anti_hebbian" else 3 * N
    members = np.zeros(E, bool)
    members[list(range(E)) if search_members is None else list(search_members)] = True
    traj_x0 = None
    if trajectory is not None and n_starts > 0 and members.any():
        keys = ("h", "v") if joint.rule == "anti_hebbian" else ("h", "u", "x")
        traj_x0 = sample_initial_states(np.concatenate([trajectory[k] for k in keys], -1), n_starts, noise_std=0.0, rng=rng)
        traj_x0[..., :N] += noise_std * rng.standard_normal(traj_x0[..., :N].shape)
    if joint.rule == "anti_hebbian":
        if fixed_h is None or len(fixed_h) != E:
            raise ValueError(f"fixed_h must hold the fixed points of the long-term weights of each of the {E} members")
        lifted = [np.concatenate([np.asarray(f, float).reshape(-1, N), np.zeros((len(f), N))], 1) for f in fixed_h]
        if traj_x0 is None:  # the joint fixed points, exactly: no search
            return _describe(joint, _points(lifted, S, network.dt_ms), options)
        starts = _padded(lifted, S)
        system, method = _AntiHebbianResidual(joint), "joint_anti_hebbian"
    else:
        if pool_exkxn is None:
            raise ValueError("the Tsodyks-Markram joint search needs pool_exkxn, the initial states h (E, K, N)")
        hp = torch.as_tensor(np.asarray(pool_exkxn, float))
        starts = torch.cat([hp, *joint.steady(hp)], -1).numpy()
        system, method = _TsodyksMarkramSystem(joint), "joint_tsodyks_markram"
    if traj_x0 is not None:
        # members not searched start from their own first points again (converged at once)
        traj_x0[~members] = starts[~members][:, np.arange(n_starts) % starts.shape[1]]
        starts = np.concatenate([starts, traj_x0], 1)
    search = lambda x, **kw: search_system(system, u, torch.as_tensor(x).to(dev), eps_net=eps_net,  # noqa: E731
                                           dt_ms=network.dt_ms, options=options, method=method, **kw)
    fp = search(starts)
    if joint.rule == "tsodyks_markram":
        seg = segment_starts(fp)
        if seg is not None:
            fp = merge_fixed_points(fp, search(seg, tol_q=fp.tol_q_e, slow_q=fp.slow_q_e), options)
    return _describe(joint, fp, options)


def _padded(points: list[np.ndarray], S: int) -> np.ndarray:
    """(E, P, S) the members' points, repeated to the largest count (zeros for a member without any)."""
    P = max([len(p) for p in points] + [1])
    out = np.zeros((len(points), P, S))
    for e, p in enumerate(points):
        if len(p):
            out[e] = p[np.arange(P) % len(p)]
    return out


def _points(points: list[np.ndarray], S: int, dt_ms: float) -> FixedPoints:
    """The given fixed points (per member, (P_e, S)) as a padded :class:`FixedPoints` (no search)."""
    E, P = len(points), max([len(p) for p in points] + [0])
    valid = np.array([[k < len(p) for k in range(P)] for p in points], bool).reshape(E, P)
    x = np.full((E, P, S), np.nan)
    for e, p in enumerate(points):
        x[e, :len(p)] = p
    z = np.zeros((E, P))
    return FixedPoints(x_expxs=x, q_exp=np.where(valid, 0.0, np.nan), valid_exp=valid, is_fixed_exp=valid.copy(),
                       is_slow_exp=np.zeros((E, P), bool), eigenvalues_expxs=np.full((E, P, S), np.nan, complex),
                       tau_ms_expxs=np.full((E, P, S), np.nan), n_unstable_exp=np.where(valid, 0, -1),
                       kind_exp=np.where(valid, 0, -1), u_exi=np.zeros((E, 0)), tol_q_e=z[:, 0], slow_q_e=z[:, 0],
                       state_scale_e=np.ones(E), dt_ms=dt_ms, method="given", hits_exp=np.where(valid, 0, -1),
                       n_starts_e=np.zeros(E, int))


def _describe(joint, fp: FixedPoints, options) -> dict:
    """The per-point arrays of :func:`joint_points` from the search's points (joint classification)."""
    E, P, _ = fp.x_expxs.shape
    N = joint.n_units
    X = torch.as_tensor(np.nan_to_num(fp.x_expxs)).to(joint.d.device)
    h = X[..., :N]
    out = {"h": fp.x_expxs[..., :N], "valid": fp.valid_exp, "is_fixed": fp.is_fixed_exp, "is_slow": fp.is_slow_exp,
           "hits": fp.hits_exp}
    tol = options.unit_circle_tol
    with torch.no_grad():
        if joint.rule == "anti_hebbian":
            F = rank_one_efficacies(h, X[..., N:], joint.phi)
            lam, n_rho = anti_hebbian_spectrum(joint, h, F)
            extra = np.full(min(n_rho, JOINT_MODES), joint.rho, complex)
            frozen = joint.frozen_jacobian(h, F)
            q = joint.speed(h, F)
            out["plastic_input"] = (joint.c * torch.einsum("eknm,ekm->ekn", F, phi_fn(joint.phi, h))).cpu().numpy()
            out["F_norm"] = F.norm(dim=(-2, -1)).cpu().numpy()
            dim = joint.dim
        else:
            uu, xx = X[..., N:2 * N], X[..., 2 * N:]
            lam = torch.linalg.eigvals(joint.jacobian(h, uu, xx).cpu()).numpy()
            extra = np.zeros(0, complex)
            frozen = joint.frozen_jacobian(h, uu, xx)
            h1, u1, x1 = joint.step(h, uu, xx)
            q = 0.5 * (((h1 - h) ** 2).sum(-1) + ((u1 - uu) ** 2).sum(-1) + ((x1 - xx) ** 2).sum(-1))
            r = phi_fn(joint.phi, h)
            out["plastic_input"] = torch.einsum("enm,ekm->ekn", joint.Wc, (uu * xx / joint.U - 1) * r).cpu().numpy()
            out["u"], out["x"] = fp.x_expxs[..., N:2 * N], fp.x_expxs[..., 2 * N:]
            dim = joint.dim
        lam_frozen = torch.linalg.eigvals(frozen.cpu()).numpy()
    M = lam.shape[-1] if lam.size else 1
    n_uns, kind = _classify(lam.reshape(E * P, M), dim, tol)
    out["n_unstable"] = np.where(fp.valid_exp, n_uns.reshape(E, P), -1)
    out["kind"] = np.where(fp.valid_exp, kind.reshape(E, P), -1)
    out["n_unstable_frozen"] = np.where(fp.valid_exp, (np.abs(lam_frozen) > 1 + tol).sum(-1), -1)
    out["eigenvalues"] = np.where(fp.valid_exp[..., None], _leading(lam.reshape(E * P, M), extra).reshape(E, P, JOINT_MODES),
                                  np.nan + 1j * np.nan)
    out["q"] = np.where(fp.valid_exp, q.cpu().numpy(), np.nan)
    for k in ("h", "plastic_input", "u", "x"):
        if k in out:
            out[k] = np.where(fp.valid_exp[..., None], out[k], np.nan)
    if "F_norm" in out:
        out["F_norm"] = np.where(fp.valid_exp, out["F_norm"], np.nan)
    return out


__all__ = ["JOINT_MODES", "JointAntiHebbian", "JointSystemError", "JointTsodyksMarkram", "anti_hebbian_spectrum",
           "joint_points", "joint_system", "plastic_trajectories", "rank_one_efficacies", "tm_steady_state"]
