"""The run folder and the order of its stages: what ``python -m bioplastic run`` does.

    train -> results.nc -> analysis.nc -> predictions.nc -> brian2.nc (+ predictions_brian2.nc)
          [-> staircase.nc: the filtered-noise task's linear oracle] -> figures (*.png) -> report.html

Every stage below this module is a function of data (datasets and the resolved protocol in, a
dataset or HTML out); this module alone reads and writes the folder. Each stage's file is written
atomically and a finished stage is not redone, so an interrupted run - during training, an analysis,
the figures or the report - resumes with the same command. Nothing in the package imports this
module except the command line and the public API (``bioplastic/__init__.py``).

Stage failures: a dataset stage that fails raises (nothing half-written). A section of the report
that fails (a figure, a verdict, the sentences) is shown as an error on the page; the run then ends
with :class:`IncompleteRun` naming each failure and its cause (exit status 1 on the command line).
With ``strict=True`` (tests) the first failure raises instead.
"""
from __future__ import annotations

import datetime as _dt
import json
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import xarray as xr

from .analysis.compare import compare_dataset
from .analysis.geometry import gr_rule
from .analysis.learning_curves import DEFINITION_CHANGES, DEFINITIONS, STAMP, add_learning_statistics, outdated, settled, statistics_date
from .analysis.linear_oracle import applies as oracle_applies
from .analysis.linear_oracle import staircase_dataset
from .analysis.phase_space import DROP_RELATIVE_INPUTS, add_drop_relative, analyze
from .analysis.predictions import DEFAULT_TRIALS, predict
from .analysis.recording import measure_recording
from .device import DeviceError, resolve_device
from .plotting.curves import png_bytes
from .plotting.figures import figure_names, figures
from .protocol.load import Protocol, protocol_from_text
from .protocol.paths import check_output_dir
from .protocol.yaml12 import load_yaml
from .report.compare import compare_html
from .report.html import FILES, ReportError, Run, render
from .simulate.engines import Brian2Engine
from .simulate.run import DEFAULT_TRIALS as RESIMULATED_TRIALS
from .simulate.run import resimulate
from .storage.io import DamagedFileError, DamagedFileWarning, atomic_torch_save, atomic_write, atomic_write_text, safe_torch_load
from .storage.lock import LOCK_FILES, RunLockedError, run_lock
from .storage.rebuild import protocol_of
from .storage.recordings import DEFAULT_BIN_MS, read_recording
from .storage.results import build_dataset, combine_points, describe, git_commit, matching_point, read_dataset, sweep_points, verify_dataset, write_dataset
from .training.executors import Executor, InProcessExecutor
from .training.init_from import SOURCES_FILE, InitSourceError, check_sources, recorded_sources
from .training.loop import EnsembleTrainer, schedule_points
from .training.units import STATE_DIR, UNITS_DIR, load_result, plan_units, result_path, verified_results

__all__ = ["DeviceError", "IncompleteRun", "RunError", "RunLockedError", "analyze_run", "check_device", "compute_predictions",
           "compute_staircase", "load_results", "output_dir", "read_run", "read_times", "read_unit_times", "results_dataset",
           "run_protocol", "simulate_run", "total_work", "train", "write_report"]

RESULTS = "results.nc"
ANALYSIS = "analysis.nc"
PREDICTIONS = "predictions.nc"
BRIAN2 = "brian2.nc"
PREDICTIONS_BRIAN2 = "predictions_brian2.nc"
STAIRCASE = "staircase.nc"
REPORT = "report.html"
#: wall time of each stage, in seconds (the last time it ran), and of each training work unit
TIMINGS = "timings.json"
#: the entry of timings.json that holds each training work unit's time (unit id -> seconds)
UNIT_TIMES = "training work units"
#: finished (condition, checkpoint) parts of an interrupted phase-space analysis
PARTS_DIR = "analysis_parts"
#: brian2's compiled-code cache
CACHE_DIR = "brian2_cache"


class RunError(Exception):
    """The run cannot start or go on (e.g. the output folder holds a different protocol, or a
    finished run's dataset is missing or unreadable)."""


class IncompleteRun(Exception):
    """Every dataset was written, but parts of the report could not be made (each failure with its
    cause in ``failures``); the report shows them as errors."""

    def __init__(self, out: Path, failures: list[str]):
        self.out, self.failures = out, failures
        super().__init__(f"the run in {out} is incomplete: " + "; ".join(failures))


class StageProgress:
    """How the pipeline reports the stages after training (the command line draws a bar for each
    and prints their times); this base class says nothing. Training reports through ``progress``."""

    def start(self, stage: str, total: int, unit: str) -> None:
        """A stage begins: ``total`` steps of ``unit``."""

    def advance(self, n: int = 1) -> None:
        """``n`` more steps of the current stage are done."""

    def end(self, stage: str, seconds: float) -> None:
        """The stage is done (``seconds`` of wall time)."""


