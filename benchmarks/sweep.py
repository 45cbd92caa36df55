"""Throughput of a 16-network sweep: bioplastic's default executor vs a plain PyTorch loop.

Evidence accumulation (0.5-1.5 s delays, T up to 115 steps), leaky tanh network N = 100, batch 64,
a fixed number of Adam iterations, 2 conditions x 8 seeds. bioplastic runs the protocol with its
default executor (a local process pool, ensembles of compatible networks); the reference trains the
same 16 networks one after another with a plain autograd loop, sampling its batches from the same
task. Prints networks trained per minute for both and the ratio.

    python benchmarks/sweep.py [--iterations 40]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bioplastic import load_protocol, run_protocol
from bioplastic.tasks import build_task
from bioplastic.training.executors import LocalPoolExecutor, cpu_count

PROTOCOL = """
name: sweep_benchmark
seed: 1
seeds: 8
task: {{kind: evidence_accumulation, delay_min_ms: 500, delay_max_ms: 1500}}
model: {{kind: leaky_rate, n_units: 100, g: 1.5, sigma_h: 0.15, output_scale: 0.1}}
training: {{lr: 1e-3, iterations: {iterations}, batch_size: 64, checkpoint_every: {iterations}, eval_every: {iterations}}}
conditions:
  baseline: {{}}
  tcr_loss: {{tcr: {{form: loss, lambda: 0.1}}}}
output: {{figures: false}}
"""


class PlainRNN(torch.nn.Module):
    def __init__(self, n_in, n_out, gen, alpha=0.2, n=100):
        super().__init__()
        self.W = torch.nn.Parameter(torch.randn(n, n, generator=gen) * 1.5 / n ** 0.5)
        self.W_in = torch.nn.Parameter(torch.randn(n, n_in, generator=gen) / n_in ** 0.5)
        self.b = torch.nn.Parameter(torch.zeros(n))
        self.W_out = torch.nn.Parameter(torch.randn(n_out, n, generator=gen) * 0.1 / n ** 0.5)
        self.b_out = torch.nn.Parameter(torch.zeros(n_out))
        self.alpha, self.n = alpha, n

    def forward(self, u, noise):
        h = torch.zeros(u.shape[0], self.n)
        hs = []
        for t in range(u.shape[1]):
            h = (1 - self.alpha) * h + self.alpha * (torch.tanh(h) @ self.W.T + u[:, t] @ self.W_in.T + self.b) + noise[:, t]
            hs.append(h)
        H = torch.stack(hs, 1)
        return H, torch.tanh(H) @ self.W_out.T + self.b_out


def plain(n_networks: int, iterations: int) -> float:
    task = build_task("evidence_accumulation", {"delay_min_ms": 500, "delay_max_ms": 1500})
    t0 = time.perf_counter()
    for s in range(n_networks):
        rng = np.random.default_rng(s)
        gen = torch.Generator().manual_seed(s)
        model = PlainRNN(task.n_inputs, task.n_outputs, gen)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        tcr = 0.1 if s % 2 else 0.0
        for _ in range(iterations):
            tr = task.sample(rng, 64)
            u, y, m = (torch.from_numpy(a) for a in (tr.inputs_bxtxi, tr.targets_bxtxo, tr.mask_bxtxo))
            H, out = model(u, 0.15 * 0.2 ** 0.5 * torch.randn(64, task.n_steps, 100, generator=gen))
            loss = (((out - y) ** 2) * m).sum() / m.sum() + tcr * (H[:, 1:] - H[:, :-1]).square().mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        with torch.no_grad():
            ev = task.sample(rng, 256)
            model(torch.from_numpy(ev.inputs_bxtxi), torch.zeros(256, task.n_steps, 100))
    return time.perf_counter() - t0


def ours(iterations: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.yaml"
        path.write_text(PROTOCOL.format(iterations=iterations))
        protocol = load_protocol(path)
        t0 = time.perf_counter()
        run_protocol(protocol, Path(tmp) / "out", executor=LocalPoolExecutor())
        return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=40)
    args = ap.parse_args()
    n = 16
    print(f"16 networks, {args.iterations} iterations each, {cpu_count()} cores, torch {torch.__version__}")
    t_ours = ours(args.iterations)
    t_plain = plain(n, args.iterations)
    r_ours, r_plain = n / t_ours * 60, n / t_plain * 60
    print(f"bioplastic (local pool, ensembles): {t_ours:7.1f} s  {r_ours:7.1f} networks/min")
    print(f"plain PyTorch, one at a time:       {t_plain:7.1f} s  {r_plain:7.1f} networks/min")
    print(f"throughput ratio: {r_ours / r_plain:.2f}x (target >= 4x)")


if __name__ == "__main__":
    main()
