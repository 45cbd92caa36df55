"""Throughput of a sweep at the sizes of protocols/chaos_sweep.yaml: bioplastic vs one network at a time.

The shipped chaos_sweep protocol (leaky tanh network N = 100, plain SGD, batch 32, evidence
accumulation with 0.5-1.5 s delays, g in {0.7, 0.9, 1.2, 1.5} x baseline / TCR loss / TCR
plasticity) with fewer seeds and iterations. bioplastic trains it as a run does: the work units of
the plan (compatible networks of every sweep point packed into ensembles of ``ensemble_size``) on the
default executor (a local process pool, one single-threaded worker per core). The reference trains
the same networks one after another with a plain PyTorch autograd loop (timed with one torch thread
and with one per core; the faster counts),
sampling its batches from the same task. Prints networks trained per minute and the ratio, for the
whole sweep and without the plasticity condition (whose plain loop forms the efficacy matrix F at
every step and is much slower).

    python benchmarks/sweep.py [--seeds 4] [--iterations 30]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from bioplastic import load_protocol
from bioplastic.resources import protocol_path
from bioplastic.tasks import build_task
from bioplastic.training.allocator import keep_freed_memory
from bioplastic.training.executors import LocalPoolExecutor, cpu_count
from bioplastic.training.units import plan_units

CONDITIONS = ("baseline", "tcr_loss", "tcr_plasticity")


class PlainRNN(torch.nn.Module):
    """The textbook way; with ``eta`` > 0, anti-Hebbian fast efficacies F (B, N, N), detached."""

    def __init__(self, n_in, n_out, g, gen, alpha=0.2, n=100, eta=0.0, rho=1 - 20 / 500):
        super().__init__()
        self.W = torch.nn.Parameter(torch.randn(n, n, generator=gen) * g / n ** 0.5)
        self.W_in = torch.nn.Parameter(torch.randn(n, n_in, generator=gen) / n_in ** 0.5)
        self.b = torch.nn.Parameter(torch.zeros(n))
        self.W_out = torch.nn.Parameter(torch.randn(n_out, n, generator=gen) * 0.01 / n ** 0.5)
        self.b_out = torch.nn.Parameter(torch.zeros(n_out))
        self.alpha, self.n, self.eta, self.rho = alpha, n, eta, rho

    def forward(self, u):
        h = torch.zeros(u.shape[0], self.n)
        F = torch.zeros(u.shape[0], self.n, self.n) if self.eta else None
        hs = []
        for t in range(u.shape[1]):
            r = torch.tanh(h)
            rec = r @ self.W.T
            if F is not None:
                rec = rec + torch.bmm(F, r[:, :, None])[..., 0]
            h_new = (1 - self.alpha) * h + self.alpha * (rec + u[:, t] @ self.W_in.T + self.b)
            if F is not None:
                F = self.rho * F - self.eta * (h_new - h).detach()[:, :, None] * r.detach()[:, None, :]
            h = h_new
            hs.append(h)
        H = torch.stack(hs, 1)
        return H, torch.tanh(H) @ self.W_out.T + self.b_out


def plain(protocol, conditions) -> tuple[float, int]:
    """Seconds to train the protocol's networks of ``conditions`` one after another; and their number."""
    tr = protocol.config.training
    task = build_task("evidence_accumulation", {"delay_min_ms": 500, "delay_max_ms": 1500})
    t0, n = time.perf_counter(), 0
    for point in protocol.points:
        for cond in conditions:
            for s in range(protocol.config.seeds):
                rng, gen = np.random.default_rng(s), torch.Generator().manual_seed(s)
                model = PlainRNN(task.n_inputs, task.n_outputs, point.coords["model.g"], gen,
                                 eta=0.1 if cond == "tcr_plasticity" else 0.0)
                opt = torch.optim.SGD(model.parameters(), lr=tr.lr)
                for k in range(tr.iterations):
                    trials = task.sample(rng, tr.batch_size)
                    u, y, m = (torch.from_numpy(a).float() for a in (trials.inputs_bxtxi, trials.targets_bxtxo, trials.mask_bxtxo))
                    H, out = model(u)
                    loss = (((out - y) ** 2) * m).sum() / m.sum()
                    if cond == "tcr_loss":
                        loss = loss + (H[:, 1:] - H[:, :-1]).square().mean() / H.var().detach()
                    opt.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    opt.step()
                    if (k + 1) % tr.eval_every == 0:
                        with torch.no_grad():
                            model(torch.from_numpy(task.sample(rng, tr.eval_trials).inputs_bxtxi).float())
                n += 1
    return time.perf_counter() - t0, n


def _with_threads(k: int, fn, *args):
    """``fn(*args)`` with ``k`` torch threads (then the previous count again)."""
    before = torch.get_num_threads()
    torch.set_num_threads(k)
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(before)


def ours(protocol) -> float:
    """Seconds to train every work unit of the protocol on the default executor (training only)."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        LocalPoolExecutor().run(protocol.text, plan_units(protocol), Path(tmp))
        return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=30)
    args = ap.parse_args()
    keep_freed_memory()  # as the trainer does (the plain loop's tensors are small either way)
    sets = [f"seeds={args.seeds}", f"training.iterations={args.iterations}", f"training.checkpoint_every={args.iterations}",
            "training.eval_every=10", "output.dir=unused"]
    spec = yaml.safe_load(protocol_path("chaos_sweep").read_text())
    full = load_protocol(spec, sets)
    spec["conditions"].pop("tcr_plasticity")
    no_plastic = load_protocol(spec, sets)
    units = plan_units(full)
    print(f"chaos_sweep sizes: {len(full.points)} points x {len(CONDITIONS)} conditions x {args.seeds} seeds, "
          f"{args.iterations} iterations; {len(units)} work units of {', '.join(str(len(u.members)) for u in units)} "
          f"networks; {cpu_count()} cores; torch {torch.__version__}")
    print(f"{'case':<34}{'bioplastic nets/min':>21}{'plain nets/min':>16}{'ratio':>8}")
    for label, protocol, conditions in (("whole sweep", full, CONDITIONS), ("without TCR plasticity", no_plastic, CONDITIONS[:2])):
        n = sum(len(u.members) for u in plan_units(protocol))
        t_ours = ours(protocol)
        t_plain, n_plain = min(_with_threads(k, plain, protocol, conditions) for k in sorted({1, cpu_count()}))
        assert n_plain == n
        r_ours, r_plain = n / t_ours * 60, n / t_plain * 60
        print(f"{label:<34}{r_ours:>21.1f}{r_plain:>16.1f}{r_ours / r_plain:>8.2f}")
    print(f"ratio = bioplastic throughput / plain PyTorch one network at a time (the faster of 1 and {cpu_count()} "
          "torch threads); target >= 4")


if __name__ == "__main__":
    main()