def _timings(out: Path) -> dict:
    path = Path(out) / TIMINGS
    try:
        times = json.loads(path.read_text()) if path.is_file() else {}
    except (ValueError, UnicodeDecodeError):  # a damaged timings file only loses the old times
        return {}
    return times if isinstance(times, dict) else {}


def _write_timings(out: Path, times: dict) -> None:
    atomic_write_text(Path(out) / TIMINGS, json.dumps(times, indent=1) + "\n")


def record_time(out: Path, stage: str, seconds: float) -> None:
    """Add a stage's wall time to ``OUT/timings.json`` (atomically; a rerun stage replaces its time)."""
    times = _timings(out)
    times[stage] = round(float(seconds), 2)
    _write_timings(out, times)


def record_unit_times(out: Path, seconds: dict[str, float]) -> None:
    """The training time of each work unit (unit id -> seconds), in ``OUT/timings.json`` under
    :data:`UNIT_TIMES`. Kept out of results.nc: the numbers of a resumed run equal those of an
    uninterrupted one, its timings do not."""
    times = _timings(out)
    times[UNIT_TIMES] = {k: round(float(v), 2) for k, v in seconds.items()}
    _write_timings(out, times)


def record_written(out: Path, name: str) -> None:
    """When ``OUT/name`` was written (UTC, to the second), in ``OUT/timings.json`` under
    ``"NAME written"``: the datasets themselves hold no time stamp (see :func:`assemble`)."""
    times = _timings(out)
    times[f"{name} written"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    _write_timings(out, times)


def read_times(out: Path) -> dict[str, float]:
    """The recorded stage times of a run folder, stage -> seconds (empty when none or unreadable)."""
    return {k: v for k, v in _timings(out).items() if isinstance(v, int | float)}


def read_unit_times(out: Path) -> dict[str, float]:
    """The recorded training time of each work unit of a run folder, unit id -> seconds (empty when none)."""
    units = _timings(out).get(UNIT_TIMES, {})
    return units if isinstance(units, dict) else {}


@contextmanager
def stage(out: Path | None, stages: StageProgress | None, name: str, total: int, unit: str):
    """Report a stage's start, steps and end, and record its time when it succeeds. Yields the
    step callback, in the ``progress(n, info)`` form the stages take."""
    stages = stages or StageProgress()
    t0 = time.perf_counter()
    stages.start(name, total, unit)
    yield lambda n=1, info=None: stages.advance(n)
    seconds = time.perf_counter() - t0
    stages.end(name, seconds)
    if out is not None:
        record_time(out, name, seconds)


# --------------------------------------------------------------------------------------------- folder
def output_dir(protocol: Protocol, out: str | Path | None) -> Path:
    return Path(out) if out is not None else Path(protocol.config.output.dir.replace("{name}", protocol.name))


class EarlierVersionWarning(UserWarning):
    """A run folder was started by an earlier version of bioplastic (its protocol.yaml lacks fields
    this version added); the run goes on with it."""


def _saved_protocol(saved: Path) -> tuple[str | None, Protocol | None, str]:
    """A run folder's protocol.yaml: its text (None when it is not text), the protocol it holds as
    this version reads it (None when it holds none) and why not ("" when it does)."""
    try:
        text = saved.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, None, f"not UTF-8 text: byte 0x{exc.object[exc.start]:02x} at position {exc.start}"
    except OSError as exc:
        return None, None, f"unreadable: {exc.strerror or exc}"
    try:
        return text, protocol_from_text(text), ""
    except Exception as exc:  # noqa: BLE001 - any reason it is no protocol (to this version)
        return text, None, f"not a protocol: {str(exc).splitlines()[0][:200]}"


def _finished_with(protocol: Protocol, out: Path) -> bool:
    """Whether ``out`` holds an intact results.nc of exactly ``protocol`` (its checksummed record of
    the protocol, which protocol.yaml only copies)."""
    if not (out / RESULTS).is_file():
        return False
    try:
        return read_dataset(out / RESULTS).attrs.get("protocol") == protocol.text
    except Exception:  # noqa: BLE001 - a damaged or foreign results.nc is no record of this protocol
        return False


def prepare_output(protocol: Protocol, out: Path) -> bool:
    """Create ``out`` (or check it holds this protocol). Returns True when training is finished.

    A protocol.yaml written by an earlier version of bioplastic (it lacks fields added since) that,
    read by this version with those fields at their defaults, is this protocol (a field whose
    default changed keeps the value written then, so it still differs) is brought up to date, with
    an :class:`EarlierVersionWarning`. A finished run's protocol.yaml that is damaged (garbled
    bytes, no protocol at all) while its results.nc records this very protocol is written again
    from it, with a :class:`DamagedFileWarning`. Anything else that differs - another protocol, a
    damaged protocol.yaml of an unfinished run - is a :class:`RunError`."""
    saved = out / "protocol.yaml"
    if saved.exists():
        text, held, damage = _saved_protocol(saved)
        if text == protocol.text:
            return (out / RESULTS).exists()
        if held is not None and held.text == protocol.text:
            warnings.warn(f"{out} was started by an earlier version of bioplastic ({protocol_difference(text, protocol.text)}: "
                          "fields added since, at their defaults); the run goes on, and the networks trained before "
                          "keep their numbers", EarlierVersionWarning, stacklevel=3)
            atomic_write_text(saved, protocol.text)
            return (out / RESULTS).exists()
        if damage and _finished_with(protocol, out):
            warnings.warn(f"{saved} is damaged ({damage}); written again from {out / RESULTS}, which records this "
                          "protocol", DamagedFileWarning, stacklevel=3)
            atomic_write_text(saved, protocol.text)
            return True
        if text is None:
            raise RunError(f"{saved} is damaged ({damage}), so it cannot tell which protocol the run in {out} "
                           f"trained; delete {out} to start over, or choose another folder with --out")
        raise RunError(f"{out} holds a run of a different protocol ({protocol_difference(text, protocol.text)}); "
                       f"choose another folder with --out, or delete {out} to start over")
    check_output_dir(out)
    if out.exists() and any(p.name not in LOCK_FILES for p in out.iterdir()):
        raise RunError(f"{out} exists and is not a bioplastic run folder; choose another folder with --out")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(saved, protocol.text)
    return False


def _flat(data, prefix: str = "") -> dict:
    if isinstance(data, dict):
        return {k: v for key, value in data.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: data}


def protocol_difference(old_text: str, new_text: str, at_most: int = 4) -> str:
    """The fields in which two resolved protocols differ, e.g. ``seeds: 2 -> 3`` (at most ``at_most``)."""
    try:
        old, new = _flat(load_yaml(old_text)), _flat(load_yaml(new_text))
    except Exception:  # noqa: BLE001 - an unreadable saved protocol: say so instead
        return "its protocol.yaml cannot be read"
    diff = [f"{k}: {old.get(k, '(absent)')!r} -> {new.get(k, '(absent)')!r}" for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)]
    more = f", and {len(diff) - at_most} more" if len(diff) > at_most else ""
    return ("it differs in " + "; ".join(diff[:at_most]) + more) if diff else "its protocol.yaml differs in layout"


