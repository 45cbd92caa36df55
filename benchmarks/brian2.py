"""Time to re-simulate 100 trials of a 100-unit network in brian2 against the torch engine.

Leaky tanh rate network, N = 100, 100 trials of T = 100 steps (dt 20 ms, tau 100 ms), 3 inputs,
1 output, float64, one member (optionally with short-term plasticity). brian2 runs the trials as
100 independent copies of the network (10^4 neurons, 10^6 synapses) in one network:

- cython, first run: a fresh cache folder (code generation + compilation + the loop);
- cython, second run: the cache warm (the number the ratio uses);
- numpy target, for reference.

Prints where brian2's time goes (building objects and synapses, code generation and compilation,
the loop, monitor extraction; the loop split by code object) and the ratio brian2 / torch, and
checks that the engines agree (max relative error).

    python benchmarks/brian2.py [--plasticity none|anti_hebbian|tsodyks_markram] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

# this file is named brian2.py: keep its folder off the import path, or 'import brian2' finds it
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import numpy as np
import torch

from bioplastic.networks import build_network
from bioplastic.regularizers.tcr_plasticity import PlasticityConfig, ShortTermPlasticity
from bioplastic.simulate import export_network, relative_error, run_brian2, simulate_torch

N, B, T, I, O, DT, TAU = 100, 100, 100, 3, 1, 20.0, 100.0


def network(plasticity: str):
    net = build_network("leaky_rate", dict(n_units=N, g=1.5, tau_ms=TAU), n_inputs=I, n_outputs=O, dt_ms=DT,
                        rngs=[np.random.default_rng(0)], dtype=torch.float64)
    if plasticity != "none":
        net.plasticity = ShortTermPlasticity(PlasticityConfig(rule=plasticity, eta_F=0.05, F_max=1.0)
                                             if plasticity == "anti_hebbian" else PlasticityConfig(rule=plasticity),
                                             DT, 1, torch.float64)
    return net


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plasticity", choices=("none", "anti_hebbian", "tsodyks_markram"), default="none")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats of the torch run and the warm brian2 run")
    args = ap.parse_args()
    torch.set_num_threads(1)
    net = network(args.plasticity)
    u = np.random.default_rng(1).normal(size=(B, T, I))
    print(f"N = {N}, {B} trials x {T} steps, float64, plasticity: {args.plasticity}; "
          f"torch {torch.__version__} ({torch.get_num_threads()} thread), {os.cpu_count()} cores visible")

    torch_s = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        ref = simulate_torch(net, 0, u)
        torch_s.append(time.perf_counter() - t0)
    t_torch = min(torch_s)

    exp = export_network(net, 0)
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        cold = run_brian2(exp, u, codegen="cython", cache_dir=cache)
        t_cold = time.perf_counter() - t0
        warm_runs = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            res = run_brian2(exp, u, codegen="cython", cache_dir=cache, profile=True)
            warm_runs.append((time.perf_counter() - t0, res))
    t_warm, warm = min(warm_runs, key=lambda x: x[0])
    t0 = time.perf_counter()
    npy = run_brian2(exp, u, codegen="numpy", profile=True)
    t_numpy = time.perf_counter() - t0

    err = max(relative_error(warm.state_mxbxtxn[0], ref["state"].values),
              relative_error(warm.output_mxbxtxo[0], ref["readout"].values))
    print(f"\nagreement brian2 ({warm.codegen}) vs torch: max relative error {err:.1e}")
    print(f"\n{'engine':34s} {'total s':>9s}")
    print(f"{'torch (fused recurrence)':34s} {t_torch:9.3f}")
    print(f"{'brian2 ' + cold.codegen + ', first run (cold cache)':34s} {t_cold:9.3f}")
    print(f"{'brian2 ' + warm.codegen + ', second run (warm cache)':34s} {t_warm:9.3f}")
    print(f"{'brian2 numpy':34s} {t_numpy:9.3f}")
    print(f"\nratio brian2 ({warm.codegen}, second run) / torch: {t_warm / t_torch:.1f}x")

    for label, r, total in (("cython first run", cold, t_cold), (f"{warm.codegen} second run", warm, t_warm),
                            ("numpy", npy, t_numpy)):
        tm = r.timings_s
        parts = [f"build {tm['build']:.3f}", f"run {tm['run']:.3f}"]
        if "loop" in tm:
            parts.append(f"(of which loop {tm['loop']:.3f}, code generation/compilation/setup "
                         f"{tm['run'] - tm['loop']:.3f})")
        parts.append(f"extract {tm['extract']:.3f}")
        parts.append(f"other (prefs, compile check, arrays) {total - tm['build'] - tm['run'] - tm['extract']:.3f}")
        print(f"  {label:18s} " + ", ".join(parts))
    top = sorted(warm.profile_s.items(), key=lambda kv: -kv[1])[:5]
    print("  loop by code object (second run): " + ", ".join(f"{k} {v:.3f}" for k, v in top))


if __name__ == "__main__":
    main()
