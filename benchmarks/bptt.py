"""Time per BPTT training iteration of every network kind: bioplastic vs the plain PyTorch reference
of the same equations, and the floor of the matrix products.

Each kind is timed against the natural way to write it in PyTorch - a module with a Python loop
over time and autograd through every step (leaky_rate, low_rank, plrnn), or torch.nn.LSTM + Linear
(lstm) - trained one network after another, each starting from the weights of the same bioplastic
member. float32, Adam, masked MSE on the last 10 steps, per-network gradient clipping, one torch
thread unless ``--threads`` says otherwise. Cases: the rate networks at N = 100, batch 64, T = 100
(leaky_rate also with the TCR loss), for 1 and 8 networks; the LSTM at N 64 / T 100 / batch 32
(E = 1, 8), N 128 / T 50 / batch 32 (E = 4) and N 100 / T 100 / batch 64 (E = 1 to 16).

Columns: milliseconds per network and iteration of the plain reference and of bioplastic, their
ratio (bioplastic / plain: lower is better), and the floor - the matrix products BPTT cannot avoid,
timed alone (forward, backward and weight gradient of the recurrence) - with bioplastic's cost over
it; for the LSTM also bioplastic's eager torch layer (``eager``: the fallback where no C compiler
works, networks/lstm_kernel.py) and its ratio, where the compiled kernel runs. Times are the
process's CPU time (best of 3 interleaved blocks), which other load on the machine inflates less
than wall time; compare ratios measured in one run. Where torch sees a CUDA device it
then times the leaky network on the GPU and on the CPU for ensembles of 1 to 64.

    python benchmarks/bptt.py [--kinds leaky_rate,lstm] [--repeats 20] [--threads 1]
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from bioplastic.networks import NETWORKS, build_network, lstm_kernel
from bioplastic.regularizers.tcr_loss import tcr_term
from bioplastic.training.allocator import keep_freed_memory
from bioplastic.training.loop import masked_mse
from bioplastic.training.optim import EnsembleOptimizer, clip_per_member

# the rate networks' case (benchmarks/rules.py times the learning rules at the same sizes)
N, B, T, I, O, DT, TAU = 100, 64, 100, 3, 1, 20.0, 100.0


# ------------------------------------------------------------------------------ plain references
class PlainRNN(torch.nn.Module):
    """The leaky rate network the textbook way: one module, a Python loop over time, autograd
    through every step. Drawn from ``gen``, or given the weights of a bioplastic member."""

    def __init__(self, gen=None, params: dict | None = None, alpha: float = DT / TAU):
        super().__init__()
        if params is None:
            params = {"W": torch.randn(N, N, generator=gen) * 1.5 / N ** 0.5, "W_in": torch.randn(N, I, generator=gen) / I ** 0.5,
                      "b": torch.zeros(N), "W_out": torch.randn(O, N, generator=gen) / N ** 0.5, "b_out": torch.zeros(O)}
        for k in ("W", "W_in", "b", "W_out", "b_out"):
            setattr(self, k, torch.nn.Parameter(params[k].clone()))
        self.alpha = alpha

    def weights(self):
        return self.W

    def forward(self, u):
        W = self.weights()
        h = u.new_zeros(u.shape[0], W.shape[0])
        hs = []
        for t in range(u.shape[1]):
            h = (1 - self.alpha) * h + self.alpha * (torch.tanh(h) @ W.T + u[:, t] @ self.W_in.T + self.b)
            hs.append(h)
        H = torch.stack(hs, 1)
        return H, torch.tanh(H) @ self.W_out.T + self.b_out


class PlainLowRank(PlainRNN):
    """The low-rank network: the leaky loop with ``W = m n^T / N + g chi`` (chi fixed)."""

    def __init__(self, params: dict, alpha: float):
        super().__init__(params={**params, "W": params["chi"]}, alpha=alpha)
        del self.W
        self.register_buffer("chi", params["chi"].clone())
        self.m, self.n = torch.nn.Parameter(params["m"].clone()), torch.nn.Parameter(params["n"].clone())

    def weights(self):
        return self.m @ self.n.T / self.m.shape[0] + self.chi


class PlainPLRNN(torch.nn.Module):
    """The PLRNN, ``z_t = A z_{t-1} + W relu(z_{t-1}) + h + C s_t``, ``y = B z``, as a plain loop."""

    def __init__(self, params: dict):
        super().__init__()
        for k in ("A", "W", "h", "C", "B"):
            setattr(self, k, torch.nn.Parameter(params[k].clone()))
        self.register_buffer("offdiag", params["offdiag"].clone())

    def forward(self, u):
        W = self.W * self.offdiag
        z = u.new_zeros(u.shape[0], W.shape[0])
        zs = []
        for t in range(u.shape[1]):
            z = self.A * z + torch.relu(z) @ W.T + self.h + u[:, t] @ self.C.T
            zs.append(z)
        Z = torch.stack(zs, 1)
        return Z, Z @ self.B.T


class PlainLSTM(torch.nn.Module):
    """torch.nn.LSTM + Linear (torch's fused kernel), with the weights of a bioplastic member
    (gate order i, f, g, o is torch's; its second bias is zero)."""

    def __init__(self, params: dict):
        super().__init__()
        n, n_in = params["W_hh"].shape[1], params["W_ih"].shape[1]
        self.lstm = torch.nn.LSTM(n_in, n, batch_first=True).to(params["W_hh"].dtype)
        self.readout = torch.nn.Linear(n, params["W_out"].shape[0]).to(params["W_hh"].dtype)
        with torch.no_grad():
            for dst, src in ((self.lstm.weight_ih_l0, params["W_ih"]), (self.lstm.weight_hh_l0, params["W_hh"]),
                             (self.lstm.bias_ih_l0, params["b"]), (self.readout.weight, params["W_out"]),
                             (self.readout.bias, params["b_out"])):
                dst.copy_(src)
            self.lstm.bias_hh_l0.zero_()

    def forward(self, u):
        H, _ = self.lstm(u)
        return H, self.readout(H)


def plain_member(net, e: int) -> torch.nn.Module:
    """The plain reference of bioplastic network ``net``'s member ``e``, with its weights."""
    p = {k: v.detach()[e] for k, v in {**net.params, **net.buffers}.items()}
    if net.kind == "leaky_rate":
        return PlainRNN(params=p, alpha=net.alpha)
    if net.kind == "low_rank":
        return PlainLowRank(p, net.alpha)
    return {"plrnn": PlainPLRNN, "lstm": PlainLSTM}[net.kind](p)


@dataclass(frozen=True)
class Case:
    kind: str
    E: int
    n_units: int = N
    steps: int = T
    batch: int = B
    tcr: float = 0.0
    model: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"N {self.n_units} T {self.steps} B {self.batch} E {self.E}" + (" + TCR loss" if self.tcr else "")


#: the model settings of each kind's cases (the kinds' defaults otherwise)
MODELS = {"leaky_rate": {"g": 1.5, "tau_ms": TAU}, "low_rank": {"rank": 2, "tau_ms": TAU}, "plrnn": {}, "lstm": {}}


def cases(kind: str) -> list[Case]:
    m = MODELS[kind]
    if kind == "lstm":
        return ([Case(kind, E, 64, 100, 32, model=m) for E in (1, 8)] + [Case(kind, 4, 128, 50, 32, model=m)]
                + [Case(kind, E, 100, 100, 64, model=m) for E in (1, 2, 4, 8, 16)])
    out = [Case(kind, E, model=m) for E in (1, 8)]
    return out + [Case(kind, E, tcr=0.1, model=m) for E in (1, 8)] if kind == "leaky_rate" else out


def check_kinds(names: list[str]) -> list[str]:
    """The kinds asked for, or an error naming the kinds there are."""
    unknown = [k for k in names if k not in MODELS]
    if unknown:
        raise SystemExit(f"--kinds: unknown network kind {', '.join(map(repr, unknown))}; the kinds are "
                         f"{', '.join(MODELS)}")
    missing = sorted(set(NETWORKS.names()) - set(MODELS))
    if missing:  # a kind registered after this benchmark was written
        print(f"note: no plain reference here for {', '.join(missing)}")
    return names


# --------------------------------------------------------------------------------------- timing
def data(E, gen, batch: int = B, steps: int = T):
    u = torch.randn(E, batch, steps, I, generator=gen)
    y = torch.sign(torch.randn(E, batch, 1, 1, generator=gen)).expand(E, batch, steps, O).contiguous()
    m = torch.zeros(E, batch, steps, O)
    m[:, :, -10:] = 1
    return u, y, m


def _network(case: Case):
    return build_network(case.kind, {"n_units": case.n_units, **case.model}, n_inputs=I, n_outputs=O, dt_ms=DT,
                         rngs=[np.random.default_rng(e) for e in range(case.E)])


def plain_step(models, u, y, m, tcr: float = 0.0):
    """One training iteration of each plain model in turn (its own Adam, clipping at 1)."""
    opts = [torch.optim.Adam(mod.parameters(), lr=1e-3) for mod in models]

    def step():
        for e, (mod, opt) in enumerate(zip(models, opts)):
            H, out = mod(u[e])
            loss = (((out - y[e]) ** 2) * m[e]).sum() / m[e].sum()
            if tcr:
                loss = loss + tcr * (H[:, 1:] - H[:, :-1]).square().mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(mod.parameters(), 1.0)
            opt.step()

    return step


def bioplastic_step(net, u, y, m, tcr: float = 0.0):
    E = net.n_members
    opt = EnsembleOptimizer(net.params, "adam", [1e-3] * E)
    clip = torch.ones(E)
    window = torch.ones(u.shape[:3])
    names = list(net.params)

    def step():
        roll = net.run(u)
        loss = masked_mse(roll.output_exbxtxo, y, m)
        if tcr:
            loss = loss + tcr * tcr_term(roll.state_exbxtxn, window)
        grads = dict(zip(names, torch.autograd.grad(loss.sum(), list(net.params.values()))))
        clip_per_member(grads, clip)
        opt.step(grads)

    return step


def gemm_floor_step(case: Case, gen):
    """The matrix products BPTT cannot avoid, alone, for E networks: T steps of the recurrent product
    forward, T steps of its transpose backward, and the weight gradient as one product over all
    steps and trials. Rate networks: W (N x N); the LSTM: W_hh (4N x N)."""
    E, n, b, t = case.E, case.n_units, case.batch, case.steps
    G = 4 * n if case.kind == "lstm" else n
    W = torch.randn(E, G, n, generator=gen)
    Wt = W.transpose(1, 2).contiguous()
    h, gates = torch.randn(E, b, n, generator=gen), torch.randn(E, b, G, generator=gen)
    D, H = torch.randn(E, t * b, G, generator=gen), torch.randn(E, t * b, n, generator=gen)
    dh = torch.empty(E, b, n)

    def step():
        for _ in range(t):
            gates.baddbmm_(h, Wt)
        for _ in range(t):
            torch.bmm(gates, W, out=dh)
        torch.bmm(D.transpose(1, 2), H)

    return step


def _time(step, repeats):
    """Seconds of CPU time per call of ``step`` (best of 3 blocks after 3 warm-up calls)."""
    return _time_all([step], repeats)[0]


def _time_all(steps, repeats):
    """Like :func:`_time` for several steps, their blocks interleaved (load on the machine then
    affects them alike)."""
    for s in steps:
        for _ in range(3):
            s()
    best = [float("inf")] * len(steps)
    for _ in range(3):
        for i, s in enumerate(steps):
            t0 = time.process_time()
            for _ in range(repeats):
                s()
            best[i] = min(best[i], (time.process_time() - t0) / repeats)
    return best


def time_plain(E, repeats, gen, tcr=0.0, model_cls=None):
    """The plain leaky loop, one network after another; ``model_cls(gen)`` defaults to :class:`PlainRNN`."""
    models = [(model_cls or PlainRNN)(gen) for _ in range(E)]
    u, y, m = data(E, gen)
    return _time(plain_step(models, u, y, m, tcr), repeats)


def eager_lstm_step(step):
    """``step`` with the LSTM on its eager torch code (networks/lstm_kernel.py: the fallback where
    no C compiler works)."""
    def eager_step():
        with lstm_kernel.eager():
            step()

    return eager_step


def time_case(case: Case, repeats: int, gen) -> dict:
    """ms per network and iteration: plain, bioplastic, floor; for the LSTM also bioplastic's eager
    code (``eager``) where the compiled kernel runs."""
    net = _network(case)
    models = [plain_member(net, e) for e in range(case.E)]
    u, y, m = data(case.E, gen, case.batch, case.steps)
    reps = max(2, repeats // case.E)
    steps = [plain_step(models, u, y, m, case.tcr), bioplastic_step(net, u, y, m, case.tcr), gemm_floor_step(case, gen)]
    if case.kind == "lstm" and lstm_kernel.kernel() is not None:
        steps.append(eager_lstm_step(bioplastic_step(net, u, y, m, case.tcr)))
    times = [t * 1e3 / case.E for t in _time_all(steps, reps)]
    return dict(zip(("plain", "ours", "floor", "eager"), times))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", default=",".join(MODELS), help=f"network kinds, comma-separated (of {', '.join(MODELS)})")
    ap.add_argument("--repeats", type=int, default=20, help="iterations per timed block (fewer for large cases)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--malloc-default", action="store_true",
                    help="leave glibc's malloc as it is (training keeps freed memory; bioplastic/training/allocator.py)")
    args = ap.parse_args()
    kinds = check_kinds([k.strip() for k in args.kinds.split(",") if k.strip()])
    torch.set_num_threads(args.threads)
    kept = False if args.malloc_default else keep_freed_memory()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); float32 Adam; freed memory kept in the "
          f"process (as in training): {'yes' if kept else 'no'}; CPU time, best of 3 interleaved blocks")
    if "lstm" in kinds:
        print(f"LSTM kernel: {lstm_kernel.status()}")
    print(f"{'kind':<11}{'case':<28}{'plain ms/net':>13}{'ours ms/net':>13}{'ratio':>7}{'floor ms/net':>14}"
          f"{'ours/floor':>12}{'plain/floor':>13}{'eager ms/net':>14}{'eager ratio':>13}")
    gen = torch.Generator().manual_seed(0)
    results = []
    for kind in kinds:
        for case in cases(kind):
            r = time_case(case, args.repeats, gen)
            results.append((case, r))
            eager = f"{r['eager']:>14.2f}{r['eager'] / r['plain']:>13.2f}" if "eager" in r else f"{'-':>14}{'-':>13}"
            print(f"{kind:<11}{case.label:<28}{r['plain']:>13.2f}{r['ours']:>13.2f}{r['ours'] / r['plain']:>7.2f}"
                  f"{r['floor']:>14.2f}{r['ours'] / r['floor']:>12.2f}{r['plain'] / r['floor']:>13.2f}{eager}", flush=True)
    print("ratio = bioplastic / plain reference per network (lower is better); floor = the recurrence's matrix "
          "products alone; eager = the LSTM on its eager torch code (the fallback without a C compiler) where the "
          "compiled kernel runs")
    lstm = {c.E: r for c, r in results if c.kind == "lstm" and c.n_units == 100}
    if 1 in lstm and 16 in lstm:
        print(f"lstm N 100: per-network cost at E = 16 over E = 1: {lstm[16]['ours'] / lstm[1]['ours']:.2f}")
    if "leaky_rate" in kinds:
        gpu_figures(args.repeats)


# --------------------------------------------------------------------------------------------- GPU
#: ensemble sizes timed on the GPU and on the CPU
GPU_ENSEMBLES = (1, 2, 4, 8, 16, 32, 64)


def time_bioplastic_on(device: torch.device, E: int, repeats: int, gen) -> float:
    """Seconds per BPTT iteration of an ensemble of E leaky networks (no TCR) on ``device``; the
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
    smallest ensemble size at which the GPU is faster per network (wall time); one line when no GPU is visible."""
    if not torch.cuda.is_available():
        print("GPU figures skipped: no CUDA device visible (torch.cuda.is_available() is False)")
        return
    gpu, cpu = torch.device("cuda"), torch.device("cpu")
    gen = torch.Generator().manual_seed(0)
    reps = max(2, repeats // 4)
    print(f"\nGPU: {torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda}); bioplastic BPTT per network, "
          f"leaky_rate N={N} B={B} T={T} float32 Adam, CPU with {torch.get_num_threads()} threads, wall time")
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