def expected_files(protocol: Protocol) -> list[str]:
    """The files a finished run of ``protocol`` holds after training (datasets, figures, the report)."""
    single, analysis = protocol.sweep is None, protocol.config.analysis is not None
    files = [RESULTS]
    if single:
        files += [ANALYSIS] * analysis + [PREDICTIONS]
        files += [BRIAN2, PREDICTIONS_BRIAN2] * protocol.config.brian2.enabled
    oracle = oracle_applies(protocol)
    files += [STAIRCASE] * oracle
    if protocol.config.output.figures:
        files += figure_names(sweep=not single, analysis=single and analysis, predictions=single, staircase=oracle)
    return files + [REPORT]


class TorchFileCache(MutableMapping):
    """A mapping whose values are saved as ``folder/KEY.pt`` (atomically; read back with
    ``weights_only``): how the phase-space analysis keeps finished parts across interruptions."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.pt"

    def __getitem__(self, key: str):
        path = self._path(key)
        if not path.is_file():
            raise KeyError(key)
        try:
            return safe_torch_load(path)
        except DamagedFileError as exc:  # computed again, never read
            path.unlink(missing_ok=True)
            warnings.warn(f"{exc}; deleted it: this analysis part is computed again", DamagedFileWarning, stacklevel=2)
            raise KeyError(key) from None

    def __setitem__(self, key: str, value) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(value, self._path(key))

    def __delitem__(self, key: str) -> None:
        self._path(key).unlink()

    def __iter__(self) -> Iterator[str]:
        return (p.stem for p in sorted(self.folder.glob("*.pt")))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def load_results(out: str | Path) -> tuple[xr.Dataset, Protocol]:
    """The results dataset of a finished run folder and its protocol (:class:`RunError` if absent or unreadable)."""
    path = Path(out) / RESULTS
    if not path.is_file():
        raise RunError(f"{out} is not a finished run: {path} is missing (run the protocol first)")
    try:
        ds = read_dataset(path)
    except Exception as exc:  # noqa: BLE001 - h5py/netCDF errors of a truncated or foreign file
        raise RunError(f"{path} cannot be read ({type(exc).__name__}: {exc}); it may be corrupt") from None
    if "protocol" not in ds.attrs:
        raise RunError(f"{path} lacks the protocol attribute; not a bioplastic run")
    return ds, protocol_of(ds, str(path))


def read_run(out: str | Path) -> Run:
    """What exists of a run folder as datasets; a file that cannot be read counts as missing (with its error)."""
    out = Path(out)
    run = Run(out)
    for name in FILES:
        path = out / name
        if path.is_file():
            try:
                setattr(run, name[:-3], read_dataset(path))
            except Exception as exc:  # noqa: BLE001 - a damaged file is reported, not fatal
                run.errors[name] = f"{type(exc).__name__}: {exc}"
    try:
        want = expected_files(protocol_of(run.results)) if run.results is not None else list(FILES)
    except Exception:  # noqa: BLE001 - an unreadable protocol: expect every dataset
        want = list(FILES)
    run.missing = [f for f in want if f in FILES and getattr(run, f[:-3]) is None]
    return run


# --------------------------------------------------------------------------------------------- stages
def results_dataset(protocol: Protocol, unit_results: list) -> xr.Dataset:
    """One protocol point's training results as the results dataset: curves, weights, the
    learning-curve metrics and the comparisons between conditions."""
    tr = protocol.conditions[0].training
    ds = build_dataset(protocol, unit_results)
    add_learning_statistics(ds, tr.criterion, tr.loss_smoothing, protocol.config.seed)
    describe(ds, protocol)
    return ds


def assemble(protocol: Protocol, out: Path) -> xr.Dataset:
    """Merge the finished units' results into the run's dataset (deterministic: plan order; the
    same whether training was interrupted and resumed or not). Each unit's training time goes to
    ``OUT/timings.json`` (:func:`read_unit_times`)."""
    units = plan_units(protocol)
    done = {u.id: load_result(u, result_path(out, u.id)) for u in units}
    per_point = [results_dataset(point.protocol, [done[u.id].of_point(i) for u in units if i in u.points])
                 for i, point in enumerate(protocol.points)]
    record_unit_times(out, {u.id: done[u.id].seconds for u in units})
    ds = combine_points(protocol, per_point)
    if (out / INIT_SOURCES).is_file():
        ds.attrs["init_sources"] = (out / INIT_SOURCES).read_text()
    return ds


def recomputed_results(ds: xr.Dataset, protocol: Protocol, notes: list[str] | None = None) -> xr.Dataset:
    """A results dataset with its learning statistics (the learning-curve metrics, iterations to
    criterion, ``learned``, the comparisons between conditions) computed again from its stored curves
    by this version's definitions, point by point for a sweep, as a run would compute them now; the
    curves, weights and provenance are kept as stored (``learning_statistics`` records the definitions).
    ``notes`` (when given) gets a line for what a recompute cannot make as a fresh run would: networks
    that ``stop_when_learned`` stopped before the new definitions' horizon."""
    keep = dict(ds.attrs)
    if protocol.sweep is None:
        new = _recomputed_point(ds.copy(), protocol, notes)
        describe(new, protocol)
    else:
        dims = [d for d in ds.attrs.get("sweep_dims", "").split(",") if d]
        swept = [c for c in ds.coords if c in dims or (c not in ds.dims and ds[c].dims and set(ds[c].dims) <= set(dims))]
        parts = {}
        for index, label in sweep_points(ds):
            try:
                point = matching_point(ds, index, protocol.points)
            except ValueError as exc:
                raise RunError(f"results.nc cannot be recomputed point by point: {exc}") from None
            tr = point.protocol.conditions[0].training
            # the points share the union of their iteration and evaluation axes (NaN-padded): each point's
            # statistics come from its own axes, as the run computed them
            part = ds.isel(index).drop_vars(swept).isel(iteration=slice(0, tr.iterations))
            part = part.sel(evaluation=schedule_points(tr.eval_every, tr.iterations))
            point_notes: list[str] = []
            parts[protocol.points.index(point)] = _recomputed_point(part, point.protocol, point_notes)
            if notes is not None:
                notes.extend(f"{label}: {n}" for n in point_notes)
        if sorted(parts) != list(range(len(protocol.points))):
            raise RunError(f"results.nc holds {len(parts)} sweep points, its protocol {len(protocol.points)}: it "
                           "cannot be recomputed point by point")
        new = combine_points(protocol, [parts[i] for i in range(len(protocol.points))])
    new.attrs = keep | {STAMP: DEFINITIONS, f"{STAMP}_code": git_commit()}
    return new


