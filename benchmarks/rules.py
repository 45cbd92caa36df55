"""Time per training iteration of the learning rules and of TCR as short-term plasticity, at the sizes
of the core benchmark (benchmarks/bptt.py: leaky tanh network, N = 100, batch 64, T = 100, float32,
Adam, clipping), next to plain BPTT.

Rows: a plain PyTorch autograd loop (the reference), bioplastic BPTT, bioplastic rflo (trial-summed),
bioplastic BPTT + TCR plasticity (anti-Hebbian unclipped = factorised; clipped = explicit F;
Tsodyks-Markram), and a plain PyTorch autograd loop with anti-Hebbian plasticity (F detached, formed
at every step). Targets (issue): rflo <= 2x bioplastic BPTT; plasticity adds <= 50 %. The last
row is the floor of the unclipped anti-Hebbian algorithm on this machine: BPTT plus the bytes of
history it must read per iteration, at the read bandwidth a plain sum reaches here.

    python benchmarks/rules.py [--repeats 10] [--ensemble 1]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from bptt import DT, TAU, B, I, N, O, PlainRNN, T, _time, data, time_plain  # same sizes and loops

from bioplastic.learning import RULES, Batch
from bioplastic.networks import build_network
from bioplastic.regularizers.tcr_plasticity import PlasticityConfig, ShortTermPlasticity
from bioplastic.training.optim import EnsembleOptimizer, clip_per_member


def time_rule(E, repeats, gen, rule="bptt", plasticity: dict | None = None):
    net = build_network("leaky_rate", {"n_units": N, "g": 1.5, "tau_ms": TAU}, n_inputs=I, n_outputs=O, dt_ms=DT,
                        rngs=[np.random.default_rng(e) for e in range(E)])
    if plasticity is not None:
        net.plasticity = ShortTermPlasticity(PlasticityConfig(**plasticity), DT, E, net.dtype)
        net.plasticity.record_F_end = False
    cls = RULES.get(rule)
    learner = cls(cls.Config(), net)
    opt = EnsembleOptimizer(net.params, "adam", [1e-3] * E)
    clip = torch.ones(E)
    u, y, m = data(E, gen)
    batch = Batch(u, y, m, torch.ones(E, B, T), None, torch.zeros(E), tcr_trains=False)  # lambda 0, as the trainer says
    alive = torch.ones(E, dtype=torch.bool)

    def step():
        grads = learner.step(batch, alive).grads
        clip_per_member(grads, clip)
        opt.step(grads)

    return _time(step, repeats)


class PlainPlasticRNN(PlainRNN):
    """The textbook way with anti-Hebbian fast efficacies: F (B, N, N) formed every step, detached."""

    eta, rho = 0.01, 1 - DT / 500.0

    def forward(self, u):
        h = torch.zeros(u.shape[0], N)
        F = torch.zeros(u.shape[0], N, N)
        hs = []
        for t in range(u.shape[1]):
            r = torch.tanh(h)
            h_new = (1 - self.alpha) * h + self.alpha * (r @ self.W.T + torch.bmm(F, r[:, :, None])[..., 0]
                                                         + u[:, t] @ self.W_in.T + self.b)
            F = self.rho * F - self.eta * (h_new - h).detach()[:, :, None] * r.detach()[:, None, :]
            h = h_new
            hs.append(h)
        H = torch.stack(hs, 1)
        return H, torch.tanh(H) @ self.W_out.T + self.b_out


def time_plain_plastic(E, repeats, gen):
    return time_plain(E, repeats, gen, model_cls=PlainPlasticRNN)


def history_floor(repeats: int) -> tuple[float, float]:
    """The least time per network the unclipped anti-Hebbian simulation adds to BPTT on this machine.

    Every step t reads each trial's history of rates and state steps, 2 t N numbers, once forward
    (``r_t . r_s`` then the weighted sum of ``dh_s``) and once backward (``delta_t . dh_s`` then the
    weighted sum of ``r_s``): ``4 B N T (T - 1) / 2`` numbers per iteration and network. The floor
    is that many bytes at the read bandwidth this core reaches on the batch's history at mid-trial
    (measured with a plain sum over a block of that size). Returns (seconds, GB/s)."""
    x = torch.randn(B, T // 2, 2 * N)
    seconds = _time(lambda: x.sum(), repeats * 20)
    bandwidth = x.numel() * x.element_size() / seconds
    numbers = 4 * B * N * T * (T - 1) / 2
    return numbers * x.element_size() / bandwidth, bandwidth / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--ensemble", type=int, default=1, help="networks trained together (E)")
    args = ap.parse_args()
    E = args.ensemble
    gen = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; N={N} B={B} T={T} E={E} float32 Adam")
    rows = [
        ("plain PyTorch BPTT", lambda: time_plain(E, args.repeats, gen)),
        ("bioplastic BPTT", lambda: time_rule(E, args.repeats, gen)),
        ("bioplastic rflo", lambda: time_rule(E, args.repeats, gen, "rflo")),
        ("BPTT + TCR plasticity", lambda: time_rule(E, args.repeats, gen, plasticity={})),
        ("  (clipped, explicit F)", lambda: time_rule(E, args.repeats, gen, plasticity={"F_max": 1.0})),
        ("  (Tsodyks-Markram)", lambda: time_rule(E, args.repeats, gen, plasticity={"rule": "tsodyks_markram"})),
        ("rflo + TCR plasticity", lambda: time_rule(E, args.repeats, gen, "rflo", plasticity={})),
        ("plain PyTorch + plasticity", lambda: time_plain_plastic(E, args.repeats, gen)),
    ]
    times = {}
    print(f"{'case':<28}{'ms/net':>9}{'/ bioplastic BPTT':>19}{'/ plain BPTT':>14}")
    for name, fn in rows:
        times[name] = fn() / E
        ref = times.get("bioplastic BPTT", times[name])
        print(f"{name:<28}{times[name] * 1e3:>9.2f}{times[name] / ref:>19.2f}{times[name] / times['plain PyTorch BPTT']:>14.2f}")
    bptt = times["bioplastic BPTT"]
    floor, gbs = history_floor(args.repeats)
    print(f"{'  floor: BPTT + history':<28}{(bptt + floor) * 1e3:>9.2f}{(bptt + floor) / bptt:>19.2f}"
          f"{(bptt + floor) / times['plain PyTorch BPTT']:>14.2f}   (history read at {gbs:.0f} GB/s)")
    print("targets: rflo <= 2.0 x bioplastic BPTT; BPTT + TCR plasticity <= 1.5 x bioplastic BPTT")
    print("floor: the unclipped anti-Hebbian path reads every trial's history of rates and state steps at every step, "
          "forward and backward; at this core's read bandwidth that alone costs the floor's excess over BPTT")


if __name__ == "__main__":
    main()
