"""The brian2 bridge: trained ``leaky_rate`` / ``low_rank`` networks re-simulated in brian2.

brian2 is the project's independent, continuous-time simulator. A network is exported member by
member (:func:`export_network`) and simulated as

- one rate ``NeuronGroup`` whose state is ``h`` (``r = phi(h)`` is a subexpression), integrated
  with forward Euler::

      tau dh/dt = -h + I_rec + b + W_in u(t)   [+ sigma_h sqrt(alpha) xi(t) tau / dt_task]

- recurrent ``Synapses`` with the summed variable ``I_rec_post = w r_pre`` (``w = W[unit, unit_pre]``,
  the effective matrix with masks, Dale's law and the low-rank structure already applied);
- the readout ``y = W_out r + b_out`` as a second summed variable into an output group;
- inputs (and an optional given noise array) as ``TimedArray`` on the task's time grid (dt_task),
  so with a finer brian2 step the inputs are held piecewise constant;
- the short-term plasticity of the network, if any (``net.plasticity``, see
  ``bioplastic/regularizers/tcr_plasticity.py``), online over the whole trial:

  * ``anti_hebbian``: a synaptic variable ``F`` (``I_rec_post = (w + F) r_pre``), updated once per
    step after the state update by ``F <- clip((1 - dt/tau_F) F - eta_F (h - h_prev)_post
    r(h_prev)_pre, +-F_max)`` (no clip when ``F_max`` is None), with ``h_prev`` stored at the start of the step;
  * ``tsodyks_markram``: per-presynaptic-neuron ``u``, ``x`` integrated with ``h`` (Mongillo et al.
    2008 rate form, ``R = max_rate_hz * max(r, 0)``), clipped to [0, 1] after the step, and
    ``I_rec_post = w s_pre r_pre`` with ``s = u x / U``.

All times are in ms (``dt_ms`` of the task, ``tau_ms`` of the model, ``alpha = dt / tau``).

**Why the result is the torch engine's, step for step.** brian2's schedule per step is
``start -> groups -> ... -> end``. In ``groups`` the summed variables are computed *before* the
state update of their target (order ``target.order - 1``), from the state at the start of the step;
Euler then gives ``h(t + dt) = (1 - a) h(t) + a (W phi(h(t)) + W_in u(t) + b)`` with ``u(t)`` the
TimedArray sample ``floor(t / dt_task)``: exactly the torch update of step ``k`` (``h_{-1} = 0``, input
``u_k``). A ``StateMonitor`` records at the start of a step, i.e. ``h(k dt) = h_{k-1}``; we therefore
run ``T`` task steps plus one brian2 step and drop the first record. The readout group is
ordered after the rate group, so ``y`` at the start of step ``k + 1`` is ``W_out phi(h_k) + b_out``.

**Trials and members** are independent copies of the network in one brian2 network (block
``k = member * B + trial`` of ``N`` neurons, synapses only within a block): one code generation and
one run for all of them.

**Noise.** The cross-check is noise-free (``noise=None``: no noise term in either engine). A given
standard-normal array ``xi`` (trial, time, unit) is fed to both engines (torch: ``net.run(u, xi)``;
brian2: a TimedArray, ``sigma_h sqrt(alpha) xi_k`` added per task step, spread evenly over it when
the brian2 step is finer). The bridge draws no random numbers; :func:`run_brian2` takes a ``seed``
(derived by the caller from its own root seed) for ``brian2.seed`` and restores NumPy's global
random state afterwards, so brian2 never changes it (``brian2.seed`` reseeds NumPy's global
generator). Only this module calls ``brian2.seed``.

**Code generation.** ``codegen="cython"`` (default) compiles the generated code, cached in
``cache_dir`` (e.g. a folder inside the run's output; multiprocess-safe); when no compiler works
the run falls back to the ``numpy`` target with a ``RuntimeWarning`` naming why. The target used
is returned (``Brian2Result.codegen``; dataset attr ``brian2_codegen``). brian2's preferences are
restored after every simulation.
"""
from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..networks import kind_supports, kinds_supporting