def _recomputed_point(ds: xr.Dataset, protocol: Protocol, notes: list[str] | None) -> xr.Dataset:
    tr = protocol.conditions[0].training
    add_learning_statistics(ds, tr.criterion, tr.loss_smoothing, protocol.config.seed)
    if notes is not None and "final_iteration" in ds:
        # stopped early (stop_when_learned, any condition) although, by today's criterion, not every
        # network had settled: the trainer would have trained on (diverged networks aside)
        k = ds["final_iteration"].values
        diverged = np.isfinite(ds["diverged_at"].values) if "diverged_at" in ds else np.zeros(k.shape, bool)
        short = (k < tr.iterations) & ~diverged & ~settled(k, ds["iterations_to_criterion"].values, tr.loss_smoothing)
        if short.any():
            notes.append(f"{int(short.sum())} of {short.size} networks were stopped (stop_when_learned) before "
                         "today's definitions would have stopped them; their statistics are those of the curve "
                         "they have (a fresh run would train them longer)")
    return ds


def train(protocol: Protocol, progress: Callable[[int, dict], None] | None = None) -> xr.Dataset:
    """Train every network of the protocol in this process and return the results dataset, with no
    run folder (nothing is written; nothing resumes). The numbers equal those of
    :func:`run_protocol` with any executor: the same work units, trained the same way."""
    try:
        sources = check_sources(protocol)
    except InitSourceError as exc:
        raise RunError(f"invalid protocol: {exc}") from None
    units = plan_units(protocol)
    done = {u.id: EnsembleTrainer(list(u.members), protocol.config.seed).run(None, progress) for u in units}
    per_point = [results_dataset(point.protocol, [done[u.id].of_point(i) for u in units if i in u.points])
                 for i, point in enumerate(protocol.points)]
    ds = combine_points(protocol, per_point)
    if sources:
        ds.attrs["init_sources"] = json.dumps(sources, indent=1)
    return ds


