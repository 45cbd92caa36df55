"""Fixed and slow points of any network, batched over ensemble members (SPEC 5).

Sussillo & Barak (2013) find the fixed and slow points of a map ``x -> F(x, u*)`` by minimising

    q(x) = 1/2 ||F(x, u*) - x||^2

from many initial states sampled on trajectories. Their implementation (and the fixed-point-finder
package) runs Adam on q for thousands of iterations. Here the same objective is minimised as a
nonlinear least-squares problem in the residual ``G(x) = F(x) - x`` with a batched
Levenberg-Marquardt (LM) method, which behaves like gradient descent far from a solution and like
Newton's method close to one (quadratic convergence to fixed points, where ``q = 0``, and linear
convergence to slow points, the local minima of q with ``q > 0``):

1. **Search** (all E*K initial states at once): LM steps ``(J^T J + mu I) dx = -J^T G`` with
   ``J = dF/dx - I``. For rate networks (leaky_rate, low_rank, plrnn) ``dF/dx = diag(d) +
   W_eff diag(phi'(x))`` is known in closed form and the damped normal equations are solved
   matrix-free by Jacobi-preconditioned conjugate gradients (CG), whose products with ``J`` and
   ``J^T`` are one matrix product with the member's shared ``W_eff`` for all states together. Other
   kinds (LSTM) use dense Jacobians from forward-mode autograd and a Cholesky solve.
2. **Merge** states that reached the same point (within ``dedup_rtol * scale``).
3. **Refine** the survivors with dense LM to ``||G|| <= solve_rtol * scale``, then polish points
   below the fixed-point tolerance with ``newton_steps`` plain Newton steps ``J dx = -G``.
4. **Select**: drop non-finite points and outliers (``||x|| > outlier_factor * max_k ||x0_k||``),
   keep points with ``q <= slow_q``; a point is *fixed* when ``q <= tol_q``, otherwise *slow*.
   De-duplicate again (fixed points within ``dedup_rtol * scale``, slow points within
   ``slow_dedup_rtol * scale`` of a point with lower q are the same point).
5. **Classify** by the eigenvalues ``lambda`` of ``dF/dx`` (the discrete-time map): ``n_unstable``
   = number of ``|lambda| > 1 + unit_circle_tol``; *stable* if 0, *unstable* if all, else *saddle*.
   Time constants ``tau_k = -dt / ln |lambda_k|`` in ms (``+inf`` on the unit circle, negative for
   growing modes, 0 for ``lambda = 0``).

Everything is computed in float64 on detached copies of the parameters, whatever the network's
dtype: the analysis never changes the model it inspects. Tolerances scale with the state scale
``scale_e = max(scale_floor, RMS_k ||x0_ek||)`` of each member and, for ``tol_q``, with the machine
epsilon of the network's dtype (a point is fixed when its drift per step is at the level of the
network's own rounding). All defaults live in :data:`DEFAULTS`.

PLRNN: :func:`plrnn_exact_fixed_points` solves every linear region exactly (Durstewitz 2017).

Ordering (deterministic): per member, fixed points first, then slow points; within each group by
``n_unstable`` ascending, then lexicographically by the coordinates. Eigenvalues (and the time
constants, aligned with them) by modulus descending, ties by real then imaginary part descending.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..networks.base import Network
from ..networks.recurrence import phi as phi_fn
from ..networks.recurrence import phi_prime

F64 = torch.float64
EPS64 = float(torch.finfo(F64).eps)

#: kind codes of :attr:`FixedPoints.kind_exp` (-1 = padding)
KIND_NAMES = ("stable", "saddle", "unstable")
STABLE, SADDLE, UNSTABLE = 0, 1, 2

_RUNNING, _CONVERGED, _STALLED, _MAXITER = 0, 1, 2, 3


@dataclass(frozen=True)
class FixedPointOptions:
    """Settings of the fixed-point finder (all defaults in one place; see the module docstring).

    Lengths and residual norms are relative to the member's state scale ``scale`` (state units).
    """

    #: fixed point: ``||F(x)-x|| <= fixed_eps_factor * eps(network dtype) * scale``
    #: (``tol_q = 1/2 (that)^2``; float32: 1.2e-5 scale, float64: 2.2e-14 scale)
    fixed_eps_factor: float = 100.0
    #: slow point: ``||F(x)-x|| <= slow_rtol * scale`` (per step), and not fixed
    slow_rtol: float = 1e-3
    #: floor of the state scale (state units), so that tolerances stay positive for x0 near 0
    scale_floor: float = 1.0
    #: LM iterations (search and refinement each)
    max_iter: int = 100
    #: the search stops a state at ``||G|| <= search_rtol * scale`` (refinement goes further)
    search_rtol: float = 1e-9
    #: refinement stops at ``||G|| <= solve_rtol * scale`` (or at the tolerance, if tighter)
    solve_rtol: float = 1e-13
    #: plain Newton polishing steps on the fixed points (accepted only if q decreases)
    newton_steps: int = 2
    #: initial LM damping relative to max diag(J^T J) (Nielsen 1999)
    damping0: float = 1e-3
    #: a state stalls when an accepted step is shorter than step_rtol * scale, or when the
    #: actual and predicted relative decrease of q are both below q_rtol
    step_rtol: float = 1e-13
    q_rtol: float = 1e-10
    #: a state stalls after this many consecutive rejected steps
    max_rejections: int = 40
    #: linear solver of the search: "cg" (matrix-free, rate networks), "dense", or "auto"
    #: (cg where available and the state has at least ``cg_min_dim`` dimensions)
    solver: str = "auto"
    cg_min_dim: int = 24
    #: CG iterations per LM step, and the largest relative CG residual (the forcing term is
    #: ``min(cg_rtol_max, sqrt(||G|| / scale))``, so the steps become exact Newton steps near a root)
    cg_max_iter: int = 60
    cg_rtol_max: float = 0.1
    #: two fixed points closer than dedup_rtol * scale are one; slow points: slow_dedup_rtol
    dedup_rtol: float = 1e-5
    slow_dedup_rtol: float = 1e-3
    #: drop points with ||x|| > outlier_factor * max_k ||x0_k|| (state units; floored by scale_floor)
    outlier_factor: float = 10.0
    #: |lambda| counts as unstable above 1 + unit_circle_tol
    unit_circle_tol: float = 1e-9
    #: states per chunk of dense autograd Jacobians (bounds memory)
    jacobian_chunk: int = 256

    def __post_init__(self):
        if self.solver not in ("auto", "cg", "dense"):
            raise ValueError(f"solver must be one of 'auto', 'cg', 'dense'; got {self.solver!r}")
        for name in ("fixed_eps_factor", "slow_rtol", "scale_floor", "search_rtol", "solve_rtol", "dedup_rtol",
                     "slow_dedup_rtol", "outlier_factor", "damping0", "cg_rtol_max"):
            if not getattr(self, name) > 0:
                raise ValueError(f"FixedPointOptions.{name} must be > 0; got {getattr(self, name)!r}")
        for name in ("max_iter", "cg_max_iter", "max_rejections", "jacobian_chunk"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"FixedPointOptions.{name} must be >= 1; got {getattr(self, name)!r}")


DEFAULTS = FixedPointOptions()


@dataclass
class FixedPoints:
    """Fixed and slow points of E members, padded over points (P = max count over members).

    Padding has ``valid_exp = False``, NaN in float arrays, -1 in integer arrays.

    x_expxs:           (E, P, S) the points (state units: h, z, or (h, c) for the LSTM)
    q_exp:             (E, P) ``1/2 ||F(x) - x||^2`` (state units squared)
    valid_exp:         (E, P) bool, a point is present
    is_fixed_exp:      (E, P) bool, ``q <= tol_q``
    is_slow_exp:       (E, P) bool, ``tol_q < q <= slow_q``
    eigenvalues_expxs: (E, P, S) complex, eigenvalues of dF/dx, by modulus descending
    tau_ms_expxs:      (E, P, S) ``-dt_ms / ln |lambda|`` (ms), aligned with the eigenvalues
    n_unstable_exp:    (E, P) int, number of ``|lambda| > 1 + unit_circle_tol``
    kind_exp:          (E, P) int code into :data:`KIND_NAMES` (stable 0, saddle 1, unstable 2)
    u_exi:             (E, I) the constant input context of each member
    tol_q_e, slow_q_e: (E,) the thresholds on q that were used
    state_scale_e:     (E,) the state scale of each member (state units)
    """

    x_expxs: np.ndarray
    q_exp: np.ndarray
    valid_exp: np.ndarray
    is_fixed_exp: np.ndarray
    is_slow_exp: np.ndarray
    eigenvalues_expxs: np.ndarray
    tau_ms_expxs: np.ndarray
    n_unstable_exp: np.ndarray
    kind_exp: np.ndarray
    u_exi: np.ndarray
    tol_q_e: np.ndarray
    slow_q_e: np.ndarray
    state_scale_e: np.ndarray
    dt_ms: float
    method: str
    kind_names: tuple[str, ...] = field(default=KIND_NAMES)

    @property
    def n_points_e(self) -> np.ndarray:
        return self.valid_exp.sum(1)

    def kind_str_exp(self) -> np.ndarray:
        """(E, P) the kind names ("" for padding)."""
        names = np.array(("",) + self.kind_names, dtype=object)
        return names[self.kind_exp + 1]

    def counts(self) -> dict[str, np.ndarray]:
        """Per member (E,): number of fixed and slow points, and of fixed points of each kind."""
        fx = self.is_fixed_exp
        out = {"fixed": fx.sum(1), "slow": self.is_slow_exp.sum(1)}
        for code, name in enumerate(self.kind_names):
            out[name] = (fx & (self.kind_exp == code)).sum(1)
        return out

    def member(self, e: int) -> dict[str, np.ndarray]:
        """The valid points of member ``e`` (unpadded arrays)."""
        v = self.valid_exp[e]
        return {"x_pxs": self.x_expxs[e, v], "q_p": self.q_exp[e, v], "is_fixed_p": self.is_fixed_exp[e, v],
                "is_slow_p": self.is_slow_exp[e, v], "eigenvalues_pxs": self.eigenvalues_expxs[e, v],
                "tau_ms_pxs": self.tau_ms_expxs[e, v], "n_unstable_p": self.n_unstable_exp[e, v],
                "kind_p": self.kind_exp[e, v]}


# ----------------------------------------------------------------------------------------------
# float64 views of a network: residual, matrix-free products with the Jacobian, dense Jacobian
# ----------------------------------------------------------------------------------------------

class _Layout:
    """Flat states sorted by member <-> a padded grid (members present, K_max, ...)."""

    def __init__(self, mi_b: torch.Tensor):
        members, counts = torch.unique_consecutive(mi_b, return_counts=True)
        self.members, self.mi_b = members, mi_b
        self.row = torch.repeat_interleave(torch.arange(len(members)), counts)
        starts = torch.cumsum(counts, 0) - counts
        self.col = torch.arange(len(mi_b)) - torch.repeat_interleave(starts, counts)
        self.kmax = int(counts.max()) if len(counts) else 0

    def to_grid(self, v_bx: torch.Tensor) -> torch.Tensor:
        g = v_bx.new_zeros((len(self.members), self.kmax) + tuple(v_bx.shape[1:]))
        g[self.row, self.col] = v_bx
        return g

    def from_grid(self, g: torch.Tensor) -> torch.Tensor:
        return g[self.row, self.col]


@dataclass
class _Linearization:
    """The residual's Jacobian ``J = dF/dx - I`` at a batch of states."""

    Jv: Callable[[torch.Tensor], torch.Tensor]
    JTv: Callable[[torch.Tensor], torch.Tensor]
    diag_JTJ_bxs: torch.Tensor
    J_bxsxs: torch.Tensor | None = None  # dense, when asked for