#: model kinds with a rate-neuron form in brian2 (the network classes with ``supports_brian2``;
#: derived from the registry, for messages)
SUPPORTED_KINDS = kinds_supporting("supports_brian2")
#: short-term plasticity rules simulated in brian2
SUPPORTED_RULES = ("anti_hebbian", "tsodyks_markram")
#: brian2 code-generation targets
CODEGENS = ("cython", "numpy")
#: phi(h) as brian2 expressions of a state variable ``{h}`` (softplus in the overflow-free form;
#: torch returns x for x > 20, which differs by log1p(exp(-20)) ~ 2e-9, far below the tolerances)
PHI_EXPR = {"tanh": "tanh({h})", "relu": "clip({h}, 0, inf)",
            "softplus": "clip({h}, 0, inf) + log1p(exp(-abs({h})))", "linear": "{h}"}
#: fixed object names: the generated code (and so brian2's cython cache) depends on them
_NAMES = {"rate": "bioplastic_rate", "rec": "bioplastic_recurrent", "out": "bioplastic_output",
          "readout": "bioplastic_readout", "u": "bioplastic_u", "xi": "bioplastic_xi",
          "mon_h": "bioplastic_monitor_h", "mon_y": "bioplastic_monitor_y", "mon_s": "bioplastic_monitor_s",
          "mon_F": "bioplastic_monitor_F",
          "hold": "bioplastic_hold_h", "clip": "bioplastic_clip_ux", "F": "bioplastic_update_F"}
#: relative step mismatch accepted when checking that dt_task / dt_ms is an integer
_DT_RTOL = 1e-9


class Brian2ExportError(ValueError):
    """The network (or its plasticity) has no brian2 form here."""


@dataclass(frozen=True)
class Plasticity:
    """The short-term plasticity parameters brian2 needs (from ``tcr.plasticity`` of a protocol)."""

    rule: str
    tau_F_ms: float = 500.0
    F_max: float | None = None  # None: no clip
    U: float = 0.2
    tau_facilitation_ms: float = 1500.0
    tau_depression_ms: float = 200.0
    max_rate_hz: float = 50.0


