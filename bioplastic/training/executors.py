"""Executors run work units: in this process, in a local process pool (the default), or on a Dask
cluster. All produce the same numbers: a unit's result depends on the protocol and unit id only.

- ``inprocess``: one unit after another, here (torch may use every core inside each unit).
- ``local``: a pool of worker processes, by default one per core, each single-threaded (at these
  network sizes one thread per process is faster than threads inside one process). A worker that
  dies loses only its unit, which is re-run from its last checkpoint.
- ``dask``: ``dask.distributed``: a ``LocalCluster`` by default, or an existing cluster given by its
  scheduler address. Tasks of a lost worker are re-run by the scheduler. The output folder must be
  visible to every worker (a shared filesystem on a cluster).

Every executor runs a unit's trainer through ``runner`` (a :data:`~bioplastic.training.units.UnitRunner`,
by default :func:`~bioplastic.training.units.train`); a replacement must be picklable by reference
(a module-level function, or an instance of a module-level class) from a module the worker
processes can import. Tests use it to kill a worker mid-unit.
"""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import multiprocessing as mp
import os
import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

from .units import ThrottledProgress, Unit, UnitRunner, run_unit, train

Progress = Callable[[int, dict], None]


class ExecutorError(RuntimeError):
    """The executor could not run (e.g. the Dask scheduler is unreachable)."""


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


class Executor(ABC):
    name: str
    #: how each unit's trainer is run (see the module docstring)
    runner: UnitRunner = staticmethod(train)

    @abstractmethod
    def run(self, protocol_text: str, units: list[Unit], out: Path, progress: Progress | None = None) -> None:
        """Run every unit; each writes its own result file. Raises if a unit keeps failing."""

    def describe(self) -> str:
        return self.name


class InProcessExecutor(Executor):
    name = "inprocess"

    def __init__(self, interrupt_at: int | None = None, runner: UnitRunner = train):
        self.interrupt_at, self.runner = interrupt_at, runner

    def run(self, protocol_text, units, out, progress=None):
        for unit in units:
            run_unit(protocol_text, unit.id, str(out), progress, interrupt_at=self.interrupt_at, runner=self.runner)


def _pool_worker(protocol_text: str, unit_id: str, out: str, q, threads: int, runner: UnitRunner) -> str:
    reporter = ThrottledProgress(lambda n, info: q.put((n, info))) if q is not None else None
    try:
        return run_unit(protocol_text, unit_id, out, reporter, threads=threads, runner=runner)
    finally:
        if reporter is not None:
            reporter.flush()


class LocalPoolExecutor(Executor):
    """A pool of ``workers`` processes (default: one per core), ``threads`` torch threads each."""

    name = "local"

    def __init__(self, workers: int | None = None, max_restarts: int = 3, runner: UnitRunner = train):
        self.workers = workers or cpu_count()
        self.max_restarts = max_restarts
        self.runner = runner

    def describe(self) -> str:
        return f"local pool of {self.workers} worker process(es)"

    def run(self, protocol_text, units, out, progress=None):
        if not units:
            return
        workers = min(self.workers, len(units))
        threads = max(1, cpu_count() // workers)
        ctx = mp.get_context("spawn")  # no fork after torch/OpenMP started threads
        manager = ctx.Manager() if progress else None
        q = manager.Queue() if manager else None
        stop = threading.Event()

        def drain():
            while not stop.is_set() or (q is not None and not q.empty()):
                try:
                    progress(*q.get(timeout=0.2))
                except queue.Empty:
                    continue

        drainer = threading.Thread(target=drain, daemon=True) if q is not None else None
        if drainer:
            drainer.start()
        pending = list(units)
        try:
            for attempt in range(self.max_restarts + 1):
                with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                    futures = {pool.submit(_pool_worker, protocol_text, u.id, str(out), q, threads, self.runner): u for u in pending}
                    broken = False
                    for fut in cf.as_completed(futures):
                        try:
                            fut.result()
                            pending.remove(futures[fut])
                        except cf.process.BrokenProcessPool:
                            broken = True
                if not broken:
                    return
                if attempt == self.max_restarts:
                    raise ExecutorError(f"worker processes kept dying; {len(pending)} unit(s) not done: "
                                        + ", ".join(u.id for u in pending))
        finally:
            stop.set()
            if drainer:
                drainer.join()
            if manager:
                manager.shutdown()


class DaskExecutor(Executor):
    """dask.distributed: a LocalCluster (``scheduler=None``) or an existing cluster's scheduler."""

    name = "dask"

    def __init__(self, scheduler: str | None = None, workers: int | None = None, connect_timeout_s: float = 10,
                 runner: UnitRunner = train):
        self.scheduler, self.workers, self.timeout = scheduler, workers, connect_timeout_s
        self.runner = runner
        self.dashboard = ""

    def describe(self) -> str:
        where = self.scheduler or f"LocalCluster with {self.workers or cpu_count()} worker(s)"
        return f"dask ({where})" + (f", dashboard {self.dashboard}" if self.dashboard else "")

    def client(self):
        try:  # imported here: dask.distributed is heavy and only this executor needs it
            from dask.distributed import Client, LocalCluster
        except ImportError as exc:  # pragma: no cover - distributed is a dependency
            raise ExecutorError("the dask executor needs dask.distributed: pip install 'dask[distributed]'") from exc
        if self.scheduler:
            try:
                return Client(self.scheduler, timeout=f"{self.timeout}s"), None
            except (OSError, TimeoutError) as exc:
                raise ExecutorError(f"cannot reach the Dask scheduler at {self.scheduler} within {self.timeout:g} s: {exc}") from None
        cluster = LocalCluster(n_workers=self.workers or cpu_count(), threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address="127.0.0.1:0")  # loopback only
        return Client(cluster), cluster

    on_start: Callable[[str], None] | None = None

    def run(self, protocol_text, units, out, progress=None):
        if not units:
            return
        from dask.distributed import as_completed  # here: heavy, only this executor needs it

        client, cluster = self.client()
        try:
            self.dashboard = client.dashboard_link or ""
            if self.on_start:
                self.on_start(self.describe())
            digest = hashlib.sha1(protocol_text.encode()).hexdigest()[:12]
            futures = {client.submit(run_unit, protocol_text, u.id, str(Path(out).resolve()), None, 1, None, self.runner,
                                     key=f"bioplastic-{u.id}-{digest}", pure=False, retries=3): u
                       for u in units}
            for fut in as_completed(futures):
                fut.result()
                if progress:
                    progress(futures[fut].work, {})
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


def make_executor(name: str, workers: int | None = None, scheduler: str | None = None,
                  runner: UnitRunner = train) -> Executor:
    if scheduler and name not in ("dask", "local"):
        raise ExecutorError("--scheduler needs --executor dask")
    if scheduler or name == "dask":
        return DaskExecutor(scheduler, workers, runner=runner)
    if name == "local":
        return LocalPoolExecutor(workers, runner=runner)
    if name == "inprocess":
        return InProcessExecutor(runner=runner)
    raise ExecutorError(f"unknown executor {name!r}; expected one of: local, inprocess, dask")
