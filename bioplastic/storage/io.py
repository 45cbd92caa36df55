"""Atomic writes and verified loads: a file is either complete or absent, never half-written, and a
file damaged afterwards (garbled bytes, truncation) is refused with :class:`DamagedFileError`, never
read as wrong numbers.

Torch files (resume states, finished units, analysis parts) are self-verifying: one header line

    bioplastic-torch-v1 sha256=<64 hex digits> bytes=<payload length>\n

then the payload as :func:`torch.save` writes it. :func:`safe_torch_load` checks length and SHA-256
before unpickling (``weights_only``). Datasets are checked in :mod:`bioplastic.storage.results`.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

#: first bytes of a checksummed torch file
TORCH_MAGIC = b"bioplastic-torch-v1 "
_HEADER = re.compile(rb"bioplastic-torch-v1 sha256=([0-9a-f]{64}) bytes=([0-9]{1,20})\n")
_MAX_HEADER = 160


class DamagedFileError(Exception):
    """A file exists but cannot be trusted: wrong checksum, truncated, unreadable, or without the
    integrity record this version writes. ``path`` names it, ``cause`` says what is wrong."""

    def __init__(self, path, cause):
        self.path, self.cause = Path(path), str(cause)
        super().__init__(path, cause)  # (path, cause) as args: pickles across worker processes

    def __str__(self) -> str:
        return f"{self.path} is damaged: {self.cause}"


class DamagedFileWarning(UserWarning):
    """A damaged file was deleted and what it held is computed again (same numbers)."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place. The file
    gets the permissions a plain ``open`` would give it (0666 minus the umask), not mkstemp's 0600,
    so colleagues on a shared server can read results as usual."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        _fsync(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync(path.parent)


def _fsync(path) -> None:
    """Flush a file (or a folder's entries) to disk, so a power cut leaves the old or the new file,
    not an empty one. Best effort where the system cannot (e.g. folders on some file systems)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text))


def atomic_torch_save(obj, path: Path) -> None:
    """Save ``obj`` with :func:`torch.save` as a self-verifying file (checksum header, then the
    payload), written atomically."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    payload = buf.getvalue()
    header = TORCH_MAGIC + f"sha256={hashlib.sha256(payload).hexdigest()} bytes={len(payload)}\n".encode()

    def write(p: Path) -> None:
        with open(p, "wb") as f:
            f.write(header)
            f.write(payload)

    atomic_write(path, write)


def _verified_payload(path: Path) -> bytes:
    path = Path(path)
    data = path.read_bytes()  # FileNotFoundError for a missing file: absent is not damaged
    if not data:
        raise DamagedFileError(path, "the file is empty")
    if not data.startswith(TORCH_MAGIC):
        raise DamagedFileError(path, "no integrity header (written by an older version of bioplastic, or not a "
                                     "bioplastic torch file)")
    m = _HEADER.match(data[:_MAX_HEADER])
    if m is None:
        raise DamagedFileError(path, "its integrity header is garbled or cut off")
    payload, want, size = data[m.end():], m.group(1).decode(), int(m.group(2))
    if len(payload) < size:
        raise DamagedFileError(path, f"truncated: {len(payload)} of {size} bytes after the header")
    if len(payload) > size:
        raise DamagedFileError(path, f"{len(payload) - size} bytes more than the header records ({size})")
    got = hashlib.sha256(payload).hexdigest()
    if got != want:
        raise DamagedFileError(path, f"wrong checksum (SHA-256 {got[:12]}..., the header records {want[:12]}...)")
    return payload


def verify_torch_file(path: Path) -> None:
    """Raise :class:`DamagedFileError` unless ``path`` is a complete, unaltered file of
    :func:`atomic_torch_save` (checks without unpickling)."""
    _verified_payload(path)


def safe_torch_load(path: Path, map_location="cpu"):
    """Load a file of :func:`atomic_torch_save`: verified first (:class:`DamagedFileError` for a wrong
    checksum, a truncated file or one without the header), then tensors and plain containers only
    (``weights_only``, never arbitrary unpickled objects), onto ``map_location`` (the CPU by
    default, whatever device a tensor was saved from; the training loop moves what it needs)."""
    return torch.load(io.BytesIO(_verified_payload(path)), weights_only=True, map_location=map_location)
