"""Fixed and slow points of any network, batched over ensemble members (science.md §5).

Sussillo & Barak (2013) find the fixed and slow points of a map ``x -> F(x, u*)`` by minimising

    q(x) = 1/2 ||F(x, u*) - x||^2

from many initial states sampled on trajectories. Their implementation (and the fixed-point-finder
package) runs Adam on q for thousands of iterations. Here the residual ``G(x) = F(x) - x`` is driven
to zero by second-order methods, batched over all E*K states (members never mix):

1. **Search**: damped Newton, ``(dF/dx - I) dx = -G``, with steps capped at ``max_step_rtol *
   scale`` and a backtracking (Armijo) line search on q; quadratic convergence near a fixed point.
   For the rate kinds (leaky_rate, low_rank, plrnn) the Jacobian is closed-form,
   ``dF/dx = diag(d) + W_eff diag(phi'(x))``; other kinds (LSTM) get it from reverse-mode autograd
   through the network's own ``one_step``.
2. **Merge** states that reached the same point (within ``dedup_rtol * scale``).
3. **Levenberg-Marquardt** (Nielsen's damping update) for the states where Newton's method fails:
   near slow points (local minima of q with q > 0, where the Jacobian of G is singular) Newton's
   steps do not lower q; LM's gradient-like steps converge to those minima.
4. **Refine** points below the fixed-point tolerance with ``refine_steps`` short Newton steps, to
   ``||G|| <= solve_rtol * scale``.
5. **Select**: drop non-finite points and outliers (``||x|| > outlier_factor * max_k ||x0_k||``),
   keep points with ``q <= slow_q``; a point is *fixed* when ``q <= tol_q``, otherwise *slow*.
   De-duplicate again (fixed points within ``dedup_rtol * scale``, slow points within
   ``slow_dedup_rtol * scale`` of a point with lower q are the same point).
6. **Classify** by the eigenvalues ``lambda`` of ``dF/dx`` (the discrete-time map): ``n_unstable``
   = number of ``|lambda| > 1 + unit_circle_tol``; *stable* if 0, *unstable* if all, else *saddle*.
   Time constants ``tau_k = -dt / ln |lambda_k|`` in ms (``+inf`` on the unit circle, negative for
   growing modes, 0 for ``lambda = 0``).

Everything is computed in float64 on detached copies of the parameters, whatever the network's
dtype: the analysis never changes the model it inspects. Tolerances scale with the state scale
``scale_e = max(scale_floor, RMS_k ||x0_ek||)`` of each member and, for ``tol_q``, with the machine
epsilon of the network's dtype (a point is fixed when its drift per step is at the level of the
network's own rounding). All defaults live in :data:`DEFAULTS`.

PLRNN: :func:`plrnn_exact_fixed_points` solves every linear region exactly (Durstewitz 2017).

Device: the search runs where the network's parameters are (``network.to("cuda")``: on the GPU, to
float tolerance of the CPU's results); index bookkeeping, de-duplication, the eigenvalues and the
returned :class:`FixedPoints` are numpy on the CPU.

Ordering (deterministic): per member, fixed points first, then slow points; within each group by
``n_unstable`` ascending, then lexicographically by the coordinates. Eigenvalues (and the time
constants, aligned with them) by modulus descending, ties by real then imaginary part descending.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

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

    Lengths and residual norms ``||F(x) - x||`` are relative to the member's state scale ``scale``.
    """

    #: fixed point: ``||F(x)-x|| <= fixed_eps_factor * eps(network dtype) * scale``
    #: (``tol_q = 1/2 (that)^2``; float32: 1.2e-5 scale, float64: 2.2e-14 scale)
    fixed_eps_factor: float = 100.0
    #: slow point: ``||F(x)-x|| <= slow_rtol * scale`` (drift per step), and not fixed
    slow_rtol: float = 1e-3
    #: floor of the state scale (state units), so that tolerances stay positive for x0 near 0
    scale_floor: float = 1.0
    #: damped-Newton iterations of the search
    max_iter: int = 30
    #: the search stops a state at ``||F(x)-x|| <= search_rtol * scale``
    search_rtol: float = 1e-9
    #: Newton steps (each at most dedup_rtol * scale long) that refine the fixed points, to
    #: ``||F(x)-x|| <= solve_rtol * scale`` (or to tol_q, if tighter)
    refine_steps: int = 3
    solve_rtol: float = 1e-13
    #: a Newton step is at most max_step_rtol * scale long; it is halved up to line_search_steps
    #: times until q decreases by the Armijo fraction ``armijo``
    max_step_rtol: float = 1.0
    line_search_steps: int = 12
    armijo: float = 1e-4
    #: Levenberg-Marquardt iterations for the states where Newton's method fails (slow points)
    lm_max_iter: int = 100
    #: initial LM damping relative to max diag(J^T J) (Nielsen 1999)
    damping0: float = 1e-3
    #: LM stops a state when an accepted step is shorter than step_rtol * scale, when the actual
    #: and predicted relative decrease of q are both below q_rtol, or after max_rejections
    #: consecutive rejected steps
    step_rtol: float = 1e-12
    q_rtol: float = 1e-10
    max_rejections: int = 40
    #: LM abandons a state above slow_q whose q fell by less than progress_factor over the last
    #: progress_window iterations
    progress_window: int = 10
    progress_factor: float = 0.5
    #: the search leaves a state to LM when q fell by less than progress_factor over newton_window steps
    newton_window: int = 5
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
        for name in ("fixed_eps_factor", "slow_rtol", "scale_floor", "search_rtol", "solve_rtol", "max_step_rtol",
                     "armijo", "damping0", "dedup_rtol", "slow_dedup_rtol", "outlier_factor"):
            if not getattr(self, name) > 0:
                raise ValueError(f"FixedPointOptions.{name} must be > 0; got {getattr(self, name)!r}")
        if not 0 < self.progress_factor <= 1:
            raise ValueError(f"FixedPointOptions.progress_factor must be in (0, 1]; got {self.progress_factor!r}")
        for name in ("max_iter", "lm_max_iter", "line_search_steps", "max_rejections", "jacobian_chunk",
                     "progress_window", "newton_window"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"FixedPointOptions.{name} must be >= 1; got {getattr(self, name)!r}")
        if self.refine_steps < 0 or self.unit_circle_tol < 0:
            raise ValueError("FixedPointOptions.refine_steps and unit_circle_tol must be >= 0")


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
    hits_exp:          (E, P) int, how many initial states' Newton searches ended at the point (within
                       the slow-point de-duplication radius; 0 for points found otherwise, e.g. by
                       Levenberg-Marquardt from a failed search or by a targeted search; -1 padding)
    n_starts_e:        (E,) the number of initial states the hits count from
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
    hits_exp: np.ndarray | None = None
    n_starts_e: np.ndarray | None = None

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

    def coverage(self) -> dict[str, np.ndarray]:
        """Per member (E,), how completely the initial states covered the fixed points, from how
        many searches found each fixed point (species-richness estimators over the ``hits``):

        - ``singletons``: fixed points found by exactly one search (f1), ``doubletons`` (f2);
        - ``unseen_probability``: Good-Turing estimate of the probability that one more initial
          state would find a fixed point not yet found, f1 / n_starts;
        - ``chao1``: bias-corrected Chao1 estimate of the number of fixed points reachable from such
          initial states, ``n_found + f1 (f1 - 1) / (2 (f2 + 1))`` (counting only points found by
          the searches; a count is a lower bound when chao1 exceeds it).
        """
        hits = self.hits_exp if self.hits_exp is not None else np.zeros(self.valid_exp.shape, int)
        n = self.n_starts_e if self.n_starts_e is not None else np.zeros(len(hits))
        return coverage_estimates(hits, self.is_fixed_exp, n)

    def member(self, e: int) -> dict[str, np.ndarray]:
        """The valid points of member ``e`` (unpadded arrays)."""
        v = self.valid_exp[e]
        return {"x_pxs": self.x_expxs[e, v], "q_p": self.q_exp[e, v], "is_fixed_p": self.is_fixed_exp[e, v],
                "is_slow_p": self.is_slow_exp[e, v], "eigenvalues_pxs": self.eigenvalues_expxs[e, v],
                "tau_ms_pxs": self.tau_ms_expxs[e, v], "n_unstable_p": self.n_unstable_exp[e, v],
                "kind_p": self.kind_exp[e, v]}