def total_work(protocol: Protocol) -> int:
    return sum(u.work for u in plan_units(protocol))


def check_device(protocol: Protocol) -> None:
    """:class:`DeviceError` now, before anything is written, when a point of the protocol asks for a
    ``training.device`` this machine cannot give (``cuda`` where torch sees no CUDA device)."""
    for point in protocol.points:
        resolve_device(point.protocol.config.training.device)


#: the source runs of ``training.init`` as they were when the run started (checked again on resume
#: and before each work unit)
INIT_SOURCES = SOURCES_FILE


def check_init_sources(protocol: Protocol, out: Path) -> list[dict]:
    """Read and check every source run ``training.init`` names, before anything is trained or written
    (:class:`RunError` naming the field and the problem). Once training is finished (``OUT/results.nc``
    exists) the sources are not needed and not read. A run resumed after its source's results.nc
    changed is refused: its networks would start from two different sources."""
    if (out / RESULTS).exists() or all(c.training.init is None for p in protocol.points for c in p.protocol.conditions):
        return []
    try:
        records = check_sources(protocol)
    except InitSourceError as exc:
        raise RunError(f"invalid protocol: {exc}") from None
    before = recorded_sources(out)
    for r in records:
        if before.get(r["from_run"], r["results_sha256"]) != r["results_sha256"]:
            raise RunError(f"training.init.from_run: {r['from_run']}'s results.nc changed since this run started in {out} "
                           "(its checksum differs); the networks trained so far started from the earlier one: "
                           "choose another folder with --out, or delete this one to start over")
    return records


def run_protocol(protocol: Protocol, out: str | Path | None = None, *, executor: Executor | None = None,
                 progress: Callable[[int, dict], None] | None = None,
                 interrupt_at: int | None = None,
                 stages: StageProgress | None = None,
                 strict: bool = False) -> tuple[xr.Dataset, Path]:
    """Train every network of the protocol (units already done are skipped; interrupted units resume
    from their last checkpoint), write ``OUT/results.nc``, then every later stage not yet done.
    ``progress(n, info)`` counts trained network-iterations; ``stages`` hears about the stages after
    training. Every stage's wall time goes to ``OUT/timings.json``. Returns the results dataset and
    the folder; raises :class:`IncompleteRun` (after writing everything it could) when parts of the
    report failed, :class:`DeviceError` (before writing anything) when ``training.device`` asks for
    a device torch does not see here, and :class:`~bioplastic.training.executors.ExecutorError`
    (before writing anything) when the executor cannot reach its cluster; with an executor whose
    workers run on other machines (a Dask cluster) each worker resolves the device itself."""
    if not getattr(executor, "remote", False):
        check_device(protocol)
    if executor is not None:
        executor.check()  # e.g. an unreachable Dask scheduler: ExecutorError before anything is written
    out = output_dir(protocol, out)
    sources = check_init_sources(protocol, out)  # RunError before anything is written
    if not (out / "protocol.yaml").exists():
        check_output_dir(out)  # before the lock creates the folder
    with run_lock(out):  # one writer per run folder; a second run is refused (RunLockedError)
        return _run_locked(protocol, out, executor, progress, interrupt_at, stages, strict, sources)


def _run_locked(protocol: Protocol, out: Path, executor, progress, interrupt_at, stages, strict,
                sources: list[dict]) -> tuple[xr.Dataset, Path]:
    if prepare_output(protocol, out):
        try:
            ds = read_dataset(out / RESULTS)
        except DamagedFileError as exc:
            raise RunError(f"{exc}; the trained units it was made from are gone: delete {out / RESULTS} and run again "
                           "to retrain") from None
    else:
        if sources and not (out / INIT_SOURCES).is_file():  # (checked by run_protocol before the lock)
            atomic_write_text(out / INIT_SOURCES, json.dumps(sources, indent=1))
        units = plan_units(protocol)
        verified_results(protocol, out)  # a damaged unit result counts as not done (deleted, with a warning)
        todo = [u for u in units if not result_path(out, u.id).exists()]
        if progress and len(todo) < len(units):
            progress(sum(u.work for u in units if u not in todo), {})
        if executor is None or interrupt_at is not None:
            executor = InProcessExecutor(interrupt_at)
        t0 = time.perf_counter()
        try:
            executor.run(protocol.text, todo, out, progress)
            redo = verified_results(protocol, out)
            if redo:  # damaged between their writing and now: trained again
                executor.run(protocol.text, [u for u in units if u.id in redo], out, progress)
        except InitSourceError as exc:  # a source changed while the run trained (training/init_from.py)
            raise RunError(str(exc)) from None
        ds = assemble(protocol, out)
        write_dataset(ds, out / RESULTS)
        record_time(out, "training", time.perf_counter() - t0)
        record_written(out, RESULTS)
        shutil.rmtree(out / STATE_DIR, ignore_errors=True)
        shutil.rmtree(out / UNITS_DIR, ignore_errors=True)
    if not all((out / f).exists() for f in expected_files(protocol)) or not all(
            done(out / f) for f in expected_files(protocol) if f.endswith(".nc") and f != RESULTS):
        finish(ds, protocol, out, stages, strict=strict)  # also after an interruption past training
    return ds, out


