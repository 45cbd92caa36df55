"""Time to find and classify the fixed points of a 100-unit leaky rate network: bioplastic vs Adam on q.

The network (float32, N = 100, dt = 20 ms, tau = 100 ms, tanh) has a random part of gain 0.9 plus a
self-exciting rank-2 part of strength 2, ``W = 0.9 chi + 2 (m1 m1^T + m2 m2^T) / N``, so it has
several attractors, saddles between them and an unstable point (a "trained-like" phase portrait).
1024 initial states are drawn from 64 noise-free trajectories started at random states, plus
Gaussian noise (std 0.1).

- bioplastic: :func:`bioplastic.analysis.fixed_points.find_fixed_points` with its defaults, except
  the tolerance on q (both use ``--tol-q``, default 1e-12, fixed-point-finder's default).
- reference:  the Sussillo & Barak (2013) recipe as in the fixed-point-finder package: Adam on the
  mean of q over all states jointly, through autograd on the network's ``one_step`` (a detached
  float64 copy, so that q can reach the tolerance), learning rate 0.05 times 0.7 every 1000
  iterations (the fastest of the schedules tried, including fixed-point-finder's PyTorch default of
  every 500), until every state has q < tol_q or stopped improving (|dq| < 1e-20), or, checked every
  50 iterations (check time not counted), until its recovered set equals bioplastic's: an oracle
  stop in the reference's favour. Then the same outlier rule and de-duplication, Jacobians at the
  unique points by one backward pass per state dimension (as fixed-point-finder does), eigenvalues.

Prints both times, the ratio, and whether the recovered sets of fixed points are equal (same count,
each point matched one to one within 10x the de-duplication radius, same number of unstable modes).
Both run on the same torch thread count (``--threads``, default 1: small batched kernels are much
slower with several threads on a busy machine).

    python benchmarks/fixed_points.py [--repeats 3] [--threads 1] [--tol-q 1e-12]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bioplastic.analysis.fixed_points import DEFAULTS, deduplicate, find_fixed_points, time_constants_ms
from bioplastic.networks import build_network

N, DT, TAU, K = 100, 20.0, 100.0, 1024


def make_network(seed: int = 0):
    rng = np.random.default_rng(seed)
    net = build_network("leaky_rate", {"n_units": N, "g": 1.5, "tau_ms": TAU}, n_inputs=3, n_outputs=1, dt_ms=DT,
                        rngs=[np.random.default_rng(seed)])
    m = rng.standard_normal((N, 2))
    W = 0.9 * rng.standard_normal((N, N)) / np.sqrt(N) + 2.0 * (m @ m.T) / N
    with torch.no_grad():
        net.params["W"].copy_(torch.as_tensor(W[None], dtype=net.dtype))
    return net


def initial_states(net, seed: int = 1):
    """K states sampled on noise-free trajectories (64 trials x 40 steps from random states) + noise."""
    rng = np.random.default_rng(seed)
    u = torch.zeros(1, 3, dtype=torch.float64)
    x = torch.as_tensor(rng.normal(0, 1.5, (1, 64, N)))
    net64 = build_network("leaky_rate", {"n_units": N, "g": 1.5, "tau_ms": TAU}, n_inputs=3, n_outputs=1, dt_ms=DT,
                          rngs=[np.random.default_rng(0)], dtype=torch.float64)
    net64.params = {k: v.detach().to(torch.float64) for k, v in net.params.items()}
    traj = []
    with torch.no_grad():
        for _ in range(40):
            x = net64.one_step(x, u)
            traj.append(x[0])
    traj = torch.stack(traj, 1).reshape(-1, N).numpy()
    pick = rng.integers(0, len(traj), K)
    return (traj[pick] + 0.1 * rng.standard_normal((K, N)))[None]


def _classify(net64, xs, u):
    """Jacobians at the points, one backward pass per state dimension (as fixed-point-finder does),
    and the number of eigenvalues outside the unit circle."""
    xt = torch.as_tensor(xs[None]).requires_grad_(True)
    Fx = net64.one_step(xt, u)
    J = np.zeros((len(xs), N, N))
    for i in range(N):
        grad = torch.zeros_like(Fx)
        grad[..., i] = 1
        (g,) = torch.autograd.grad(Fx, xt, grad, retain_graph=True)
        J[:, i, :] = g[0].numpy()
    lam = torch.linalg.eigvals(torch.as_tensor(J)).numpy()
    time_constants_ms(lam, DT)
    return (np.abs(lam) > 1 + DEFAULTS.unit_circle_tol).sum(-1)


def _recovered(net64, x, x0_kxs, tol_q, u):
    """The reference's fixed points: q <= tol_q, outliers dropped, de-duplicated as in bioplastic."""
    with torch.no_grad():
        q = (0.5 * ((net64.one_step(x, u) - x) ** 2).sum(-1))[0].numpy()
    xs = x[0].detach().numpy()
    norms = np.linalg.norm(x0_kxs, axis=-1)
    scale = max(DEFAULTS.scale_floor, float(np.sqrt((norms ** 2).mean())))
    good = np.isfinite(q) & (q <= tol_q) & (np.linalg.norm(xs, axis=-1) <= DEFAULTS.outlier_factor * norms.max())
    keep = deduplicate(xs[good], q[good], DEFAULTS.dedup_rtol * scale)
    return xs[good][keep]


