"""Time per BPTT training iteration: bioplastic vs a plain PyTorch autograd loop of the same model.

Leaky tanh rate network, N = 100, batch 64, T = 100 steps, float32, Adam, masked MSE on the last
10 steps; for 1 network and for an ensemble of 8 (the plain loop trains the 8 one after another).
Prints the time per iteration and per network, and the ratio bioplastic / plain (lower is better).
Where torch sees a CUDA device it then times bioplastic on the GPU and on the CPU for ensembles of
1 to 64 networks and prints the smallest ensemble size at which the GPU is faster per network.

    python benchmarks/bptt.py [--repeats 30]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bioplastic.networks import build_network
from bioplastic.regularizers.tcr_loss import tcr_term
from bioplastic.training.allocator import keep_freed_memory
from bioplastic.training.loop import masked_mse
from bioplastic.training.optim import EnsembleOptimizer, clip_per_member

N, B, T, I, O, DT, TAU = 100, 64, 100, 3, 1, 20.0, 100.0


class PlainRNN(torch.nn.Module):
    """The textbook way: one module, a Python loop over time, autograd through every step."""

    def __init__(self, gen):
        super().__init__()
        self.W = torch.nn.Parameter(torch.randn(N, N, generator=gen) * 1.5 / N ** 0.5)
        self.W_in = torch.nn.Parameter(torch.randn(N, I, generator=gen) / I ** 0.5)
        self.b = torch.nn.Parameter(torch.zeros(N))
        self.W_out = torch.nn.Parameter(torch.randn(O, N, generator=gen) / N ** 0.5)
        self.b_out = torch.nn.Parameter(torch.zeros(O))
        self.alpha = DT / TAU

    def forward(self, u):
        h = torch.zeros(u.shape[0], N)
        hs = []
        for t in range(u.shape[1]):
            h = (1 - self.alpha) * h + self.alpha * (torch.tanh(h) @ self.W.T + u[:, t] @ self.W_in.T + self.b)
            hs.append(h)
        H = torch.stack(hs, 1)
        return H, torch.tanh(H) @ self.W_out.T + self.b_out


def data(E, gen):
    u = torch.randn(E, B, T, I, generator=gen)
    y = torch.sign(torch.randn(E, B, 1, 1, generator=gen)).expand(E, B, T, O).contiguous()
    m = torch.zeros(E, B, T, O)
    m[:, :, -10:] = 1
    return u, y, m


def time_plain(E, repeats, gen, tcr=0.0, model_cls=None):
    """The plain loop, one network after another; ``model_cls`` defaults to :class:`PlainRNN`."""
    models = [(model_cls or PlainRNN)(gen) for _ in range(E)]
    opts = [torch.optim.Adam(m.parameters(), lr=1e-3) for m in models]
    u, y, m = data(E, gen)

    def step():
        for e in range(E):
            H, out = models[e](u[e])
            loss = (((out - y[e]) ** 2) * m[e]).sum() / m[e].sum()
            if tcr:
                loss = loss + tcr * (H[:, 1:] - H[:, :-1]).square().mean()
            opts[e].zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(models[e].parameters(), 1.0)
            opts[e].step()

    return _time(step, repeats)


def time_bioplastic(E, repeats, gen, tcr=0.0):
    net = build_network("leaky_rate", {"n_units": N, "g": 1.5, "tau_ms": TAU}, n_inputs=I, n_outputs=O, dt_ms=DT,
                        rngs=[np.random.default_rng(e) for e in range(E)])
    opt = EnsembleOptimizer(net.params, "adam", [1e-3] * E)
    clip = torch.ones(E)
    u, y, m = data(E, gen)
    window = torch.ones(E, B, T)
    names = list(net.params)

    def step():
        roll = net.run(u)
        loss = masked_mse(roll.output_exbxtxo, y, m)
        if tcr:
            loss = loss + tcr * tcr_term(roll.state_exbxtxn, window)
        grads = dict(zip(names, torch.autograd.grad(loss.sum(), list(net.params.values()))))
        clip_per_member(grads, clip)
        opt.step(grads)

    return _time(step, repeats)


def time_gemm_limit(E, repeats, gen):
    """The matrix products BPTT cannot avoid, alone: T steps of W phi(h) forward, T steps of
    W^T delta backward, and dL/dW = sum_t delta_t phi(h_{t-1})^T as one product (per iteration)."""
    W = torch.randn(E, N, N, generator=gen)
    x = torch.randn(E, T + 1, B, N, generator=gen)
    out = torch.empty(E, B, N)

    def step():
        for t in range(T):
            out.baddbmm_(x[:, t], W)
        for t in range(T):
            torch.bmm(x[:, t], W, out=out)
        torch.bmm(x.view(E, -1, N).transpose(1, 2), x.view(E, -1, N))

    return _time(step, repeats)


def _time(step, repeats):
    for _ in range(3):
        step()
    best = []
    for _ in range(3):  # best of 3 blocks: robust to other load on the machine
        t0 = time.perf_counter()
        for _ in range(repeats):
            step()
        best.append((time.perf_counter() - t0) / repeats)
    return min(best)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--malloc-default", action="store_true",
                    help="leave glibc's malloc as it is (training keeps freed memory; bioplastic/training/allocator.py)")
    args = ap.parse_args()
    kept = False if args.malloc_default else keep_freed_memory()
    print(f"freed memory kept in the process (as in training): {'yes' if kept else 'no'}")
    gen = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; N={N} B={B} T={T} float32 Adam")
    print(f"{'case':<26}{'plain ms/net':>14}{'bioplastic ms/net':>19}{'ratio':>8}{'GEMM limit ms/net':>19}{'limit ratio':>13}")
    for E in (1, 8):
        limit = time_gemm_limit(E, args.repeats, gen) / E
        for tcr in (0.0, 0.1):
            plain = time_plain(E, args.repeats, gen, tcr) / E
            ours = time_bioplastic(E, args.repeats, gen, tcr) / E
            label = f"E={E}" + (" + TCR loss" if tcr else "")
            print(f"{label:<26}{plain * 1e3:>14.2f}{ours * 1e3:>19.2f}{ours / plain:>8.2f}{limit * 1e3:>19.2f}{limit / plain:>13.2f}")
    print("ratio = bioplastic time / plain time per network (target <= 0.33); GEMM limit = the unavoidable "
          "matrix products alone (forward, backward, weight gradient), the floor of any implementation")
    gpu_figures(args.repeats)


# --------------------------------------------------------------------------------------------- GPU
#: ensemble sizes timed on the GPU and on the CPU
GPU_ENSEMBLES = (1, 2, 4, 8, 16, 32, 64)


def time_bioplastic_on(device: torch.device, E: int, repeats: int, gen) -> float:
    """Seconds per BPTT iteration of an ensemble of E networks (no TCR) on ``device``; the
    weights and data are drawn on the CPU and moved there, as training does."""
    net = build_network("leaky_rate", {"n_units": N, "g": 1.5, "tau_ms": TAU}, n_inputs=I, n_outputs=O, dt_ms=DT,
                        rngs=[np.random.default_rng(e) for e in range(E)]).to(device)
    opt = EnsembleOptimizer(net.params, "adam", [1e-3] * E)
    clip = torch.ones(E).to(device)
    u, y, m = (x.to(device) for x in data(E, gen))
    params = list(net.params.values())
    names = list(net.params)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step():
        roll = net.run(u)
        loss = masked_mse(roll.output_exbxtxo, y, m)
        grads = dict(zip(names, torch.autograd.grad(loss.sum(), params)))
        clip_per_member(grads, clip)
        opt.step(grads)

    def block():  # a block of steps, timed to the end of the device's work
        for _ in range(repeats):
            step()
        sync()

    step()
    sync()
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        block()
        best = min(best, (time.perf_counter() - t0) / repeats)
    return best


def gpu_figures(repeats: int) -> None:
    """bioplastic's BPTT per network on the GPU and on the CPU for each ensemble size, and the
    smallest ensemble size at which the GPU is faster per network; one line when no GPU is visible."""
    if not torch.cuda.is_available():
        print("GPU figures skipped: no CUDA device visible (torch.cuda.is_available() is False)")
        return
    gpu, cpu = torch.device("cuda"), torch.device("cpu")
    gen = torch.Generator().manual_seed(0)
    reps = max(2, repeats // 4)
    print(f"\nGPU: {torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda}); bioplastic BPTT per network, "
          f"N={N} B={B} T={T} float32 Adam, CPU with {torch.get_num_threads()} threads")
    print(f"{'E':>4}{'cpu ms/net':>13}{'gpu ms/net':>13}{'gpu/cpu':>9}")
    overtakes = None
    for E in GPU_ENSEMBLES:
        c = time_bioplastic_on(cpu, E, reps, gen) / E
        g = time_bioplastic_on(gpu, E, reps, gen) / E
        if overtakes is None and g < c:
            overtakes = E
        print(f"{E:>4}{c * 1e3:>13.2f}{g * 1e3:>13.2f}{g / c:>9.2f}")
    if overtakes is None:
        print(f"the GPU is not faster per network than the CPU at any ensemble size up to {GPU_ENSEMBLES[-1]}")
    else:
        print(f"the GPU overtakes the CPU per network at ensemble size E = {overtakes} (training.ensemble_size; "
              f"training.device: cuda)")


if __name__ == "__main__":
    main()