def _damaged(path: Path, exc: DamagedFileError) -> None:
    path.unlink(missing_ok=True)
    warnings.warn(f"{exc}; deleted it: this stage runs again", DamagedFileWarning, stacklevel=3)


def done(path: Path) -> bool:
    """Whether a stage's dataset is there and intact; a damaged one is deleted (with a warning) so
    that its stage runs again from the datasets before it."""
    if not path.is_file():
        return False
    try:
        verify_dataset(path)
        return True
    except DamagedFileError as exc:
        _damaged(path, exc)
        return False


def intact(path: Path) -> xr.Dataset | None:
    """The dataset at ``path`` when it is there and intact (read once); a damaged one is deleted, as by :func:`done`."""
    if not path.is_file():
        return None
    try:
        return read_dataset(path)
    except DamagedFileError as exc:
        _damaged(path, exc)
        return None


def finish(ds: xr.Dataset, protocol: Protocol, out: Path, stages: StageProgress | None = None, strict: bool = False) -> None:
    """After training, each stage the protocol asks for whose file is missing (or damaged): the
    phase-space analysis, the brian2 re-simulation, the predictions (torch, and brian2), figures,
    the report. A sweep gets neither the analysis nor the predictions (``report.text.sweep_note``)."""
    single = protocol.sweep is None
    C = len(protocol.conditions)
    if single and protocol.config.analysis is not None and not done(out / ANALYSIS):
        analysis_stage(out, ds, protocol, stages)
    if single and not done(out / PREDICTIONS):
        with stage(out, stages, "predictions", C, "condition") as tick:
            compute_predictions(out, results=(ds, protocol), progress=tick)
    b2 = protocol.config.brian2
    if single and b2.enabled:
        brian2_stages(out, ds, protocol, b2.trials, b2.codegen, b2.dt_ms, stages, only_missing=True)
    if oracle_applies(protocol) and not done(out / STAIRCASE):
        with stage(out, stages, "linear oracle", C * ds.sizes["checkpoint"], "checkpoint") as tick:
            compute_staircase(out, results=(ds, protocol), progress=tick)
    write_report(out, strict=strict, stages=stages)


def analysis_stage(out: Path, ds: xr.Dataset, protocol: Protocol, stages: StageProgress | None = None,
                   device: str | None = None) -> xr.Dataset:
    """The phase-space analysis as a reported, timed stage (``analysis.nc``), on ``device`` (default:
    the protocol's ``training.device``)."""
    with stage(out, stages, "fixed points", len(protocol.conditions) * ds.sizes["checkpoint"], "checkpoint") as tick:
        return analyze_run(out, protocol.config.analysis, tick, results=(ds, protocol), device=device)


def brian2_stages(out: Path, ds: xr.Dataset, protocol: Protocol, trials: int, codegen: str, dt_ms: float | None,
                  stages: StageProgress | None = None, only_missing: bool = False) -> xr.Dataset | None:
    """The brian2 re-simulation (``brian2.nc``) and the predictions on brian2's simulation
    (``predictions_brian2.nc``) as reported, timed stages; with ``only_missing`` a stage whose file
    is there and intact is skipped. Returns the re-simulation dataset when it ran."""
    C, result = len(protocol.conditions), None
    if not (only_missing and done(out / BRIAN2)):
        with stage(out, stages, "brian2", C, "condition") as tick:
            result = simulate_run(out, trials=trials, codegen=codegen, dt_ms=dt_ms, results=(ds, protocol),
                                  progress=lambda cond: tick(1))
    if not (only_missing and done(out / PREDICTIONS_BRIAN2)):
        with stage(out, stages, "predictions (brian2)", C, "condition") as tick:
            compute_predictions(out, engine=Brian2Engine(codegen, out / CACHE_DIR, dt_ms, seed=protocol.config.seed),
                                results=(ds, protocol), progress=tick)
    return result