def reference(net, x0_exkxs, tol_q: float, target, max_iters: int = 10000, check_every: int = 50,
              lr0: float = 0.05, lr_step: int = 1000, tol_dq: float = 1e-20):
    """Adam on q (Sussillo & Barak; the schedule of fixed-point-finder's PyTorch version) on a
    detached float64 copy of the network. Stops when every state has q < tol_q or |dq| < tol_dq, or
    (checked every ``check_every`` iterations, not timed) when the recovered set equals ``target``.
    Returns (seconds, iterations, points, n_unstable)."""
    net64 = build_network("leaky_rate", {"n_units": N, "g": 1.5, "tau_ms": TAU}, n_inputs=3, n_outputs=1, dt_ms=DT,
                          rngs=[np.random.default_rng(0)], dtype=torch.float64)
    net64.params = {k: v.detach().to(torch.float64) for k, v in net.params.items()}
    u = torch.zeros(1, 3, dtype=torch.float64)
    x = torch.as_tensor(x0_exkxs).clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=lr_step, gamma=0.7)
    q_prev, elapsed, it = None, 0.0, 0
    t0 = time.perf_counter()
    for it in range(1, max_iters + 1):
        opt.zero_grad()
        q = 0.5 * ((net64.one_step(x, u) - x) ** 2).sum(-1)
        q.mean().backward()
        opt.step()
        sched.step()
        qd = q.detach()
        if q_prev is not None and bool(((qd < tol_q) | ((qd - q_prev).abs() < tol_dq)).all()):
            break
        q_prev = qd
        if it % check_every == 0:
            elapsed += time.perf_counter() - t0
            xs = _recovered(net64, x.detach(), x0_exkxs[0], tol_q, u)
            if len(xs) == len(target[0]) and same_set(xs, _classify(net64, xs, u), target[0], target[1], target[2]):
                t0 = time.perf_counter()
                break
            t0 = time.perf_counter()
    xs = _recovered(net64, x.detach(), x0_exkxs[0], tol_q, u)
    n_uns = _classify(net64, xs, u)
    elapsed += time.perf_counter() - t0
    return elapsed, it, xs, n_uns


def same_set(xa, na, xb, nb, radius: float) -> bool:
    """Same number of points, each matched one-to-one within ``radius``, with the same n_unstable."""
    if len(xa) != len(xb):
        return False
    if len(xa) == 0:
        return True
    d = np.linalg.norm(xa[:, None] - xb[None], axis=-1)
    j = d.argmin(1)
    return bool((d[np.arange(len(xa)), j] <= radius).all() and len(set(j.tolist())) == len(j) and (na == nb[j]).all())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="bioplastic runs (the best time is kept)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads for both (0 = leave as is)")
    ap.add_argument("--tol-q", type=float, default=1e-12, help="fixed-point tolerance on q for both")
    ap.add_argument("--max-iters", type=int, default=10000, help="Adam iterations at most")
    ap.add_argument("--lr", type=float, default=0.05, help="initial Adam learning rate of the reference")
    ap.add_argument("--lr-step", type=int, default=1000, help="the reference's learning rate x0.7 every this many")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    net = make_network()
    x0 = initial_states(net)
    u = np.zeros((1, 3))

    best_b, fp = np.inf, None
    for _ in range(args.repeats):
        t = time.perf_counter()
        fp = find_fixed_points(net, u, x0, tol_q=args.tol_q)
        best_b = min(best_b, time.perf_counter() - t)
    m = fp.member(0)
    xb, nb = m["x_pxs"][m["is_fixed_p"]], m["n_unstable_p"][m["is_fixed_p"]]
    radius = 10 * DEFAULTS.dedup_rtol * float(fp.state_scale_e[0])
    t_ref, iters, xr, nr = reference(net, x0, args.tol_q, (xb, nb, radius), max_iters=args.max_iters,
                                   lr0=args.lr, lr_step=args.lr_step)
    equal = same_set(xr, nr, xb, nb, radius)

    kinds = ", ".join(f"{k} {int(v[0])}" for k, v in fp.counts().items())
    print(f"network: leaky_rate N={N}, float32, W = 0.9 chi + 2 m m^T / N (rank 2); {K} initial states")
    print(f"tolerance: q <= {args.tol_q:.3g} for both; de-duplication radius {DEFAULTS.dedup_rtol:g} x state scale "
          f"{fp.state_scale_e[0]:.3g}; torch threads {torch.get_num_threads()}")
    print(f"bioplastic: {best_b:8.3f} s  (best of {args.repeats})  {len(xb)} fixed points ({kinds}); "
          f"n_unstable {sorted(nb.tolist())}")
    print(f"reference:  {t_ref:8.3f} s  {iters} Adam iterations  {len(xr)} fixed points; "
          f"n_unstable {sorted(nr.tolist())}")
    print(f"ratio reference / bioplastic: {t_ref / best_b:.1f}x")
    print(f"equal recovered sets: {'yes' if equal else 'no'}")


if __name__ == "__main__":
    main()
