"""What a competing busy process costs a run: the thread policy against torch's default threads.

Trains the default protocol's networks for a few iterations (training only, the default executor: a
local pool of one worker per core) three times: on the machine as it is, beside one competing
busy process (a pure-Python spin loop), and beside that process again with the workers given
torch's default thread count (every core each, the behaviour before the thread policy), whose
OpenMP threads spin against the competitor. Prints the wall times and the ratios to the first run.

    python benchmarks/contention.py [--iterations 20]

Run it on an otherwise quiet machine: the first row is the reference.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time
from pathlib import Path

from bioplastic import load_protocol
from bioplastic.training import executors
from bioplastic.training.executors import LocalPoolExecutor, cpu_count
from bioplastic.training.units import plan_units


def _spin(stop) -> None:
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def _train(protocol) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        LocalPoolExecutor().run(protocol.text, plan_units(protocol), Path(tmp))
        return time.perf_counter() - t0


def _with_competitor(fn):
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    proc = ctx.Process(target=_spin, args=(stop,), daemon=True)
    proc.start()
    try:
        time.sleep(0.5)
        return fn()
    finally:
        stop.set()
        proc.join(5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=20)
    args = ap.parse_args()
    n = args.iterations
    protocol = load_protocol("evidence_accum", [f"training.iterations={n}", f"training.checkpoint_every={n}",
                                                f"training.eval_every={n}", "output.dir=unused"])
    cores = cpu_count()
    print(f"default protocol, {n} iterations, training only; local pool of {cores} workers; "
          f"thread policy: {executors.threads_per_worker(cores)} torch thread(s) per worker")
    quiet = _train(protocol)
    busy = _with_competitor(lambda: _train(protocol))
    policy = executors.threads_per_worker
    executors.threads_per_worker = lambda workers: cores  # torch's default: every core, in every worker
    try:
        busy_default = _with_competitor(lambda: _train(protocol))
    finally:
        executors.threads_per_worker = policy
    print(f"{'case':<66}{'seconds':>9}{'ratio':>8}")
    for label, t in (("as the machine is", quiet), ("beside a busy process, thread policy", busy),
                     (f"beside a busy process, {cores} torch threads per worker (no policy)", busy_default)):
        print(f"{label:<66}{t:>9.1f}{t / quiet:>8.2f}")
    print("target: a busy process costs at most ~2x")


if __name__ == "__main__":
    main()