def analyze_run(out: str | Path, cfg=None, progress: Callable[[int, dict], None] | None = None, *,
                results: tuple[xr.Dataset, Protocol] | None = None, device: str | None = None) -> xr.Dataset:
    """The phase-space analysis of a finished run folder: writes and returns ``OUT/analysis.nc``
    (finished parts are kept in ``OUT/analysis_parts`` until it is written, so it resumes), on
    ``device`` (default: the protocol's ``training.device``)."""
    out = Path(out)
    with run_lock(out, create=False):
        return _analyze_locked(out, cfg, progress, results, device)


def _analyze_locked(out: Path, cfg, progress, results, device) -> xr.Dataset:
    ds, protocol = results or load_results(out)
    analysis = analyze(ds, protocol, cfg or protocol.config.analysis, progress, cache=TorchFileCache(out / PARTS_DIR),
                       device=device)
    write_dataset(analysis, out / ANALYSIS)
    shutil.rmtree(out / PARTS_DIR, ignore_errors=True)
    return analysis


def simulate_run(out: str | Path, trials: int = RESIMULATED_TRIALS, codegen: str = "cython",
                 dt_ms: float | None = None, progress: Callable[[str], None] | None = None, *,
                 results: tuple[xr.Dataset, Protocol] | None = None) -> xr.Dataset:
    """The brian2 re-simulation of a finished run folder: writes and returns ``OUT/brian2.nc``."""
    out = Path(out)
    with run_lock(out, create=False):
        return _simulate_locked(out, trials, codegen, dt_ms, progress, results)


def _simulate_locked(out: Path, trials, codegen, dt_ms, progress, results) -> xr.Dataset:
    ds, protocol = results or load_results(out)
    result = resimulate(ds, protocol, trials=trials, codegen=codegen, dt_ms=dt_ms, cache_dir=out / CACHE_DIR,
                        progress=progress)
    write_dataset(result, out / BRIAN2)
    return result


def compute_predictions(out: str | Path, *, trials: int = DEFAULT_TRIALS, engine: Brian2Engine | None = None,
                        write: bool = True, results: tuple[xr.Dataset, Protocol] | None = None,
                        progress: Callable[[int, dict], None] | None = None, device: str | None = None) -> xr.Dataset:
    """The predictions of a finished run folder (with its analysis.nc when present): writes
    ``OUT/predictions.nc`` (``predictions_brian2.nc`` with a brian2 engine) unless ``write`` is False;
    the torch simulations run on ``device`` (default: the protocol's ``training.device``)."""
    out = Path(out)
    ds, protocol = results or load_results(out)
    analysis = intact(out / ANALYSIS)
    pred = predict(ds, protocol, analysis, trials=trials, engine=engine, progress=progress, device=device)
    if write:
        write_dataset(pred, out / (PREDICTIONS if engine is None else PREDICTIONS_BRIAN2))
    return pred


def compute_staircase(out: str | Path, *, write: bool = True, results: tuple[xr.Dataset, Protocol] | None = None,
                      progress: Callable[[int, dict], None] | None = None) -> xr.Dataset:
    """The linear oracle of a finished filtered-noise run folder (analysis/linear_oracle.py): the
    k-pole optima, every plateau and drop, the spectra, GR events and the optimum each plateau sits
    at; writes ``OUT/staircase.nc`` unless ``write`` is False."""
    out = Path(out)
    ds, protocol = results or load_results(out)
    result = staircase_dataset(ds, protocol, progress)
    if write:
        write_dataset(result, out / STAIRCASE)
    return result


def write_figures(run: Run, strict: bool = False, progress: Callable[[int, dict], None] | None = None) -> dict[str, bytes]:
    """Draw every figure of the run's datasets; write each as ``OUT/NAME.png`` (atomically) when the
    protocol asks for figure files. Returns the PNGs (name -> bytes) for the report. A figure that
    fails is left out (the report tries it again and shows the error with its cause; ``strict`` raises)."""
    pngs: dict[str, bytes] = {}
    protocol = protocol_of(run.results)
    for name, draw in figures(run.results, run.analysis, run.predictions, staircase=run.staircase).items():
        if progress:
            progress(1, {})
        try:
            pngs[name] = png_bytes(draw())
        except Exception:  # noqa: BLE001 - the report shows the failure; strict mode raises
            if strict:
                raise
            continue
        if protocol.config.output.figures and run.out is not None:
            atomic_write(run.out / name, lambda p, data=pngs[name]: Path(p).write_bytes(data))
    return pngs


def write_report(out: str | Path, strict: bool = False, stages: StageProgress | None = None) -> Path:
    """Figures and ``OUT/report.html`` from the datasets of a run folder, recomputing nothing.
    Raises :class:`RunError` without results.nc, :class:`IncompleteRun` (after writing the page)
    when sections failed; with ``strict`` the first failure raises."""
    out = Path(out)
    with run_lock(out, create=False):
        return _report_locked(out, strict, stages)


