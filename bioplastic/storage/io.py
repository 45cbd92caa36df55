"""Atomic writes and safe loads: a file is either complete or absent, never half-written."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch


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
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text))


def atomic_torch_save(obj, path: Path) -> None:
    atomic_write(path, lambda p: torch.save(obj, p))


def safe_torch_load(path: Path):
    """Load a resume state: tensors and plain containers only (never unpickled objects)."""
    return torch.load(path, weights_only=True)
