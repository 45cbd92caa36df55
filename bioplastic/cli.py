"""Command line: ``python -m bioplastic {run,validate,analyze,simulate,report,list,schema}``. Thin: parse, call, print.

Exit status: 0 success, 2 bad input (protocol, override, output folder), 130 interrupted.
"""
from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

import numpy as np


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bioplastic", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train the networks of a protocol, write results.nc, figures and a summary")
    run.add_argument("protocol", help="protocol YAML file, e.g. protocols/evidence_accum.yaml")
    run.add_argument("--out", help="output folder (default: the protocol's output.dir)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="dotted.key=value",
                     help="override a protocol field, e.g. --set seeds=10 --set training.lr=1e-3 (repeatable)")
    run.add_argument("--executor", choices=("local", "inprocess", "dask"), default="local",
                     help="local: a process pool over all cores (default); inprocess: this process only; "
                          "dask: a dask.distributed LocalCluster, or the cluster given by --scheduler")
    run.add_argument("--workers", type=int, help="worker processes (default: one per core)")
    run.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="address of a running Dask scheduler (implies --executor dask)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    val = sub.add_parser("validate", help="check a protocol and print it resolved (models, defaults, conditions)")
    val.add_argument("protocol")
    val.add_argument("--set", dest="overrides", action="append", default=[], metavar="dotted.key=value")
    ana = sub.add_parser("analyze", help="phase-space analysis of a finished run's checkpoints (writes OUT/analysis.nc; no retraining)")
    ana.add_argument("out", help="a finished run's folder (holding results.nc)")
    sim = sub.add_parser("simulate", help="re-simulate a finished run's trained networks in brian2 and torch (writes OUT/brian2.nc)")
    sim.add_argument("out", help="a finished run's folder (holding results.nc)")
    sim.add_argument("--engine", choices=("brian2",), default="brian2", help="the independent simulator (brian2)")
    sim.add_argument("--trials", type=int, default=32, help="held-out trials per network (default 32)")
    sim.add_argument("--codegen", choices=("cython", "numpy"), default="cython",
                     help="brian2 target: cython (compiled, cached in OUT/brian2_cache; numpy if no compiler) or numpy")
    sim.add_argument("--dt-ms", type=float, help="brian2 step in ms (default: the task's; a divisor of it gives "
                                                  "the torch engine's discretisation error)")
    rep = sub.add_parser("report", help="rebuild OUT/report.html (and figures) from a run's saved datasets, recomputing nothing; "
                                         "lists missing datasets and marks their sections unavailable")
    rep.add_argument("out", help="a finished run's folder (holding results.nc)")
    sub.add_parser("list", help="list tasks, model kinds and specs, learning rules and schedules")
    sch = sub.add_parser("schema", help="print every protocol field with its type, default and meaning")
    sch.add_argument("--markdown", action="store_true", help="as Markdown (docs/protocol.md is made this way)")
    return p


def _fail(msg: str, code: int = 2) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .protocol.errors import ProtocolError

    try:
        if args.command == "list":
            return cmd_list()
        if args.command == "analyze":
            return cmd_analyze(Path(args.out))
        if args.command == "report":
            return cmd_report(Path(args.out))
        if args.command == "simulate":
            return cmd_simulate(Path(args.out), args.trials, args.codegen, args.dt_ms)
        if args.command == "schema":
            from .protocol.docs import schema_text

            print(schema_text(markdown=args.markdown))
            return 0
        from .protocol.load import load_protocol

        protocol = load_protocol(args.protocol, args.overrides)
        if args.command == "validate":
            print(protocol.text.rstrip("\n"), flush=True)
            from .training.units import plan_units

            points = f" x {len(protocol.points)} sweep points" if protocol.sweep is not None else ""
            print(f"# ok: {len(protocol.conditions)} condition(s) x {protocol.config.seeds} seed(s){points}; "
                  f"{len(plan_units(protocol))} work unit(s)", file=sys.stderr)
            return 0
        return cmd_run(protocol, args)
    except ProtocolError as exc:
        return _fail(str(exc))


