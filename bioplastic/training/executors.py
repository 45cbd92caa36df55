"""Executors run work units: in this process, in a local process pool (the default), or on a Dask
cluster. All produce the same numbers: a unit's result depends on the protocol and unit id only.

- ``inprocess``: one unit after another, here (torch may use every core inside each unit).
- ``local``: a pool of worker processes, by default one per core, each single-threaded (at these
  network sizes one thread per process is faster than threads inside one process). A worker that
  dies loses only its unit, which is re-run from its last checkpoint. Ctrl-C (KeyboardInterrupt, and
  SIGTERM where the command line turns it into one) or any error stops the pool at once: queued units
  are cancelled and the workers terminated; each unit's last checkpoint stays on disk. Workers die
  with the process that started them (``kill -9`` of it included): on Linux by ``PR_SET_PDEATHSIG``,
  elsewhere (and as a second line) by a thread in each worker that exits when its parent changes.
- ``dask``: ``dask.distributed``: a ``LocalCluster`` by default, or an existing cluster given by its
  scheduler address (``tcp://HOST:PORT``; checked by :func:`check_scheduler_address`, and asked who
  it is within the connection timeout before the client connects, so that a wrong address or a
  server that is not a Dask scheduler fails clearly and in time). Tasks of a lost worker are re-run
  by the scheduler. The output folder must be visible to every worker (a shared filesystem on a cluster).

Every executor runs a unit's trainer through ``runner`` (a :data:`~bioplastic.training.units.UnitRunner`,
by default :func:`~bioplastic.training.units.train`); a replacement must be picklable by reference
(a module-level function, or an instance of a module-level class) from a module the worker
processes can import. Tests use it to kill a worker mid-unit.
"""
from __future__ import annotations

import asyncio
import concurrent.futures as cf
import ctypes
import hashlib
import multiprocessing as mp
import os
import queue
import re
import signal
import socket
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import contextmanager
from multiprocessing import resource_tracker
from multiprocessing.managers import SyncManager
from pathlib import Path

from .init_from import InitSourceError
from .units import ThrottledProgress, Unit, UnitRunner, longest_first, run_unit, train

Progress = Callable[[int, dict], None]


class ExecutorError(RuntimeError):
    """The executor could not run (e.g. the Dask scheduler is unreachable)."""


def _env_int(name: str) -> int | None:
    try:
        value = int(os.environ.get(name, ""))
    except ValueError:
        return None
    return value if value > 0 else None


