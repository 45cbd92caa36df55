"""Command line: ``python -m bioplastic {run,validate,analyze,simulate,report,recompute,compare,replicate,list,schema}``. It
parses the arguments, calls the pipeline (:mod:`bioplastic.pipeline`) and prints.

Exit status: 0 success, 1 incomplete (the datasets are written but parts of the report failed; each
failure is printed with its cause), 2 bad input (protocol, override, output folder), 130 interrupted.
"""
from __future__ import annotations

import argparse
import importlib.util
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import get_args

from tqdm import tqdm

from . import __version__, pipeline
from .analysis.compare import consistency_sentences
from .analysis.phase_space import AnalysisError
from .analysis.predictions import prediction_sentences
from .analysis.recording import RecordingError
from .device import DEVICES, DeviceError, resolve_device
from .learning import RULES
from .networks import NETWORKS
from .protocol.docs import schema_text
from .protocol.errors import ProtocolError
from .protocol.load import REPO_MODELS, load_protocol
from .protocol.paths import check_output_dir
from .protocol.schema import TCRConfig
from .regularizers.schedules import SCHEDULES
from .regularizers.tcr_plasticity import PLASTIC_KINDS, PlasticityConfig
from .report.replication import ReplicationError, markdown, replicate
from .report.text import gr_line, summary, sweep_note
from .simulate.run import SimulateError, agreement_line
from .storage.io import DamagedFileError, atomic_write_text
from .storage.lock import RunLockedError, run_lock
from .storage.results import read_dataset
from .tasks import TASKS
from .tasks.neurogym_task import INSTALL_RECIPE as NEUROGYM_RECIPE
from .training.executors import ExecutorError, make_executor
from .training.units import plan_units

