"""Time to find and classify the fixed points of a 100-unit leaky rate network: bioplastic vs Adam on q.

The network (float32, N = 100, dt = 20 ms, tau = 100 ms, tanh) has a random part of gain 0.9 plus a
self-exciting rank-2 part of strength 2, ``W = 0.9 chi + 2 (m1 m1^T + m2 m2^T) / N``, so it has
several attractors, saddles between them and an unstable point (a "trained-like" phase portrait).
1024 initial states are drawn from 64 noise-free trajectories started at random states, plus
Gaussian noise (std 0.1).

- bioplastic: :func:`bioplastic.analysis.fixed_points.find_fixed_points` with its defaults.
- reference:  the Sussillo & Barak (2013) recipe as in the fixed-point-finder package: Adam on the
  mean of q over all states jointly (in the network's dtype, through autograd on ``one_step``; Adam
  epsilon 0.01 as fixed-point-finder's default, and an adaptive learning rate: x1/0.95 after a step
  that lowered the total q, x0.5 after one that raised it), until every state has q below the same
  tolerance ``tol_q`` as bioplastic or stopped improving (``|dq| < tol_dq``), at most ``max_iters``
  iterations; then the same outlier rule and de-duplication, autograd Jacobians at the unique points
  (one backward pass per state dimension, as fixed-point-finder does) and their eigenvalues.

Prints both times (best of ``--repeats``), the ratio, and whether the recovered sets of fixed points
are equal (same count, each point matched within the de-duplication radius, same n_unstable).

    python benchmarks/fixed_points.py [--repeats 3] [--threads 1] [--lr 0.1]
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


def reference(net, x0_exkxs, tol_q: float, lr0: float, max_iters: int = 5000, tol_dq: float = 1e-20):
    """Adam on q as in Sussillo & Barak / fixed-point-finder; returns points, q, n_unstable, iterations."""
    u = torch.zeros(1, 3, dtype=net.dtype)
    x = torch.as_tensor(x0_exkxs, dtype=net.dtype).clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr0, eps=0.01)
    q_prev, total_prev, lr = None, np.inf, lr0
    for it in range(1, max_iters + 1):
        opt.zero_grad()
        q = 0.5 * ((net.one_step(x, u) - x) ** 2).sum(-1)
        total = q.mean()
        total.backward()
        opt.step()
        qd = q.detach()
        lr = lr / 0.95 if float(total) < total_prev else lr * 0.5
        total_prev = float(total)
        for group in opt.param_groups:
            group["lr"] = lr
        if q_prev is not None and bool(((qd < tol_q) | ((qd - q_prev).abs() < tol_dq)).all()):
            break
        q_prev = qd
    with torch.no_grad():
        xs = x.detach()
        q = (0.5 * ((net.one_step(xs, u) - xs) ** 2).sum(-1))[0].numpy().astype(float)
    xs = xs[0].numpy().astype(float)
    max_norm = max(DEFAULTS.scale_floor, float(np.linalg.norm(x0_exkxs[0], axis=-1).max()))
    scale = max(DEFAULTS.scale_floor, float(np.sqrt((np.linalg.norm(x0_exkxs[0], axis=-1) ** 2).mean())))
    good = np.isfinite(q) & (q <= tol_q) & (np.linalg.norm(xs, axis=-1) <= DEFAULTS.outlier_factor * max_norm)
    xs, q = xs[good], q[good]
    keep = deduplicate(xs, q, np.full(len(q), DEFAULTS.dedup_rtol * scale))
    xs, q = xs[keep], q[keep]
    # Jacobians at the unique points, one backward pass per state dimension (fixed-point-finder)
    xt = torch.as_tensor(xs[None], dtype=net.dtype).requires_grad_(True)
    Fx = net.one_step(xt, u)
    J = np.zeros((len(xs), N, N))
    for i in range(N):
        grad = torch.zeros_like(Fx)
        grad[..., i] = 1
        (g,) = torch.autograd.grad(Fx, xt, grad, retain_graph=True)
        J[:, i, :] = g[0].numpy()
    lam = np.linalg.eigvals(J)
    n_uns = (np.abs(lam) > 1 + DEFAULTS.unit_circle_tol).sum(-1)
    time_constants_ms(lam, DT)
    return xs, q, n_uns, it


def same_set(xa, na, xb, nb, radius: float) -> bool:
    if len(xa) != len(xb):
        return False
    d = np.linalg.norm(xa[:, None] - xb[None], axis=-1)
    j = d.argmin(1)
    return bool((d[np.arange(len(xa)), j] <= radius).all() and len(set(j)) == len(j) and (na == nb[j]).all())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads for both (0 = leave as is)")
    ap.add_argument("--lr", type=float, default=0.1, help="initial Adam learning rate of the reference")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    net = make_network()
    x0 = initial_states(net)
    u = np.zeros((1, 3))

    best_b, fp = np.inf, None
    for _ in range(args.repeats):
        t = time.perf_counter()
        fp = find_fixed_points(net, u, x0)
        best_b = min(best_b, time.perf_counter() - t)
    tol_q = float(fp.tol_q_e[0])
    best_r, ref = np.inf, None
    for _ in range(args.repeats):
        t = time.perf_counter()
        ref = reference(net, x0, tol_q, args.lr)
        best_r = min(best_r, time.perf_counter() - t)

    m = fp.member(0)
    xb, nb = m["x_pxs"][m["is_fixed_p"]], m["n_unstable_p"][m["is_fixed_p"]]
    xr, qr, nr, iters = ref
    radius = 100 * DEFAULTS.dedup_rtol * float(fp.state_scale_e[0])
    equal = same_set(xb, nb, xr, nr, radius)
    kinds = {name: int(c[0]) for name, c in fp.counts().items()}
    print(f"network: leaky_rate N={N}, float32, W = 0.9 chi + 2 m m^T / N (rank 2); {K} initial states")
    print(f"tolerance: q <= {tol_q:.3g}  (state scale {fp.state_scale_e[0]:.3g})")
    print(f"bioplastic: {best_b:8.3f} s   {len(xb)} fixed points {kinds}")
    print(f"reference:  {best_r:8.3f} s   {len(xr)} fixed points, n_unstable {sorted(nr.tolist())}, "
          f"{iters} Adam iterations (lr0 {args.lr})")
    print(f"ratio reference / bioplastic: {best_r / best_b:.1f}x")
    print(f"equal recovered sets: {'yes' if equal else 'no'}")


if __name__ == "__main__":
    main()