def _cgroup_cpus(root: str = "/sys/fs/cgroup") -> int | None:
    """The CPU quota of this process's cgroup (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), rounded up; None: no quota."""
    try:
        quota, period = Path(root, "cpu.max").read_text().split()[:2]
        return None if quota == "max" else max(1, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    try:
        quota = int(Path(root, "cpu", "cpu.cfs_quota_us").read_text())
        period = int(Path(root, "cpu", "cpu.cfs_period_us").read_text())
        return None if quota <= 0 else max(1, -(-quota // period))
    except (OSError, ValueError):
        return None


def cpu_count() -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup CPU quota and by
    ``SLURM_CPUS_PER_TASK`` (a batch job's share of a shared node)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        n = os.cpu_count() or 1
    for cap in (_cgroup_cpus(), _env_int("SLURM_CPUS_PER_TASK")):
        if cap is not None:
            n = min(n, cap)
    return max(1, n)


def threads_per_worker(workers: int) -> int:
    """torch threads for each of ``workers`` processes: the cores divided among them, and at most
    ``OMP_NUM_THREADS`` when it is set (so that workers never spin against each other or against
    what the user reserved for other work)."""
    threads = max(1, cpu_count() // max(1, workers))
    omp = _env_int("OMP_NUM_THREADS")
    return min(threads, omp) if omp else threads


class Executor(ABC):
    name: str
    #: the workers run on other machines (a Dask cluster's): each resolves ``training.device`` itself
    remote: bool = False
    #: how each unit's trainer is run (see the module docstring)
    runner: UnitRunner = staticmethod(train)

    @abstractmethod
    def run(self, protocol_text: str, units: list[Unit], out: Path, progress: Progress | None = None) -> None:
        """Run every unit; each writes its own result file. Raises if a unit keeps failing."""

    def check(self) -> None:  # noqa: B027 - optional: only executors that reach outside override it
        """Reach what the executor needs from outside this process (a cluster's scheduler) now,
        before anything is written: :class:`ExecutorError` if it cannot. Nothing to reach by default."""

    def describe(self) -> str:
        return self.name


class InProcessExecutor(Executor):
    name = "inprocess"

    def __init__(self, interrupt_at: int | None = None, runner: UnitRunner = train):
        self.interrupt_at, self.runner = interrupt_at, runner

    def run(self, protocol_text, units, out, progress=None):
        for unit in units:
            run_unit(protocol_text, unit.id, str(out), progress, interrupt_at=self.interrupt_at, runner=self.runner)


# --------------------------------------------------------------------------------------------- local pool
#: how often a worker's watchdog checks that its parent is alive (the portable fallback)
WATCHDOG_INTERVAL_S = 0.5
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Linux: have the kernel send ``sig`` to this process when its parent dies. False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):  # pragma: no cover - no libc / no prctl
        return False


def _watch_parent(parent_pid: int, interval_s: float = WATCHDOG_INTERVAL_S) -> None:
    """Exit this process as soon as ``parent_pid`` is no longer its parent (it died; we were re-parented)."""
    while True:
        if os.getppid() != parent_pid:
            os._exit(1)
        time.sleep(interval_s)


def die_with_parent(parent_pid: int) -> None:
    """Initializer of the pool's worker processes (and of its progress manager): die when the process
    that started them dies, however it dies; ignore SIGINT (Ctrl-C reaches the whole process group:
    the parent alone decides, and terminates the workers). The process started with SIGINT blocked
    (:class:`_QuietStartProcess`): a Ctrl-C that came while it started is pending, and dropped here."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    _set_parent_death_signal()
    if os.getppid() != parent_pid:  # the parent died before the death signal was set
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="bioplastic-parent-watchdog", daemon=True).start()


def _manager_init(parent_pid: int) -> None:
    """Initializer of the progress manager's server process: as :func:`die_with_parent`, and deaf to
    SIGTERM too, so that a SIGTERM sent to the whole process group (a batch system, ``timeout``,
    ``kill 0``) does not pull the queue away from the parent while it stops; the parent shuts the
    manager down (and it dies with the parent)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    die_with_parent(parent_pid)


@contextmanager
def _start_undisturbed():
    """The body (the start of a child process) runs without Ctrl-C or SIGTERM breaking it half-way.

    SIGINT is blocked for the body, so the child inherits it blocked (the signal mask survives fork
    and exec): a Ctrl-C that reaches the process group while the child starts - seconds of imports,
    before its initializer (:func:`die_with_parent`) ignores SIGINT - stays pending there and is
    then dropped, instead of printing a KeyboardInterrupt traceback from the child. In the main
    thread, SIGINT and SIGTERM that reach this process meanwhile are recorded and raised again right
    after the body (milliseconds: the spawn, not the child's imports), so the parent never leaves a
    child without the data it is reading (which would fail loudly: ``EOFError: Ran out of input``)."""
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - not POSIX
        yield
        return
    # multiprocessing starts its resource tracker with the first process and unblocks SIGINT
    # when it has (whatever the mask was before): started first, it leaves the mask below alone
    resource_tracker.ensure_running()
    main = threading.current_thread() is threading.main_thread()  # (other threads never run signal handlers)
    received: list[int] = []
    handlers = {sig: signal.signal(sig, lambda signum, frame: received.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)} if main else {}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for sig, handler in handlers.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)  # None: not set from Python
        for sig in dict.fromkeys(received):  # as the handlers in place now deal with them
            signal.raise_signal(sig)


class _QuietStartProcess(mp.context.SpawnProcess):
    """A spawned process whose start is not broken by a Ctrl-C or SIGTERM (:func:`_start_undisturbed`)."""

    def start(self) -> None:
        with _start_undisturbed():
            super().start()


class _QuietStartContext(mp.context.SpawnContext):
    """The spawn context (no fork after torch/OpenMP started threads) whose processes are
    :class:`_QuietStartProcess` es; ``started`` lists them (a pool registers a worker only after its
    start, and a signal raised at the end of the start would leave it out of the pool's own list)."""

    def __init__(self):
        super().__init__()
        self.started: list[_QuietStartProcess] = []

    def Process(self, *args, **kwargs) -> _QuietStartProcess:  # noqa: N802 - the name multiprocessing calls
        proc = _QuietStartProcess(*args, **kwargs)
        self.started.append(proc)
        return proc


def stop_pool(pool: cf.ProcessPoolExecutor, grace_s: float = 2.0, also: list | None = None) -> None:
    """Stop ``pool`` now: cancel its queued futures, terminate its workers and the processes in
    ``also`` (SIGTERM, then SIGKILL after ``grace_s``), without waiting for running units. They are
    gone when this returns (before the pool's queues are freed with this process, which a worker
    still starting would read: a FileNotFoundError traceback from it)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())  # (no public accessor before Python 3.14)
    procs += [p for p in also or [] if p not in procs and p.pid is not None]
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    deadline = time.monotonic() + grace_s
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join(1.0)


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
        threads = threads_per_worker(workers)
        ctx = _QuietStartContext()
        me = os.getpid()
        manager = q = drainer = None
        stop = threading.Event()

        def drain():
            try:
                while not stop.is_set() or not q.empty():
                    try:
                        progress(*q.get(timeout=0.2))
                    except queue.Empty:
                        continue
            except (EOFError, OSError):  # the manager is gone (the run is being stopped): no more progress to show
                return

        pending = longest_first(units)
        try:
            if progress:
                manager = SyncManager(ctx=ctx)
                try:
                    manager.start(_manager_init, (me,))
                except BaseException:  # Ctrl-C, SIGTERM: the server must not answer a parent that stopped listening
                    for server in ctx.started:
                        if server.pid is not None and server.is_alive():
                            server.kill()
                    raise
                q = manager.Queue()
                drainer = threading.Thread(target=drain, name="bioplastic-progress", daemon=True)
                drainer.start()
            servers = list(ctx.started)  # the manager's; the pools' workers follow
            for attempt in range(self.max_restarts + 1):
                pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=die_with_parent, initargs=(me,))
                try:
                    futures = {pool.submit(_pool_worker, protocol_text, u.id, str(out), q, threads, self.runner): u for u in pending}
                    broken = False
                    for fut in cf.as_completed(futures):
                        try:
                            fut.result()
                            pending.remove(futures[fut])
                        except cf.process.BrokenProcessPool:
                            broken = True
                except BaseException:  # Ctrl-C, SIGTERM, a failing unit: stop now, not after the queue
                    stop_pool(pool, also=ctx.started[len(servers):])
                    raise
                pool.shutdown(wait=True)
                if not broken:
                    return
                if attempt == self.max_restarts:
                    raise ExecutorError(f"worker processes kept dying; {len(pending)} unit(s) not done: "
                                        + ", ".join(u.id for u in pending))
        finally:
            stop.set()
            if drainer:
                drainer.join()
            shutdown = getattr(manager, "shutdown", None)  # set by start(): absent when the manager never started
            if shutdown is not None:
                shutdown()


# --------------------------------------------------------------------------------------------- dask
#: the address schemes of dask.distributed that reach another process (``inproc://`` does not)
SCHEDULER_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")
_ADDRESS = re.compile(r"^(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://)?"
                      r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)"
                      r":(?P<port>[0-9]{1,5})/?$")


def check_scheduler_address(address: str) -> str:
    """The Dask scheduler address ``address`` (``tcp://HOST:PORT``, ``tls://``, ``ws://``, ``wss://``,
    ``ucx://``; a bare ``HOST:PORT`` means ``tcp://``), normalized; :class:`ExecutorError` naming
    ``--scheduler`` if it is not one."""
    text = str(address).strip()
    m = _ADDRESS.match(text)
    scheme = (m.group("scheme") or "tcp").lower() if m else None
    if m is None or scheme not in SCHEDULER_SCHEMES or not 0 < int(m.group("port")) < 65536:
        why = (f"the scheme {scheme}:// is not one of {', '.join(s + '://' for s in SCHEDULER_SCHEMES)}"
               if m is not None and scheme not in SCHEDULER_SCHEMES else
               "the port must be 1 to 65535" if m is not None else "it needs SCHEME://HOST:PORT")
        raise ExecutorError(f"--scheduler {address!r} is not a Dask scheduler address ({why}); "
                            f"expected e.g. tcp://10.0.0.5:8786 (the address the scheduler prints when it starts)")
    return f"{scheme}://{m.group('host')}:{int(m.group('port'))}"


def probe_scheduler(address: str, timeout_s: float) -> None:
    """Ask the server at ``address`` who it is, within ``timeout_s`` seconds in all (a thread with its
    own event loop, so this works under a running loop too). Raises :class:`ExecutorError` when
    nothing answers in time, the connection is refused, or the server is not a Dask scheduler
    (dask's client would wait a minute, or read the bytes of another protocol as a frame length and
    fail with a MemoryError)."""
    m = _ADDRESS.match(address)
    if m and (m.group("scheme") or "tcp").lower() == "tcp":  # refused at once: say so at once
        host = m.group("host").strip("[]")
        try:
            socket.create_connection((host, int(m.group("port"))), timeout=timeout_s).close()
        except OSError as exc:
            why = "connection refused" if isinstance(exc, ConnectionRefusedError) else f"{type(exc).__name__}: {exc}"
            raise ExecutorError(f"cannot reach the Dask scheduler at {address} within {timeout_s:g} s ({why}); "
                                f"is the scheduler running, and is --scheduler right?") from None

    async def identity():
        from distributed.core import rpc  # here: dask.distributed is heavy and only this executor needs it
        from distributed.security import Security

        async with rpc(address, timeout=timeout_s, connection_args=Security().get_connection_args("client")) as r:
            return await r.identity()

    answer: list = []

    def ask():
        try:
            answer.append(asyncio.run(asyncio.wait_for(identity(), timeout_s)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            answer.append(exc)

    thread = threading.Thread(target=ask, name="bioplastic-dask-probe", daemon=True)
    thread.start()
    thread.join(timeout_s + 2)
    reply = answer[0] if answer else TimeoutError()
    if isinstance(reply, dict) and reply.get("type") == "Scheduler":
        return
    if isinstance(reply, TimeoutError | asyncio.TimeoutError):
        raise ExecutorError(f"cannot reach the Dask scheduler at {address} within {timeout_s:g} s: nothing answered "
                            f"as a Dask scheduler (is --scheduler the scheduler's address, not its dashboard or another service?)")
    what = (f"it answered as a {reply.get('type')}" if isinstance(reply, dict) else
            # dask reads another protocol's first bytes as a frame length: an absurd allocation
            "it answered in another protocol" if isinstance(reply, MemoryError) else
            "it closed the connection without answering" if type(reply).__name__ == "CommClosedError" else
            f"{type(reply).__name__}: {str(reply)[:200]}")
    raise ExecutorError(f"--scheduler {address}: the server there is not a Dask scheduler ({what}); "
                        f"give the address the scheduler prints when it starts, e.g. tcp://HOST:8786")


class DaskExecutor(Executor):
    """dask.distributed: a LocalCluster (``scheduler=None``) or an existing cluster's scheduler
    (its address is checked here: :class:`ExecutorError` if malformed)."""

    name = "dask"

    def __init__(self, scheduler: str | None = None, workers: int | None = None, connect_timeout_s: float = 10,
                 runner: UnitRunner = train):
        scheduler = check_scheduler_address(scheduler) if scheduler else None
        self.scheduler, self.workers, self.timeout = scheduler, workers, connect_timeout_s
        self.remote = scheduler is not None
        self.runner = runner
        self.dashboard = ""

    def describe(self) -> str:
        where = self.scheduler or f"LocalCluster with {self.workers or cpu_count()} worker(s)"
        return f"dask ({where})" + (f", dashboard {self.dashboard}" if self.dashboard else "")

    def check(self) -> None:
        if self.scheduler:
            probe_scheduler(self.scheduler, self.timeout)

    def client(self):
        try:  # imported here: dask.distributed is heavy and only this executor needs it
            from dask.distributed import Client, LocalCluster
        except ImportError as exc:  # pragma: no cover - distributed is a dependency
            raise ExecutorError("the dask executor needs dask.distributed: pip install 'dask[distributed]'") from exc
        if self.scheduler:
            probe_scheduler(self.scheduler, self.timeout)
            try:
                return Client(self.scheduler, timeout=f"{self.timeout}s"), None
            except Exception as exc:  # noqa: BLE001 - any failure to connect is the scheduler's address or state
                raise ExecutorError(f"cannot reach the Dask scheduler at {self.scheduler} within {self.timeout:g} s: "
                                    f"{type(exc).__name__}: {exc}") from None
        try:
            cluster = LocalCluster(n_workers=self.workers or cpu_count(), threads_per_worker=1, processes=True,
                                   host="127.0.0.1", dashboard_address="127.0.0.1:0")  # loopback only
            return Client(cluster), cluster
        except Exception as exc:  # noqa: BLE001 - a worker that dies while the cluster starts, no free port, ...
            raise ExecutorError(f"the local Dask cluster could not start ({type(exc).__name__}: {exc}); run the same "
                                "command again (finished units are kept), or use --executor local") from None

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
            futures = {client.submit(run_unit_or_refusal, protocol_text, u.id, str(Path(out).resolve()), None, 1, None, self.runner,
                                     key=f"bioplastic-{u.id}-{digest}", pure=False, retries=3): u
                       for u in longest_first(units)}
            for fut in as_completed(futures):
                refusal = fut.result()
                if refusal is not None:
                    raise refusal
                if progress:
                    progress(futures[fut].work, {})
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


def run_unit_or_refusal(*args) -> InitSourceError | None:
    """:func:`run_unit` for a Dask task: a refusal that another try would repeat (a changed
    ``training.init`` source) comes back as the task's value, so that the task's ``retries`` (meant for
    passing failures) do not run it again; the client raises it."""
    try:
        run_unit(*args)
    except InitSourceError as exc:
        return exc
    return None


def make_executor(name: str, workers: int | None = None, scheduler: str | None = None,
                  runner: UnitRunner = train) -> Executor:
    """The executor ``name`` (``local``, ``inprocess``, ``dask``); ``scheduler`` (any string, an empty
    one included, is an address to check) only with ``dask``."""
    if scheduler is not None and name != "dask":
        raise ExecutorError(f"--scheduler {scheduler!r} is the address of a Dask scheduler: it runs with --executor dask "
                            f"(or no --executor), not --executor {name}; leave out one of the two")
    if scheduler is not None:
        scheduler = check_scheduler_address(scheduler)
    if name == "dask":
        return DaskExecutor(scheduler, workers, runner=runner)
    if name == "local":
        return LocalPoolExecutor(workers, runner=runner)
    if name == "inprocess":
        return InProcessExecutor(runner=runner)
    raise ExecutorError(f"unknown executor {name!r}; expected one of: local, inprocess, dask")