def cmd_analyze(out: Path) -> int:
    from tqdm import tqdm

    from .analysis.phase_space import AnalysisError, analyze_run, load_run
    from .report.html import build_report
    from .training.run import write_figures

    try:
        ds, protocol = load_run(out)
        n = len(protocol.conditions) * ds.sizes["checkpoint"]
        with tqdm(total=n, unit="checkpoint", desc="fixed points") as bar:
            analysis = analyze_run(out, progress=lambda k, info: bar.update(k))
    except AnalysisError as exc:
        return _fail(str(exc))
    write_figures(ds, out, analysis)
    build_report(ds, out, analysis)
    print(f"{out / 'analysis.nc'}")
    print(gr_line(analysis))
    return 0


def gr_line(analysis) -> str:
    lines = []
    for cond in analysis["condition"].values:
        lead = analysis["lead_time"].sel(condition=cond).values
        ok = np.isfinite(lead)
        med = float(analysis["lead_time_median"].sel(condition=cond))
        lo, hi = analysis["lead_time_ci"].sel(condition=cond).values
        ci = f"{med:+.1f} iterations (95 % CI {lo:+.1f} to {hi:+.1f})" if ok.any() else "n/a"
        lines.append(f"GR before the drop, {cond}: lead > 0 in {(lead[ok] > 0).sum()}/{ok.sum()} networks with both a "
                     f"GR event and a drop ({lead.size} analysed); median lead {ci}")
    return "\n".join(lines)


def cmd_simulate(out: Path, trials: int, codegen: str, dt_ms: float | None) -> int:
    from .simulate.run import FILE, SimulateError, agreement_line, simulate_run

    try:
        result = simulate_run(out, trials=trials, codegen=codegen, dt_ms=dt_ms,
                              progress=lambda cond: print(f"re-simulating {cond} ...", file=sys.stderr))
    except (SimulateError, ValueError) as exc:
        return _fail(str(exc))
    print(out / FILE)
    print(agreement_line(result))
    return 0


def cmd_report(out: Path) -> int:
    """Rebuild OUT/report.html (and the figure PNGs) from the saved datasets, recomputing nothing.
    Exit 0 when a report was written (sections whose dataset is missing are marked unavailable and
    listed here), 2 when none could be (no results.nc)."""
    from .report.html import FILES, ReportError, build_report, load_run

    if not out.is_dir():
        return _fail(f"{out} is not a folder; expected a run folder holding results.nc "
                     f"(made by `python -m bioplastic run PROTOCOL --out {out}`)")
    run = load_run(out)
    if run.results is None:
        why = f" ({run.errors['results.nc']})" if "results.nc" in run.errors else ""
        return _fail(f"no report written: {out / 'results.nc'} is missing or unreadable{why}; run "
                     f"`python -m bioplastic run PROTOCOL --out {out}` first (or resume it with the same command)")
    for name in run.missing:
        why = f"unreadable: {run.errors[name]}" if name in run.errors else "missing"
        print(f"warning: {name} {why} ({FILES[name][0]}); its sections are marked unavailable. "
              f"To make it: {FILES[name][1].replace('OUT', str(out))}", file=sys.stderr)
    try:
        from .protocol.load import protocol_from_text
        from .training.run import write_figures

        if protocol_from_text(run.results.attrs["protocol"]).config.output.figures:  # the protocol asks for PNGs
            write_figures(run.results, out, run.analysis, run.predictions)
    except Exception as exc:  # noqa: BLE001 - the PNGs are a convenience; the report draws its own
        print(f"warning: the figure files could not be rewritten ({type(exc).__name__}: {exc})", file=sys.stderr)
    try:
        path = build_report(run.results, out, run.analysis)
    except (ReportError, OSError) as exc:
        return _fail(f"no report written: {exc}")
    print(path)
    return 0


