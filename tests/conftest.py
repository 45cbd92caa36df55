"""Shared fixtures: tiny protocols that train in a second or two.

The suite runs on pytest-xdist workers, one per core up to 8 (``-n auto`` in pyproject.toml; two on
the 2-core machines this project is developed and checked on). Each worker is a separate
process, so each would build every session fixture once; the run folders and the API run are built
once per test session instead (:func:`shared`), under a file lock in the folder the workers share. A
worker takes the torch threads the project's own policy gives it (the cores divided among the
workers, at most ``OMP_NUM_THREADS``)."""
from __future__ import annotations

import gc
import importlib.util
import os
import pickle
import shutil
import signal
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock

# bioplastic (and with it torch) is imported where it is used, not here: this file is also loaded by
# the process that only hands tests to the xdist workers, and that import (~3 s) would delay them.


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto`` (pyproject.toml): one worker per core this process may use (its CPU affinity),
    at most 8 - each worker holds its own torch, brian2 and matplotlib (~0.5-1 GB)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def pytest_configure(config) -> None:
    if "PYTEST_XDIST_WORKER_COUNT" in os.environ:  # an xdist worker: never more threads than its share of the cores
        import torch

        from bioplastic.training.executors import threads_per_worker

        torch.set_num_threads(threads_per_worker(int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))


# brian2 calls gc.collect() before every simulation; a full collection that walks every object of
# torch, sympy, matplotlib, xarray and the tests costs ~0.2-0.4 s, about a hundred times per worker.
# What lives to the end of the session is moved out of the collector's reach (gc.freeze) instead:
# what is imported and collected before the first test, and after each test module whatever
# survives a collection (modules imported lazily, caches; the module's own fixtures are gone by
# then), so that the collections only walk what the tests made since.


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session) -> None:
    from bioplastic.simulate.brian2_bridge import _import_brian2

    _import_brian2()  # as the bridge imports it (quietly), not inside the first test that simulates
    gc.collect()
    gc.freeze()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    yield
    if nextitem is not None and nextitem.path != item.path:  # the module's fixtures are torn down
        gc.collect()
        gc.freeze()


def shared(tmp_path_factory, name: str, build: Callable[[Path], object]) -> Path:
    """``build(folder)`` once per test session, in a fresh folder, and that folder. Under pytest-xdist
    the workers share it: the first to need it builds it under a file lock, the others wait for it
    and then read it (so it is never built twice, and never read half-built)."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder
    root = tmp_path_factory.getbasetemp().parent  # the session's temporary folder, above every worker's
    folder, done = root / f"shared-{name}", root / f"shared-{name}.done"
    with FileLock(str(root / f"shared-{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a worker that failed left behind
            folder.mkdir()
            build(folder)
            done.touch()
    return folder



def load_script(name: str):
    """A script of the repository's ``scripts/`` folder (``name``: its file name without ``.py``),
    loaded as a module, so that tests call its ``main`` in this process."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TINY = """
name: tiny
seed: 7
seeds: 2
task:
  kind: evidence_accumulation
  stimulus_ms: 200
  delay_min_ms: 40
  delay_max_ms: 100
  response_ms: 60
model:
  kind: leaky_rate
  n_units: 12
  g: 1.5
training:
  lr: 1e-2
  iterations: 12
  batch_size: 8
  checkpoint_every: 4
  eval_every: 3
  eval_trials: 16
  dtype: float64
conditions:
  baseline: {}
  tcr_loss:
    tcr: {form: loss, lambda: 0.5}
output:
  figures: false
"""


@pytest.fixture
def write_protocol(tmp_path: Path):
    """Write a protocol (TINY by default, or the given YAML text) and return its path."""

    def write(text: str = TINY, name: str = "p.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


#: the tiny protocol with every dataset: plasticity, analysis, predictions, brian2 (numpy), figures
COMPLETE = """
name: tiny
claims: [1, 2, 3, 7, 9, 10]
seed: 7
seeds: 2
task: {kind: evidence_accumulation, stimulus_ms: 200, delay_min_ms: 40, delay_max_ms: 100, response_ms: 60}
model: {kind: leaky_rate, n_units: 12, g: 1.5}
training: {lr: 1e-2, iterations: 12, batch_size: 8, checkpoint_every: 4, eval_every: 3, eval_trials: 16, dtype: float64}
conditions:
  baseline: {}
  tcr_loss: {tcr: {form: loss, lambda: 0.5}}
  tcr_plasticity: {tcr: {form: plasticity, plasticity: {eta_F: 0.05}}}
