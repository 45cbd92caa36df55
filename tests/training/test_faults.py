"""Faults: one writer per run folder; Ctrl-C and kill -9 leave no worker behind; a resumed unit that
had decided to stop early stops; a wrong --scheduler fails clearly and in time."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import bioplastic
from bioplastic import load_protocol, run_protocol
from bioplastic.storage.io import atomic_torch_save, safe_torch_load
from bioplastic.storage.lock import LOCK_NAME, OWNER_NAME, RunLockedError, run_lock
from bioplastic.training.executors import DaskExecutor, ExecutorError, InProcessExecutor, check_scheduler_address, make_executor
from bioplastic.training.loop import EnsembleTrainer, Interrupted
from bioplastic.training.units import plan_units, train

HAS_PROC = Path("/proc/self/stat").exists()
ENV = dict(os.environ, OMP_NUM_THREADS="1")

TINY = """
name: tiny
seed: 7
seeds: 2
task: {kind: evidence_accumulation, stimulus_ms: 200, delay_min_ms: 40, delay_max_ms: 100, response_ms: 60}
model: {kind: leaky_rate, n_units: 12, g: 1.5}
training: {lr: 1e-2, iterations: 12, batch_size: 8, checkpoint_every: 4, eval_every: 3, eval_trials: 16, dtype: float64}
conditions:
  baseline: {}
  tcr_loss: {tcr: {form: loss, lambda: 0.5}}
output: {figures: false}
"""

#: 8 units of one network each, ~10 s apiece: a signal lands while units run and others wait
SLOW = TINY.replace("iterations: 12", "iterations: 3000, ensemble_size: 1").replace("seeds: 2", "seeds: 4")

#: every network reaches the criterion at once; stopping waits (5 + 1) smoothing windows past it
EARLY = TINY.replace("checkpoint_every: 4", "checkpoint_every: 2, criterion: 0.01, loss_smoothing: 1, stop_when_learned: true")


# --------------------------------------------------------------------------------------------- helpers
def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (from /proc)."""
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _stat(int(d))
            if st is not None and int(st[1]) == pid and st[0] != "Z":
                kids.append(int(d))
    return kids


def _alive(pids: list[int]) -> list[int]:
    return [p for p in pids if (st := _stat(p)) is not None and st[0] != "Z"]


def _wait_gone(pids: list[int], within_s: float) -> list[int]:
    deadline = time.monotonic() + within_s
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _alive(pids)


def _start_slow_run(tmp_path: Path) -> tuple[subprocess.Popen, Path, list[int]]:
    """A ``python -m bioplastic run`` of SLOW with 2 workers, in its own session (as a shell job), once
    its workers have saved a checkpoint. Returns it, its folder and its child processes."""
    (tmp_path / "slow.yaml").write_text(textwrap.dedent(SLOW))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "bioplastic", "run", "slow.yaml", "--out", "out", "--quiet", "--workers", "2"],
                            cwd=tmp_path, env=ENV, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any((out / "state").glob("*.pt")):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the run did not start training: {proc.communicate()}")
        time.sleep(0.1)
    time.sleep(0.5)
    kids = _children(proc.pid)
    assert len(kids) >= 2, kids  # the two pool workers (and the progress manager, the resource tracker)
    return proc, out, kids


