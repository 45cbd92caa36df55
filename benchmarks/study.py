"""Where the time of a whole study goes: runs a protocol (default: the shipped default protocol) into a
temporary folder with the default executor and prints the wall time of every stage (training, fixed
points, brian2, predictions, figures, report) and of each training work unit (both from
``OUT/timings.json``), with their shares. A regression shows as a stage whose share grows.

    python benchmarks/study.py [PROTOCOL] [--set dotted.key=value ...]
    python benchmarks/study.py --long [--iterations 300]

``--long``: the long study - delayed addition learned by the LSTM (protocols/lstm_search_phase.yaml),
10 seeds x 3 conditions (baseline; TCR loss on h; TCR loss on (h, c), the LSTM's own form:
``tcr_on_cell``; the LSTM has no plasticity form) x 3000 iterations, no phase-space analysis.
``--iterations`` shortens it and prints the wall time extrapolated to the full length as well
(training scaled by the iterations, the other stages as measured).

State the thread count with the numbers (``OMP_NUM_THREADS``); on a busy machine compare shares, not
seconds.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bioplastic import load_protocol, run_protocol
from bioplastic.pipeline import read_times, read_unit_times
from bioplastic.training.executors import LocalPoolExecutor, cpu_count

#: the long study (``--long``): iterations of the full length, and the settings over the LSTM protocol's
LONG_ITERATIONS = 3000
LONG = ("protocols/lstm_search_phase.yaml", [
    "seeds=10", "analysis=null",
    "conditions={baseline: {}, tcr_loss: {tcr: {form: loss, lambda: 0.1}}, "
    "tcr_loss_cell: {tcr: {form: loss, lambda: 0.1}, model: {tcr_on_cell: true}}}",
])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("protocol", nargs="?", default="protocols/evidence_accum.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="dotted.key=value")
    parser.add_argument("--long", action="store_true", help="the long LSTM study (see above) instead of PROTOCOL")
    parser.add_argument("--iterations", type=int, default=LONG_ITERATIONS,
                        help=f"--long: training iterations (default {LONG_ITERATIONS}); fewer: the full length is extrapolated")
    args = parser.parse_args()
    if args.long:
        if args.iterations <= 0:
            parser.error(f"--iterations: expected a positive number, got {args.iterations}")
        protocol = load_protocol(LONG[0], LONG[1] + [f"training.iterations={args.iterations}"] + args.overrides)
    else:
        protocol = load_protocol(args.protocol, args.overrides)
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        out = Path(tmp) / "run"
        t0 = time.perf_counter()
        run_protocol(protocol, out, executor=LocalPoolExecutor())
        total = time.perf_counter() - t0
        times = read_times(out)
        units = read_unit_times(out)
    print(f"{protocol.name}: {len(protocol.conditions)} conditions x {protocol.config.seeds} seeds; {cpu_count()} cores, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; {total:.1f} s in all")
    print(f"{'stage':<24}{'seconds':>10}{'share':>9}")
    for stage, s in times.items():
        print(f"{stage:<24}{s:>10.1f}{100 * s / total:>8.0f} %")
    if units:
        print(f"{'training work unit':<24}{'seconds':>10}   (units run in parallel: their sum exceeds the stage)")
        for uid, s in units.items():
            print(f"{uid:<24}{s:>10.1f}")
    iterations = protocol.config.training.iterations
    if args.long and iterations != LONG_ITERATIONS and "training" in times:
        full = total + times["training"] * (LONG_ITERATIONS / iterations - 1)
        print(f"extrapolated to {LONG_ITERATIONS} iterations (training x {LONG_ITERATIONS / iterations:g}, the other "
              f"stages as measured): {full:.0f} s = {full / 60:.1f} min")


if __name__ == "__main__":
    main()
