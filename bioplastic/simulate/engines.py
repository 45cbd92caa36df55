"""Task trials simulated by either engine, as xarray datasets with the same variables and dims.

``simulate_torch`` and ``simulate_brian2`` return, for one member (dims ``trial, time, unit``) or
several (a leading ``seed`` dim holding the member indices):

- ``state``  (trial, time, unit):   h_t, the state after step t
- ``readout`` (trial, time, output): y_t = W_out phi(h_t) + b_out (not named ``output``: a variable
  cannot share its name with one of its dims in xarray)
- with short-term plasticity: ``F_end`` (trial, unit, unit_pre), the anti-Hebbian efficacies at
  trial end, or ``efficacy`` (trial, time, unit_pre), the Tsodyks-Markram s_t = u_t x_t / U

``time`` is the task step index t (input u_t is applied during step t); the coordinate ``time_ms``
is the end of that step, (t + 1) dt_ms. Attrs: ``engine``, ``dt_ms`` (the simulation step),
``task_dt_ms``, ``model_kind``, and for brian2 ``brian2_codegen`` and ``brian2_version``.
"""
from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from ..networks import Rollout
from .brian2_bridge import _members, export_network, run_brian2

VARIABLES: dict[str, tuple[str, str]] = {
    "state": ("1", "hidden state h_t after step t"),
    "readout": ("1", "readout y_t = W_out phi(h_t) + b_out"),
    "F_end": ("1", "anti-Hebbian fast efficacy F at the end of the trial [unit, unit_pre]"),
    "efficacy": ("1", "Tsodyks-Markram efficacy s_t = u_t x_t / U of each presynaptic unit after step t"),
}
DIMS = {"state": ("trial", "time", "unit"), "readout": ("trial", "time", "output"),
        "F_end": ("trial", "unit", "unit_pre"), "efficacy": ("trial", "time", "unit_pre")}


def _dataset(arrays_m: dict[str, np.ndarray], members: tuple[int, ...], single: bool, dt_task: float,
             attrs: dict) -> xr.Dataset:
    """Arrays with a leading member dim -> a labelled dataset (member dim dropped when ``single``)."""
    T = arrays_m["state"].shape[2]
    ds = xr.Dataset(coords={"seed": ("seed", list(members), {"long_name": "network member (seed index)"}),
                            "trial": ("trial", np.arange(arrays_m["state"].shape[1]), {"long_name": "trial"}),
                            "time": ("time", np.arange(T), {"units": "steps", "long_name": "task step t"}),
                            "time_ms": ("time", (np.arange(T) + 1) * dt_task, {"units": "ms", "long_name": "end of step t"}),
                            "unit": np.arange(arrays_m["state"].shape[3]),
                            "output": np.arange(arrays_m["readout"].shape[3])})
    for name, values in arrays_m.items():
        units, long_name = VARIABLES[name]
        ds[name] = (("seed",) + DIMS[name], values, {"units": units, "long_name": long_name})
    if "F_end" in ds:
        ds = ds.assign_coords(unit_pre=np.arange(ds.sizes["unit"]))
    ds.attrs.update(attrs)
    return ds.isel(seed=0, drop=True) if single else ds


def _inputs(net, inputs_bxtxi) -> np.ndarray:
    u = np.asarray(inputs_bxtxi, dtype=np.float64)
    if u.ndim != 3 or u.shape[2] != net.n_inputs:
        raise ValueError(f"inputs: expected (trial, time, input) with {net.n_inputs} inputs, got shape {u.shape}")
    return u


def simulate_torch(net, member: int | Sequence[int], inputs_bxtxi: np.ndarray,
                   noise_bxtxn: np.ndarray | None = None) -> xr.Dataset:
    """The torch engine on the given trials (all members run, the requested ones returned).

    noise_bxtxn: standard-normal noise (trial, time, unit) shared by the members, or None (noise-free).
    The network's dtype is used; pass a float64 network for a cross-check.
    """
    members = _members(net, member)
    u = _inputs(net, inputs_bxtxi)
    E = net.n_members
    with torch.no_grad():
        u_e = torch.as_tensor(u, dtype=net.dtype).expand(E, *u.shape).contiguous()
        xi = None
        if noise_bxtxn is not None:
            xi = torch.as_tensor(np.asarray(noise_bxtxn), dtype=net.dtype).expand(E, *np.shape(noise_bxtxn)).contiguous()
        roll = net.run(u_e, xi)
    idx = list(members)
    arrays = {"state": roll.state_exbxtxn.double().numpy()[idx], "readout": roll.output_exbxtxo.double().numpy()[idx]}
    plast = getattr(roll, "plasticity", None) or {}
    if "F_end_exbxnxn" in plast:
        arrays["F_end"] = plast["F_end_exbxnxn"].double().numpy()[idx]
    if "efficacy_exbxtxn" in plast:
        arrays["efficacy"] = plast["efficacy_exbxtxn"].double().numpy()[idx]
    attrs = {"engine": "torch", "dt_ms": float(net.dt_ms), "task_dt_ms": float(net.dt_ms), "model_kind": net.kind,
             "torch_dtype": str(net.dtype).removeprefix("torch.")}
    return _dataset(arrays, members, isinstance(member, (int, np.integer)), float(net.dt_ms), attrs)


