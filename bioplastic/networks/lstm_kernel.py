"""The LSTM's per-step elementwise work as one compiled loop (optional; used by networks/lstm.py).

One step of the LSTM layer is a matrix product (torch) and ~15 elementwise operations on the step's
gates and cell; as torch operations they are 6-7 passes over the step's tensors forward and 4-5
backward, each a separate call from Python. Here each direction's elementwise work of a step is one
C loop over the step's elements (one call through ctypes), as oneDNN's fused LSTM kernel does it.
The layer around the loops is :class:`LSTMRecurrenceCompiled`; the matrix products stay torch's.

The C source below is compiled once per machine, the first time it is needed, with the system's C
compiler (``$CC``, else ``cc``, ``gcc`` or ``clang``; ~1-2 s), into a cache folder: ``$BIOPLASTIC_KERNEL_DIR``
if set, else ``<tempdir>/bioplastic-<uid>/kernels`` (``tempfile.gettempdir()``: ``$TMPDIR`` or
/tmp) - never the home folder. The file name carries a hash of the source, the flags and the
compiler's version, so an edited source compiles anew. A library is loaded only from a folder of this
user's that no one else can write to (nor to any folder above it, bar sticky ones such as /tmp), and
only if it is this user's file: another user who could plant a file there could run code in this
process (:func:`_private_dir`); otherwise the eager code runs, with a warning. Where no compiler works (or on a non-CPU
device, or for a dtype other than float32/float64) the LSTM runs its eager torch code instead
(:func:`kernel` returns None; :func:`status` says why); ``BIOPLASTIC_LSTM_KERNEL=0`` turns the
compiled path off.

Numbers: every element of a step is computed alone by the same sequence of IEEE operations (no
fused multiply-add: ``-ffp-contract=off``, no ``-ffast-math``), whether the compiler vectorised it
or not (``target_clones`` builds AVX-512, AVX2 and baseline versions and picks one at load time:
the same bits), so the loops' results do not depend on the ensemble size, the batch position or the
thread count (the products: see :func:`_members`).
float32's sigmoid is ``1 / (1 + exp(-x))`` with Cephes' ``expf`` polynomial (~1 ulp; torch's
vectorised sigmoid uses Sleef's); float64 uses libm's ``exp``.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import math
import os
import platform
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from .recurrence import gc_paused

log = logging.getLogger(__name__)

SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && !defined(BIOPLASTIC_NO_CLONES)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

/* exp(x) for float32, Cephes' expf: x = n ln2 + r, a degree-6 polynomial in r, times 2^n. Only
   +, -, *, conversions and bit operations: vectorisable, and the same bits scalar or vectorised. */
static inline float exp_f32(float x) {
    x = x > 88.3762626647949f ? 88.3762626647949f : x;
    x = x < -87.3365447505531f ? -87.3365447505531f : x;
    float t = x * 1.44269504088896341f + 12582912.0f;   /* round(x / ln2) in the low bits */
    int32_t tb;
    memcpy(&tb, &t, 4);
    int32_t n = tb - 0x4B400000;                         /* bits of 12582912.0f = 1.5 * 2^23 */
    float fx = t - 12582912.0f;
    x = x - fx * 0.693359375f;
    x = x - fx * -2.12194440e-4f;
    float z = x * x;
    float y = 1.9875691500e-4f;
    y = y * x + 1.3981999507e-3f;
    y = y * x + 8.3334519073e-3f;
    y = y * x + 4.1665795894e-2f;
    y = y * x + 1.6666665459e-1f;
    y = y * x + 5.0000001201e-1f;
    y = y * z + x + 1.0f;
    int32_t pb = (n + 127) << 23;
    float p;
    memcpy(&p, &pb, 4);
    return y * p;
}

static inline float sig_f32(float x) { return 1.0f / (1.0f + exp_f32(-x)); }
static inline double sig_f64(double x) { return 1.0 / (1.0 + exp(-x)); }

/* The buffers (time-major, each member contiguous; members apart by their own strides Se, Ze, ...):
     S  (E, T, B, 4N)      pre-activations (i, f, 2g, o) of each step; the forward pass leaves
                           (sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)) there
     Z  (E, T+1, B, R)     row (e, r, b) = (u_r, 1, h_{r-1}, c_{r-1}): the inputs of step r and
                           the state before it ((h0, c0) at r = 0); h starts at column `off`
     TC (E, T, B, N)       tanh(c_t)
     D  (E, TD, B, 4N)     dL/d pre-activations (the g block: d/d 2g) of a block of TD steps;
                           step t is at index td of its block
   and optional inputs read in place with strides (member, time, trial; units contiguous): the
   noise on 2g, and the gradients of h and c from outside the recurrence. Each loop over units is
   a function of its own whose restrict pointers tell the compiler that the blocks do not overlap
   (so it vectorises them). */

/* Forward, one row of step t: s holds the step's pre-activations (without the noise) and gets the gates. */
#define LSTM_FORWARD_ROW(NAME, REAL, SIG, ONE, TWO, NOISE)                                          \
CLONES __attribute__((noinline)) static void NAME(REAL *restrict si, REAL *restrict sf, REAL *restrict sg, \
        REAL *restrict so, const REAL *restrict xi, const REAL *restrict c0, REAL *restrict h,       \
        REAL *restrict c1, REAL *restrict tc, long N) {                                             \
    for (long n = 0; n < N; ++n) {                                                                  \
        REAL i = SIG(si[n]), f = SIG(sf[n]), o = SIG(so[n]);                                        \
        REAL tg = TWO * SIG(NOISE ? sg[n] + TWO * xi[n] : sg[n]) - ONE;  /* tanh(g) = 2 sigmoid(2g) - 1 */ \
        REAL c = f * c0[n] + i * tg;                                                                \
        REAL u = SIG(-TWO * c);                               /* tanh(c) = 1 - 2 sigmoid(-2c) */    \
        si[n] = i; sf[n] = f; sg[n] = tg; so[n] = o;                                                \
        tc[n] = ONE - TWO * u;                                                                      \
        c1[n] = c;                                                                                  \
        h[n] = o - (TWO * o) * u;                                                                   \
    }                                                                                               \
}

/* Forward, step t: S[t] holds the step's pre-activations without the noise and gets the gates;
   writes (h_t, c_t) into Z[t+1] and tanh(c_t) into TC[t]. The arguments come packed in `a`: S, Z, TC,
   (X, its strides), E, T, B, N, R, off, and the member strides of S, Z, TC (one ctypes argument instead of fourteen: a call costs ~1 us
   instead of ~3.5). */
#define LSTM_FORWARD(NAME, REAL, SIG, ONE, TWO)                                                     \
LSTM_FORWARD_ROW(NAME##_row0, REAL, SIG, ONE, TWO, 0)                                               \
LSTM_FORWARD_ROW(NAME##_row1, REAL, SIG, ONE, TWO, 1)                                               \
void NAME(const int64_t *a, long t) {                                                               \
    REAL *S = (REAL *)(intptr_t)a[0], *Z = (REAL *)(intptr_t)a[1], *TC = (REAL *)(intptr_t)a[2];    \
    const REAL *X = (const REAL *)(intptr_t)a[3];                                                   \
    const long Xe = a[4], Xt = a[5], Xb = a[6], E = a[7], T = a[8], B = a[9], N = a[10], R = a[11], off = a[12]; \
    const long Se = a[13], Ze = a[14], TCe = a[15];                                                 \
    for (long e = 0; e < E; ++e)                                                                    \
        for (long b = 0; b < B; ++b) {                                                              \
            REAL *s = S + e * Se + (t * B + b) * 4 * N;                                             \
            const REAL *z0 = Z + e * Ze + (t * B + b) * R + off;                                    \
            REAL *z1 = Z + e * Ze + ((t + 1) * B + b) * R + off;                                    \
            REAL *tc = TC + e * TCe + (t * B + b) * N;                                              \
            if (X) NAME##_row1(s, s + N, s + 2 * N, s + 3 * N, X + e * Xe + t * Xt + b * Xb, z0 + N, z1, z1 + N, tc, N); \
            else NAME##_row0(s, s + N, s + 2 * N, s + 3 * N, X, z0 + N, z1, z1 + N, tc, N);          \
        }                                                                                           \
}

/* Backward, one row of step t: dh = W_hh^T delta_{t+1} (0 at t = T-1), gh and gc the outside
   gradients of h_t and c_t (GH, GC: whether there are), dc holds dL/dc_{t+1} and gets dL/dc_t,
   fn = f_{t+1} (NEXT: whether t < T-1); d gets delta_t. */
#define LSTM_BACKWARD_ROW(NAME, REAL, ONE, HALF, GH, GC, NEXT)                                      \
CLONES __attribute__((noinline)) static void NAME(const REAL *restrict si, const REAL *restrict sf, \
        const REAL *restrict sg, const REAL *restrict so, const REAL *restrict tc, const REAL *restrict cp, \
        const REAL *restrict fn, const REAL *restrict gh, const REAL *restrict gc, const REAL *restrict dh, \
        REAL *restrict dc, REAL *restrict di, REAL *restrict df, REAL *restrict dg, REAL *restrict dout, long N) { \
    for (long n = 0; n < N; ++n) {                                                                  \
        REAL i = si[n], f = sf[n], tg = sg[n], o = so[n], th = tc[n];                               \
        REAL g = GH ? dh[n] + gh[n] : dh[n];                                                        \
        REAL x = GC ? gc[n] : 0;                                                                    \
        if (NEXT) x = x + fn[n] * dc[n];                                                            \
        REAL c = x + ((ONE - th * th) * o) * g;                                                     \
        dc[n] = c;                                                                                  \
        di[n] = c * ((i - i * i) * tg);                                                             \
        df[n] = c * ((f - f * f) * cp[n]);                                                          \
        dg[n] = c * ((HALF - HALF * tg * tg) * i);                                                  \
        dout[n] = g * ((o - o * o) * th);                                                           \
    }                                                                                               \
}

#define LSTM_BACKWARD_CALL(ROW) ROW(s, s + N, s + 2 * N, s + 3 * N, tc, cp, fn, gh, gc, g, c, d, d + N, d + 2 * N, d + 3 * N, N)

/* Backward, step t (t = T-1 first), at index td of D's block; the other arguments packed in `a`:
   S, Z, TC, D, dh, dc, (GH, its strides), (GC, its strides), E, T, B, N, R, off, TD, and the
   member strides of S, Z, TC, D, dh, dc. */
#define LSTM_BACKWARD(NAME, REAL, ONE, HALF)                                                        \
LSTM_BACKWARD_ROW(NAME##_row000, REAL, ONE, HALF, 0, 0, 0)                                          \
LSTM_BACKWARD_ROW(NAME##_row001, REAL, ONE, HALF, 0, 0, 1)                                          \
LSTM_BACKWARD_ROW(NAME##_row010, REAL, ONE, HALF, 0, 1, 0)                                          \
LSTM_BACKWARD_ROW(NAME##_row011, REAL, ONE, HALF, 0, 1, 1)                                          \
LSTM_BACKWARD_ROW(NAME##_row100, REAL, ONE, HALF, 1, 0, 0)                                          \
LSTM_BACKWARD_ROW(NAME##_row101, REAL, ONE, HALF, 1, 0, 1)                                          \
LSTM_BACKWARD_ROW(NAME##_row110, REAL, ONE, HALF, 1, 1, 0)                                          \
LSTM_BACKWARD_ROW(NAME##_row111, REAL, ONE, HALF, 1, 1, 1)                                          \
void NAME(const int64_t *a, long td, long t) {                                                     \
    const REAL *S = (const REAL *)(intptr_t)a[0], *Z = (const REAL *)(intptr_t)a[1];                \
    const REAL *TC = (const REAL *)(intptr_t)a[2], *dh = (const REAL *)(intptr_t)a[4];              \
    REAL *D = (REAL *)(intptr_t)a[3], *dc = (REAL *)(intptr_t)a[5];                                 \
    const REAL *GHp = (const REAL *)(intptr_t)a[6], *GCp = (const REAL *)(intptr_t)a[10];           \
    const long GHe = a[7], GHt = a[8], GHb = a[9], GCe = a[11], GCt = a[12], GCb = a[13];           \
    const long E = a[14], T = a[15], B = a[16], N = a[17], R = a[18], off = a[19], TD = a[20];      \
    const long Se = a[21], Ze = a[22], TCe = a[23], De = a[24], dhe = a[25], dce = a[26];           \
    const int next = t + 1 < T, variant = (GHp ? 4 : 0) + (GCp ? 2 : 0) + next;                     \
    for (long e = 0; e < E; ++e)                                                                    \
        for (long b = 0; b < B; ++b) {                                                              \
            const REAL *s = S + e * Se + (t * B + b) * 4 * N;                                       \
            const REAL *fn = next ? s + B * 4 * N + N : 0;                                          \
            const REAL *gh = GHp ? GHp + e * GHe + t * GHt + b * GHb : 0;                           \
            const REAL *gc = GCp ? GCp + e * GCe + t * GCt + b * GCb : 0;                           \
            const REAL *cp = Z + e * Ze + (t * B + b) * R + off + N;   /* c_{t-1} */                \
            const REAL *tc = TC + e * TCe + (t * B + b) * N, *g = dh + e * dhe + b * N;             \
            REAL *d = D + e * De + (td * B + b) * 4 * N, *c = dc + e * dce + b * N;                 \
            switch (variant) {                                                                      \
                case 0: LSTM_BACKWARD_CALL(NAME##_row000); break;                                   \
                case 1: LSTM_BACKWARD_CALL(NAME##_row001); break;                                   \
                case 2: LSTM_BACKWARD_CALL(NAME##_row010); break;                                   \
                case 3: LSTM_BACKWARD_CALL(NAME##_row011); break;                                   \
                case 4: LSTM_BACKWARD_CALL(NAME##_row100); break;                                   \
                case 5: LSTM_BACKWARD_CALL(NAME##_row101); break;                                   \
                case 6: LSTM_BACKWARD_CALL(NAME##_row110); break;                                   \
                default: LSTM_BACKWARD_CALL(NAME##_row111);                                         \
            }                                                                                       \
        }                                                                                           \
}

LSTM_FORWARD(lstm_forward_f32, float, sig_f32, 1.0f, 2.0f)
LSTM_FORWARD(lstm_forward_f64, double, sig_f64, 1.0, 2.0)
LSTM_BACKWARD(lstm_backward_f32, float, 1.0f, 0.5f)
LSTM_BACKWARD(lstm_backward_f64, double, 1.0, 0.5)
"""

