"""Limits on the size of a run, checked when a protocol is validated, before anything is expanded,
trained or written (docs/protocol.md, "Limits").

Counts are bounded by constants; memory by an order-of-magnitude estimate of the largest arrays a
run holds at once (:func:`memory_problems`), compared with the memory this machine has available
(``MemAvailable`` in /proc/meminfo), or with :data:`MEMORY_ENV` when that is set.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

from ..networks import NETWORKS
from ..tasks import TASKS

#: at most this many networks per condition (``seeds``)
MAX_SEEDS = 10_000
#: at most this many conditions
MAX_CONDITIONS = 1_000
#: at most this many points in a sweep (the product of the grid lengths times the zip length)
MAX_SWEEP_POINTS = 10_000
#: at most this many networks in a run: seeds x conditions x sweep points
MAX_NETWORKS = 100_000
#: a protocol (or model spec) file is at most this many bytes
MAX_FILE_BYTES = 1_000_000
#: environment variable that replaces the machine's available memory in the check, in bytes or with
#: a unit: ``BIOPLASTIC_MAX_MEMORY=64G`` (K, M, G, T: powers of 1024)
MEMORY_ENV = "BIOPLASTIC_MAX_MEMORY"

_UNITS = {"": 1, "k": 2 ** 10, "m": 2 ** 20, "g": 2 ** 30, "t": 2 ** 40, "p": 2 ** 50}


class LimitError(Exception):
    """The memory limit itself is misconfigured (:data:`MEMORY_ENV` unreadable)."""


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if abs(n) < 1024 or unit == "EiB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1024
    return f"{n:.3g} EiB"  # pragma: no cover


def available_memory() -> tuple[int, str]:
    """(bytes, where the number comes from): :data:`MEMORY_ENV` when set, else MemAvailable, else
    the available physical pages (os.sysconf)."""
    raw = os.environ.get(MEMORY_ENV, "").strip()
    if raw:
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kKmMgGtTpP]?)(?:i?[bB])?", raw)
        if not m:
            raise LimitError(f"{MEMORY_ENV}: expected a number of bytes such as 64G or 500M, got {raw!r}")
        return int(float(m.group(1)) * _UNITS[m.group(2).lower()]), f"{MEMORY_ENV}={raw}"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "MemAvailable in /proc/meminfo"
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "available physical memory"
    except (ValueError, OSError, AttributeError):  # pragma: no cover - no way to know: no check
        return 2 ** 62, "unknown"


@dataclass(frozen=True)
class Need:
    """One array (or set of arrays) of a run: its size in bytes, what it is, and the fields its size
    grows with as (field, value, factor over the default) - the largest factor names the field."""

    what: str
    nbytes: float
    factors: tuple[tuple[str, object, float], ...]

    @property
    def field(self) -> str:
        return max(self.factors, key=lambda f: f[2])[0]


def _default(cls, name: str, fallback: float) -> float:
    f = getattr(cls, "model_fields", {}).get(name)
    return f.default if f is not None and isinstance(f.default, (int, float)) else fallback


def _steps_factor(task_cls, task_cfg, n_steps: int) -> tuple[str, object, float]:
    """The task field that makes trials long: the time step, or the longest duration over its default."""
    try:
        default_steps = max(task_cls(task_cls.Config()).n_steps, 1)
    except Exception:
        default_steps = 100
    ratio = n_steps / default_steps
    candidates = [("task.dt_ms", task_cfg.dt_ms, _default(task_cls.Config, "dt_ms", task_cfg.dt_ms) / task_cfg.dt_ms)]
    for name in type(task_cfg).model_fields:
        value = getattr(task_cfg, name)
        if name.endswith("_ms") and name != "dt_ms" and isinstance(value, (int, float)) and value > 0:
            candidates.append((f"task.{name}", value, value / max(_default(task_cls.Config, name, value), 1e-300)))
    field, value, _ = max(candidates, key=lambda c: c[2])
    return field, value, ratio


def estimate_memory(conditions, seeds: int, analysis, n_points: int = 1) -> list[Need]:
    """An order-of-magnitude estimate of the largest arrays of a run (a lower bound of its peak):
    training activations kept for backpropagation through time, the training and held-out trials,
    the weights saved at every checkpoint and the learning curves of all networks (held together
    when results.nc is written), and the fixed-point search's Jacobians and trajectories.
    ``conditions`` are resolved :class:`~bioplastic.protocol.load.Condition` objects of one point."""
    c0 = conditions[0]
    tr, model = c0.training, c0.model
    task_cls = TASKS.get(c0.task_kind)
    task = task_cls(c0.task)
    T, n_in, n_out = task.n_steps, task.n_inputs, task.n_outputs
    N = int(getattr(model, "n_units", 100))
    lstm = c0.model_kind == "lstm"
    D = 2 * N if lstm else N
    params = (4 if lstm else 1) * N * (N + n_in + 1) + n_out * (N + 1) + (2 * N * N if c0.model_kind == "low_rank" else 0)
    b = 8 if tr.dtype == "float64" else 4
    C = len(conditions)
    E = min(tr.ensemble_size, seeds * C)
    nets = seeds * C * n_points
    K = math.ceil(tr.iterations / tr.checkpoint_every) + 1
    model_cls = NETWORKS.get(c0.model_kind).Config
    f_steps = _steps_factor(task_cls, c0.task, T)
    f_units = ("model.n_units", N, N / _default(model_cls, "n_units", 100))
    f_batch = ("training.batch_size", tr.batch_size, tr.batch_size / 64)
    f_ens = ("training.ensemble_size", tr.ensemble_size, E / 4)
    f_seeds = ("seeds", seeds, seeds / 3)
    f_iter = ("training.iterations", tr.iterations, tr.iterations / 1000)
    f_ckpt = ("training.checkpoint_every", tr.checkpoint_every, 100 / tr.checkpoint_every)
    f_points = ("sweep", n_points, float(n_points))
    f_conds = ("conditions", C, C / 3)
    # intermediates kept per step and state unit; the LSTM (state 2N) keeps its gates, (h, c) and
    # sigmoid(-2c), and the backward pass adds the gates' gradient (measured: 16-17 N-sized arrays at
    # the peak of a BPTT iteration, N 100, B 64, T 100, E 16)
    per_step = 8 if lstm else 4
    needs = [
        Need(f"activations kept for backpropagation: {E} networks x {tr.batch_size} trials x {T} steps x {D} state "
             f"x {per_step} x {b} bytes", E * tr.batch_size * T * D * per_step * b, (f_batch, f_steps, f_units, f_ens)),
        Need(f"training trials: {E} networks x {tr.batch_size} trials x {T} steps x {n_in + 2 * n_out} channels x {b} bytes",
             E * tr.batch_size * T * (n_in + 2 * n_out) * b, (f_batch, f_steps, f_ens)),
        Need(f"held-out trials and their simulation: {E} networks x {tr.eval_trials} trials x {T} steps x "
             f"{D + n_in + 3 * n_out} values x {b} bytes", E * tr.eval_trials * T * (D + n_in + 3 * n_out) * b,
             (("training.eval_trials", tr.eval_trials, tr.eval_trials / 256), f_steps, f_units, f_ens)),
        Need(f"weights saved at every checkpoint: {nets} networks x {K} checkpoints x {params} weights x 8 bytes",
             nets * K * params * 8, (f_units, f_iter, f_ckpt, f_seeds, f_points, f_conds)),
        Need(f"learning curves: {nets} networks x {tr.iterations} iterations x 10 records x 8 bytes",
             nets * tr.iterations * 10 * 8, (f_iter, f_seeds, f_points, f_conds)),
    ]
    if any(c.tcr.form == "plasticity" for c in conditions):
        needs.append(Need(f"fast synaptic efficacies (tcr.form plasticity): {E} networks x {tr.batch_size} trials x "
                          f"{N} x {N} synapses x 2 x {b} bytes", E * tr.batch_size * N * N * 2 * b, (f_batch, f_units, f_ens)))
    if any(c.tcr.form == "plasticity" and c.tcr.plasticity.gradient == "exact" for c in conditions):
        needs.append(Need(f"fast efficacies kept for the exact gradient (tcr.plasticity.gradient exact): {E} networks x "
                          f"{tr.batch_size} trials x {T} steps x {N} x {N} synapses x 2 x {b} bytes",
                          E * tr.batch_size * T * N * N * 2 * b, (f_batch, f_steps, f_units, f_ens)))
    if any(c.training.rule in ("rflo", "eprop") for c in conditions):
        needs.append(Need(f"eligibility traces (training.rule): {E} networks x {tr.batch_size} trials x {N} x "
                          f"{N + n_in} synapses x 2 x {b} bytes", E * tr.batch_size * N * (N + n_in) * 2 * b, (f_batch, f_units, f_ens)))
    if analysis is not None:
        S, tri = analysis.initial_states, analysis.trials
        ctx = (1 if "zero" in analysis.contexts else 0) + (n_in if "inputs" in analysis.contexts else 0)
        f_init = ("analysis.initial_states", S, S / 128)
        needs += [
            Need(f"fixed-point search Jacobians: {seeds} networks x {ctx} contexts x {S} states x {D} x {D} x 8 bytes",
                 seeds * ctx * S * D * D * 8, (f_init, f_units, f_seeds)),
            Need(f"fixed points of all checkpoints: {C} conditions x {seeds} networks x {K} checkpoints x {ctx} contexts x "
                 f"{S} states x {D} x 4 arrays x 8 bytes", C * seeds * K * ctx * S * D * 4 * 8, (f_init, f_units, f_seeds, f_iter, f_ckpt)),
            Need(f"analysed trajectories: {seeds} networks x {tri} trials x {T} steps x {D} x 8 bytes, and their "
                 f"projections at {K} checkpoints x {C} conditions", seeds * tri * T * 8 * (D + C * K * analysis.pca_components),
                 (("analysis.trials", tri, tri / 32), f_steps, f_seeds, f_units)),
        ]
    return needs


def memory_problems(conditions, seeds: int, analysis, n_points: int = 1) -> list[str]:
    """A problem naming the field that drives each estimated need larger than the available memory."""
    needs = estimate_memory(conditions, seeds, analysis, n_points)
    have, source = available_memory()
    out, named = [], set()
    for need in sorted(needs, key=lambda n: -n.nbytes):
        if need.nbytes > have and need.field not in named:
            named.add(need.field)
            value = next(v for f, v, _ in need.factors if f == need.field)
            out.append(f"{need.field}: with {value!r}, the run would need about {format_bytes(need.nbytes)} of "
                       f"memory for {need.what}, more than the {format_bytes(have)} this machine has available ({source}); "
                       f"reduce {need.field} (set {MEMORY_ENV} to change the limit)")
    return out