@dataclass
class ExportedNetwork:
    """The members of a network as plain float64 arrays (M members) - what brian2 is given.

    W_mxnxn: (member, unit, unit_pre) effective recurrent weights (masks, Dale, low rank applied)
    W_in_mxnxi, b_mxn, W_out_mxoxn, b_out_mxo: input weights, biases, readout
    eta_F_m: (member,) anti-Hebbian learning rate of each member (None without that plasticity)
    """

    kind: str
    phi: str
    tau_ms: float
    dt_ms: float
    sigma_h: float
    members: tuple[int, ...]
    W_mxnxn: np.ndarray
    W_in_mxnxi: np.ndarray
    b_mxn: np.ndarray
    W_out_mxoxn: np.ndarray
    b_out_mxo: np.ndarray
    plasticity: Plasticity | None = None
    eta_F_m: np.ndarray | None = None

    @property
    def alpha(self) -> float:
        return self.dt_ms / self.tau_ms

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(members, units, inputs, outputs)"""
        M, N, I = self.W_in_mxnxi.shape
        return M, N, I, self.W_out_mxoxn.shape[1]


@dataclass
class Brian2Result:
    """States and outputs of a brian2 simulation, on the task's time grid (torch's indexing).

    state_mxbxtxn: h_t (member, trial, time, unit);  output_mxbxtxo: y_t
    plasticity: ``F_end_mxbxnxn`` (anti_hebbian: F at trial end, [unit, unit_pre]) or
                ``efficacy_mxbxtxn`` (tsodyks_markram: s_t = u_t x_t / U per presynaptic unit)
    codegen: the target that ran ('cython' or 'numpy');  dt_ms: the brian2 step
    timings_s: wall time of 'build' (objects, synapses), 'run' (code generation, compilation, the
               loop) and 'extract' (monitor data to arrays); with ``profile``, 'loop' (the time
               steps themselves, summed over brian2's code objects)
    profile_s: with ``profile``, the loop time of each brian2 code object (name -> s)
    """

    state_mxbxtxn: np.ndarray
    output_mxbxtxo: np.ndarray
    plasticity: dict[str, np.ndarray]
    codegen: str
    dt_ms: float
    timings_s: dict[str, float] = field(default_factory=dict)
    profile_s: dict[str, float] = field(default_factory=dict)


# -- export -----------------------------------------------------------------------------------------
def _unsupported_kind(kind: str) -> Brian2ExportError:
    supported = ", ".join(kinds_supporting("supports_brian2"))
    return Brian2ExportError(
        f"cannot export a {kind!r} network to brian2: supported model kinds are {supported} "
        f"(rate networks with a leaky-integrator form; plrnn and lstm have none here). Re-simulate those "
        f"with the torch engine only.")


def plasticity_of(net) -> tuple[Plasticity | None, np.ndarray | None]:
    """The network's short-term plasticity as (:class:`Plasticity`, eta_F per member) or (None, None)."""
    stp = getattr(net, "plasticity", None)
    if stp is None:
        return None, None
    cfg = getattr(stp, "config", stp)
    rule = getattr(cfg, "rule", None)
    if rule not in SUPPORTED_RULES:
        raise Brian2ExportError(f"cannot export the short-term plasticity rule {rule!r} to brian2: supported rules are "
                                f"{', '.join(SUPPORTED_RULES)}")
    values = {k: getattr(cfg, k) for k in Plasticity.__dataclass_fields__ if k != "rule"}
    p = Plasticity(rule=rule, **{k: None if v is None else float(v) for k, v in values.items()})
    eta = getattr(stp, "eta_e", None)
    if eta is None:
        eta = np.full(net.n_members, float(getattr(cfg, "eta_F", 0.0)))
    return p, torch.as_tensor(eta).detach().double().numpy().reshape(-1)


def _members(net, member) -> tuple[int, ...]:
    members = (member,) if isinstance(member, (int, np.integer)) else tuple(member)
    if not members or any(not 0 <= int(m) < net.n_members for m in members):
        raise ValueError(f"member: expected indices in 0..{net.n_members - 1} of the network's {net.n_members} "
                         f"members, got {member!r}")
    return tuple(int(m) for m in members)


def export_network(net, member: int | Sequence[int] = 0) -> ExportedNetwork:
    """Export members of a trained ``leaky_rate`` or ``low_rank`` network (float64 copies).

    Raises :class:`Brian2ExportError` (a ``ValueError``) for other model kinds or plasticity rules.
    """
    kind = getattr(net, "kind", type(net).__name__)
    if not kind_supports(kind, "supports_brian2"):
        raise _unsupported_kind(kind)
    members = _members(net, member)
    plasticity, eta = plasticity_of(net)
    idx = list(members)
    with torch.no_grad():
        f64 = lambda t: t.detach().to(torch.float64)[idx].numpy().copy()  # noqa: E731
        p = net.params
        return ExportedNetwork(
            kind=kind, phi=str(net.config.phi), tau_ms=float(net.config.tau_ms), dt_ms=float(net.dt_ms),
            sigma_h=float(getattr(net.config, "sigma_h", 0.0)), members=members,
            W_mxnxn=f64(net.recurrent_weights()), W_in_mxnxi=f64(p["W_in"]), b_mxn=f64(p["b"]),
            W_out_mxoxn=f64(p["W_out"]), b_out_mxo=f64(p["b_out"]), plasticity=plasticity,
            eta_F_m=None if eta is None else eta[idx].copy())


# -- brian2 session helpers -------------------------------------------------------------------------
def _import_brian2():
    try:
        with _quiet():
            import brian2  # here: heavy (seconds to import), only the re-simulation needs it
    except ImportError as exc:  # pragma: no cover - brian2 is a dependency
        raise ImportError(f"the brian2 bridge needs brian2 ({exc}); pip install 'brian2>=2.9' 'numpy<2.4'") from None
    return brian2


@contextlib.contextmanager
def _quiet():
    """brian2 (through pyparsing, sympy and Cython) emits DeprecationWarnings about its own
    dependencies; they say nothing about the simulation, so they are hidden inside the bridge."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=PendingDeprecationWarning)
        yield


@contextlib.contextmanager
def _session(target: str, cache_dir: Path | None, seed: int | None):
    """brian2 preferences for one simulation, restored afterwards, and NumPy's global random state
    saved and restored around everything brian2 does (``brian2.seed`` reseeds it)."""
    b2 = _import_brian2()
    keys = ("codegen.target", "codegen.runtime.cython.cache_dir", "codegen.runtime.cython.multiprocess_safe",
            "core.default_float_dtype")
    old = {k: b2.prefs[k] for k in keys}
    rng_state = np.random.get_state()
    try:
        with _quiet():
            b2.prefs["codegen.target"] = target
            b2.prefs["core.default_float_dtype"] = np.float64
            if cache_dir is not None:
                Path(cache_dir).mkdir(parents=True, exist_ok=True)
                b2.prefs["codegen.runtime.cython.cache_dir"] = str(cache_dir)
                b2.prefs["codegen.runtime.cython.multiprocess_safe"] = True
            if seed is not None:
                b2.seed(int(seed))
            yield b2
    finally:
        for k, v in old.items():
            b2.prefs[k] = v
        np.random.set_state(rng_state)


def cython_available(cache_dir: Path | None = None) -> tuple[bool, str]:
    """Whether brian2's cython target compiles here: (ok, reason if not)."""
    try:
        import Cython  # noqa: F401 - optional: only brian2's cython target needs it
    except ImportError:
        return False, "Cython is not installed (pip install cython)"
    with _session("cython", cache_dir, None):
        from brian2.codegen.runtime.cython_rt import CythonCodeObject

        if not CythonCodeObject.is_available():
            return False, "a test compilation failed (no working C++ compiler? brian2's log has the compiler output)"
    return True, ""


def _is_compile_error(exc: BaseException) -> bool:
    """A failure to build or load generated code (as opposed to a wrong model)."""
    names = ("CompileError", "LinkError", "CCompilerError", "DistutilsExecError", "DistutilsPlatformError")
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if type(exc).__name__ in names or isinstance(exc, (ImportError, OSError)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


# -- the brian2 model -------------------------------------------------------------------------------
def _check_dt(dt_task: float, dt_ms: float | None) -> tuple[float, int]:
    if dt_ms is None:
        return dt_task, 1
    if not dt_ms > 0:
        raise ValueError(f"dt_ms: expected a positive brian2 step in ms, got {dt_ms}")
    ratio = dt_task / dt_ms
    k = int(round(ratio))
    if k < 1 or abs(ratio - k) > _DT_RTOL * ratio:
        raise ValueError(f"dt_ms: the task step ({dt_task} ms) must be a whole multiple of the brian2 step, got "
                         f"dt_ms={dt_ms} (ratio {ratio:.6g}); use dt_task / k, e.g. {dt_task / max(k, 1):g}")
    return dt_task / k, k


def _neuron_equations(exp: ExportedNetwork, n_inputs: int, noisy: bool) -> str:
    phi = PHI_EXPR[exp.phi]
    drive = " + ".join([f"w_in_{i} * {_NAMES['u']}(t, trial * {n_inputs} + {i})" for i in range(n_inputs)]) or "0"
    noise = f" + noise_gain * {_NAMES['xi']}(t, i) / dt_task" if noisy else ""
    eqs = [f"dh/dt = (-h + I_rec + b + I_in) / tau{noise} : 1",
           f"I_in = {drive} : 1",
           f"r = {phi.format(h='h')} : 1",
           "I_rec : 1", "b : 1 (constant)", "trial : integer (constant)"]
    eqs += [f"w_in_{i} : 1 (constant)" for i in range(n_inputs)]
    stp = exp.plasticity
    if stp is not None and stp.rule == "anti_hebbian":
        eqs += ["h_prev : 1", f"r_prev = {phi.format(h='h_prev')} : 1", "eta_F : 1 (constant)"]
    if stp is not None and stp.rule == "tsodyks_markram":
        eqs += ["du_tm/dt = (U - u_tm) / tau_fac + U * (1 - u_tm) * R : 1",
                "dx_tm/dt = (1 - x_tm) / tau_dep - u_tm * x_tm * R : 1",
                "R = max_rate * clip(r, 0, inf) : Hz",
                "s = u_tm * x_tm / U : 1"]
    return "\n".join(eqs)


def _build(b2, exp: ExportedNetwork, inputs_bxtxi: np.ndarray, noise_mxbxtxn: np.ndarray | None, dt_sim: float):
    """The brian2 objects for all members x trials; returns (network, monitors, synapses)."""
    ms, Hz = b2.ms, b2.Hz
    M, N, I, O = exp.shape
    B, T, _ = inputs_bxtxi.shape
    K = M * B  # blocks: member-major
    dt_task = exp.dt_ms
    stp = exp.plasticity
    ns = {"tau": exp.tau_ms * ms, "dt_task": dt_task * ms,
          _NAMES["u"]: b2.TimedArray(inputs_bxtxi.transpose(1, 0, 2).reshape(T, B * I), dt=dt_task * ms,
                                     name=_NAMES["u"])}
    if noise_mxbxtxn is not None:
        ns["noise_gain"] = exp.sigma_h * math.sqrt(exp.alpha)
        ns[_NAMES["xi"]] = b2.TimedArray(noise_mxbxtxn.transpose(2, 0, 1, 3).reshape(T, K * N), dt=dt_task * ms,
                                         name=_NAMES["xi"])
    if stp is not None:
        ns.update({"tau_F": stp.tau_F_ms * ms, "F_max": stp.F_max if stp.F_max is not None else 0.0, "U": stp.U, "tau_fac": stp.tau_facilitation_ms * ms,
                   "tau_dep": stp.tau_depression_ms * ms, "max_rate": stp.max_rate_hz * Hz})
    clock = dict(dt=dt_sim * ms)
    G = b2.NeuronGroup(K * N, _neuron_equations(exp, I, noise_mxbxtxn is not None), method="euler", namespace=ns,
                       name=_NAMES["rate"], order=0, **clock)
    member_of = np.repeat(np.arange(M), B * N)  # neuron -> member index (0..M-1)
    G.trial = np.tile(np.repeat(np.arange(B), N), M)
    G.b = exp.b_mxn[member_of, np.tile(np.arange(N), K)]
    for i in range(I):
        setattr(G, f"w_in_{i}", exp.W_in_mxnxi[member_of, np.tile(np.arange(N), K), i])
    objects = [G]
    # recurrent synapses: every (post i, pre j) pair inside each block
    post, pre = np.meshgrid(np.arange(N), np.arange(N), indexing="ij")
    offsets = (np.arange(K) * N)[:, None, None]
    syn_model = {None: "w : 1 (constant)\nI_rec_post = w * r_pre : 1 (summed)",
                 "anti_hebbian": "w : 1 (constant)\nF : 1\nI_rec_post = (w + F) * r_pre : 1 (summed)",
                 "tsodyks_markram": "w : 1 (constant)\nI_rec_post = w * s_pre * r_pre : 1 (summed)"}
    S = b2.Synapses(G, G, syn_model[stp.rule if stp else None], namespace=ns, name=_NAMES["rec"], **clock)
    S.connect(i=(pre[None] + offsets).ravel(), j=(post[None] + offsets).ravel())
    S.w = np.repeat(exp.W_mxnxn, B, axis=0).ravel()  # synapse order: block, post, pre
    objects.append(S)
    if stp is not None and stp.rule == "anti_hebbian":
        G.eta_F = np.repeat(exp.eta_F_m, B * N)
        objects.append(G.run_regularly("h_prev = h", when="start", order=0, name=_NAMES["hold"]))
        update = "F * (1 - dt / tau_F) - eta_F_post * (h_post - h_prev_post) * r_prev_pre"
        if stp.F_max is not None:
            update = f"clip({update}, -F_max, F_max)"
        objects.append(S.run_regularly(f"F = {update}", when="after_groups", name=_NAMES["F"]))
    if stp is not None and stp.rule == "tsodyks_markram":
        G.u_tm = stp.U
        G.x_tm = 1.0
        objects.append(G.run_regularly("u_tm = clip(u_tm, 0, 1)\nx_tm = clip(x_tm, 0, 1)", when="after_groups",
                                       name=_NAMES["clip"]))
    # readout: ordered after the rate group, so it reads phi(h) after this step's update
    Y = b2.NeuronGroup(K * O, "y = y_rec + b_out : 1\ny_rec : 1\nb_out : 1 (constant)", namespace=ns,
                       name=_NAMES["out"], order=10, **clock)
    Y.b_out = np.repeat(exp.b_out_mxo, B, axis=0).ravel()
    o_idx, n_idx = np.meshgrid(np.arange(O), np.arange(N), indexing="ij")
    R = b2.Synapses(G, Y, "w_out : 1 (constant)\ny_rec_post = w_out * r_pre : 1 (summed)", namespace=ns,
                    name=_NAMES["readout"], **clock)
    R.connect(i=(n_idx[None] + offsets).ravel(), j=(o_idx[None] + (np.arange(K) * O)[:, None, None]).ravel())
    R.w_out = np.repeat(exp.W_out_mxoxn, B, axis=0).ravel()
    objects += [Y, R]
    # monitors on the task grid, at the start of a step (before anything of that step has run)
    rec = dict(record=True, dt=dt_task * ms, when="start", order=-100)
    mons = {"h": b2.StateMonitor(G, "h", name=_NAMES["mon_h"], **rec),
            "y": b2.StateMonitor(Y, "y", name=_NAMES["mon_y"], **rec)}
    if stp is not None and stp.rule == "tsodyks_markram":
        mons["s"] = b2.StateMonitor(G, "s", name=_NAMES["mon_s"], **rec)
    if stp is not None and stp.rule == "anti_hebbian":
        # F after step T - 1: read at the start of the extra step (the run goes one step further)
        mons["F"] = b2.StateMonitor(S, "F", record=True, dt=T * dt_task * ms, when="start", order=-100,
                                    name=_NAMES["mon_F"])
    net = b2.Network(*objects, *mons.values())
    return net, mons, S


def _extract(mons, S, exp: ExportedNetwork, B: int, T: int) -> tuple[np.ndarray, np.ndarray, dict]:
    M, N, _, O = exp.shape

    def grid(mon, var, n):
        values = np.asarray(getattr(mon, var))  # (neuron, record): records at 0, dt, ..., T dt
        if values.shape[1] != T + 1:
            raise RuntimeError(f"brian2 recorded {values.shape[1]} samples of {var}, expected {T + 1}; "
                               f"the step grid is misaligned")
        return values.reshape(M, B, n, T + 1).transpose(0, 1, 3, 2)[:, :, 1:].copy()

    state, output = grid(mons["h"], "h", N), grid(mons["y"], "y", O)
    plast = {}
    if exp.plasticity is not None and exp.plasticity.rule == "anti_hebbian":
        i_pre, j_post = np.asarray(S.i[:]), np.asarray(S.j[:])
        F = np.zeros((M * B, N, N))
        F_rec = np.asarray(mons["F"].F)  # (synapse, record): records at 0 and T dt_task
        if F_rec.shape[1] != 2:
            raise RuntimeError(f"brian2 recorded F {F_rec.shape[1]} times, expected 2; the step grid is misaligned")
        F[j_post // N, j_post % N, i_pre % N] = F_rec[:, 1]
        plast["F_end_mxbxnxn"] = F.reshape(M, B, N, N)
    if "s" in mons:
        plast["efficacy_mxbxtxn"] = grid(mons["s"], "s", N)
    return state, output, plast


def run_brian2(exp: ExportedNetwork, inputs_bxtxi: np.ndarray, *, noise_bxtxn: np.ndarray | None = None,
               dt_ms: float | None = None, codegen: str = "cython", cache_dir: str | Path | None = None,
               seed: int | None = None, profile: bool = False) -> Brian2Result:
    """Simulate every exported member on the same trials in brian2.

    inputs_bxtxi: (trial, time, input) on the task grid (``exp.dt_ms``); noise_bxtxn: standard-normal
    noise (trial, time, unit), or (member, trial, time, unit), scaled by ``sigma_h sqrt(alpha)``; None:
    noise-free. dt_ms: brian2 step, the task step divided by a whole number (default: the task step).
    codegen: 'cython' (cache in ``cache_dir``; falls back to 'numpy' with a warning when it cannot
    compile) or 'numpy'. seed: for ``brian2.seed`` (NumPy's global state is restored afterwards).
    profile: time brian2's code objects inside the loop (``Brian2Result.profile_s``).
    """
    if codegen not in CODEGENS:
        raise ValueError(f"codegen: expected one of {', '.join(CODEGENS)}, got {codegen!r}")
    inputs = np.asarray(inputs_bxtxi, dtype=np.float64)
    M, N, I, _ = exp.shape
    if inputs.ndim != 3 or inputs.shape[2] != I:
        raise ValueError(f"inputs: expected (trial, time, input) with {I} inputs, got shape {inputs.shape}")
    B, T, _ = inputs.shape
    noise = None
    if noise_bxtxn is not None:
        noise = np.asarray(noise_bxtxn, dtype=np.float64)
        noise = np.broadcast_to(noise, (M, B, T, N)) if noise.ndim == 3 else noise
        if noise.shape != (M, B, T, N):
            raise ValueError(f"noise: expected (trial, time, unit) = {(B, T, N)} or with a leading member dim, got "
                             f"{np.shape(noise_bxtxn)}")
    dt_sim, _ = _check_dt(exp.dt_ms, dt_ms)
    cache = Path(cache_dir) if cache_dir is not None else None
    if codegen == "cython":
        ok, why = cython_available(cache)
        if not ok:
            warnings.warn(f"brian2: the cython target is unavailable ({why}); falling back to the numpy target "
                          f"(slower, same numbers)", RuntimeWarning, stacklevel=2)
            codegen = "numpy"
    try:
        return _run_target(exp, inputs, noise, dt_sim, codegen, cache, seed, profile)
    except Exception as exc:
        if codegen != "cython" or not _is_compile_error(exc):
            raise
        warnings.warn(f"brian2: compiling the generated cython code failed ({type(exc).__name__}: "
                      f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}); falling back to the numpy "
                      f"target", RuntimeWarning, stacklevel=2)
        return _run_target(exp, inputs, noise, dt_sim, "numpy", cache, seed, profile)


def _run_target(exp, inputs, noise, dt_sim, target, cache, seed, profile=False) -> Brian2Result:
    B, T, _ = inputs.shape
    with _session(target, cache, seed) as b2:
        t0 = time.perf_counter()
        net, mons, S = _build(b2, exp, inputs, noise, dt_sim)
        t1 = time.perf_counter()
        # T task steps plus one brian2 step, so that the monitors see the state after step T - 1
        net.run((T * exp.dt_ms + dt_sim) * b2.ms, namespace={}, profile=profile)
        t2 = time.perf_counter()
        state, output, plast = _extract(mons, S, exp, B, T)
        t3 = time.perf_counter()
        timings = {"build": t1 - t0, "run": t2 - t1, "extract": t3 - t2}
        prof = {name: float(t) for name, t in net.profiling_info} if profile else {}
        if profile:
            timings["loop"] = sum(prof.values())
    return Brian2Result(state, output, plast, target, dt_sim, timings, prof)