#: compiler flags: no fused multiply-add and no fast-math, so vectorised and scalar code give the same bits
#: (-fno-trapping-math lets the clamps of exp be vectorised as selects; no value changes)
FLAGS = ("-O3", "-shared", "-fPIC", "-std=c99", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math")

_P = ctypes.c_void_p
_L = ctypes.c_long
_FORWARD_ARGS = [_P, _L]
_BACKWARD_ARGS = [_P, _L, _L]


class Kernel:
    """The compiled library: ``forward[dtype]`` and ``backward[dtype]`` (ctypes functions)."""

    def __init__(self, lib: ctypes.CDLL, path: Path, seconds: float):
        self.lib, self.path, self.compile_seconds = lib, path, seconds
        self.forward, self.backward = {}, {}
        for dtype, suffix in ((torch.float32, "f32"), (torch.float64, "f64")):
            f, b = getattr(lib, f"lstm_forward_{suffix}"), getattr(lib, f"lstm_backward_{suffix}")
            f.argtypes, f.restype = _FORWARD_ARGS, None
            b.argtypes, b.restype = _BACKWARD_ARGS, None
            self.forward[dtype], self.backward[dtype] = f, b


#: the backward pass takes the weight gradient in blocks of steps of about this many bytes of delta per member
BLOCK_BYTES = 1 << 19

_kernel: Kernel | None = None
_status: str | None = None


def cache_dir() -> Path:
    """Where compiled kernels are kept: ``$BIOPLASTIC_KERNEL_DIR``, else a per-user folder in the temp dir."""
    env = os.environ.get("BIOPLASTIC_KERNEL_DIR", "").strip()
    if env:
        return Path(env)
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"bioplastic-{uid}" / "kernels"


def _compiler() -> str | None:
    for name in (os.environ.get("CC", "").strip(), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class UnsafeCacheDir(RuntimeError):
    """The cache folder or a library in it could be written by another user."""


def _writable_by_others(st: os.stat_result) -> bool:
    return bool(st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def _private_dir(folder: Path) -> Path:
    """Create ``folder`` (each missing level mode 0700) and check that no other user can change what
    is in it: the folder is this user's and writable by no one else, and every folder above it (the
    path resolved) is this user's or root's and writable by no one else unless sticky (/tmp), and no
    symbolic link on the way is another user's. Raises :class:`UnsafeCacheDir` otherwise."""
    missing = [p for p in (folder, *folder.parents) if not os.path.lexists(p)]
    for p in reversed(missing):
        try:
            os.mkdir(p, 0o700)
        except FileExistsError:  # another process made it meanwhile: checked below like any other
            pass
    if not hasattr(os, "getuid"):  # no POSIX owners (Windows: the temp dir is the user's own)
        return folder
    uid = os.getuid()
    for p in (folder, *folder.parents):
        if os.path.islink(p) and os.lstat(p).st_uid not in (uid, 0):
            raise UnsafeCacheDir(f"{p} is a symbolic link of user {os.lstat(p).st_uid}")
    real = Path(os.path.realpath(folder))
    st = os.stat(real)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or _writable_by_others(st):
        raise UnsafeCacheDir(f"{real} is not a folder of user {uid} that only they can write to "
                             f"(owner {st.st_uid}, mode {stat.filemode(st.st_mode)})")
    for p in real.parents:
        st = os.stat(p)
        if st.st_uid not in (uid, 0) or (_writable_by_others(st) and not st.st_mode & stat.S_ISVTX):
            raise UnsafeCacheDir(f"{p}, above the cache folder, can be changed by another user "
                                 f"(owner {st.st_uid}, mode {stat.filemode(st.st_mode)})")
    return folder


def _check_own_file(path: Path) -> None:
    """Raise :class:`UnsafeCacheDir` unless ``path`` is a regular file of this user that only they can write to."""
    if not hasattr(os, "getuid"):
        return
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or _writable_by_others(st):
        raise UnsafeCacheDir(f"{path} is not a file of user {os.getuid()} that only they can write to "
                             f"(owner {st.st_uid}, mode {stat.filemode(st.st_mode)})")


def _build(cc: str, out: Path, extra: tuple[str, ...]) -> None:
    """Compile SOURCE into ``out`` (written under a temporary name, then renamed: concurrent
    processes never load a half-written file)."""
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        src, lib = Path(tmp) / "lstm_kernel.c", Path(tmp) / out.name
        src.write_text(SOURCE)
        subprocess.run([cc, *FLAGS, *extra, str(src), "-o", str(lib), "-lm"], check=True, capture_output=True, text=True,
                       errors="replace", timeout=120)
        os.chmod(lib, 0o755)  # whatever the umask: writable by its owner only
        os.replace(lib, out)


def _load() -> Kernel:
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found ($CC, cc, gcc, clang)")
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, errors="replace", timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as err:
        raise RuntimeError(f"the C compiler {cc} does not run ({err})") from err
    folder = _private_dir(cache_dir())
    errors = []
    for extra in ((), ("-DBIOPLASTIC_NO_CLONES",)):  # function multiversioning where the compiler has it
        key = hashlib.sha256("\0".join([SOURCE, *FLAGS, *extra, version, platform.machine()]).encode()).hexdigest()[:16]
        path = folder / f"lstm_kernel_{key}.so"
        t0 = time.perf_counter()
        try:
            if not path.exists():
                _build(cc, path, extra)
            _check_own_file(path)
            return Kernel(ctypes.CDLL(str(path)), path, time.perf_counter() - t0)
        except (OSError, AttributeError, ValueError, subprocess.SubprocessError) as err:
            # AttributeError: a library without the kernel's functions; ValueError: undecodable output
            detail = getattr(err, "stderr", None) or str(err)
            errors.append(f"{' '.join(extra) or 'default flags'}: {detail.strip().splitlines()[-1] if detail.strip() else err}")
    raise RuntimeError("compiling the LSTM kernel failed (" + "; ".join(errors) + ")")


def kernel() -> Kernel | None:
    """The compiled kernel, built or loaded on first use; None where it is off or cannot be built
    (then :func:`status` says why, and the LSTM runs its eager torch code)."""
    global _kernel, _status
    if _status is None:
        if os.environ.get("BIOPLASTIC_LSTM_KERNEL", "1").strip().lower() in ("0", "false", "no", "off"):
            _status = "off (BIOPLASTIC_LSTM_KERNEL=0): eager torch code"
        else:
            try:
                _kernel = _load()
                _status = f"compiled ({_kernel.path}, {_kernel.compile_seconds:.2f} s to build or load)"
            except Exception as err:  # whatever goes wrong, the eager code runs
                _status = f"unavailable, eager torch code: {err}"
                (log.warning if isinstance(err, UnsafeCacheDir) else log.info)("LSTM kernel %s", _status)
    return _kernel


def status() -> str:
    """One line: whether the LSTM runs the compiled kernel, where it is cached, or why not."""
    kernel()
    return _status


def reset() -> None:
    """Forget the loaded kernel and its status (the next :func:`kernel` call decides anew; for tests)."""
    global _kernel, _status
    _kernel, _status = None, None


_eager_depth = 0


@contextmanager
def eager() -> Iterator[None]:
    """Inside, the LSTM runs its eager torch code even where the kernel is available (to compare
    the two: benchmarks/bptt.py, the tests)."""
    global _eager_depth
    _eager_depth += 1
    try:
        yield
    finally:
        _eager_depth -= 1


def kernel_for(x: torch.Tensor) -> Kernel | None:
    """The compiled kernel if it can run on ``x``'s device and dtype (CPU, float32/float64) and is
    not turned off (:func:`eager`, ``BIOPLASTIC_LSTM_KERNEL=0``), else None."""
    if _eager_depth or x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return None
    return kernel()


def gate_scale(like: torch.Tensor, N: int) -> torch.Tensor:
    """(4N,) ones with the g block 2: the pre-activations the LSTM layers work with (tanh(g) from
    sigmoid(2g))."""
    scale = like.new_ones(4, N)
    scale[2] = 2.0
    return scale.reshape(4 * N)


def _members(like: torch.Tensor, *shape: int) -> torch.Tensor:
    """An uninitialised (E, *shape) tensor whose members lie 64-byte aligned and apart by more than
    their size (padded). Why: MKL's products may round differently for differently aligned operands,
    and torch hands a batch whose result is contiguous to MKL's batched product, which for small
    sizes computes a member differently than alone; with every member aligned alike and the batch
    never contiguous (for E > 1), torch multiplies member by member, each the same way whatever E."""
    E, inner = shape[0], math.prod(shape[1:])
    step = max(1, 64 // like.element_size())
    return like.new_empty((E, (inner // step + 1) * step))[:, :inner].unflatten(1, shape[1:])


def _pack(*values) -> ctypes.Array:
    """The arguments of a C loop as one array of int64: tensors as their data pointers."""
    return (ctypes.c_int64 * len(values))(*(v.data_ptr() if isinstance(v, torch.Tensor) else v for v in values))


def _strided(grad: torch.Tensor | None):
    """A pointer and the (member, time, trial) strides of an (E, B, T, N) tensor for the C loops,
    which read it in place (a copy only where its units are not contiguous); the tensor is returned
    so that it stays alive."""
    if grad is None:
        return None, (0, 0, 0, 0)
    if grad.stride(3) != 1:
        grad = grad.contiguous()
    return grad, (grad.data_ptr(), grad.stride(0), grad.stride(2), grad.stride(1))


class LSTMRecurrenceCompiled(torch.autograd.Function):
    """The LSTM layer of networks/lstm.py (:func:`~bioplastic.networks.lstm.lstm_recurrence`: the
    same arguments, outputs and equations) with the compiled elementwise loops.

    Per step one matrix product - of ``(u_t, 1, h_{t-1})`` with ``[W_ih | b | W_hh]``, so the input
    drive needs no product and no pass of its own - and one C loop forward; one product
    (``W_hh^T delta_{t+1}``) and one C loop backward; the weight gradients are one product over all
    steps, ``sum_t delta_t (u_t, 1, h_{t-1})^T``. The rescalings of :class:`_LSTMRecurrence` (the g
    rows doubled: tanh(g) = 2 sigmoid(2g) - 1; tanh(c) = 1 - 2 sigmoid(-2c)) stay, so sigmoid is the
    only nonlinearity of the loops.
    """

    @staticmethod
    def forward(ctx, u_exbxtxi, W_ih_exgxi, b_exg, W_hh_exgxn, h0_exbxn, c0_exbxn, noise_exbxtxn):
        with gc_paused():
            E, B, T, n_in = u_exbxtxi.shape
            G = W_hh_exgxn.shape[1]
            N, K = G // 4, n_in + 1 + G // 4  # K: the columns of a step's product (u, 1, h)
            R = K + N                            # a row of Z: (u, 1, h, c)
            Wcat = _members(W_hh_exgxn, E, G, K)  # [W_ih | b | W_hh], the g rows doubled
            torch.cat([W_ih_exgxi, b_exg.unsqueeze(2), W_hh_exgxn], 2, out=Wcat)
            Wcat.mul_(gate_scale(W_hh_exgxn, N)[:, None])
            Wt = _members(Wcat, E, K, G)  # z @ Wt
            Wt.copy_(Wcat.transpose(1, 2))
            Z = _members(u_exbxtxi, E, T + 1, B, R)
            Z[:, :T, :, :n_in] = u_exbxtxi.transpose(1, 2)
            Z[:, T, :, :n_in] = 0
            Z[..., n_in] = 1
            Z[:, 0, :, n_in + 1:K] = h0_exbxn
            Z[:, 0, :, K:] = c0_exbxn
            S = _members(u_exbxtxi, E, T, B, G)
            TC = _members(u_exbxtxi, E, T, B, N)
            if noise_exbxtxn is not None:  # the C loop reads (E, B, T, N) of S's dtype: broadcast as the eager layer does
                noise_exbxtxn = noise_exbxtxn.to(S).transpose(1, 2).expand(E, T, B, N).transpose(1, 2)
            noise, X = _strided(noise_exbxtxn)
            step = kernel().forward[S.dtype]
            args = _pack(S, Z, TC, *X, E, T, B, N, R, n_in + 1, S.stride(0), Z.stride(0), TC.stride(0))
            Sl, Zl = S.unbind(1), Z[..., :K].unbind(1)
            for t in range(T):
                # in place into the step's slice (beta 0: its uninitialised memory is not read). Not
                # into a contiguous buffer: torch then computes a lone member's product another way
                # than an ensemble's for small sizes, and a member's numbers would depend on E
                Sl[t].baddbmm_(Zl[t], Wt, beta=0)
                step(args, t)
            ctx.save_for_backward(Wcat, S, Z, TC)
            ctx.set_materialize_grads(False)
            ctx.n_in = n_in
            out = Z[:, 1:, :, n_in + 1:].transpose(1, 2)
            return out[..., :N], out[..., N:], out

    @staticmethod
    def backward(ctx, grad_h, grad_c, grad_hc):
        with gc_paused():
            Wcat, S, Z, TC = ctx.saved_tensors
            E, T, B, G = S.shape
            N, n_in = G // 4, ctx.n_in
            K, R = n_in + 1 + N, Z.shape[3]
            if grad_hc is not None:  # (h, c) side by side: add its halves to the others
                grad_h = grad_hc[..., :N] if grad_h is None else grad_h + grad_hc[..., :N]
                grad_c = grad_hc[..., N:] if grad_c is None else grad_c + grad_hc[..., N:]
            grad_h, gh = _strided(grad_h)
            grad_c, gc = _strided(grad_c)
            W2 = Wcat[..., n_in + 1:]  # (E, 4N, N), rows K apart
            # delta in blocks of steps, two buffers in turn (the step after a block is in the other one):
            # each block's share of the weight gradient is taken while it is in the cache. The block
            # length depends on the batch and the sizes alone, never on E: the sums of the weight
            # gradient are the same for a member alone and in any ensemble.
            k = max(1, min(T, BLOCK_BYTES // (B * G * S.element_size())))
            Dbuf = [_members(S, E, k, B, G) for _ in range(2)]
            dh, dc = _members(S, E, B, N), _members(S, E, B, N)
            step = kernel().backward[S.dtype]
            args = [_pack(S, Z, TC, D, dh, dc, *gh, *gc, E, T, B, N, R, n_in + 1, k,
                          *(x.stride(0) for x in (S, Z, TC, D, dh, dc))) for D in Dbuf]
            want_w, want_u = any(ctx.needs_input_grad[1:4]), ctx.needs_input_grad[0]
            dW = du = None
            if want_u:
                du = _members(S, E, T, B, n_in)
            D_next = None  # delta_{t+1}: (E, B, 4N)
            for j, t1 in enumerate(range(T, 0, -k)):
                t0 = max(0, t1 - k)
                Db, a = Dbuf[j % 2][:, :t1 - t0], args[j % 2]
                Dl = Db.unbind(1)
                for t in range(t1 - 1, t0 - 1, -1):
                    if D_next is None:
                        dh.zero_()
                    else:
                        torch.bmm(D_next, W2, out=dh)
                    step(a, t - t0, t)
                    D_next = Dl[t - t0]
                rows = Db.reshape(E, (t1 - t0) * B, G)
                if want_w:  # all three weights in one product: sum_t delta_t (u_t, 1, h_{t-1})^T
                    Zr = Z[:, t0:t1, :, :K].reshape(E, (t1 - t0) * B, K)
                    if dW is None:
                        dW = _members(S, E, G, K)
                        dW.baddbmm_(rows.transpose(1, 2), Zr, beta=0)
                    else:
                        dW.baddbmm_(rows.transpose(1, 2), Zr)
                if want_u:
                    torch.bmm(rows, Wcat[..., :n_in], out=du[:, t0:t1].view(E, (t1 - t0) * B, n_in))
            dW_ih = db = dW_hh = dh0 = dc0 = None
            if want_w:
                dW.mul_(gate_scale(S, N)[:, None])
                dW_ih, db, dW_hh = dW[..., :n_in], dW[..., n_in], dW[..., n_in + 1:]
            if ctx.needs_input_grad[4]:
                dh0 = torch.bmm(D_next, W2, out=_members(S, E, B, N))
            if ctx.needs_input_grad[5]:
                dc0 = S[:, 0, :, N:2 * N] * dc  # f_0 dL/dc_0
            if want_u:
                du = du.transpose(1, 2)
            return du, dW_ih, db, dW_hh, dh0, dc0, None
