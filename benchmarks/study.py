"""Where the time of a whole study goes: runs a protocol (default: the shipped default protocol) into a
temporary folder with the default executor and prints the wall time of every stage (training, fixed
points, brian2, predictions, figures, report) and of each training work unit (both from
``OUT/timings.json``), with their shares. A regression shows as a stage whose share grows.

    python benchmarks/study.py [PROTOCOL] [--set dotted.key=value ...]

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("protocol", nargs="?", default="protocols/evidence_accum.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="dotted.key=value")
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