def coverage_estimates(hits_xp, is_fixed_xp, n_starts_x) -> dict[str, np.ndarray]:
    """:meth:`FixedPoints.coverage` for any leading shape ``x`` (points on the last axis)."""
    hits = np.where(np.asarray(is_fixed_xp, bool), np.asarray(hits_xp), 0)
    f1, f2 = (hits == 1).sum(-1).astype(float), (hits == 2).sum(-1).astype(float)
    found = (hits > 0).sum(-1).astype(float)
    n = np.asarray(n_starts_x, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        unseen = np.where(n > 0, f1 / n, np.nan)
    return {"singletons": f1, "doubletons": f2, "unseen_probability": unseen,
            "chao1": np.where(n > 0, found + f1 * (f1 - 1) / (2 * (f2 + 1)), np.nan)}


# ----------------------------------------------------------------------------------------------
# float64 views of a network: the map F and its dense Jacobian dF/dx, for flat batches of states
# ----------------------------------------------------------------------------------------------

class _Layout:
    """Flat states sorted by member <-> a padded grid (members present, K_max, ...).

    Index bookkeeping is done in numpy: these arrays are small, and many tiny torch ops are slow
    when the machine is busy. When every member present has the same number of states, the grid is
    a reshape of the flat batch (no copy)."""

    def __init__(self, mi_b: torch.Tensor, n_members: int):
        mi = mi_b.cpu().numpy()
        members, starts, counts = np.unique(mi, return_index=True, return_counts=True)
        self.mi_b, self.n = mi_b, len(mi)
        self.members = torch.from_numpy(members).to(mi_b.device)
        self.all_members = len(members) == n_members
        self.kmax = int(counts.max()) if len(counts) else 0
        self.uniform = bool(len(counts) == 0 or (counts == self.kmax).all())
        if not self.uniform:
            self.row = torch.from_numpy(np.repeat(np.arange(len(members)), counts)).to(mi_b.device)
            self.col = torch.from_numpy(np.arange(len(mi)) - np.repeat(starts, counts)).to(mi_b.device)

    def take(self, t_exy: torch.Tensor) -> torch.Tensor:
        """The rows of a per-member tensor for the members present."""
        return t_exy if self.all_members else t_exy[self.members]

    def to_grid(self, v_bx: torch.Tensor) -> torch.Tensor:
        if self.uniform:
            return v_bx.reshape((len(self.members), self.kmax) + tuple(v_bx.shape[1:]))
        g = v_bx.new_zeros((len(self.members), self.kmax) + tuple(v_bx.shape[1:]))
        g[self.row, self.col] = v_bx
        return g

    def from_grid(self, g: torch.Tensor) -> torch.Tensor:
        if self.uniform:
            return g.reshape((self.n,) + tuple(g.shape[2:]))
        return g[self.row, self.col]


class _RateSystem:
    """``F(x) = d * x + W_eff phi(x) + c`` with ``dF/dx = diag(d) + W_eff diag(phi'(x))``.

    leaky_rate, low_rank: ``d = 1 - alpha``, ``W_eff = alpha W``, ``c = alpha (W_in u + b)``;
    plrnn: ``d = A``, ``W_eff = W`` (off-diagonal), ``c = h + C u``, ``phi = relu``.
    """

    def __init__(self, d_exs, W_exsxs, c_exs, phi_name: str):
        self.d, self.W, self.c, self.phi = d_exs, W_exsxs, c_exs, phi_name
        self.WT = W_exsxs.transpose(1, 2).contiguous()
        self.n_members = len(d_exs)

    def F(self, x_bxs, lay):
        X = lay.to_grid(x_bxs)
        out = torch.baddbmm(lay.take(self.c)[:, None, :], phi_fn(self.phi, X), lay.take(self.WT))
        out.addcmul_(lay.take(self.d)[:, None, :], X)
        return lay.from_grid(out)

    def jacobian_F(self, x_bxs, lay, shift: float = 0.0):
        """dF/dx + shift * I at each state, (b, S, S)."""
        p = phi_prime(self.phi, x_bxs, phi_fn(self.phi, x_bxs))
        if lay.uniform:
            J = lay.from_grid(lay.take(self.W)[:, None] * lay.to_grid(p)[:, :, None, :])
        else:
            J = self.W.index_select(0, lay.mi_b).mul_(p[:, None, :])
        J.diagonal(dim1=1, dim2=2).add_(self.d.index_select(0, lay.mi_b) + shift)
        return J


class _AutogradSystem:
    """Any network: F through its ``one_step`` (on a float64 copy), dF/dx by reverse-mode autograd."""

    def __init__(self, net64: Network, u_exi: torch.Tensor, chunk: int):
        self.net, self.u, self.chunk = net64, u_exi, chunk
        self.n_members = net64.n_members
        self._cache: tuple[tuple[int, ...], Network] | None = None

    def _sub(self, lay) -> Network:
        if lay.all_members:
            return self.net
        key = tuple(lay.members.tolist())
        if self._cache is None or self._cache[0] != key:
            sub = copy.copy(self.net)
            idx = list(key)
            sub.params = {k: v[idx] for k, v in self.net.params.items()}
            sub.buffers = {k: v[idx] for k, v in self.net.buffers.items()}
            sub.n_members = len(idx)
            self._cache = (key, sub)
        return self._cache[1]

    def _f(self, lay):
        net, u = self._sub(lay), lay.take(self.u)
        return lambda X: net.one_step(X, u)

    def F(self, x_bxs, lay):
        return lay.from_grid(self._f(lay)(lay.to_grid(x_bxs)))

    def jacobian_F(self, x_bxs, lay, shift: float = 0.0):
        """dF/dx + shift * I. Rows of dF/dx by one reverse-mode pass: each state is repeated S times and the i-th copy
        receives the output gradient e_i (copies are independent states, so they do not mix)."""
        f, S = self._f(lay), x_bxs.shape[1]
        X = lay.to_grid(x_bxs)
        M, K = X.shape[:2]
        eye = torch.eye(S, dtype=F64, device=x_bxs.device)
        blocks = []
        step = max(1, self.chunk // max(1, M))
        with torch.enable_grad():
            for k0 in range(0, K, step):
                Xc = X[:, k0:k0 + step]
                k = Xc.shape[1]
                Xr = Xc[:, :, None, :].expand(M, k, S, S).reshape(M, k * S, S).clone().requires_grad_(True)
                gout = eye.expand(M, k, S, S).reshape(M, k * S, S)
                (rows,) = torch.autograd.grad(f(Xr), Xr, gout)
                blocks.append(rows.reshape(M, k, S, S))  # [m, k, i, :] = dF_i/dx
        J = lay.from_grid(torch.cat(blocks, 1))
        if shift:
            J.diagonal(dim1=1, dim2=2).add_(shift)
        return J


def _float64_copy(network: Network) -> Network:
    """A shallow copy of ``network`` whose params and buffers are detached float64 copies."""
    net = copy.copy(network)
    net.params = {k: v.detach().to(F64, copy=True) for k, v in network.params.items()}
    net.buffers = {k: v.detach().to(F64, copy=True) for k, v in network.buffers.items()}
    net.dtype = F64
    return net


def _system(network: Network, u_exi: torch.Tensor, opts: FixedPointOptions):
    """The float64 system of ``network``: closed form where the network class gives its one-step map
    in rate form (:meth:`Network.rate_map`), autograd through ``one_step`` otherwise."""
    net = _float64_copy(network)
    m = net.rate_map(u_exi)
    if m is not None:
        return _RateSystem(m.decay_exs, m.weights_exsxs, m.offset_exs, m.phi), net
    return _AutogradSystem(net, u_exi, opts.jacobian_chunk), net


def _check_system(system, net64: Network, u_exi: torch.Tensor, x_exkxs: torch.Tensor):
    """The closed-form map must reproduce the network's own one_step (guards against drift)."""
    if isinstance(system, _AutogradSystem):
        return
    E, K, S = x_exkxs.shape
    k = min(K, 4)
    lay = _Layout(torch.arange(E, device=x_exkxs.device).repeat_interleave(k), E)
    ref = net64.one_step(x_exkxs[:, :k], u_exi).reshape(E * k, S)
    err = (system.F(x_exkxs[:, :k].reshape(E * k, S), lay) - ref).abs().max()
    if not bool(err <= 1e-10 * (1 + ref.abs().max())):
        raise RuntimeError(f"the closed-form map for kind {net64.kind!r} disagrees with network.one_step "
                           f"(max error {float(err):.3g}); update {type(net64).__name__}.rate_map")


# ----------------------------------------------------------------------------------------------
# batched solvers: damped Newton (the search) and Levenberg-Marquardt (for what Newton cannot do)
# ----------------------------------------------------------------------------------------------

def _bdot(a, b):
    return (a * b).sum(-1)


def _residual(system, x_bxs, lay):
    G = system.F(x_bxs, lay) - x_bxs
    return G, 0.5 * _bdot(G, G)


def _solve(A_bxsxs: torch.Tensor, rhs_bxs: torch.Tensor) -> torch.Tensor:
    """Solve ``A x = rhs`` per state (NaN where A is singular). On the CPU numpy's batched LAPACK
    solve is about twice as fast as torch's for many small systems; torch's solve_ex is the
    fallback, and the solver on other devices (a GPU)."""
    if A_bxsxs.device.type == "cpu":
        try:
            return torch.from_numpy(np.linalg.solve(A_bxsxs.numpy(), rhs_bxs.numpy()[..., None])[..., 0])
        except np.linalg.LinAlgError:
            pass
    x, info = torch.linalg.solve_ex(A_bxsxs, rhs_bxs)
    x[info != 0] = float("nan")
    return x


def _damped_newton(system, x_bxs, mi_b, q_stop_b, max_step_b, *, max_iter: int, opts: FixedPointOptions):
    """Newton's method on ``G(x) = 0`` with a backtracking (Armijo) line search on q, per state.

    Steps are shortened to at most ``max_step_b``. A state stops when ``q <= q_stop`` (converged),
    when no step length down to 2^-line_search_steps lowers q enough, when J is singular, or when q
    fell by less than ``progress_factor`` over the last ``newton_window`` steps (failed: typically
    near a slow point, where Newton's method cannot converge), or after max_iter steps.
    Returns (x, G, q, status) for every state.
    """
    x = x_bxs.clone()
    G, q = _residual(system, x, _Layout(mi_b, system.n_members))
    status = torch.full((len(x),), _RUNNING, dtype=torch.int8, device=x.device)
    status[q <= q_stop_b] = _CONVERGED
    status[~torch.isfinite(q)] = _STALLED
    q_window = q.clone()
    for it in range(max_iter):
        if it and it % opts.newton_window == 0:  # Newton's method that does not converge fast is left to LM
            status[(status == _RUNNING) & (q > opts.progress_factor * q_window)] = _STALLED
            q_window = q.clone()
        idx = torch.nonzero(status == _RUNNING).squeeze(1)
        if idx.numel() == 0:
            break
        lay = _Layout(mi_b[idx], system.n_members)
        xa, Ga, qa = x[idx], G[idx], q[idx]
        dx = _solve(system.jacobian_F(xa, lay, shift=-1.0), -Ga)
        shorten = torch.clamp(max_step_b[idx] / dx.norm(dim=-1), max=1.0)
        dx = dx * shorten[:, None]
        singular = ~torch.isfinite(dx).all(-1)
        t = shorten.clone()  # the step as a fraction of the full Newton step
        done = singular.clone()
        accepted = torch.zeros(len(idx), dtype=torch.bool, device=x.device)
        for _ in range(opts.line_search_steps):
            todo = torch.nonzero(~done).squeeze(1)
            if todo.numel() == 0:
                break
            xt = xa[todo] + (t[todo] / shorten[todo])[:, None] * dx[todo]
            Gt, qt = _residual(system, xt, _Layout(mi_b[idx[todo]], system.n_members))
            # Armijo on q along the Newton direction, whose directional derivative is -2 q per unit t
            ok = torch.isfinite(qt) & (qt <= (1 - 2 * opts.armijo * t[todo]) * qa[todo])
            good = todo[ok]
            x[idx[good]], G[idx[good]], q[idx[good]] = xt[ok], Gt[ok], qt[ok]
            accepted[good] = True
            done[good] = True
            t[todo[~ok]] *= 0.5
        new = torch.full((len(idx),), _RUNNING, dtype=torch.int8, device=x.device)
        new[~accepted] = _STALLED
        new[q[idx] <= q_stop_b[idx]] = _CONVERGED
        status[idx] = new
    status[status == _RUNNING] = _MAXITER
    return x, G, q, status


def _levenberg_marquardt(system, x_bxs, mi_b, scale_b, q_stop_b, q_keep_b, *, max_iter: int,
                         opts: FixedPointOptions):
    """Minimise q per state by Levenberg-Marquardt with Nielsen's (1999) damping update: finds the
    local minima of q with q > 0 (slow points) where Newton's method fails. Dense, for few states.
    A state above ``q_keep_b`` (the slow-point threshold) whose q has not fallen by the factor
    ``progress_factor`` over the last ``progress_window`` iterations is abandoned (it would end as
    neither a fixed nor a slow point). Returns (x, G, q, status) for every state."""
    x = x_bxs.clone()
    G, q = _residual(system, x, _Layout(mi_b, system.n_members))
    B = len(x)
    mu = torch.full((B,), float("nan"), dtype=F64, device=x.device)
    nu = torch.full((B,), 2.0, dtype=F64, device=x.device)
    rejections = torch.zeros(B, dtype=torch.long, device=x.device)
    status = torch.full((B,), _RUNNING, dtype=torch.int8, device=x.device)
    status[q <= q_stop_b] = _CONVERGED
    status[~torch.isfinite(q)] = _STALLED
    q_window = q.clone()
    for it in range(max_iter):
        if it and it % opts.progress_window == 0:
            slow = (q > q_keep_b) & (q > opts.progress_factor * q_window) & (status == _RUNNING)
            status[slow] = _STALLED
            q_window = q.clone()
        idx = torch.nonzero(status == _RUNNING).squeeze(1)
        if idx.numel() == 0:
            break
        lay = _Layout(mi_b[idx], system.n_members)
        xa, Ga, qa, sa = x[idx], G[idx], q[idx], scale_b[idx]
        J = system.jacobian_F(xa, lay, shift=-1.0)
        g = torch.bmm(J.transpose(1, 2), Ga[..., None])[..., 0]  # gradient of q
        A = torch.bmm(J.transpose(1, 2), J)  # J^T J (+ mu I below)
        mua = mu[idx]
        mu0 = opts.damping0 * torch.diagonal(A, dim1=1, dim2=2).amax(-1).clamp_min(1e-300)
        mua = torch.where(torch.isnan(mua), mu0, mua)
        A.diagonal(dim1=1, dim2=2).add_(mua[:, None])
        dx = _solve(A, -g)
        solved = torch.isfinite(dx).all(-1)
        dx[~solved] = 0.0
        xn = xa + dx
        Gn, qn = _residual(system, xn, lay)
        Jdx = torch.bmm(J, dx[..., None])[..., 0]
        pred = -_bdot(g, dx) - 0.5 * _bdot(Jdx, Jdx)  # decrease of the Gauss-Newton model of q
        ok = torch.isfinite(qn) & (pred > 0) & (qn < qa) & solved
        rho = torch.where(ok, (qa - qn) / torch.where(ok, pred, 1.0), torch.zeros_like(qa))
        factor = torch.clamp(1 - (2 * rho - 1) ** 3, min=1.0 / 3.0)
        mu[idx] = torch.where(ok, mua * factor, mua * nu[idx])
        nu[idx] = torch.where(ok, torch.full_like(qa, 2.0), nu[idx] * 2)
        rejections[idx] = torch.where(ok, torch.zeros_like(idx), rejections[idx] + 1)
        x[idx[ok]], G[idx[ok]], q[idx[ok]] = xn[ok], Gn[ok], qn[ok]
        small_step = ok & (dx.norm(dim=-1) <= opts.step_rtol * sa)
        flat = ok & ((qa - qn) <= opts.q_rtol * qa) & (pred <= opts.q_rtol * qa)
        new = torch.full((len(idx),), _RUNNING, dtype=torch.int8, device=x.device)
        new[small_step | flat | (rejections[idx] >= opts.max_rejections)] = _STALLED
        new[q[idx] <= q_stop_b[idx]] = _CONVERGED
        status[idx] = new
    status[status == _RUNNING] = _MAXITER
    return x, G, q, status


def deduplicate(x_nxs: np.ndarray, q_n: np.ndarray, radius_n) -> np.ndarray:
    """Indices of representatives, greedily by increasing q (ties: lexicographic in x): each
    remaining point within ``radius_n`` (its own radius, state units) of a representative is dropped.

    x_nxs: (n, S) points, q_n: (n,) their q (NaN counts as +inf), radius_n: scalar or (n,).
    Returns the sorted indices of the kept points.
    """
    x_nxs, q_n = np.asarray(x_nxs, float), np.asarray(q_n, float)
    n = len(x_nxs)
    radius_n = np.broadcast_to(np.asarray(radius_n, float), (n,))
    if n == 0:
        return np.zeros(0, dtype=int)
    order = np.lexsort(tuple(x_nxs[:, ::-1].T) + (np.where(np.isnan(q_n), np.inf, q_n),))
    alive = np.isfinite(x_nxs).all(1)
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


def _dedup_members(x_bxs: torch.Tensor, q_b: torch.Tensor, mi_b: torch.Tensor, radius_b: torch.Tensor) -> torch.Tensor:
    """:func:`deduplicate` within each member; returns the kept flat indices, sorted."""
    xn, qn, mn, rn = (t.cpu().numpy() for t in (x_bxs, q_b, mi_b, radius_b))
    keep = [sel[deduplicate(xn[sel], qn[sel], rn[sel])] for e in np.unique(mn) for sel in [np.flatnonzero(mn == e)]]
    return torch.as_tensor(np.sort(np.concatenate(keep)) if keep else np.zeros(0, int), dtype=torch.long,
                           device="cpu").to(x_bxs.device)


# ----------------------------------------------------------------------------------------------
# classification and assembly
# ----------------------------------------------------------------------------------------------

def _eig_sorted(J_pxsxs: np.ndarray) -> np.ndarray:
    """Eigenvalues by modulus descending, ties by real then imaginary part descending."""
    if len(J_pxsxs) == 0:
        return np.zeros((0, J_pxsxs.shape[-1]), complex)
    # torch's LAPACK (numpy's OpenBLAS geev can be 100x slower when torch's threads are spinning)
    lam = torch.linalg.eigvals(torch.as_tensor(J_pxsxs, device="cpu")).numpy().astype(complex)
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


def point_order(x_pxs: np.ndarray, n_unstable_p: np.ndarray, fixed_p: np.ndarray, grid: float) -> np.ndarray:
    """The deterministic order of a member's points: fixed before slow, then by ``n_unstable``, then
    lexicographically by the coordinates rounded to ``grid`` (robust to rounding noise)."""
    if len(x_pxs) == 0:
        return np.zeros(0, int)
    rounded = np.round(x_pxs / grid)
    return np.lexsort(tuple(rounded[:, ::-1].T) + (n_unstable_p, ~np.asarray(fixed_p, bool)))


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
        order = point_order(pe["x_pxs"], n_uns, fixed, dedup_rtol * scale_e[e])
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
        return torch.as_tensor(np.array(a, dtype=float), dtype=F64, device="cpu")
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
    max_iter: damped-Newton iterations of the search (default ``options.max_iter``).
    options:  a :class:`FixedPointOptions` (default :data:`DEFAULTS`).

    Returns a :class:`FixedPoints` (P = the largest number of points of any member).
    """
    u, x0 = _check_inputs(network, u_exi, x0_exkxs)
    if not isinstance(options, FixedPointOptions):
        raise ValueError(f"options must be a FixedPointOptions; got {type(options).__name__}")
    u, x0 = u.to(network.device), x0.to(network.device)  # (the search runs where the network is)
    eps_net = float(torch.finfo(network.dtype).eps) if network.dtype.is_floating_point else EPS64
    system, net64 = _system(network, u, options)
    with torch.no_grad():
        _check_system(system, net64, u, x0)
    return search_system(system, u, x0, eps_net=eps_net, dt_ms=network.dt_ms, tol_q=tol_q, slow_q=slow_q,
                         max_iter=max_iter, options=options)


def search_system(system, u_exi: torch.Tensor, x0_exkxs: torch.Tensor, *, eps_net: float, dt_ms: float, tol_q=None,
                  slow_q=None, max_iter: int | None = None, options: FixedPointOptions = DEFAULTS,
                  method: str = "newton_lm") -> FixedPoints:
    """The search of :func:`find_fixed_points` on any float64 map given as a system object: one with
    ``n_members``, ``F(x_bxs, lay)`` (the map, or ``x + G(x)`` for a residual ``G`` whose zeros are
    wanted) and ``jacobian_F(x_bxs, lay, shift)`` (its Jacobian plus ``shift * I``), where ``lay`` is
    a :class:`_Layout` of the member index of every state. ``eps_net``: the machine epsilon the fixed
    point tolerance scales with; ``u_exi``, ``x0_exkxs``: float64 tensors on the system's device.
    The points are classified by the eigenvalues of ``jacobian_F`` (callers whose ``F`` is not the
    map itself classify them again)."""
    u, x0, opts = u_exi, x0_exkxs, options
    max_iter = opts.max_iter if max_iter is None else int(max_iter)
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1; got {max_iter}")
    E, K, S = x0.shape
    norms_exk = x0.norm(dim=-1)
    scale_e = torch.clamp(torch.sqrt((norms_exk ** 2).mean(1)), min=opts.scale_floor)
    tol_q_e = _per_member(tol_q, E, "tol_q")
    if tol_q_e is None:
        tol_q_e = (0.5 * (opts.fixed_eps_factor * eps_net * scale_e) ** 2).cpu().numpy()
    slow_q_e = _per_member(slow_q, E, "slow_q")
    if slow_q_e is None:
        slow_q_e = (0.5 * (opts.slow_rtol * scale_e) ** 2).cpu().numpy()
    slow_q_e = np.maximum(slow_q_e, tol_q_e)
    tol_q_t, slow_q_t = (torch.as_tensor(v, device="cpu").to(x0.device) for v in (tol_q_e, slow_q_e))

    with torch.no_grad():
        x = x0.reshape(E * K, S)
        mi = torch.arange(E, device=x0.device).repeat_interleave(K)
        scale_b = scale_e[mi]
        q_solve_b = torch.minimum(0.5 * (opts.solve_rtol * scale_b) ** 2, tol_q_t[mi])
        q_search_b = torch.maximum(0.5 * (opts.search_rtol * scale_b) ** 2, q_solve_b)
        # 1. search: damped Newton from every initial state
        x, G, q, status = _damped_newton(system, x, mi, q_search_b, opts.max_step_rtol * scale_b,
                                         max_iter=max_iter, opts=opts)
        ends, ends_mi, ends_ok = x.clone(), mi.clone(), status == _CONVERGED  # for the hits
        # 2. merge the states that reached the same point
        keep = _dedup_members(x, q, mi, opts.dedup_rtol * scale_b)
        x, G, q, status, mi, scale_b = x[keep], G[keep], q[keep], status[keep], mi[keep], scale_b[keep]
        q_solve_b, q_search_b = q_solve_b[keep], q_search_b[keep]
        # 3. Levenberg-Marquardt where Newton failed: slow points (local minima of q), singular J
        fb = torch.nonzero(status != _CONVERGED).squeeze(1)
        if fb.numel():
            xf, Gf, qf, _ = _levenberg_marquardt(system, x[fb], mi[fb], scale_b[fb], q_solve_b[fb], slow_q_t[mi[fb]],
                                                 max_iter=opts.lm_max_iter, opts=opts)
            x[fb], G[fb], q[fb] = xf, Gf, qf
        # 4. refine the (near-)fixed points with short Newton steps
        ref = torch.nonzero(torch.isfinite(q) & (q <= torch.maximum(q_search_b, tol_q_t[mi]))).squeeze(1)
        if ref.numel() and opts.refine_steps:
            xr, Gr, qr, _ = _damped_newton(system, x[ref], mi[ref], q_solve_b[ref], opts.dedup_rtol * scale_b[ref],
                                           max_iter=opts.refine_steps, opts=opts)
            x[ref], G[ref], q[ref] = xr, Gr, qr
        # 5. select: finite, not an outlier, q <= slow_q
        max_norm_e = torch.clamp(norms_exk.amax(1), min=opts.scale_floor)
        good = torch.isfinite(q) & torch.isfinite(x).all(-1) & (q <= slow_q_t[mi])
        good &= x.norm(dim=-1) <= opts.outlier_factor * max_norm_e[mi]
        x, q, mi, scale_b = x[good], q[good], mi[good], scale_b[good]
        J_all = system.jacobian_F(x, _Layout(mi, E)) if len(x) else torch.zeros(0, S, S, dtype=F64, device=x.device)

    points = []
    xn, qn, min_, sn, Jn = (t.cpu().numpy() for t in (x, q, mi, scale_b, J_all))
    for e in range(E):
        sel = np.flatnonzero(min_ == e)
        fixed = qn[sel] <= tol_q_e[e]
        radius = np.where(fixed, opts.dedup_rtol, opts.slow_dedup_rtol) * sn[sel]
        k = sel[deduplicate(xn[sel], qn[sel], radius)]
        points.append(dict(x_pxs=xn[k], q_p=qn[k], J_pxsxs=Jn[k]))
    fp = _assemble(points, E, S, u.cpu().numpy(), tol_q_e, slow_q_e, scale_e.cpu().numpy(), dt_ms,
                   method, opts.unit_circle_tol, opts.dedup_rtol)
    fp.hits_exp = _hits(fp, ends.cpu().numpy(), ends_mi.cpu().numpy(), ends_ok.cpu().numpy(), opts.slow_dedup_rtol)
    fp.n_starts_e = np.full(E, K)
    return fp


def _hits(fp: FixedPoints, ends_bxs: np.ndarray, mi_b: np.ndarray, ok_b: np.ndarray, rtol: float) -> np.ndarray:
    """(E, P) how many converged Newton searches ended within ``rtol * scale`` of each point (-1: padding)."""
    hits = np.where(fp.valid_exp, 0, -1)
    for e in range(fp.valid_exp.shape[0]):
        v = np.flatnonzero(fp.valid_exp[e])
        ends = ends_bxs[(mi_b == e) & ok_b]
        if len(v) == 0 or len(ends) == 0:
            continue
        d = np.linalg.norm(ends[:, None, :] - fp.x_expxs[e, v][None], axis=-1)   # (ends, points)
        nearest = d.argmin(1)
        close = d[np.arange(len(ends)), nearest] <= rtol * fp.state_scale_e[e]
        hits[e, v] = np.bincount(nearest[close], minlength=len(v))
    return hits


def merge_fixed_points(a: FixedPoints, b: FixedPoints, options: FixedPointOptions = None) -> FixedPoints:
    """The points of ``a`` and of ``b`` (two searches of the same members and context, with the same
    thresholds: e.g. ``b`` a targeted search for saddles), de-duplicated as the finder does (a point
    of ``b`` already in ``a`` is dropped); hits and starts are those of ``a``."""
    opts = options or DEFAULTS
    E, S = a.x_expxs.shape[0], a.x_expxs.shape[2]
    rows = []
    for e in range(E):
        pa, pb = a.member(e), b.member(e)
        x = np.concatenate([pa["x_pxs"], pb["x_pxs"]])
        q = np.concatenate([pa["q_p"], pb["q_p"]])
        fixed = np.concatenate([pa["is_fixed_p"], pb["is_fixed_p"]])
        scale = a.state_scale_e[e]
        radius = np.where(fixed, opts.dedup_rtol, opts.slow_dedup_rtol) * scale
        # points of a first (they keep their hits): dedup b's points against a's and each other
        from_a = np.arange(len(x)) < len(pa["q_p"])
        order = np.r_[np.flatnonzero(from_a), np.flatnonzero(~from_a)[deduplicate(x[~from_a], q[~from_a], radius[~from_a])]]
        keep = []
        for i in order:
            if all(np.linalg.norm(x[i] - x[j]) > max(radius[i], radius[j]) for j in keep):
                keep.append(i)
        keep = np.asarray(keep, int)
        hits = np.concatenate([a.hits_exp[e, a.valid_exp[e]] if a.hits_exp is not None else np.zeros(len(pa["q_p"]), int),
                               np.zeros(len(pb["q_p"]), int)])
        cat = {k: np.concatenate([pa[k], pb[k]])[keep] for k in pa}
        order = point_order(cat["x_pxs"], cat["n_unstable_p"], cat["is_fixed_p"], opts.dedup_rtol * scale)
        rows.append(({k: v[order] for k, v in cat.items()}, hits[keep][order]))
    P = max([len(r[1]) for r in rows] + [0])
    out = FixedPoints(
        x_expxs=np.full((E, P, S), np.nan), q_exp=np.full((E, P), np.nan), valid_exp=np.zeros((E, P), bool),
        is_fixed_exp=np.zeros((E, P), bool), is_slow_exp=np.zeros((E, P), bool),
        eigenvalues_expxs=np.full((E, P, S), np.nan + 1j * np.nan), tau_ms_expxs=np.full((E, P, S), np.nan),
        n_unstable_exp=np.full((E, P), -1, dtype=np.int64), kind_exp=np.full((E, P), -1, dtype=np.int64),
        u_exi=a.u_exi, tol_q_e=a.tol_q_e, slow_q_e=a.slow_q_e, state_scale_e=a.state_scale_e, dt_ms=a.dt_ms,
        method=a.method, hits_exp=np.full((E, P), -1, dtype=np.int64), n_starts_e=a.n_starts_e)
    for e, (r, hits) in enumerate(rows):
        n = len(hits)
        out.x_expxs[e, :n], out.q_exp[e, :n], out.valid_exp[e, :n] = r["x_pxs"], r["q_p"], True
        out.is_fixed_exp[e, :n], out.is_slow_exp[e, :n] = r["is_fixed_p"], r["is_slow_p"]
        out.eigenvalues_expxs[e, :n], out.tau_ms_expxs[e, :n] = r["eigenvalues_pxs"], r["tau_ms_pxs"]
        out.n_unstable_exp[e, :n], out.kind_exp[e, :n], out.hits_exp[e, :n] = r["n_unstable_p"], r["kind_p"], hits
    return out


def segment_starts(fp: FixedPoints, fractions=(0.25, 0.5, 0.75)) -> np.ndarray | None:
    """Initial states for a targeted saddle search: points on the segments between every pair of
    stable fixed points of a member (a saddle usually sits on the boundary between two attractors'
    basins, near such a segment). (E, K, S), members with fewer pairs padded by repeating their
    segment points or, without any pair, their first point; None when no member has two stable points."""
    E, _, S = fp.x_expxs.shape
    per = []
    for e in range(E):
        stable = fp.x_expxs[e][fp.valid_exp[e] & fp.is_fixed_exp[e] & (fp.kind_exp[e] == STABLE)]
        pts = [stable[i] + f * (stable[j] - stable[i]) for i in range(len(stable)) for j in range(i + 1, len(stable))
               for f in fractions]
        per.append(np.asarray(pts).reshape(-1, S))
    K = max(len(p) for p in per)
    if K == 0:
        return None
    out = np.empty((E, K, S))
    for e, pts in enumerate(per):
        if len(pts) == 0:
            v = fp.x_expxs[e][fp.valid_exp[e]]
            pts = v[:1] if len(v) else np.zeros((1, S))
        out[e] = pts[np.arange(K) % len(pts)]
    return out


def plrnn_exact_fixed_points(network: Network, u_exi, max_units: int = 12, *,
                             options: FixedPointOptions = DEFAULTS) -> FixedPoints:
    """All fixed points of a PLRNN, exactly, region by region (Durstewitz 2017).

    Within the region of ReLU sign pattern ``D`` (``D_i = 1`` where ``z_i > 0``) the map is linear,
    ``z' = (A + W D) z + h + C u``, so its fixed point solves ``(A + W D - I) z = -(h + C u)``; it is
    kept when its sign pattern is ``D`` (within ``1e-10 max(1, |z|_inf)``; points on a region
    boundary, found in two regions, are de-duplicated). Regions whose matrix is singular (a
    continuum of fixed points, or none) are skipped, and so are solutions whose residual q exceeds
    the slow-point threshold (ill-conditioned regions). Cost: 2^N solves of N x N systems per member.

    network: a PLRNN with N <= ``max_units`` units; u_exi: (E, I) input context per member.
    The state scale (for the tolerances) is ``max(scale_floor, RMS norm of the solutions)``.
    """
    if getattr(network, "kind", None) != "plrnn":
        raise ValueError(f"plrnn_exact_fixed_points needs a PLRNN; got kind {getattr(network, 'kind', None)!r}. "
                         "Use find_fixed_points for other kinds")
    u, _ = _check_inputs(network, u_exi)
    u = u.to(network.device)
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
    D_rxn = torch.tensor([[(r >> i) & 1 for i in range(N)] for r in range(2 ** N)], dtype=F64, device=u.device)  # (2^N, N)
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
            z, q = z[q <= slow_q_e[-1]], q[q <= slow_q_e[-1]]  # drop numerically meaningless solutions
            zn, qn = z.cpu().numpy(), q.cpu().numpy()
            keep = deduplicate(zn, qn, np.full(len(zn), opts.dedup_rtol * scale))
            zk = z[torch.as_tensor(keep, device="cpu").to(z.device)]
            J = W[e][None] * (zk > 0).to(F64)[:, None, :] + torch.diag(A[e])[None]
            points.append(dict(x_pxs=zn[keep], q_p=qn[keep], J_pxsxs=J.cpu().numpy()))
    return _assemble(points, E, N, u.cpu().numpy(), np.array(tol_q_e), np.array(slow_q_e), np.array(scales),
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