class _RateSystem:
    """``F(x) = d * x + W_eff phi(x) + c`` (leaky_rate, low_rank: d = 1 - alpha, W_eff = alpha W,
    c = alpha (W_in u + b); plrnn: d = A, W_eff = W (off-diagonal), c = h + C u, phi = relu)."""

    has_cg = True

    def __init__(self, d_exs, W_exsxs, c_exs, phi_name: str):
        self.d, self.W, self.c, self.phi = d_exs, W_exsxs, c_exs, phi_name
        self.WT = W_exsxs.transpose(1, 2).contiguous()
        self.colnorm2 = (W_exsxs ** 2).sum(1)  # (E, S): sum_i W_ij^2
        self.diagW = torch.diagonal(W_exsxs, dim1=1, dim2=2)

    def _W(self, lay: _Layout, transpose: bool):
        src = self.WT if transpose else self.W
        return src if len(lay.members) == len(src) and bool((lay.members == torch.arange(len(src))).all()) \
            else src[lay.members]

    def F(self, x_bxs, lay):
        rec = torch.bmm(lay.to_grid(phi_fn(self.phi, x_bxs)), self._W(lay, True))
        return self.d[lay.mi_b] * x_bxs + lay.from_grid(rec) + self.c[lay.mi_b]

    def linearize(self, x_bxs, lay, dense: bool) -> _Linearization:
        p = phi_prime(self.phi, x_bxs, phi_fn(self.phi, x_bxs))
        dm1 = self.d[lay.mi_b] - 1
        W, WT = self._W(lay, False), self._W(lay, True)

        def Jv(v):
            return dm1 * v + lay.from_grid(torch.bmm(lay.to_grid(p * v), WT))

        def JTv(w):
            return dm1 * w + p * lay.from_grid(torch.bmm(lay.to_grid(w), W))

        mi = lay.mi_b
        diag = p * p * self.colnorm2[mi] + 2 * p * self.diagW[mi] * dm1 + dm1 * dm1
        J = None
        if dense:
            J = self.W[mi] * p[:, None, :]
            J.diagonal(dim1=1, dim2=2).add_(dm1)
        return _Linearization(Jv, JTv, diag, J)

    def jacobian_F(self, x_bxs, lay):
        p = phi_prime(self.phi, x_bxs, phi_fn(self.phi, x_bxs))
        J = self.W[lay.mi_b] * p[:, None, :]
        J.diagonal(dim1=1, dim2=2).add_(self.d[lay.mi_b])
        return J