def cmd_list() -> int:
    from .networks import NETWORKS
    from .protocol.load import REPO_MODELS
    from .learning import RULES
    from .regularizers.schedules import SCHEDULES
    from .tasks import TASKS

    rules = RULES.names()
    specs = sorted(p.stem for folder in (Path.cwd() / "models", REPO_MODELS) if folder.is_dir() for p in folder.glob("*.yaml"))
    print("tasks:      " + ", ".join(TASKS.names()))
    print("models:     " + ", ".join(NETWORKS.names()))
    print("model specs: " + ", ".join(dict.fromkeys(specs)) + "   (model: {spec: NAME})")
    print("rules:      " + ", ".join(rules))
    print("schedules:  " + ", ".join(SCHEDULES.names()))
    from typing import get_args

    from .protocol.schema import TCRConfig
    from .regularizers.tcr_plasticity import PLASTIC_KINDS, PlasticityConfig

    print("tcr forms:  " + ", ".join(get_args(TCRConfig.model_fields["form"].annotation)))
    print("plasticity: " + ", ".join(get_args(PlasticityConfig.model_fields["rule"].annotation))
          + f"   (tcr: {{form: plasticity, plasticity: {{rule: NAME}}}}; models {', '.join(PLASTIC_KINDS)})")
    protocols = sorted(p.stem for p in (REPO_MODELS.parent / "protocols").glob("*.yaml"))
    if protocols:
        print("protocols:  " + ", ".join(protocols) + "   (protocols/NAME.yaml)")
    return 0


#: prediction sentences printed at the end of a run (all of them are in the report)
HEADLINES = 6


def cmd_run(protocol, args) -> int:
    from tqdm import tqdm

    from .training.executors import ExecutorError, make_executor
    from .training.run import RunError, output_dir, run_protocol, summary, sweep_note, total_work

    if args.workers is not None and args.workers < 1:
        return _fail(f"--workers: expected a positive number of worker processes, got {args.workers}")
    try:
        executor = make_executor("dask" if args.scheduler else args.executor, args.workers, args.scheduler)
    except ExecutorError as exc:
        return _fail(str(exc))
    out = output_dir(protocol, args.out)
    # a kill (SIGTERM) stops like Ctrl-C: the last checkpoint is on disk, nothing half-written
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    bar = tqdm(total=total_work(protocol), unit="net-it", disable=args.quiet, smoothing=0.05,
               desc=f"{protocol.name}: {len(protocol.conditions)} cond x {protocol.config.seeds} seeds")

    def progress(n: int, info: dict) -> None:
        bar.update(n)
        if "loss" in info:
            bar.set_postfix(loss=f"{info['loss']:.4f}", refresh=False)

    t0 = time.perf_counter()
    try:
        if hasattr(executor, "dashboard"):
            executor.on_start = lambda text: tqdm.write(f"executor: {text}")
        ds, out = run_protocol(protocol, out, executor=executor, progress=progress)
    except (RunError, ExecutorError) as exc:
        bar.close()
        return _fail(str(exc))
    except KeyboardInterrupt:
        bar.close()
        print(f"\ninterrupted; run the same command again to resume from the last checkpoint in {out}/state",
              file=sys.stderr)
        return 130
    bar.close()
    print(f"\n{protocol.name}: done in {time.perf_counter() - t0:.0f} s ({executor.describe()}) -> {out}/results.nc")
    print(summary(ds))
    note = sweep_note(protocol, out)
    if note:
        print(note)
    if (out / "analysis.nc").is_file():
        from .storage.results import read_dataset

        print(gr_line(read_dataset(out / "analysis.nc")))
    if (out / "brian2.nc").is_file():
        from .simulate.run import agreement_line
        from .storage.results import read_dataset

        print(agreement_line(read_dataset(out / "brian2.nc")))
    if (out / "predictions.nc").is_file():
        from .analysis.predictions import prediction_sentences
        from .storage.results import read_dataset

        print("\npredictions (95 % CIs over seeds):")
        for line in prediction_sentences(read_dataset(out / "predictions.nc"))[:HEADLINES]:
            print(f"  - {line}")
    if (out / "report.html").is_file():
        print(f"\nreport: {out / 'report.html'}")
    return 0