analysis: {initial_states: 4, trials: 4}
brian2: {enabled: true, trials: 2, codegen: numpy}
output: {figures: true}  # PNGs written by the run are reused by the report
"""


def train_into(folder: Path, text: str, **kwargs) -> Path:
    """Run a protocol through ``bioplastic.pipeline.run_protocol`` into ``folder / "out"`` and return
    that run folder."""
    from bioplastic.pipeline import run_protocol
    from bioplastic.protocol.load import load_protocol

    path = folder / "p.yaml"
    path.write_text(textwrap.dedent(text))
    _, out = run_protocol(load_protocol(path), folder / "out", **kwargs)
    return out


def train_once(tmp_path_factory, name: str, text: str, **kwargs) -> Path:
    """Run a protocol through ``bioplastic.pipeline.run_protocol`` into a fresh temporary folder and
    return the run folder. Session-scoped fixtures share the folder: a test that changes it copies it
    first (``shutil.copytree(run, tmp_path / ...)``)."""
    return train_into(tmp_path_factory.mktemp(name), text, **kwargs)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """TINY run once per session (results.nc, protocol.yaml, report.html). Shared: read it, or copy it
    before changing anything in it."""
    return shared(tmp_path_factory, "tiny", lambda folder: train_into(folder, TINY)) / "out"


@pytest.fixture(scope="session")
def complete_run(tmp_path_factory) -> Path:
    """COMPLETE run once per session with ``strict=True`` (a failing report section raises). Shared:
    read it, or copy it before changing anything in it."""
    return shared(tmp_path_factory, "complete", lambda folder: train_into(folder, COMPLETE, strict=True)) / "out"


@pytest.fixture
def cli(capsys):
    """``python -m bioplastic ARGS`` in this process: returns (exit code, stdout, stderr). The SIGTERM
    handler that ``run`` installs is put back afterwards. Tests of a separate process (a kill, the
    installed package) use a subprocess instead."""

    from bioplastic.cli import main

    def call(*args):
        capsys.readouterr()  # start from empty buffers
        handler = signal.getsignal(signal.SIGTERM)
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
        finally:
            signal.signal(signal.SIGTERM, handler)
        out, err = capsys.readouterr()
        return code, out, err

    return call


@pytest.fixture(scope="session")
def api_run(tmp_path_factory):
    """A tiny single-point run made with the Python API (no folder), once per session: its protocol
    and datasets (results, analysis, predictions, brian2 via the numpy target). Read, never change.
    Under pytest-xdist the workers share it pickled (a pickled dataset is identical, encodings too)."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return _make_api_run()

    def build(folder):
        (folder / "api_run.pkl").write_bytes(pickle.dumps(_make_api_run()))

    return pickle.loads((shared(tmp_path_factory, "api_run", build) / "api_run.pkl").read_bytes())


def _make_api_run():
    from bioplastic import analyze, load_protocol, predict, resimulate, train

    protocol = load_protocol({
        "name": "api_run", "seed": 3, "seeds": 2,
        "task": {"kind": "evidence_accumulation", "stimulus_ms": 200, "delay_min_ms": 40, "delay_max_ms": 100,
                 "response_ms": 60},
        "model": {"kind": "leaky_rate", "n_units": 8, "connection_prob": 0.5},
        "training": {"iterations": 6, "batch_size": 4, "checkpoint_every": 3, "eval_every": 3, "eval_trials": 8},
        "conditions": {"baseline": {}, "tcr_plasticity": {"tcr": {"form": "plasticity"}}},
        "analysis": {"initial_states": 4, "trials": 4},
    })
    results = train(protocol)
    analysis = analyze(results, protocol)
    return protocol, {"results": results, "analysis": analysis, "predictions": predict(results, protocol, analysis, trials=16),
                      "brian2": resimulate(results, protocol, trials=2, codegen="numpy")}
