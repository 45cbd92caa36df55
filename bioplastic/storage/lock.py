"""One writer per run folder: ``with run_lock(out): ...`` holds ``OUT/.lock`` while a command writes there.

The lock is an OS-level file lock (``filelock``: ``flock`` on Unix, ``LockFileEx`` on Windows), taken
without waiting: a second process that asks for the folder while another holds it gets
:class:`RunLockedError` at once, naming the holder's PID. The kernel releases the lock when its holder
exits, however it exits (``kill -9`` included), so a lock is never stale: the next command takes it
over without any cleanup. The holder's PID is written to ``OUT/.lock.owner`` for the message (the
lock file itself is not used for it: some filelock versions truncate it when another process tries)
and removed on release.

The lock is re-entrant within a process (nested ``run_lock`` of one folder, e.g. a run that then
analyses and reports, holds it once). ``OUT/.lock`` stays in the folder after release (it holds no
data), except where the command that took it wrote nothing else: a lock file it created in a folder
that holds nothing but the lock's files is removed on release (before the lock is let go, so that
no other process holds the removed file), and so is a folder it created - a command that failed
before writing anything (``report`` of an empty folder, a run refused at its start) leaves the
folder as it found it.
"""
from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

__all__ = ["LOCK_FILES", "LOCK_NAME", "OWNER_NAME", "RunLockedError", "lock_owner", "run_lock"]

LOCK_NAME = ".lock"
OWNER_NAME = ".lock.owner"
#: the files the lock leaves in a run folder (not data: a folder holding only these is empty)
LOCK_FILES = (LOCK_NAME, OWNER_NAME)


class RunLockedError(RuntimeError):
    """Another process holds the run folder's lock (another bioplastic command is writing there)."""

    def __init__(self, out: Path, pid: int | None = None):
        self.out, self.pid = Path(out), pid
        who = f" (PID {pid})" if pid else ""
        super().__init__(f"another bioplastic process{who} is writing to {out}; wait for it to finish, "
                         f"or choose another output folder (--out)")


_held: dict[Path, tuple[FileLock, int, bool, bool]] = {}  # folder -> (its lock, nesting depth, created the folder, created the lock file)
_guard = threading.Lock()


def lock_owner(out: str | Path) -> int | None:
    """The PID recorded by the last holder of ``out``'s lock (``None`` if none is recorded; the
    process may have ended since: only a failed :func:`run_lock` says the lock is held)."""
    try:
        return int((Path(out) / OWNER_NAME).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@contextmanager
def run_lock(out: str | Path, create: bool = True) -> Iterator[Path]:
    """Hold ``OUT/.lock`` for the body; raise :class:`RunLockedError` at once if another process holds it.

    ``create``: make the folder (and its parents) if missing; with ``create=False`` a missing folder
    is not locked (there is nothing to protect: the command fails by itself) and is not created.
    Yields the folder.
    """
    out = Path(out)
    made_folder = False
    if not out.is_dir():
        if not create:
            yield out
            return
        made_folder = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
    key = out.resolve()
    with _guard:
        if key in _held:  # re-entrant within this process
            lock, depth, made_folder, made_file = _held[key]
            _held[key] = (lock, depth + 1, made_folder, made_file)
        else:
            made_file = not (key / LOCK_NAME).exists()
            lock = FileLock(str(key / LOCK_NAME), timeout=0)
            try:
                lock.acquire(timeout=0)
            except Timeout:
                raise RunLockedError(out, lock_owner(key)) from None
            _held[key] = (lock, 1, made_folder, made_file)
            try:
                (key / OWNER_NAME).write_text(f"{os.getpid()} {socket.gethostname()}\n")
            except OSError:  # the PID is only for the message
                pass
    try:
        yield out
    finally:
        with _guard:
            lock, depth, made_folder, made_file = _held[key]
            if depth > 1:
                _held[key] = (lock, depth - 1, made_folder, made_file)
            else:
                del _held[key]
                (key / OWNER_NAME).unlink(missing_ok=True)  # before the release: never a successor's
                wrote_nothing = made_file and _holds_only_the_lock(key)
                if wrote_nothing:
                    (key / LOCK_NAME).unlink(missing_ok=True)  # while held: no one else holds the unlinked file
                lock.release()
                if wrote_nothing and made_folder:
                    try:
                        key.rmdir()  # only if still empty
                    except OSError:
                        pass


def _holds_only_the_lock(folder: Path) -> bool:
    try:
        return all(p.name in LOCK_FILES for p in folder.iterdir())
    except OSError:
        return False