class _AutogradSystem:
    """Any network: F through its ``one_step`` (on a float64 copy), Jacobians by forward-mode AD."""

    has_cg = True

    def __init__(self, net64: Network, u_exi: torch.Tensor, chunk: int):
        self.net, self.u, self.chunk = net64, u_exi, chunk
        self._cache: tuple[tuple[int, ...], Network] | None = None

    def _sub(self, members: torch.Tensor) -> Network:
        key = tuple(members.tolist())
        if key == tuple(range(self.net.n_members)):
            return self.net
        if self._cache is None or self._cache[0] != key:
            sub = copy.copy(self.net)
            idx = list(key)
            sub.params = {k: v[idx] for k, v in self.net.params.items()}
            sub.buffers = {k: v[idx] for k, v in self.net.buffers.items()}
            sub.n_members = len(idx)
            self._cache = (key, sub)
        return self._cache[1]

    def _f(self, lay):
        net, u = self._sub(lay.members), self.u[lay.members]
        return lambda X: net.one_step(X, u)

    def F(self, x_bxs, lay):
        return lay.from_grid(self._f(lay)(lay.to_grid(x_bxs)))

    def jacobian_F(self, x_bxs, lay):
        f, S = self._f(lay), x_bxs.shape[1]
        X = lay.to_grid(x_bxs)
        M, K = X.shape[:2]
        cols = []
        step = max(1, self.chunk // max(1, M))
        for k0 in range(0, K, step):
            Xc = X[:, k0:k0 + step].contiguous()
            basis = torch.eye(S, dtype=F64).reshape(S, 1, 1, S).expand(S, M, Xc.shape[1], S)
            out = torch.func.vmap(lambda v: torch.func.jvp(f, (Xc,), (v,))[1])(basis)  # [s, m, k, i] = dF_i/dx_s
            cols.append(out.permute(1, 2, 3, 0))
        return lay.from_grid(torch.cat(cols, 1))

    def linearize(self, x_bxs, lay, dense: bool) -> _Linearization:
        f = self._f(lay)
        X = lay.to_grid(x_bxs)
        _, vjp_fn = torch.func.vjp(f, X)

        def Jv(v):
            return lay.from_grid(torch.func.jvp(f, (X,), (lay.to_grid(v),))[1]) - v

        def JTv(w):
            return lay.from_grid(vjp_fn(lay.to_grid(w))[0]) - w

        J = None
        if dense:
            J = self.jacobian_F(x_bxs, lay)
            J.diagonal(dim1=1, dim2=2).sub_(1.0)
            diag = (J * J).sum(1)
        else:  # no cheap diagonal: CG runs unpreconditioned
            diag = torch.ones_like(x_bxs)
        return _Linearization(Jv, JTv, diag, J)


def _float64_copy(network: Network) -> Network:
    """A shallow copy of ``network`` whose params and buffers are detached float64 copies."""
    net = copy.copy(network)
    net.params = {k: v.detach().to(F64, copy=True) for k, v in network.params.items()}
    net.buffers = {k: v.detach().to(F64, copy=True) for k, v in network.buffers.items()}
    net.dtype = F64
    return net


def _system(network: Network, u_exi: torch.Tensor, opts: FixedPointOptions):
    """The float64 system for ``network``: closed form for the rate kinds, autograd otherwise."""
    net = _float64_copy(network)
    p = net.params
    kind = getattr(network, "kind", None)
    if kind in ("leaky_rate", "low_rank"):
        a = net.alpha
        S = net.full_state_dim()
        d = torch.full((net.n_members, S), 1.0 - a, dtype=F64)
        c = a * (torch.einsum("ei,eni->en", u_exi, p["W_in"]) + p["b"])
        return _RateSystem(d, a * net.recurrent_weights(), c, net.config.phi), net
    if kind == "plrnn":
        c = torch.einsum("ei,eni->en", u_exi, p["C"]) + p["h"]
        return _RateSystem(p["A"].clone(), net.recurrent_weights(), c, "relu"), net
    sysm = _AutogradSystem(net, u_exi, opts.jacobian_chunk)
    sysm.has_cg = False  # dense LM is cheaper than CG through autograd for the usual LSTM sizes
    return sysm, net


def _check_system(system, net64: Network, u_exi: torch.Tensor, x_exkxs: torch.Tensor):
    """The closed-form map must reproduce the network's own one_step (guards against drift)."""
    if isinstance(system, _AutogradSystem):
        return
    E, K, S = x_exkxs.shape
    k = min(K, 4)
    x = x_exkxs[:, :k].reshape(E * k, S)
    lay = _Layout(torch.arange(E).repeat_interleave(k))
    ref = net64.one_step(x_exkxs[:, :k], u_exi).reshape(E * k, S)
    err = (system.F(x, lay) - ref).abs().max()
    if not bool(err <= 1e-10 * (1 + ref.abs().max())):
        raise RuntimeError(f"the closed-form map for kind {net64.kind!r} disagrees with network.one_step "
                           f"(max error {float(err):.3g}); update bioplastic/analysis/fixed_points.py:_system")


# ----------------------------------------------------------------------------------------------
# batched Levenberg-Marquardt
# ----------------------------------------------------------------------------------------------

def _bdot(a, b):
    return (a * b).sum(-1)


def _cg(lin: _Linearization, rhs_bxs, mu_b, rtol_b, max_iter: int) -> torch.Tensor:
    """Solve ``(J^T J + mu I) dx = rhs`` per state by Jacobi-preconditioned CG (truncated)."""
    Minv = 1.0 / (lin.diag_JTJ_bxs + mu_b[:, None])
    dx = torch.zeros_like(rhs_bxs)
    r = rhs_bxs.clone()
    z = Minv * r
    p = z.clone()
    rz = _bdot(r, z)
    stop = rtol_b * rhs_bxs.norm(dim=-1)
    done = r.norm(dim=-1) <= stop
    for _ in range(max_iter):
        if bool(done.all()):
            break
        Jp = lin.Jv(p)
        Ap = lin.JTv(Jp) + mu_b[:, None] * p
        pAp = _bdot(p, Ap)
        alpha = torch.where(done | (pAp <= 0), torch.zeros_like(rz), rz / torch.where(pAp > 0, pAp, 1.0))
        dx += alpha[:, None] * p
        r -= alpha[:, None] * Ap
        done = done | (r.norm(dim=-1) <= stop) | (pAp <= 0)
        z = Minv * r
        rz_new = _bdot(r, z)
        beta = torch.where(rz > 0, rz_new / torch.where(rz > 0, rz, 1.0), torch.zeros_like(rz))
        p = z + beta[:, None] * p
        rz = rz_new
    return dx


def _dense_solve(lin: _Linearization, rhs_bxs, mu_b) -> torch.Tensor:
    J = lin.J_bxsxs
    A = torch.bmm(J.transpose(1, 2), J)
    A.diagonal(dim1=1, dim2=2).add_(mu_b[:, None])
    L, info = torch.linalg.cholesky_ex(A)
    dx = torch.cholesky_solve(rhs_bxs[..., None], L)[..., 0]
    return torch.where((info == 0)[:, None], dx, torch.full_like(dx, float("nan")))


def _levenberg_marquardt(system, x_bxs, mi_b, scale_b, q_stop_b, *, solver: str, max_iter: int,
                         opts: FixedPointOptions):
    """Minimise q for each state independently. Returns (x, G, q, status) for every state."""
    x = x_bxs.clone()
    lay_all = _Layout(mi_b)
    G = system.F(x, lay_all) - x
    q = 0.5 * _bdot(G, G)
    B = len(x)
    mu = torch.full((B,), float("nan"), dtype=F64)
    nu = torch.full((B,), 2.0, dtype=F64)
    rejections = torch.zeros(B, dtype=torch.long)
    status = torch.full((B,), _RUNNING, dtype=torch.int8)
    status[q <= q_stop_b] = _CONVERGED
    status[~torch.isfinite(q)] = _STALLED
    dense = solver == "dense"
    for _ in range(max_iter):
        idx = torch.nonzero(status == _RUNNING).squeeze(1)
        if idx.numel() == 0:
            break
        lay = _Layout(mi_b[idx])
        xa, Ga, qa, sa = x[idx], G[idx], q[idx], scale_b[idx]
        lin = system.linearize(xa, lay, dense=dense)
        g = lin.JTv(Ga)  # gradient of q
        mua = mu[idx]
        mua = torch.where(torch.isnan(mua), opts.damping0 * lin.diag_JTJ_bxs.amax(-1).clamp_min(1e-300), mua)
        if dense:
            dx = _dense_solve(lin, -g, mua)
        else:
            rtol = torch.clamp(torch.sqrt(Ga.norm(dim=-1) / sa), max=opts.cg_rtol_max, min=1e-14)
            dx = _cg(lin, -g, mua, rtol, opts.cg_max_iter)
        xn = xa + dx
        Gn = system.F(xn, lay) - xn
        qn = 0.5 * _bdot(Gn, Gn)
        Jdx = lin.Jv(dx)
        pred = -_bdot(g, dx) - 0.5 * _bdot(Jdx, Jdx)  # decrease of the Gauss-Newton model of q
        ok = torch.isfinite(qn) & torch.isfinite(pred) & (pred > 0) & (qn < qa)
        rho = torch.where(ok, (qa - qn) / torch.where(ok, pred, 1.0), torch.zeros_like(qa))
        factor = torch.clamp(1 - (2 * rho - 1) ** 3, min=1.0 / 3.0)
        mu[idx] = torch.where(ok, mua * factor, mua * nu[idx])
        nu[idx] = torch.where(ok, torch.full_like(qa, 2.0), nu[idx] * 2)
        rejections[idx] = torch.where(ok, torch.zeros_like(idx), rejections[idx] + 1)
        acc = idx[ok]
        x[acc], G[acc], q[acc] = xn[ok], Gn[ok], qn[ok]
        # stopping rules (per state)
        small_step = ok & (dx.norm(dim=-1) <= opts.step_rtol * sa)
        flat = ok & ((qa - qn) <= opts.q_rtol * qa) & (pred <= opts.q_rtol * qa)
        new = torch.full_like(status[idx], _RUNNING)
        new[small_step | flat | (rejections[idx] >= opts.max_rejections)] = _STALLED
        new[q[idx] <= q_stop_b[idx]] = _CONVERGED
        status[idx] = new
    status[status == _RUNNING] = _MAXITER
    return x, G, q, status


def _newton_polish(system, x_bxs, mi_b, G_bxs, q_b, max_step_b, steps: int):
    """Plain Newton steps ``J dx = -G``, each kept only where it lowers q and is short."""
    x, G, q = x_bxs.clone(), G_bxs.clone(), q_b.clone()
    if len(x) == 0:
        return x, G, q
    lay = _Layout(mi_b)
    S = x.shape[1]
    for _ in range(steps):
        J = system.jacobian_F(x, lay) - torch.eye(S, dtype=F64)
        dx, info = torch.linalg.solve_ex(J, -G)
        xn = x + dx
        Gn = system.F(xn, lay) - xn
        qn = 0.5 * _bdot(Gn, Gn)
        ok = (info == 0) & torch.isfinite(qn) & (qn < q) & (dx.norm(dim=-1) <= max_step_b)
        x[ok], G[ok], q[ok] = xn[ok], Gn[ok], qn[ok]
    return x, G, q


def deduplicate(x_nxs: np.ndarray, q_n: np.ndarray, radius_n: np.ndarray) -> np.ndarray:
    """Indices of representatives, greedily by increasing q (ties: lexicographic in x): each
    remaining point within ``radius_n`` (its own radius, state units) of a representative is dropped.

    x_nxs: (n, S) points, q_n: (n,) their q, radius_n: (n,) merge radius of each point.
    Returns the sorted indices of the kept points.
    """
    x_nxs, q_n, radius_n = np.asarray(x_nxs, float), np.asarray(q_n, float), np.asarray(radius_n, float)
    n = len(x_nxs)
    if n == 0:
        return np.zeros(0, dtype=int)
    order = np.lexsort(tuple(x_nxs[:, ::-1].T) + (q_n,))
    alive = np.ones(n, bool)
    keep = []
    for i in order:
        if not alive[i]:
            continue
        keep.append(i)
        alive[i] = False
        rest = np.flatnonzero(alive)
        if len(rest) == 0:
            break
        d = np.linalg.norm(x_nxs[rest] - x_nxs[i], axis=1)
        alive[rest[d <= radius_n[rest]]] = False
    return np.sort(np.asarray(keep, dtype=int))


def _dedup_torch(x_bxs, q_b, mi_b, radius_b):
    """Like :func:`deduplicate` per member, in torch, for many states (search output)."""
    keep = []
    for e in torch.unique(mi_b).tolist():
        idx = torch.nonzero(mi_b == e).squeeze(1)
        xe, qe, re = x_bxs[idx], q_b[idx], radius_b[idx]
        qe = torch.where(torch.isfinite(qe), qe, torch.full_like(qe, float("inf")))
        order = torch.argsort(qe, stable=True)
        alive = torch.ones(len(idx), dtype=torch.bool)
        alive[~torch.isfinite(xe).all(-1)] = False
        for i in order.tolist():
            if not alive[i]:
                continue
            keep.append(int(idx[i]))
            alive[i] = False
            rest = torch.nonzero(alive).squeeze(1)
            if rest.numel() == 0:
                break
            d = (xe[rest] - xe[i]).norm(dim=-1)
            alive[rest[d <= re[rest]]] = False
    return torch.as_tensor(sorted(keep), dtype=torch.long)


# ----------------------------------------------------------------------------------------------
# classification and assembly
# ----------------------------------------------------------------------------------------------

def _eig_sorted(J_pxsxs: np.ndarray) -> np.ndarray:
    """Eigenvalues by modulus descending, ties by real then imaginary part descending."""
    if len(J_pxsxs) == 0:
        return np.zeros((0, J_pxsxs.shape[-1]), complex)
    lam = np.linalg.eigvals(J_pxsxs).astype(complex)
    out = np.empty_like(lam)
    for i, li in enumerate(lam):
        out[i] = li[np.lexsort((-li.imag, -li.real, -np.abs(li)))]
    return out


def time_constants_ms(eigenvalues: np.ndarray, dt_ms: float) -> np.ndarray:
    """``tau = -dt / ln |lambda|`` (ms): +inf on the unit circle, < 0 for growing modes, 0 at 0."""
    mod = np.abs(np.asarray(eigenvalues))
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = -float(dt_ms) / np.log(mod)
    tau = np.where(mod == 1.0, np.inf, tau)
    return np.where(np.isnan(mod), np.nan, tau)


def _assemble(points: list[dict], E: int, S: int, u_exi: np.ndarray, tol_q_e, slow_q_e, scale_e, dt_ms: float,
              method: str, unit_circle_tol: float, dedup_rtol: float) -> FixedPoints:
    """points[e] = dict(x_pxs, q_p, J_pxsxs) of member e (already de-duplicated)."""
    rows = []
    for e in range(E):
        pe = points[e]
        lam = _eig_sorted(pe["J_pxsxs"])
        n_uns = (np.abs(lam) > 1 + unit_circle_tol).sum(1) if len(lam) else np.zeros(0, int)
        fixed = pe["q_p"] <= tol_q_e[e]
        kind = np.where(n_uns == 0, STABLE, np.where(n_uns == S, UNSTABLE, SADDLE))
        # lexicographic on coordinates rounded to the de-duplication grid (robust to rounding noise)
        grid = np.round(pe["x_pxs"] / (dedup_rtol * scale_e[e])) if len(fixed) else pe["x_pxs"]
        keys = tuple(grid[:, ::-1].T) + (n_uns, ~fixed)
        order = np.lexsort(keys) if len(fixed) else np.zeros(0, int)
        rows.append(dict(x=pe["x_pxs"][order], q=pe["q_p"][order], fixed=fixed[order], lam=lam[order],
                         n_uns=n_uns[order], kind=kind[order]))
    P = max([len(r["q"]) for r in rows] + [0])
    fp = FixedPoints(
        x_expxs=np.full((E, P, S), np.nan), q_exp=np.full((E, P), np.nan), valid_exp=np.zeros((E, P), bool),
        is_fixed_exp=np.zeros((E, P), bool), is_slow_exp=np.zeros((E, P), bool),
        eigenvalues_expxs=np.full((E, P, S), np.nan + 1j * np.nan), tau_ms_expxs=np.full((E, P, S), np.nan),
        n_unstable_exp=np.full((E, P), -1, dtype=np.int64), kind_exp=np.full((E, P), -1, dtype=np.int64),
        u_exi=np.asarray(u_exi, float), tol_q_e=np.asarray(tol_q_e, float), slow_q_e=np.asarray(slow_q_e, float),
        state_scale_e=np.asarray(scale_e, float), dt_ms=float(dt_ms), method=method)
    for e, r in enumerate(rows):
        n = len(r["q"])
        fp.x_expxs[e, :n], fp.q_exp[e, :n], fp.valid_exp[e, :n] = r["x"], r["q"], True
        fp.is_fixed_exp[e, :n], fp.is_slow_exp[e, :n] = r["fixed"], ~r["fixed"]
        fp.eigenvalues_expxs[e, :n] = r["lam"]
        fp.tau_ms_expxs[e, :n] = time_constants_ms(r["lam"], dt_ms)
        fp.n_unstable_exp[e, :n], fp.kind_exp[e, :n] = r["n_uns"], r["kind"]
    return fp


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------

def _as_f64(a, name: str) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.detach().to(F64, copy=True)
    try:
        return torch.as_tensor(np.array(a, dtype=float), dtype=F64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a numeric array or tensor; got {type(a).__name__}") from err


def _check_inputs(network: Network, u_exi, x0_exkxs=None):
    if not isinstance(network, Network):
        raise ValueError(f"network must be a bioplastic Network (from build_network); got {type(network).__name__}")
    E, I = network.n_members, network.n_inputs
    u = _as_f64(u_exi, "u_exi")
    if u.shape != (E, I):
        raise ValueError(f"u_exi must have shape (members, inputs) = ({E}, {I}); got {tuple(u.shape)}. "
                         "Pass one constant input context per member, e.g. np.zeros((E, I)) for zero input")
    if not bool(torch.isfinite(u).all()):
        raise ValueError("u_exi contains NaN or inf")
    if x0_exkxs is None:
        return u, None
    S = network.full_state_dim()
    x0 = _as_f64(x0_exkxs, "x0_exkxs")
    if x0.ndim != 3 or x0.shape[0] != E or x0.shape[2] != S or x0.shape[1] < 1:
        raise ValueError(f"x0_exkxs must have shape (members, K >= 1, state) = ({E}, K, {S}); got {tuple(x0.shape)}. "
                         "For the LSTM the state is (h, c) concatenated (network.full_state_dim())")
    if not bool(torch.isfinite(x0).all()):
        raise ValueError("x0_exkxs contains NaN or inf; sample initial states from valid time steps only")
    return u, x0


def _per_member(value, E: int, name: str) -> np.ndarray | None:
    if value is None:
        return None
    v = np.broadcast_to(np.asarray(value, float), (E,)).copy() if np.ndim(value) <= 1 else None
    if v is None or not np.all(v > 0):
        raise ValueError(f"{name} must be a positive number or one per member (shape ({E},)); got {value!r}")
    return v


def find_fixed_points(network: Network, u_exi, x0_exkxs, *, tol_q=None, slow_q=None, max_iter: int | None = None,
                      options: FixedPointOptions = DEFAULTS) -> FixedPoints:
    """Fixed and slow points of every member of ``network`` under a constant input.

    network:  any :class:`~bioplastic.networks.base.Network` (E members); it is not modified.
    u_exi:    (E, I) constant input context per member (input units).
    x0_exkxs: (E, K, S) initial states per member (S = ``network.full_state_dim()``), typically
              states sampled on trajectories plus a little Gaussian noise.
    tol_q:    q at or below which a point is fixed; scalar or (E,); default
              ``1/2 (fixed_eps_factor * eps(network.dtype) * scale_e)^2``.
    slow_q:   q at or below which a point is kept as a slow point; default
              ``1/2 (slow_rtol * scale_e)^2`` (at least ``tol_q``).
    max_iter: Levenberg-Marquardt iterations (default ``options.max_iter``).
    options:  a :class:`FixedPointOptions` (default :data:`DEFAULTS`).

    Returns a :class:`FixedPoints` (P = the largest number of points of any member).
    """
    u, x0 = _check_inputs(network, u_exi, x0_exkxs)
    opts = options
    max_iter = opts.max_iter if max_iter is None else int(max_iter)
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1; got {max_iter}")
    E, K, S = x0.shape
    eps_net = float(torch.finfo(network.dtype).eps) if network.dtype.is_floating_point else EPS64
    norms_exk = x0.norm(dim=-1)
    scale_e = torch.clamp(torch.sqrt((norms_exk ** 2).mean(1)), min=opts.scale_floor)
    tol_q_e = _per_member(tol_q, E, "tol_q")
    if tol_q_e is None:
        tol_q_e = (0.5 * (opts.fixed_eps_factor * eps_net * scale_e) ** 2).numpy()
    slow_q_e = _per_member(slow_q, E, "slow_q")
    if slow_q_e is None:
        slow_q_e = (0.5 * (opts.slow_rtol * scale_e) ** 2).numpy()
    slow_q_e = np.maximum(slow_q_e, tol_q_e)
    tol_q_t, slow_q_t = torch.as_tensor(tol_q_e), torch.as_tensor(slow_q_e)

    system, net64 = _system(network, u, opts)
    _check_system(system, net64, u, x0)

    x = x0.reshape(E * K, S)
    mi = torch.arange(E).repeat_interleave(K)
    scale_b = scale_e[mi]
    q_solve_b = torch.minimum(0.5 * (opts.solve_rtol * scale_b) ** 2, tol_q_t[mi])
    use_cg = system.has_cg and (opts.solver == "cg" or (opts.solver == "auto" and S >= opts.cg_min_dim))
    if opts.solver == "cg" and not system.has_cg:
        use_cg = True  # honour an explicit request (CG through autograd products)
    with torch.no_grad():
        if use_cg:
            q_search_b = torch.maximum(0.5 * (opts.search_rtol * scale_b) ** 2, q_solve_b)
            x, G, q, status = _levenberg_marquardt(system, x, mi, scale_b, q_search_b, solver="cg",
                                                   max_iter=max_iter, opts=opts)
            keep = _dedup_torch(x, q, mi, opts.dedup_rtol * scale_b)
            x, mi, scale_b, q_solve_b, status = x[keep], mi[keep], scale_b[keep], q_solve_b[keep], status[keep]
            # refine what the search brought close (and what ran out of iterations) with dense LM
            ref = torch.nonzero((status == _CONVERGED) | (status == _MAXITER)).squeeze(1)
            if ref.numel():
                xr, _, _, _ = _levenberg_marquardt(system, x[ref], mi[ref], scale_b[ref], q_solve_b[ref],
                                                   solver="dense", max_iter=max_iter, opts=opts)
                x[ref] = xr
            lay = _Layout(mi)
            G = system.F(x, lay) - x
            q = 0.5 * _bdot(G, G)
        else:
            x, G, q, status = _levenberg_marquardt(system, x, mi, scale_b, q_solve_b, solver="dense",
                                                   max_iter=max_iter, opts=opts)
            keep = _dedup_torch(x, q, mi, opts.dedup_rtol * scale_b)
            x, G, q, mi, scale_b = x[keep], G[keep], q[keep], mi[keep], scale_b[keep]
        # Newton polish of the fixed points
        pol = torch.nonzero(torch.isfinite(q) & (q <= tol_q_t[mi])).squeeze(1)
        if pol.numel():
            xp, Gp, qp = _newton_polish(system, x[pol], mi[pol], G[pol], q[pol], opts.dedup_rtol * scale_b[pol],
                                        opts.newton_steps)
            x[pol], G[pol], q[pol] = xp, Gp, qp
        # select: finite, not an outlier, q <= slow_q
        max_norm_e = torch.clamp(norms_exk.amax(1), min=opts.scale_floor)
        good = torch.isfinite(q) & torch.isfinite(x).all(-1) & (q <= slow_q_t[mi])
        good &= x.norm(dim=-1) <= opts.outlier_factor * max_norm_e[mi]
        x, q, mi, scale_b = x[good], q[good], mi[good], scale_b[good]
        J_all = system.jacobian_F(x, _Layout(mi)) if len(x) else torch.zeros(0, S, S, dtype=F64)

    points = []
    xn, qn, min_, sn, Jn = x.numpy(), q.numpy(), mi.numpy(), scale_b.numpy(), J_all.numpy()
    for e in range(E):
        sel = np.flatnonzero(min_ == e)
        fixed = qn[sel] <= tol_q_e[e]
        radius = np.where(fixed, opts.dedup_rtol, opts.slow_dedup_rtol) * sn[sel]
        k = sel[deduplicate(xn[sel], qn[sel], radius)]
        points.append(dict(x_pxs=xn[k], q_p=qn[k], J_pxsxs=Jn[k]))
    return _assemble(points, E, S, u.numpy(), tol_q_e, slow_q_e, scale_e.numpy(), network.dt_ms,
                     "levenberg_marquardt", opts.unit_circle_tol, opts.dedup_rtol)


def plrnn_exact_fixed_points(network: Network, u_exi, max_units: int = 12, *,
                             options: FixedPointOptions = DEFAULTS) -> FixedPoints:
    """All fixed points of a PLRNN, exactly, region by region (Durstewitz 2017).

    Within the region of ReLU sign pattern ``D`` (``D_i = 1`` where ``z_i > 0``) the map is linear,
    ``z' = (A + W D) z + h + C u``, so its fixed point solves ``(A + W D - I) z = -(h + C u)``; it is
    kept when its sign pattern is ``D`` (within ``1e-10 max(1, |z|_inf)``; points on a region
    boundary, found in two regions, are de-duplicated). Regions whose matrix is singular (a
    continuum of fixed points, or none) are skipped. Cost: 2^N solves of N x N systems per member.

    network: a PLRNN with N <= ``max_units`` units; u_exi: (E, I) input context per member.
    The state scale (for the tolerances) is ``max(scale_floor, RMS norm of the solutions)``.
    """
    if getattr(network, "kind", None) != "plrnn":
        raise ValueError(f"plrnn_exact_fixed_points needs a PLRNN; got kind {getattr(network, 'kind', None)!r}. "
                         "Use find_fixed_points for other kinds")
    u, _ = _check_inputs(network, u_exi)
    N = network.n_units
    if N > max_units:
        raise ValueError(f"the exact PLRNN solver enumerates 2^N linear regions; N = {N} units exceeds "
                         f"max_units = {max_units}. Raise max_units (cost grows as 2^N N^3) or use find_fixed_points")
    opts = options
    E = network.n_members
    net = _float64_copy(network)
    p = net.params
    A, W = p["A"], net.recurrent_weights()
    c = torch.einsum("ei,eni->en", u, p["C"]) + p["h"]
    D_rxn = torch.tensor([[(r >> i) & 1 for i in range(N)] for r in range(2 ** N)], dtype=F64)  # (2^N, N)
    eps_net = float(torch.finfo(network.dtype).eps)
    points, scales, tol_q_e, slow_q_e = [], [], [], []
    with torch.no_grad():
        for e in range(E):
            M = W[e][None] * D_rxn[:, None, :] + torch.diag_embed(A[e] - 1.0).expand(2 ** N, N, N)
            z, info = torch.linalg.solve_ex(M, (-c[e]).expand(2 ** N, N))
            tol = 1e-10 * torch.clamp(z.abs().amax(-1), min=1.0)
            pos = D_rxn > 0
            match = torch.where(pos, z >= -tol[:, None], z <= tol[:, None]).all(-1)
            ok = (info == 0) & torch.isfinite(z).all(-1) & match
            z = z[ok]
            scale = max(opts.scale_floor, float(torch.sqrt((z ** 2).sum(-1).mean())) if len(z) else 0.0)
            scales.append(scale)
            tq = 0.5 * (opts.fixed_eps_factor * eps_net * scale) ** 2
            tol_q_e.append(tq)
            slow_q_e.append(max(tq, 0.5 * (opts.slow_rtol * scale) ** 2))
            Fz = A[e] * z + torch.relu(z) @ W[e].T + c[e]
            q = 0.5 * ((Fz - z) ** 2).sum(-1)
            zn, qn = z.numpy(), q.numpy()
            keep = deduplicate(zn, qn, np.full(len(zn), opts.dedup_rtol * scale))
            zk = z[keep]
            J = W[e][None] * (zk > 0).to(F64)[:, None, :] + torch.diag(A[e])[None]
            points.append(dict(x_pxs=zn[keep], q_p=qn[keep], J_pxsxs=J.numpy()))
    return _assemble(points, E, N, u.numpy(), np.array(tol_q_e), np.array(slow_q_e), np.array(scales),
                     network.dt_ms, "plrnn_exact", opts.unit_circle_tol, opts.dedup_rtol)


def sample_initial_states(states_exbxtxs, n_states: int, *, noise_std: float, rng: np.random.Generator,
                          valid_exbxt=None) -> np.ndarray:
    """K initial states per member: states drawn uniformly (with replacement) from each member's
    trajectories, plus independent Gaussian noise of std ``noise_std`` (state units).

    states_exbxtxs: (E, trial, time, S) full dynamical states (for the LSTM, (h, c) concatenated);
    valid_exbxt: optional (E, trial, time) bool mask of the time steps to draw from.
    Returns x0_exkxs (E, n_states, S), float64.
    """
    X = np.asarray(states_exbxtxs, float)
    if X.ndim != 4:
        raise ValueError(f"states_exbxtxs must have shape (members, trial, time, state); got {X.shape}")
    if n_states < 1 or noise_std < 0:
        raise ValueError(f"need n_states >= 1 and noise_std >= 0; got {n_states}, {noise_std}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError("rng must be a numpy Generator (no global RNG); e.g. bioplastic.seeds.numpy_rng(...)")
    E, B, T, S = X.shape
    valid = np.ones((E, B, T), bool) if valid_exbxt is None else np.asarray(valid_exbxt, bool)
    if valid.shape != (E, B, T):
        raise ValueError(f"valid_exbxt must have shape {(E, B, T)}; got {valid.shape}")
    out = np.empty((E, n_states, S))
    for e in range(E):
        flat = np.flatnonzero(valid[e].ravel() & np.isfinite(X[e]).all(-1).ravel())
        if len(flat) == 0:
            raise ValueError(f"member {e} has no valid finite state to sample from")
        pick = flat[rng.integers(0, len(flat), n_states)]
        out[e] = X[e].reshape(B * T, S)[pick] + noise_std * rng.standard_normal((n_states, S))
    return out