# --------------------------------------------------------------------------------------------- the lock
_HOLD = """
import sys, time
from bioplastic.storage.lock import run_lock
with run_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.mark.integration
def test_a_second_writer_is_refused_at_once_and_a_dead_holder_leaves_no_stale_lock(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.perf_counter()
        with pytest.raises(RunLockedError, match=rf"another bioplastic process \(PID {holder.pid}\) is writing to .*run; wait"):
            with run_lock(out):
                pass
        assert time.perf_counter() - t0 < 2  # no waiting
        holder.kill()  # kill -9: the kernel drops its lock
        holder.wait()
        with run_lock(out):  # taken over without any cleanup
            assert (out / OWNER_NAME).read_text().split()[0] == str(os.getpid())
    finally:
        holder.kill()
        holder.communicate()
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # no owner record left after release


def test_the_lock_is_reentrant_in_a_process_and_does_not_create_a_missing_folder_unasked(tmp_path):
    out = tmp_path / "run"
    with run_lock(out, create=False):
        pass
    assert not out.exists()
    with run_lock(out):
        with run_lock(out):  # e.g. a run that goes on to analyse and report
            pass
        assert (out / OWNER_NAME).exists()  # still held by the outer one
    assert not (out / OWNER_NAME).exists()


def test_a_lock_taken_where_nothing_was_written_leaves_the_folder_as_it_was(tmp_path):
    """A command that fails before writing anything leaves no lock file behind (nor a folder it made);
    one that wrote something, or found a lock file there, leaves the lock file."""
    made = tmp_path / "made" / "run"
    with run_lock(made):
        assert (made / LOCK_NAME).exists()
    assert not made.exists() and (tmp_path / "made").is_dir()  # only the folder the lock made is removed
    empty = tmp_path / "empty"
    empty.mkdir()
    with run_lock(empty, create=False):
        pass
    assert list(empty.iterdir()) == []
    with run_lock(empty):
        (empty / "protocol.yaml").write_text("name: x\n")
    assert sorted(p.name for p in empty.iterdir()) == [LOCK_NAME, "protocol.yaml"]
    (empty / "protocol.yaml").unlink()
    with run_lock(empty):  # the lock file was there before: a run folder's, kept
        pass
    assert sorted(p.name for p in empty.iterdir()) == [LOCK_NAME]


# --------------------------------------------------------------------------------------------- Ctrl-C and kill -9
@pytest.mark.integration
@pytest.mark.skipif(not HAS_PROC, reason="finds worker processes in /proc")
def test_ctrl_c_stops_the_local_pool_at_once_and_keeps_the_checkpoints(tmp_path):
    proc, out, kids = _start_slow_run(tmp_path)
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C: the whole foreground process group
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    took = time.monotonic() - t0
    assert proc.returncode == 130, err
    assert took < 15, f"took {took:.0f} s to stop"  # the queued units did not train (each takes ~10 s)
    assert _wait_gone(kids, 5) == []
    assert "Traceback" not in err and "run the same command again to resume" in err
    states = sorted((out / "state").glob("*.pt"))
    assert states and all(safe_torch_load(p)["k"] > 0 for p in states)  # the last checkpoints, readable
    assert not list((out / "units").glob("*.pt"))  # no unit finished


@pytest.mark.integration
@pytest.mark.skipif(not HAS_PROC, reason="finds worker processes in /proc")
def test_workers_die_with_a_killed_parent(tmp_path):
    proc, out, kids = _start_slow_run(tmp_path)
    proc.kill()  # kill -9: no handler, no cleanup in the parent
    proc.communicate()
    assert _wait_gone(kids, 5) == []
    before = {p: p.stat().st_mtime_ns for p in (out / "state").glob("*.pt")}
    time.sleep(1.5)  # nobody trains into the folder any more
    assert {p: p.stat().st_mtime_ns for p in (out / "state").glob("*.pt")} == before


def _spawned(pid: int) -> list[int]:
    """The live children of ``pid`` that multiprocessing spawned (pool workers, the progress manager)."""
    kids = []
    for kid in _children(pid):
        try:
            if b"spawn_main" in Path(f"/proc/{kid}/cmdline").read_bytes():
                kids.append(kid)
        except OSError:
            pass
    return kids


@pytest.mark.integration
@pytest.mark.skipif(not HAS_PROC, reason="finds worker processes in /proc")
@pytest.mark.parametrize("sig, to_group, nth", [
    (signal.SIGINT, True, 1),    # Ctrl-C while the progress manager starts (the first process spawned)
    (signal.SIGINT, True, 2),    # Ctrl-C while the first pool worker starts
    (signal.SIGTERM, True, 1),   # a batch system's SIGTERM to the job's processes, before any progress
    (signal.SIGTERM, True, 2),
    (signal.SIGTERM, False, 1),  # `kill PID` of the run while its progress manager starts
])
def test_a_signal_while_the_worker_processes_start_stops_the_run_quietly(tmp_path, sig, to_group, nth):
    """A Ctrl-C or SIGTERM half a second after the ``nth`` process is spawned, seconds before any
    progress (a started process imports torch and bioplastic first): the run stops with 130 and its message, no
    process prints a traceback (a worker's KeyboardInterrupt, the manager's BrokenPipeError, the
    progress thread's EOFError), and no process is left."""
    (tmp_path / "slow.yaml").write_text(textwrap.dedent(SLOW))
    proc = subprocess.Popen([sys.executable, "-m", "bioplastic", "run", "slow.yaml", "--out", "out", "--workers", "2"],
                            cwd=tmp_path, env=ENV, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(_spawned(proc.pid)) < nth:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no process was spawned: {proc.communicate()}")
        time.sleep(0.005)
    time.sleep(0.5)  # into its imports (torch alone takes longer), past Python's own start
    kids = _children(proc.pid)
    (os.killpg if to_group else os.kill)(proc.pid, sig)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err
    for sign in ("Traceback", "Exception in thread", "Error"):
        assert sign not in err, err
    assert _wait_gone(kids, 10) == []
    assert not list((tmp_path / "out" / "units").glob("*.pt"))


# --------------------------------------------------------------------------------------------- early stop
def _same_result(a, b):
    assert a.final_iteration == b.final_iteration
    for name in ("history", "eval_history", "weights"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=f"{name}[{k}]")
    np.testing.assert_array_equal(a.diverged_at, b.diverged_at)


def test_a_trainer_resumed_after_its_early_stop_decision_stops_at_once(tmp_path):
    unit = plan_units(load_protocol(_write(tmp_path, EARLY)))[0]
    straight = EnsembleTrainer(list(unit.members), 7).run()
    assert straight.final_iteration == 6 < 12  # stopped early (at the first checkpoint >= 0 + (5 + 1) * 1)
    state = tmp_path / "state.pt"
    decided = EnsembleTrainer(list(unit.members), 7)
    _same_result(decided.run(state), straight)  # the state file now holds the deciding checkpoint
    assert safe_torch_load(state)["stopped_early"] is True
    calls = []
    resumed = EnsembleTrainer(list(unit.members), 7)
    result = resumed.run(state, lambda n, info: calls.append(info))
    assert resumed.stopped_early and calls == [{}]  # nothing trained: only the resumed count reported
    _same_result(result, straight)
    # a resume state written before the decision was saved decides again, the same way
    old = safe_torch_load(state)
    del old["stopped_early"]
    atomic_torch_save(old, state)
    _same_result(EnsembleTrainer(list(unit.members), 7).run(state), straight)


class _DieBeforeResult:
    """A runner that trains a unit to its end, then dies before its result file is written."""

    def __call__(self, trainer, unit, state, progress, interrupt_at):
        train(trainer, unit, state, progress, interrupt_at)
        raise Interrupted("killed between the last state and the result file")


def test_a_run_killed_between_the_last_state_and_the_result_file_resumes_to_the_same_numbers(tmp_path):
    protocol = load_protocol(_write(tmp_path, EARLY))
    straight = bioplastic.train(protocol)  # run_protocol's numbers, without a second run folder and report
    with pytest.raises(Interrupted):
        run_protocol(protocol, tmp_path / "killed", executor=InProcessExecutor(runner=_DieBeforeResult()))
    assert list((tmp_path / "killed" / "state").glob("*.pt"))
    resumed, _ = run_protocol(protocol, tmp_path / "killed", executor=InProcessExecutor())
    assert (resumed["final_iteration"] == 6).all()
    xr.testing.assert_identical(straight.drop_attrs(), resumed.drop_attrs())


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(text))
    return path


# --------------------------------------------------------------------------------------------- --scheduler
@pytest.mark.parametrize("address", ["garbage", "tcp://", "tcp://host", "http://127.0.0.1:8786", "tcp://127.0.0.1:0",
                                     "tcp://127.0.0.1:70000", "tcp://a b:8786", "tcp://127.0.0.1:8786/status"])
def test_a_malformed_scheduler_address_is_refused_naming_the_option(address):
    with pytest.raises(ExecutorError, match=r"--scheduler .* is not a Dask scheduler address.*tcp://"):
        make_executor("dask", scheduler=address)
    with pytest.raises(ExecutorError, match="--scheduler"):
        DaskExecutor(address)


def test_well_formed_scheduler_addresses_are_accepted():
    assert check_scheduler_address("127.0.0.1:8786") == "tcp://127.0.0.1:8786"
    assert check_scheduler_address(" tls://sched.example.org:8786 ") == "tls://sched.example.org:8786"
    assert check_scheduler_address("tcp://[::1]:8786") == "tcp://[::1]:8786"


def test_the_command_line_reports_a_malformed_scheduler_without_a_traceback(tmp_path, capsys):
    from bioplastic.cli import main

    assert main(["run", str(_write(tmp_path, TINY)), "--out", str(tmp_path / "out"), "--scheduler", "tcp:/host:8786"]) == 2
    err = capsys.readouterr().err
    assert "--scheduler" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_a_closed_port_fails_at_once():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    with pytest.raises(ExecutorError, match=rf"cannot reach the Dask scheduler at tcp://127.0.0.1:{port} within 5 s \(connection refused\)"):
        DaskExecutor(f"tcp://127.0.0.1:{port}", connect_timeout_s=5).client()
    assert time.perf_counter() - t0 < 2


@pytest.fixture
def plain_server():
    """A TCP server that is not a Dask scheduler: ``silent`` accepts and says nothing, ``http``
    answers like a web server. Every socket is closed at teardown."""
    stop = threading.Event()
    threads = []

    def start(mode: str) -> int:
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        srv.settimeout(0.1)

        def serve():
            conns = []
            try:
                while not stop.is_set():
                    try:
                        conn, _ = srv.accept()
                    except TimeoutError:
                        continue
                    conns.append(conn)
                    if mode == "http":
                        try:
                            conn.settimeout(1)
                            conn.recv(65536)
                            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        except OSError:
                            pass
            finally:
                for conn in conns:
                    conn.close()
                srv.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        threads.append(thread)
        return srv.getsockname()[1]

    yield start
    stop.set()
    for thread in threads:
        thread.join(5)


@pytest.mark.parametrize("mode", ["silent", "http"])
def test_a_server_that_is_not_dask_fails_clearly_within_the_timeout(plain_server, mode):
    port = plain_server(mode)
    t0 = time.perf_counter()
    with pytest.raises(ExecutorError, match=rf"tcp://127.0.0.1:{port}.*(not a Dask scheduler|nothing answered as a Dask scheduler)"):
        DaskExecutor(f"tcp://127.0.0.1:{port}", connect_timeout_s=2).client()
    assert time.perf_counter() - t0 < 5