#: what ``--help`` says first
DESCRIPTION = ("bioplastic: biologically plausible learning in recurrent rate networks. Train the networks of a "
               "protocol (python -m bioplastic run evidence_accum), analyse them and get a report with predictions "
               "for experiments.")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bioplastic", description=DESCRIPTION,
                                epilog="python -m bioplastic COMMAND --help: the options of a command")
    p.add_argument("--version", action="version", version=f"bioplastic {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train the networks of a protocol, write results.nc, figures and a summary")
    run.add_argument("protocol", help="protocol YAML file, e.g. protocols/evidence_accum.yaml")
    run.add_argument("--out", help="output folder (default: the protocol's output.dir)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="dotted.key=value",
                     help="override a protocol field, e.g. --set seeds=10 --set training.lr=1e-3 (repeatable)")
    run.add_argument("--executor", choices=("local", "inprocess", "dask"),
                     help="local: a process pool over all cores (the default); inprocess: this process only; "
                          "dask: a dask.distributed LocalCluster, or the cluster given by --scheduler")
    run.add_argument("--workers", type=int, help="worker processes (default: one per core)")
    run.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                     help="address of a running Dask scheduler (implies --executor dask; refused with another executor)")
    run.add_argument("--device", choices=DEVICES,
                     help="where to train and analyse: sets training.device (cpu, the default: the same numbers everywhere; "
                          "cuda: a GPU, the same numbers to float tolerance; auto: a GPU when torch sees one)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    val = sub.add_parser("validate", help="check a protocol and print it resolved (models, defaults, conditions)")
    val.add_argument("protocol")
    val.add_argument("--set", dest="overrides", action="append", default=[], metavar="dotted.key=value")
    ana = sub.add_parser("analyze", help="phase-space analysis of a finished run's checkpoints (writes OUT/analysis.nc; no retraining)")
    ana.add_argument("out", help="a finished run's folder (holding results.nc)")
    ana.add_argument("--device", choices=DEVICES,
                     help="where the fixed-point search runs (default: the run's training.device; cuda: a GPU, auto: a GPU when "
                          "torch sees one)")
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
    rec = sub.add_parser(
        "recompute", help="recompute a finished run's learning statistics (metrics, criterion, comparisons, and the leads "
                          "in analysis.nc) from its stored curves with this version's definitions; no training",
        description="Compute a finished run's learning statistics again from the curves results.nc stores - the "
                    "learning-curve metrics, iterations to criterion, which networks learned, the comparisons between "
                    "conditions - by this version's definitions (docs/science.md, sections 1 and 5), then the analysis "
                    "variables measured against each network's drop (the GR leads, their growth, the fixed-point counts "
                    "at the drop), the figures and the report. Nothing is trained or re-simulated; curves, weights and "
                    "fixed points stay as stored. results.nc and analysis.nc are rewritten in place (atomically; no "
                    "copy of the old files is kept: copy the folder first to compare). For runs written before a "
                    "definition changed (the report says so).")
    rec.add_argument("out", help="a finished run's folder (holding results.nc)")
    cmp = sub.add_parser(
        "compare", help="measure a recording (NWB or netCDF) as the run's networks are measured and write OUT/compare.nc and "
                        "compare.html: the data beside each condition, and which conditions it is consistent with",
        description="Measure a recording exactly as the model's predictions measure the trained networks (ramping, build-up "
                    "units, the population's choice axis, single-unit timescales in the input-free period, the psychometric "
                    "curve) and put the data beside each condition of a finished run (its predictions.nc). The recording: an "
                    "NWB file (.nwb: the Units table's spike times, the trials table's start_time, stop_time, choice, "
                    "evidence and <period>_start_time columns; needs pip install 'bioplastic[nwb]') or a netCDF recording "
                    "(rate with dims trial, time, unit; docs/compare.md).")
    cmp.add_argument("run", help="a finished run's folder (holding predictions.nc)")
    cmp.add_argument("recording", help="the recording: FILE.nwb, or a netCDF file (.nc)")
    cmp.add_argument("--out", help="folder for compare.nc and compare.html (default: the run's folder)")
    cmp.add_argument("--bin-ms", type=float, default=20.0, help="NWB: bin width of the firing rates in ms (default 20)")
    cmp.add_argument("--column", action="append", default=[], metavar="NAME=COLUMN",
                     help="the file's name for a column the reader expects, e.g. --column evidence=signed_coherence "
                          "--column stimulus_start_time=cue_on (repeatable)")
    cmp.add_argument("--units", metavar="ID,ID,...", help="NWB: only these unit ids of the Units table")
    cmp.add_argument("--ramp-period", help="the period of the ramp measures (default: delay, else stimulus, else the whole trial)")
    cmp.add_argument("--timescale-period", help="the input-free period of the timescales (default: delay, else fixation; none: no timescales)")
    rpl = sub.add_parser(
        "replicate", help="a protocol's verdicts at several root seeds side by side, and which replicate (markdown)",
        description="Set the verdicts of finished runs of one protocol at different root seeds (--set seed=...) side by side, "
                    "computed from each run's stored datasets as its report computes them. Across root seeds a verdict stands "
                    "only where every run gives it; one that differs is inconclusive. Also lists the comparisons behind the "
                    "verdicts that hold (or do not hold) at every root seed.")
    rpl.add_argument("runs", nargs="+", help="two or more finished run folders of the same protocol at different root seeds")
    rpl.add_argument("--out", help="also write the table to this markdown file (default: print only)")
    sub.add_parser("list", help="list tasks, model kinds and specs, learning rules and schedules")
    sch = sub.add_parser("schema", help="print every protocol field with its type, default and meaning")
    sch.add_argument("--markdown", action="store_true", help="as Markdown (docs/protocol.md is made this way)")
    return p


def _fail(msg: str, code: int = 2) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "list":
            return cmd_list()
        if args.command == "analyze":
            return cmd_analyze(Path(args.out), args.device)
        if args.command == "report":
            return cmd_report(Path(args.out))
        if args.command == "recompute":
            return cmd_recompute(Path(args.out))
        if args.command == "simulate":
            return cmd_simulate(Path(args.out), args.trials, args.codegen, args.dt_ms)
        if args.command == "compare":
            return cmd_compare(args)
        if args.command == "replicate":
            return cmd_replicate(args.runs, args.out)
        if args.command == "schema":
            print(schema_text(markdown=args.markdown))
            return 0
        device = [f"training.device={args.device}"] if getattr(args, "device", None) else []
        protocol = load_protocol(args.protocol, args.overrides + device)
        if args.command == "validate":
            print(protocol.text.rstrip("\n"), flush=True)
            points = f" x {len(protocol.points)} sweep points" if protocol.sweep is not None else ""
            print(f"# ok: {len(protocol.conditions)} condition(s) x {protocol.config.seeds} seed(s){points}; "
                  f"{len(plan_units(protocol))} work unit(s)", file=sys.stderr)
            return 0
        return cmd_run(protocol, args)
    except ProtocolError as exc:
        return _fail(str(exc))
    except DamagedFileError as exc:  # a file that cannot be recomputed from what precedes it
        return _fail(f"{exc}; delete it and run the same command again")
    except DeviceError as exc:  # training.device (or --device) asks for a GPU torch does not see
        return _fail(str(exc))


def _incomplete(exc: pipeline.IncompleteRun) -> int:
    for failure in exc.failures:
        print(f"error: {failure}", file=sys.stderr)
    print(f"error: the run in {exc.out} is incomplete ({len(exc.failures)} part(s) of the report failed; "
          f"they are marked in {exc.out / pipeline.REPORT}). Please report this as a bug.", file=sys.stderr)
    return 1


class Bars(pipeline.StageProgress):
    """A progress bar per stage (the training bar, when given, is closed when the next stage starts,
    so its rate stays that of training), and the stage times at the end."""

    def __init__(self, quiet: bool = False, training=None):
        self.quiet, self.training, self.bar = quiet, training, None

    def start(self, stage: str, total: int, unit: str) -> None:
        if self.training is not None:
            self.training.close()
            self.training = None
        self.bar = tqdm(total=total, unit=unit, desc=stage, disable=self.quiet, leave=False)

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def end(self, stage: str, seconds: float) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if not self.quiet:
            tqdm.write(f"{stage}: {seconds:.1f} s")

    def close(self) -> None:
        for bar in (self.training, self.bar):
            if bar is not None:
                bar.close()


def times_line(out: Path) -> str:
    """One line: the wall time of each stage of the run in ``out`` (``OUT/timings.json``)."""
    times = pipeline.read_times(out)
    return ("time per stage: " + ", ".join(f"{k} {v:.0f} s" if v >= 10 else f"{k} {v:.1f} s" for k, v in times.items())
            + f" (total {sum(times.values()):.0f} s)") if times else ""


def cmd_analyze(out: Path, device: str | None = None) -> int:
    if device is not None:
        resolve_device(device, "--device")  # DeviceError before anything starts
    bars = Bars()
    try:
        ds, protocol = pipeline.load_results(out)
        analysis = pipeline.analysis_stage(out, ds, protocol, bars, device=device)
        pipeline.write_report(out, stages=bars)
    except (AnalysisError, pipeline.RunError, pipeline.RunLockedError, DeviceError) as exc:
        return _fail(str(exc))
    except pipeline.IncompleteRun as exc:
        return _incomplete(exc)
    finally:
        bars.close()
    print(f"{out / pipeline.ANALYSIS}")
    print(gr_line(analysis))
    return 0


def cmd_simulate(out: Path, trials: int, codegen: str, dt_ms: float | None) -> int:
    """Re-simulate in brian2 (OUT/brian2.nc), compute the predictions on brian2's simulation
    (OUT/predictions_brian2.nc, same trials as the torch predictions), refresh the report."""
    bars = Bars()
    try:
        ds, protocol = pipeline.load_results(out)
        result = pipeline.brian2_stages(out, ds, protocol, trials, codegen, dt_ms, bars)
        pipeline.write_report(out, stages=bars)
    except (SimulateError, AnalysisError, pipeline.RunError, pipeline.RunLockedError, ValueError) as exc:
        return _fail(str(exc))
    except pipeline.IncompleteRun as exc:
        return _incomplete(exc)
    finally:
        bars.close()
    print(out / pipeline.BRIAN2)
    print(out / pipeline.PREDICTIONS_BRIAN2)
    print(agreement_line(result))
    return 0


def cmd_report(out: Path) -> int:
    """Rebuild OUT/report.html (and the figure PNGs) from the saved datasets, recomputing nothing.
    Exit 0 when a report was written (sections whose dataset is missing are marked unavailable and
    listed here), 1 when parts of it failed, 2 when none could be written (no results.nc)."""
    code, path = _in_run_folder(out, lambda: _report(out))
    if code is None:
        print(path)
    return code or 0


def _report(out: Path) -> Path:
    run = pipeline.read_run(out)
    if run.results is not None:
        for name in run.missing:
            why = f"unreadable: {run.errors[name]}" if name in run.errors else "missing"
            print(f"warning: {name} {why} ({pipeline.FILES[name][0]}); its sections are marked unavailable. "
                  f"To make it: {pipeline.FILES[name][1].replace('OUT', str(out))}", file=sys.stderr)
    return pipeline.write_report(out)


def cmd_recompute(out: Path) -> int:
    """The learning statistics of a finished run computed again by this version's definitions
    (``pipeline.recompute_run``); exit 2 when there is no finished run to recompute (nothing written)."""
    code, result = _in_run_folder(out, lambda: pipeline.recompute_run(out, report=False))
    if code is not None:
        return code
    changes, notes = result
    if changes:
        print("recomputed; brought up to date:", file=sys.stderr)
        for change in changes:
            print(f"  {change}", file=sys.stderr)
    else:
        print("the run's statistics were computed with this version's definitions; recomputed, unchanged", file=sys.stderr)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    code, path = _in_run_folder(out, lambda: pipeline.write_report(out))  # the datasets are written: report them
    if code is None:
        print(path)
    return code or 0


def _in_run_folder(out: Path, action: Callable[[], object]) -> tuple[int | None, object]:
    """``(None, action())`` for a run folder ``out``; ``(exit code, None)`` with the message printed when
    it is no folder (2), the stage refuses it (2: no results.nc, locked, unreadable) or parts of the
    report failed (1)."""
    if out.is_file():
        return _fail(f"{out} is a file; expected a run folder holding results.nc"
                     + (f" (here: {out.parent})" if out.name == pipeline.RESULTS else "")), None
    if not out.is_dir():
        return _fail(f"{out} does not exist; expected a run folder holding results.nc "
                     f"(made by `python -m bioplastic run PROTOCOL --out {out}`)"), None
    try:
        return None, action()
    except (pipeline.RunError, pipeline.RunLockedError, OSError) as exc:
        return _fail(str(exc)), None
    except pipeline.IncompleteRun as exc:
        return _incomplete(exc), None


def cmd_compare(args) -> int:
    """The recording beside the run's predictions (OUT/compare.nc, OUT/compare.html); exit 2 on a bad
    recording, run folder or option (nothing written)."""
    columns = {}
    for item in args.column:
        name, sep, column = item.partition("=")
        if not sep or not name.strip() or not column.strip():
            return _fail(f"--column: expected NAME=COLUMN (e.g. --column evidence=signed_coherence), got {item!r}")
        columns[name.strip()] = column.strip()
    units = None
    if args.units is not None:
        try:
            units = [int(u) for u in args.units.split(",") if u.strip()]
        except ValueError:
            return _fail(f"--units: expected unit ids separated by commas (e.g. --units 0,3,7), got {args.units!r}")
    try:
        cmp, nc, page = pipeline.compare_recording(Path(args.run), Path(args.recording), None if args.out is None else Path(args.out),
                                                   columns=columns or None, bin_ms=args.bin_ms, units=units,
                                                   ramp_period=args.ramp_period, timescale_period=args.timescale_period)
    except (pipeline.RunError, RecordingError, FileNotFoundError) as exc:
        return _fail(str(exc))
    print(nc)
    print(page)
    for line in consistency_sentences(cmp):
        print(f"  - {line}")
    return 0


def cmd_replicate(runs: list[str], out: str | None) -> int:
    """Print (and with ``out`` write) the verdicts of the runs side by side; exit 2 when the folders
    are not finished runs of one protocol at different root seeds."""
    try:
        text = markdown(replicate(runs))
    except ReplicationError as exc:
        return _fail(str(exc))
    print(text, end="")
    if out is not None:
        atomic_write_text(Path(out), text)
        print(f"written: {out}", file=sys.stderr)
    return 0


def cmd_list() -> int:
    rules = RULES.names()
    specs = sorted(p.stem for folder in (Path.cwd() / "models", REPO_MODELS) if folder.is_dir() for p in folder.glob("*.yaml"))
    print("tasks:      " + ", ".join(TASKS.names()) + "".join(f", {k}" for k in TASKS.optional_names() if _importable(k)))
    for kind in TASKS.optional_names():
        if not _importable(kind):
            print(f"            {kind}: {OPTIONAL_TASKS.get(kind, 'an optional task kind whose dependency is not installed')}")
    print("models:     " + ", ".join(NETWORKS.names()))
    print("model specs: " + ", ".join(dict.fromkeys(specs)) + "   (model: {spec: NAME})")
    print("rules:      " + ", ".join(rules))
    print("schedules:  " + ", ".join(SCHEDULES.names()))
    print("tcr forms:  " + ", ".join(get_args(TCRConfig.model_fields["form"].annotation)))
    print("plasticity: " + ", ".join(get_args(PlasticityConfig.model_fields["rule"].annotation))
          + f"   (tcr: {{form: plasticity, plasticity: {{rule: NAME}}}}; models {', '.join(PLASTIC_KINDS)})")
    protocols = sorted(p.stem for p in (REPO_MODELS.parent / "protocols").glob("*.yaml"))
    if protocols:
        print("protocols:  " + ", ".join(protocols) + "   (protocols/NAME.yaml)")
    return 0


#: how to get the optional task kinds (TASKS.optional_names()) whose dependency is not installed
OPTIONAL_TASKS = {
    "neurogym": "neurogym environments (task: {kind: neurogym, env: PerceptualDecisionMaking-v0}); needs neurogym, "
                "which pins numpy 2.2, so in an environment of its own: " + NEUROGYM_RECIPE + " (docs/tasks.md)",
}


def _importable(kind: str) -> bool:
    """Whether the optional task kind's dependency is installed (found, not imported)."""
    return importlib.util.find_spec(kind) is not None


#: prediction sentences printed at the end of a run (all of them are in the report)
HEADLINES = 6


def cmd_run(protocol, args) -> int:
    if args.workers is not None and args.workers < 1:
        return _fail(f"--workers: expected a positive number of worker processes, got {args.workers}")
    name = args.executor or ("dask" if args.scheduler is not None else "local")
    try:
        executor = make_executor(name, args.workers, args.scheduler)
        executor.check()  # an unreachable scheduler fails before anything is written
    except ExecutorError as exc:
        return _fail(str(exc))
    if not executor.remote:  # (a cluster's workers resolve training.device on their own machines)
        pipeline.check_device(protocol)  # DeviceError (exit 2) before anything is written
    out = pipeline.output_dir(protocol, args.out)
    try:
        pipeline.check_init_sources(protocol, out)  # training.init's source runs, before anything is written
    except pipeline.RunError as exc:
        return _fail(str(exc))
    if not (out / "protocol.yaml").exists():
        check_output_dir(out)  # before the lock creates the folder
    try:
        with run_lock(out):  # taken before any output, so a refused second run prints nothing else
            return _run(protocol, args, executor, out)
    except RunLockedError as exc:
        return _fail(str(exc))


def _run(protocol, args, executor, out: Path) -> int:
    # a kill (SIGTERM) stops like Ctrl-C: the last checkpoint is on disk, nothing half-written
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    resuming = sorted((out / "state").glob("*.pt")) if (out / "protocol.yaml").is_file() else []
    if resuming and not args.quiet:
        print(f"resuming {len(resuming)} work unit(s) from their last checkpoint in {out / 'state'}", file=sys.stderr)
    bar = tqdm(total=pipeline.total_work(protocol), unit="net-it", disable=args.quiet, smoothing=0.05,
               desc=f"{protocol.name}: {len(protocol.conditions)} cond x {protocol.config.seeds} seeds")

    def progress(n: int, info: dict) -> None:
        bar.update(n)
        if "loss" in info:
            bar.set_postfix(loss=f"{info['loss']:.4f}", refresh=False)

    t0 = time.perf_counter()
    incomplete = None
    bars = Bars(args.quiet, training=bar)
    try:
        if hasattr(executor, "dashboard"):
            executor.on_start = lambda text: tqdm.write(f"executor: {text}")
        ds, out = pipeline.run_protocol(protocol, out, executor=executor, progress=progress, stages=bars)
    except pipeline.IncompleteRun as exc:
        incomplete = exc
        ds = read_dataset(out / pipeline.RESULTS)
    except (pipeline.RunError, pipeline.RunLockedError, ExecutorError, AnalysisError, SimulateError, DeviceError) as exc:
        bars.close()
        return _fail(str(exc))
    except KeyboardInterrupt:
        bars.close()
        print(f"\ninterrupted; run the same command again to resume from the last checkpoint in {out}/state",
              file=sys.stderr)
        return 130
    bars.close()
    print(f"\n{protocol.name}: done in {time.perf_counter() - t0:.0f} s ({executor.describe()}) -> {out}/results.nc")
    if times_line(out):
        print(times_line(out))
    print(summary(ds))
    note = sweep_note(protocol, out)
    if note:
        print(note)
    if (out / pipeline.ANALYSIS).is_file():
        print(gr_line(read_dataset(out / pipeline.ANALYSIS)))
    if (out / pipeline.BRIAN2).is_file():
        print(agreement_line(read_dataset(out / pipeline.BRIAN2)))
    if (out / pipeline.PREDICTIONS).is_file():
        print("\npredictions (95 % CIs over seeds):")
        for line in prediction_sentences(read_dataset(out / "predictions.nc"))[:HEADLINES]:
            print(f"  - {line}")
    if (out / pipeline.REPORT).is_file():
        print(f"\nreport: {out / pipeline.REPORT}")
    return 0 if incomplete is None else _incomplete(incomplete)
