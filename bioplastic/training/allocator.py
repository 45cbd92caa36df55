"""Keep freed memory in the process instead of handing it back to the system after every step.

A training iteration allocates a few full-size tensors (states, rates, gradients: E x B x T x N
floats, megabytes each) and frees them at its end. glibc's malloc serves blocks that large with
``mmap`` and returns them with ``munmap`` when freed, so every iteration's first write to each fresh
block page-faults its way through zeroed pages: measured, this made a BPTT iteration (N 100, B 64,
T 100) ~1.5x slower. Raising the mmap threshold to its maximum (32 MiB on 64-bit) and the trim
threshold well above it makes malloc reuse the same heap memory every iteration instead. Blocks
larger than that maximum (an LSTM ensemble's gates: E 8, N 100, B 64, T 100 is 82 MB) would still
be mapped afresh every time (measured: a fresh 82 MB block written once costs ~9x the write), so
malloc is also told to serve every block from its heap (``M_MMAP_MAX = 0``).

The cost: memory freed by the process stays mapped to it until it exits (bounded by the largest
working set it has had). Set ``BIOPLASTIC_KEEP_FREED_MEMORY=0`` to leave malloc as it is; it is also
left alone where the environment already tunes it (``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_MMAP_MAX_`` or ``MALLOC_TOP_PAD_`` set: e.g. Dask's nanny sets a small trim threshold for its workers, whose memory
monitor counts kept memory as unmanaged). Numbers do not depend on it. Elsewhere than glibc (macOS,
musl) nothing is changed.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -2, -3, -4
_MMAP_THRESHOLD_MAX = 32 * 2 ** 20  # glibc's upper bound for M_MMAP_THRESHOLD on 64-bit systems
_TRIM_THRESHOLD = 1 * 2 ** 30
_TOP_PAD = 64 * 2 ** 20
_done: bool | None = None


def keep_freed_memory() -> bool:
    """Tune glibc's malloc as described above, once per process; True when it was applied."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("BIOPLASTIC_KEEP_FREED_MEMORY", "1").strip() in ("0", "false", "no", "off"):
        return False
    if any(k in os.environ for k in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_MMAP_MAX_", "MALLOC_TOP_PAD_")):
        return False  # tuned by whoever started this process
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
                 and mallopt(_M_TOP_PAD, _TOP_PAD) and mallopt(_M_MMAP_MAX, 0))
    return _done