def simulate_brian2(net, member: int | Sequence[int], inputs_bxtxi: np.ndarray, dt_ms: float | None = None,
                    codegen: str = "cython", cache_dir: str | Path | None = None,
                    noise_bxtxn: np.ndarray | None = None, seed: int | None = None) -> xr.Dataset:
    """brian2 on the given trials: the same variables, dims and coords as :func:`simulate_torch`.

    dt_ms: the brian2 step (default the task's; a divisor of it gives the continuous-time limit with
    inputs held piecewise constant). codegen: 'cython' (compiled, cached in ``cache_dir``; numpy with
    a warning if it cannot compile) or 'numpy'. The target used is the attr ``brian2_codegen``.
    """
    exp = export_network(net, member)
    res = run_brian2(exp, _inputs(net, inputs_bxtxi), noise_bxtxn=noise_bxtxn, dt_ms=dt_ms, codegen=codegen,
                     cache_dir=cache_dir, seed=seed)
    arrays = {"state": res.state_mxbxtxn, "readout": res.output_mxbxtxo}
    if "F_end_mxbxnxn" in res.plasticity:
        arrays["F_end"] = res.plasticity["F_end_mxbxnxn"]
    if "efficacy_mxbxtxn" in res.plasticity:
        arrays["efficacy"] = res.plasticity["efficacy_mxbxtxn"]
    attrs = {"engine": "brian2", "dt_ms": res.dt_ms, "task_dt_ms": exp.dt_ms, "model_kind": exp.kind,
             "brian2_codegen": res.codegen, "brian2_version": metadata.version("brian2")}
    attrs.update({f"brian2_time_{k}_s": v for k, v in res.timings_s.items()})
    return _dataset(arrays, exp.members, isinstance(member, (int, np.integer)), exp.dt_ms, attrs)


def relative_error(a: np.ndarray, reference: np.ndarray, axis=None) -> np.ndarray | float:
    """max |a - reference| / max |reference| (max norm over ``axis``; all axes by default)."""
    a, reference = np.asarray(a, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    num = np.abs(a - reference).max(axis=axis)
    den = np.abs(reference).max(axis=axis)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), num) if axis is not None else (
        float(num / den) if den > 0 else float(num))


def agreement(ds: xr.Dataset, reference: xr.Dataset) -> dict[str, float]:
    """Relative error (max norm) of every variable the two simulations share."""
    return {v: relative_error(ds[v].values, reference[v].values) for v in VARIABLES if v in ds and v in reference}


def discretisation_error(net, member: int, inputs_bxtxi: np.ndarray, refine: int | Sequence[int] = 10,
                         codegen: str = "cython", cache_dir: str | Path | None = None) -> xr.Dataset:
    """Relative error of the torch engine (Euler at the task step) against brian2 at finer steps.

    For each ``refine`` factor k the brian2 step is dt_task / k (inputs held piecewise constant over
    each task step); as k grows brian2 approaches the continuous-time solution, so the error at large
    k is the torch engine's discretisation error. Returns ``relative_error_state`` and
    ``relative_error_readout`` (dim ``refine``, coord ``dt_ms``), max norm over trials, time and units.
    """
    ks = [int(refine)] if isinstance(refine, (int, np.integer)) else [int(k) for k in refine]
    ref = simulate_torch(net, member, inputs_bxtxi)
    err = {"state": [], "readout": []}
    used = set()
    for k in ks:
        fine = simulate_brian2(net, member, inputs_bxtxi, dt_ms=net.dt_ms / k, codegen=codegen, cache_dir=cache_dir)
        used.add(fine.attrs["brian2_codegen"])
        for v in err:
            err[v].append(relative_error(ref[v].values, fine[v].values))
    out = xr.Dataset(coords={"refine": ks, "dt_ms": ("refine", [net.dt_ms / k for k in ks], {"units": "ms"})})
    for v in err:
        out[f"relative_error_{v}"] = ("refine", np.array(err[v]),
                                      {"units": "1", "long_name": f"max |torch - brian2| / max |brian2| of {v}, "
                                                                  f"brian2 at dt_task / refine"})
    out.attrs.update({"task_dt_ms": float(net.dt_ms), "brian2_codegen": ",".join(sorted(used))})
    return out


class Brian2Engine:
    """Simulates the networks in brian2 instead of torch (the same trials and noise): the prediction
    measures of the independent continuous-time engine. The plasticity's time course is not
    re-simulated (its timescale is NaN); its trial-end signatures and the lesion are."""

    name = "brian2"

    def __init__(self, codegen: str = "cython", cache_dir: str | Path | None = None, dt_ms: float | None = None,
                 seed: int = 0):
        self.codegen, self.cache_dir, self.dt_ms, self.seed = codegen, cache_dir, dt_ms, seed
        self.codegen_used: set[str] = set()

    @property
    def attrs(self) -> dict[str, str]:
        """What the predictions dataset records about this engine."""
        return {"brian2_codegen": ",".join(sorted(self.codegen_used))}

    def __call__(self, net, inputs_bxtxi, noise):
        ds = simulate_brian2(net, list(range(net.n_members)), inputs_bxtxi, dt_ms=self.dt_ms, codegen=self.codegen,
                             cache_dir=self.cache_dir, noise_bxtxn=None if noise is None else noise.double().numpy(),
                             seed=self.seed)
        self.codegen_used.add(ds.attrs["brian2_codegen"])
        as_t = lambda v: torch.from_numpy(np.ascontiguousarray(ds[v].values))  # noqa: E731
        plast = {}
        if "F_end" in ds:
            plast["F_end_exbxnxn"] = as_t("F_end")
        if "efficacy" in ds:
            plast["efficacy_exbxtxn"] = as_t("efficacy")
        return Rollout(as_t("state"), as_t("readout"), plasticity=plast or None)
