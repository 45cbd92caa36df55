"""The LSTM's per-step elementwise work as one compiled loop (optional; used by networks/lstm.py).

One step of the LSTM layer is a matrix product (torch) and ~15 elementwise operations on the step's
gates and cell; as torch operations they are 6-7 passes over the step's tensors forward and 4-5
backward, each a separate call from Python. Here each direction's elementwise work of a step is one
C loop over the step's elements (one call through ctypes), as oneDNN's fused LSTM kernel does it.

The C source below is compiled once per machine, the first time it is needed, with the system's C
compiler (``$CC``, else ``cc`` or ``gcc``; ~0.5 s), into a cache folder: ``$BIOPLASTIC_KERNEL_DIR``
if set, else ``<tempdir>/bioplastic-<uid>/kernels`` (``tempfile.gettempdir()``: ``$TMPDIR`` or
/tmp) - never the home folder. The file name carries a hash of the source, the flags and the
compiler's version, so an edited source compiles anew. Where no compiler works (or on a non-CPU
device, or for a dtype other than float32/float64) the LSTM runs its eager torch code instead
(:func:`kernel` returns None; :func:`status` says why); ``BIOPLASTIC_LSTM_KERNEL=0`` turns the
compiled path off.

Numbers: every element of a step is computed alone by the same sequence of IEEE operations (no
fused multiply-add: ``-ffp-contract=off``, no ``-ffast-math``), whether the compiler vectorised it
or not, so the results do not depend on the ensemble size, the batch position or the thread count.
float32's sigmoid is ``1 / (1 + exp(-x))`` with Cephes' ``expf`` polynomial (~1 ulp; torch's
vectorised sigmoid uses Sleef's); float64 uses libm's ``exp``.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

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

/* Forward, step t: S (E, T, B, 4N) holds the pre-activations (i, f, 2g, o) of step t; HC (E, T+1, B,
   2N) holds (h, c) with (h0, c0) at index 0; TC (E, T, B, N) gets tanh(c_t). On return S holds
   (sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)) and HC[t+1] holds (h_t, c_t). One row (member e,
   trial b) at a time, in a function of its own whose restrict pointers tell the compiler that the
   four gate blocks do not overlap (so it vectorises the loop over units). */
#define LSTM_FORWARD(NAME, REAL, SIG, ONE, TWO)                                                     \
CLONES __attribute__((noinline)) static void NAME##_row(REAL *restrict si, REAL *restrict sf, REAL *restrict sg, \
        REAL *restrict so, const REAL *restrict c0, REAL *restrict h, REAL *restrict c1, REAL *restrict tc, long N) { \
    for (long n = 0; n < N; ++n) {                                                                  \
        REAL i = SIG(si[n]), f = SIG(sf[n]), tg = TWO * SIG(sg[n]) - ONE, o = SIG(so[n]);           \
        REAL c = f * c0[n] + i * tg;                                                                \
        REAL u = SIG(-TWO * c);                               /* tanh(c) = 1 - 2 sigmoid(-2c) */    \
        si[n] = i; sf[n] = f; sg[n] = tg; so[n] = o;                                                \
        tc[n] = ONE - TWO * u;                                                                      \
        c1[n] = c;                                                                                  \
        h[n] = o - (TWO * o) * u;                                                                   \
    }                                                                                               \
}                                                                                                   \
void NAME(REAL *S, REAL *HC, REAL *TC, long E, long T, long B, long N, long t) {             \
    for (long e = 0; e < E; ++e)                                                                    \
        for (long b = 0; b < B; ++b) {                                                              \
            REAL *s = S + ((e * T + t) * B + b) * 4 * N, *h = HC + ((e * (T + 1) + t + 1) * B + b) * 2 * N; \
            NAME##_row(s, s + N, s + 2 * N, s + 3 * N, HC + ((e * (T + 1) + t) * B + b) * 2 * N + N, h, h + N, \
                       TC + ((e * T + t) * B + b) * N, N);                                          \
        }                                                                                           \
}

/* Backward, one row of step t: dh = dL/dh_t (outside gradient + W_hh^T delta_{t+1}, computed by the
   caller), dc holds dL/dc_{t+1} and gets dL/dc_t, gc the outside gradient of c_t (GC: whether there is
   one), fn = f_{t+1} (NEXT: whether t < T-1), d gets delta_t (the g block: the gradient of 2g). */
#define LSTM_BACKWARD_ROW(NAME, REAL, ONE, HALF, GC, NEXT)                                          \
CLONES __attribute__((noinline)) static void NAME(const REAL *restrict si, const REAL *restrict sf,        \
        const REAL *restrict sg, const REAL *restrict so, const REAL *restrict tc, const REAL *restrict cp, \
        const REAL *restrict fn, const REAL *restrict gc, const REAL *restrict dh, REAL *restrict dc, \
        REAL *restrict di, REAL *restrict df, REAL *restrict dg, REAL *restrict dout, long N) {     \
    for (long n = 0; n < N; ++n) {                                                                  \
        REAL i = si[n], f = sf[n], tg = sg[n], o = so[n], th = tc[n], g = dh[n];                    \
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

/* Backward, step t (t = T-1 first): S, HC, TC as the forward pass left them; dh, dc (E, B, N); gC the
   outside gradient of c (or NULL) with strides gCe, gCt, gCb; D (E, T, B, 4N) gets delta_t. */
#define LSTM_BACKWARD(NAME, REAL, ONE, HALF)                                                        \
LSTM_BACKWARD_ROW(NAME##_row00, REAL, ONE, HALF, 0, 0)                                              \
LSTM_BACKWARD_ROW(NAME##_row01, REAL, ONE, HALF, 0, 1)                                              \
LSTM_BACKWARD_ROW(NAME##_row10, REAL, ONE, HALF, 1, 0)                                              \
LSTM_BACKWARD_ROW(NAME##_row11, REAL, ONE, HALF, 1, 1)                                              \
void NAME(const REAL *S, const REAL *HC, const REAL *TC, REAL *D, const REAL *dh, REAL *dc,   \
                 const REAL *gC, long gCe, long gCt, long gCb, long E, long T, long B, long N, long t) { \
    const int next = t + 1 < T;                                                                     \
    for (long e = 0; e < E; ++e)                                                                    \
        for (long b = 0; b < B; ++b) {                                                              \
            const REAL *s = S + ((e * T + t) * B + b) * 4 * N;                                      \
            const REAL *fn = next ? S + ((e * T + t + 1) * B + b) * 4 * N + N : 0;                  \
            const REAL *gc = gC ? gC + e * gCe + t * gCt + b * gCb : 0;                             \
            REAL *d = D + ((e * T + t) * B + b) * 4 * N;                                            \
            const REAL *tc = TC + ((e * T + t) * B + b) * N, *cp = HC + ((e * (T + 1) + t) * B + b) * 2 * N + N; \
            const REAL *g = dh + (e * B + b) * N;                                                   \
            REAL *c = dc + (e * B + b) * N;                                                         \
            if (gC && next) NAME##_row11(s, s + N, s + 2 * N, s + 3 * N, tc, cp, fn, gc, g, c, d, d + N, d + 2 * N, d + 3 * N, N); \
            else if (gC) NAME##_row10(s, s + N, s + 2 * N, s + 3 * N, tc, cp, fn, gc, g, c, d, d + N, d + 2 * N, d + 3 * N, N); \
            else if (next) NAME##_row01(s, s + N, s + 2 * N, s + 3 * N, tc, cp, fn, gc, g, c, d, d + N, d + 2 * N, d + 3 * N, N); \
            else NAME##_row00(s, s + N, s + 2 * N, s + 3 * N, tc, cp, fn, gc, g, c, d, d + N, d + 2 * N, d + 3 * N, N); \
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
_FORWARD_ARGS = [_P, _P, _P, _L, _L, _L, _L, _L]
_BACKWARD_ARGS = [_P, _P, _P, _P, _P, _P, _P, _L, _L, _L, _L, _L, _L, _L, _L]


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


def _build(cc: str, out: Path, extra: tuple[str, ...]) -> None:
    """Compile SOURCE into ``out`` (written under a temporary name, then renamed: concurrent
    processes never load a half-written file)."""
    out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        src, lib = Path(tmp) / "lstm_kernel.c", Path(tmp) / out.name
        src.write_text(SOURCE)
        subprocess.run([cc, *FLAGS, *extra, str(src), "-o", str(lib), "-lm"], check=True, capture_output=True, text=True,
                       timeout=120)
        os.replace(lib, out)


def _load() -> Kernel:
    import time

    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found ($CC, cc, gcc, clang)")
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    errors = []
    for extra in ((), ("-DBIOPLASTIC_NO_CLONES",)):  # function multiversioning where the compiler has it
        key = hashlib.sha256("\0".join([SOURCE, *FLAGS, *extra, version, platform.machine()]).encode()).hexdigest()[:16]
        path = cache_dir() / f"lstm_kernel_{key}.so"
        t0 = time.perf_counter()
        try:
            if not path.exists():
                _build(cc, path, extra)
            return Kernel(ctypes.CDLL(str(path)), path, time.perf_counter() - t0)
        except (OSError, subprocess.SubprocessError) as err:
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
            except RuntimeError as err:
                _status = f"unavailable, eager torch code: {err}"
                log.info("LSTM kernel %s", _status)
    return _kernel


def status() -> str:
    """One line: whether the LSTM runs the compiled kernel, where it is cached, or why not."""
    kernel()
    return _status


def reset() -> None:
    """Forget the loaded kernel and its status (the next :func:`kernel` call decides anew; for tests)."""
    global _kernel, _status
    _kernel, _status = None, None


def kernel_for(x: torch.Tensor) -> Kernel | None:
    """The compiled kernel if it can run on ``x``'s device and dtype (CPU, float32/float64), else None."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return None
    return kernel()
