"""Optimal k-pole approximations of a linear filter: the plateau levels theory predicts (science.md §8).

A linear network ``h_t = M h_{t-1} + u x_t``, ``y_t = v . h_t`` driven by white noise of variance
``sigma^2`` from rest has the impulse response ``g_t = v M^t u``, and its expected squared error on
the step t against the target ``y*_t = sum_k h_k x_{t-k}`` is ``sigma^2 sum_{k <= t} (h_k - g_k)^2``.
Averaged over the scored steps of a trial it is

    L(g) = sigma^2 sum_k w_k (h_k - g_k)^2,      w_k = fraction of scored steps t with t >= k

(tasks/filtered_noise.py, ``lag_weights``). A network whose effective recurrence has k eigenvalues
outside a small bulk has (to the bulk's order) an impulse response with k poles, ``g_t = sum_j c_j
p_j^t``; the learning curve of a network trained from small weights sits on plateaus at the errors of
optimal k-pole approximations (Saxe et al. 2014; Bordelon, Cotler, Pehlevan & Zavatone-Veth 2025),
and gradient descent may reach a local optimum rather than the global one - so every local optimum
is computed here.

Method (variable projection): for a denominator ``A(z) = 1 + a_1 z^-1 + ... + a_k z^-k`` the k-pole
responses are the span of the impulse response f of ``1 / A`` and its shifts by 1 .. k-1 steps; the
best residues are a weighted linear least-squares projection, so the error is a function of the
poles alone. The denominator is parametrised by its reflection coefficients ``kappa_i = tanh(theta_i)``
(the step-up recursion; every theta gives a stable A, every stable A one theta), and the error is
minimised over theta by BFGS from a grid of starting pole sets (real poles, complex pairs). The
minima found are de-duplicated by their poles and kept when the Hessian (finite differences) has no
negative eigenvalue; minima at the unit circle (a reflection coefficient at +-1) are dropped.

One pole in closed form (the test's oracle): for a pole p the best residue is the projection
``c(p) = <h, p^t>_w / <p^t, p^t>_w``, and ``L(p) = sigma^2 (<h, h>_w - <h, p^t>_w^2 / <p^t, p^t>_w)``.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.signal import lfilter, residuez

#: the reflection-coefficient grid's real poles and complex pairs (radius, angle) where searches start
START_REAL_POLES = (-0.9, -0.5, 0.0, 0.3, 0.6, 0.8, 0.9, 0.97)
START_PAIRS = tuple((r, a) for r in (0.5, 0.8, 0.95) for a in np.pi * np.array([1, 2, 3, 4, 5]) / 6)
#: two optima are the same when their sorted poles differ by less than this
POLE_TOL = 1e-3
#: an optimum with a reflection coefficient this close to +-1 lies on the unit circle (dropped)
BOUNDARY = 1e-6
#: a stationary point is a minimum when the smallest Hessian eigenvalue (in theta) is above
#: -HESSIAN_TOL times the largest
HESSIAN_TOL = 1e-4


@dataclass(frozen=True)
class PoleFit:
    """One local optimum of the k-pole approximation.

    k: the number of poles;  error: the expected task loss at the optimum (input variance included);
    poles, residues: (k,) complex, sorted by decreasing real part then imaginary part;
    response: the approximating impulse response g_t over the weighted lags."""

    k: int
    error: float
    poles: np.ndarray
    residues: np.ndarray
    response: np.ndarray


# --------------------------------------------------------------------------------------------- algebra
def step_up(kappa: np.ndarray) -> np.ndarray:
    """Reflection coefficients (k,) -> denominator [1, a_1, ..., a_k] (Levinson step-up)."""
    a = np.zeros(len(kappa) + 1)
    a[0] = 1.0
    for m, km in enumerate(kappa, 1):  # a[m] is still 0 here: a_m = kappa_m
        a[:m + 1] = a[:m + 1] + km * a[m::-1]
    return a


def step_down(a: np.ndarray) -> np.ndarray:
    """Denominator [1, a_1, ..., a_k] -> reflection coefficients (k,) (Levinson step-down); the
    inverse of :func:`step_up` for stable denominators."""
    a = np.asarray(a, float)
    kappa = []
    while len(a) > 1:
        km = a[-1]
        kappa.append(km)
        a = (a - km * a[::-1])[:-1] / (1.0 - km ** 2)
    return np.array(kappa[::-1])


def denominator(poles: np.ndarray) -> np.ndarray:
    """[1, a_1, ..., a_k] with roots ``poles`` (a conjugate-closed set: real coefficients)."""
    return np.real(np.poly(np.asarray(poles, complex))) if len(poles) else np.ones(1)


def _sorted(poles: np.ndarray, residues: np.ndarray | None = None):
    order = np.lexsort((-np.imag(poles), -np.real(poles)))
    return poles[order], (None if residues is None else residues[order])


class _Problem:
    """Weighted least squares of a target impulse response h_t (t < T) with weights w_t."""

    def __init__(self, h_t: np.ndarray, w_t: np.ndarray, variance: float):
        self.h, self.w, self.var = np.asarray(h_t, float), np.asarray(w_t, float), float(variance)
        if self.h.shape != self.w.shape or self.h.ndim != 1:
            raise ValueError(f"expected a response and weights of one shape (lags,), got {self.h.shape} and {self.w.shape}")
        if (self.w < 0).any():
            raise ValueError("lag weights must be non-negative")
        self.delta = np.zeros(len(self.h))
        self.delta[0] = 1.0
        self.hh = float((self.w * self.h ** 2).sum())

    def basis(self, a: np.ndarray) -> np.ndarray:
        """(T, k): the impulse response of 1 / A and its shifts by 0 .. k-1 steps."""
        f = lfilter([1.0], a, self.delta)
        k = len(a) - 1
        G = np.zeros((len(f), k))
        for i in range(k):
            G[i:, i] = f[:len(f) - i]
        return G

    def project(self, a: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """(error, numerator b, approximating response g) for the denominator ``a``."""
        if len(a) == 1:
            return self.var * self.hh, np.zeros(0), np.zeros_like(self.h)
        G = self.basis(a)
        Gw = G.T * self.w
        b = np.linalg.lstsq(Gw @ G, Gw @ self.h, rcond=None)[0]  # the weighted normal equations (k x k)
        g = G @ b
        return self.var * float((self.w * (self.h - g) ** 2).sum()), b, g

    def error_theta(self, theta: np.ndarray) -> float:
        return self.project(step_up(np.tanh(theta)))[0]


# --------------------------------------------------------------------------------------------- search
def start_pole_sets(k: int) -> list[np.ndarray]:
    """The starting pole sets for k poles: every multiset of k grid poles, and every set with one
    complex pair from the pair grid and k - 2 real grid poles (two pairs for k >= 4 are not seeded)."""
    sets = [np.array(c, complex) for c in itertools.combinations_with_replacement(START_REAL_POLES, k)]
    if k >= 2:
        for (r, ang), rest in itertools.product(START_PAIRS, itertools.combinations_with_replacement(START_REAL_POLES, k - 2)):
            z = r * np.exp(1j * ang)
            sets.append(np.array([z, z.conjugate(), *rest], complex))
    return sets


def _hessian_min_ratio(f, x: np.ndarray, h: float = 1e-4) -> float:
    """Smallest / largest |eigenvalue| of the finite-difference Hessian of f at x (signed)."""
    n = len(x)
    H = np.zeros((n, n))
    f0 = f(x)
    for i in range(n):
        for j in range(i, n):
            ei, ej = np.eye(n)[i] * h, np.eye(n)[j] * h
            H[i, j] = H[j, i] = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (4 * h * h) \
                if i != j else (f(x + ei) - 2 * f0 + f(x - ei)) / (h * h)
    ev = np.linalg.eigvalsh(H)
    scale = max(np.abs(ev).max(), 1e-300)
    return float(ev.min() / scale)


def optimal_approximations(h_t: np.ndarray, w_t: np.ndarray, max_poles: int, variance: float = 1.0,
                           ) -> dict[int, list[PoleFit]]:
    """Every local optimum of the k-pole approximation of the impulse response ``h_t`` under the lag
    weights ``w_t``, for k = 0 .. max_poles: k -> optima sorted by error (the first is the global one
    found). ``variance``: the input's, which scales every error."""
    prob = _Problem(h_t, w_t, variance)
    out: dict[int, list[PoleFit]] = {0: [PoleFit(0, prob.var * prob.hh, np.zeros(0, complex), np.zeros(0, complex),
                                                  np.zeros_like(prob.h))]}
    for k in range(1, max_poles + 1):
        found: list[PoleFit] = []
        for start in start_pole_sets(k):
            kappa0 = np.clip(step_down(denominator(start)), -0.999, 0.999)
            res = minimize(prob.error_theta, np.arctanh(kappa0), method="BFGS",
                           options={"gtol": 1e-10 * max(prob.var * prob.hh, 1e-300), "maxiter": 2000})
            kappa = np.tanh(res.x)
            if (1 - np.abs(kappa) < BOUNDARY).any():
                continue
            a = step_up(kappa)
            poles = np.roots(a)
            poles, _ = _sorted(poles)
            if any(len(p.poles) == k and np.abs(p.poles - poles).max() < POLE_TOL for p in found):
                continue
            if _hessian_min_ratio(prob.error_theta, res.x) < -HESSIAN_TOL:
                continue  # a saddle where BFGS stopped
            err, b, g = prob.project(a)
            r, p, _ = residuez(b, a)
            p, r = _sorted(np.asarray(p, complex), np.asarray(r, complex))
            found.append(PoleFit(k, err, p, r, g))
        out[k] = sorted(found, key=lambda f: f.error)
    return out


# --------------------------------------------------------------------------------------------- one pole
def one_pole_error(p: np.ndarray, h_t: np.ndarray, w_t: np.ndarray, variance: float = 1.0) -> np.ndarray:
    """The error of the best approximation with the single real pole p (closed form: the residue is
    the projection of h on p^t under the weights), for an array of poles."""
    p = np.atleast_1d(np.asarray(p, float))
    t = np.arange(len(h_t))
    basis = p[:, None] ** t[None, :]
    hb = (w_t * h_t * basis).sum(1)
    bb = (w_t * basis ** 2).sum(1)
    return variance * ((w_t * h_t ** 2).sum() - hb ** 2 / bb)