def _report_locked(out: Path, strict: bool, stages: StageProgress | None) -> Path:
    run = read_run(out)
    if run.results is None:
        why = f" ({run.errors[RESULTS]})" if RESULTS in run.errors else ""
        raise RunError(f"no report written: {out / RESULTS} is missing or unreadable{why}; run "
                       f"`python -m bioplastic run PROTOCOL --out {out}` first (or resume it with the same command)")
    with stage(out, stages, "figures", len(figures(run.results, run.analysis, run.predictions, staircase=run.staircase)),
               "figure") as tick:
        pngs = write_figures(run, strict, tick)
    with stage(out, stages, "report", 1, "page") as tick:
        try:
            page, failures = render(run, pngs, strict=strict)
        except ReportError as exc:
            raise RunError(f"no report written: {exc}") from None
        path = out / REPORT
        atomic_write_text(path, page)
        tick(1)
    if failures:
        raise IncompleteRun(out, failures)
    return path


def recompute_run(out: str | Path, strict: bool = False, stages: StageProgress | None = None,
                  report: bool = True) -> tuple[list[str], list[str]]:
    """Bring a finished run's learning statistics up to this version's definitions without training
    again: results.nc (:func:`recomputed_results`), then the analysis variables measured against the
    drop (``phase_space.DROP_RELATIVE``: leads, their growth, the counts at the drop) in analysis.nc
    where there is one, then (``report``) the figures and the report. Each file is written atomically, in place;
    run it again after an interruption. Returns ``(changes, notes)``: the changes of definitions since
    the run's statistics (or its analysis's leads) were computed - empty when they were current and
    the files are written again unchanged - and what the recompute could not make as a fresh run."""
    out = Path(out)
    with run_lock(out, create=False):
        ds, protocol = load_results(out)
        changes = outdated(ds)
        notes: list[str] = []
        new = recomputed_results(ds, protocol, notes)
        analysis = None
        if (out / ANALYSIS).is_file():
            try:
                analysis = read_dataset(out / ANALYSIS)
            except DamagedFileError as exc:
                raise RunError(f"{exc}: its leads cannot be measured again; delete it and run `python -m bioplastic "
                               f"analyze {out}`, then this command (nothing was changed)") from None
            lacking = [v for v in DROP_RELATIVE_INPUTS if v not in analysis]
            if lacking:
                raise RunError(f"{out / ANALYSIS} was written by an older bioplastic (it lacks {', '.join(lacking)}): its "
                               f"leads cannot be measured again against the new statistics; delete it and run "
                               f"`python -m bioplastic analyze {out}` (nothing was changed)")
            if not changes and statistics_date(analysis) != DEFINITIONS:
                changes = [f"analysis.nc (results.nc was up to date): its leads had been measured against the "
                           f"statistics of {statistics_date(analysis) or 'before ' + min(DEFINITION_CHANGES)}"]
        write_dataset(new, out / RESULTS)
        if analysis is not None:
            add_drop_relative(analysis, new, protocol.config.seed, gr_rule(analysis)["baseline"])
            write_dataset(analysis, out / ANALYSIS)
        if report:
            _report_locked(out, strict, stages)
    return changes, notes


COMPARE = "compare.nc"
COMPARE_HTML = "compare.html"


def compare_recording(run: str | Path, recording: str | Path, out: str | Path | None = None, *, columns: dict[str, str] | None = None,
                      bin_ms: float = DEFAULT_BIN_MS, units: list | None = None, ramp_period: str | None = None,
                      timescale_period: str | None = None, seed: int = 0) -> tuple[xr.Dataset, Path, Path]:
    """A recording (NWB or netCDF, :mod:`bioplastic.storage.recordings`) measured as the run's
    networks are, beside the run's ``predictions.nc``: writes ``OUT/compare.nc`` and
    ``OUT/compare.html`` (``out``: default the run folder), both made in memory first and each
    written atomically. Raises :class:`RunError` (no predictions.nc, an output folder that is a
    file) and :class:`~bioplastic.analysis.recording.RecordingError` (a bad recording) before
    writing anything. Returns (compare dataset, the .nc path, the .html path)."""
    run = Path(run)
    out = run if out is None else Path(out)
    if not run.is_dir():
        raise RunError(f"{run} is not a folder; expected a finished run's folder holding {PREDICTIONS}")
    if not (run / PREDICTIONS).is_file():
        raise RunError(f"{run} has no {PREDICTIONS}: compare needs the model's predictions; make them with "
                       f"`python -m bioplastic run PROTOCOL --out {run}` (a run computes them unless it is a sweep)")
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} is a file; expected a folder for {COMPARE} and {COMPARE_HTML}")
    pred = read_dataset(run / PREDICTIONS)
    rec = read_recording(recording, columns=columns, bin_ms=bin_ms, units=units)
    measured = measure_recording(rec, ramp_period=ramp_period, timescale_period=timescale_period)
    cmp = compare_dataset(pred, rec, measured, seed=seed)
    cmp.attrs["recording"] = str(Path(recording).resolve())
    page = compare_html(cmp)
    out.mkdir(parents=True, exist_ok=True)
    write_dataset(cmp, out / COMPARE)
    atomic_write_text(out / COMPARE_HTML, page)
    return cmp, out / COMPARE, out / COMPARE_HTML
