"""Checks of an output folder given on the command line (``--out``), before any work is done.

``output.dir`` in a protocol is confined to the working directory by its schema
(:class:`~bioplastic.protocol.schema.OutputConfig`); ``--out`` may point anywhere, so it is checked
here: :func:`check_output_dir` refuses, with a message naming ``--out``, a path that is an existing
file, lies under a file, is a dangling symbolic link (or lies under one), lies in a kernel pseudo
file system (/proc, /sys, /dev) or cannot be written by this user. It writes nothing.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import ProtocolError

#: kernel pseudo file systems: never a place for results
PSEUDO_FILESYSTEMS = (Path("/proc"), Path("/sys"), Path("/dev"))


class OutputPathError(ProtocolError):
    """The output folder (``--out``) cannot be used. A :class:`ProtocolError` (bad input, exit
    status 2 on the command line) whose message names ``--out``."""

    def __init__(self, problem: str, option: str = "--out"):
        self.problems = [problem]
        self.source = option
        Exception.__init__(self, f"invalid output folder ({option}): {problem}")


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def check_output_dir(path: Path, option: str = "--out") -> None:
    """Raise :class:`OutputPathError` unless ``path`` is an existing folder or one that can be
    created, writable by this user, outside /proc, /sys and /dev. Nothing is created or written."""
    path = Path(path)
    shown = f"{option} {path}"
    if not str(path).strip():
        raise OutputPathError(f"{option}: expected a folder, got an empty path", option)
    absolute = path if path.is_absolute() else Path.cwd() / path
    try:
        real = absolute.resolve()
    except (OSError, RuntimeError) as exc:  # a symbolic link loop
        raise OutputPathError(f"{shown}: cannot be resolved ({exc})", option) from None
    for root in PSEUDO_FILESYSTEMS:
        if _under(real, root):
            raise OutputPathError(f"{shown}: lies in {root}, a kernel pseudo file system; choose a folder on a disk", option)
    # the path and each folder above it: the first that exists must be a folder (not a file, nor a
    # symbolic link to nothing), and the folder the run is written to must be writable
    for q in [absolute, *absolute.parents]:
        if q.is_symlink() and not q.exists():
            where = "is" if q == absolute else f"lies under {q}, which is"
            raise OutputPathError(f"{shown}: {where} a symbolic link to a path that does not exist "
                                  f"({os.readlink(q)}); remove the link or choose another folder", option)
        if not q.exists():
            continue
        if not q.is_dir():
            what = "is an existing file, not a folder" if q == absolute else f"lies under {q}, which is a file, not a folder"
            raise OutputPathError(f"{shown}: {what}; choose a folder", option)
        if not os.access(q, os.W_OK | os.X_OK):
            what = "is a folder this user cannot write to" if q == absolute else f"cannot be created: this user cannot write to {q}"
            raise OutputPathError(f"{shown}: {what}; choose a writable folder", option)
        return
