"""Re-simulate a finished run's trained networks in brian2 and torch: :func:`resimulate` returns
the dataset the pipeline writes as ``OUT/brian2.nc`` (``python -m bioplastic simulate OUT``).

Every condition's networks are rebuilt from the last checkpoint of the results dataset (with the
condition's short-term plasticity, see ``storage/rebuild.py``), in float64, and run on the same
held-out trials (random stream ``resimulation_trials`` of the run's root seed) by both engines. The dataset
holds both engines' states and readouts (dims ``condition, seed, trial, time, unit|output``), the
relative agreement per network (max norm over trials, time and units), the inputs, and the
brian2 code-generation target used.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from ..analysis.phase_space import AnalysisError, check_results
from ..seeds import numpy_rng
from ..storage.rebuild import protocol_task, trained_network
from .brian2_bridge import SUPPORTED_KINDS
from .engines import VARIABLES, relative_error, simulate_brian2, simulate_torch

#: default number of held-out trials re-simulated per network
DEFAULT_TRIALS = 32


class SimulateError(Exception):
    """The folder cannot be re-simulated (not a finished run, unsupported model kind)."""


def resimulate(ds: xr.Dataset, protocol, trials: int = DEFAULT_TRIALS, codegen: str = "cython",
               dt_ms: float | None = None, cache_dir: str | Path | None = None,
               progress: Callable[[str], None] | None = None) -> xr.Dataset:
    """Re-simulate every condition's trained networks of a results dataset in brian2 and torch.

    protocol: the run's resolved protocol (``protocol_of(ds)``); trials: held-out trials per
    network; codegen: brian2 target ('cython', its compiled code cached in ``cache_dir``, numpy with
    a warning if it cannot compile; or 'numpy'); dt_ms: brian2 step (default: the task's, so the
    agreement measures the engines; a divisor of it measures the torch engine's discretisation
    error instead); progress(condition name) before each condition.
    """
    if trials < 1:
        raise SimulateError(f"trials: expected a positive number of trials, got {trials}")
    try:
        check_results(ds, "re-simulation")
    except AnalysisError as exc:
        raise SimulateError(str(exc)) from None
    bad = {c.name: c.model_kind for c in protocol.conditions if c.model_kind not in SUPPORTED_KINDS}
    if bad:
        raise SimulateError(f"cannot re-simulate {', '.join(f'{k} ({v})' for k, v in bad.items())} in brian2: supported "
                            f"model kinds are {', '.join(SUPPORTED_KINDS)}")
    root = protocol.config.seed
    task = protocol_task(protocol)
    sample = task.sample(numpy_rng(root, "resimulation_trials"), trials)
    u = sample.inputs_bxtxi.astype(np.float64)
    brian2_seed = int(numpy_rng(root, "brian2_seed").integers(2 ** 31 - 1))
    S = ds.sizes["seed"]
    members = list(range(S))
    per_cond, codegens = [], set()
    for c in protocol.conditions:
        if progress:
            progress(c.name)
        net, ok = trained_network(ds, protocol, c.name, checkpoint=-1, dtype=torch.float64)
        th = simulate_torch(net, members, u)
        b2 = simulate_brian2(net, members, u, dt_ms=dt_ms, codegen=codegen, cache_dir=cache_dir, seed=brian2_seed)
        codegens.add(b2.attrs["brian2_codegen"])
        part = xr.Dataset({"network_ok": ("seed", ok)})
        for v in ("state", "readout"):
            part[f"{v}_torch"] = th[v]
            part[f"{v}_brian2"] = b2[v]
            err = relative_error(th[v].values, b2[v].values, axis=(1, 2, 3))
            part[f"agreement_{v}"] = ("seed", np.where(ok, err, np.nan))
        extra = next((v for v in ("F_end", "efficacy") if v in th), None)
        err = np.full(S, np.nan)
        if extra is not None:
            err = np.where(ok, relative_error(th[extra].values, b2[extra].values, axis=(1, 2, 3)), np.nan)
        part["agreement_plasticity"] = ("seed", err)
        part = part.drop_vars([k for k in ("unit_pre",) if k in part.coords])
        per_cond.append(part)
    result = xr.concat(per_cond, dim="condition", data_vars="all", coords="minimal", compat="override", join="override")
    result = result.assign_coords(condition=protocol.condition_names, seed=ds["seed"].values, input=np.arange(u.shape[2]))
    result["inputs"] = (("trial", "time", "input"), u, {"units": "1", "long_name": "inputs u_t of the re-simulated trials"})
    for v in ("state", "readout"):
        units, name = VARIABLES[v]
        for eng in ("torch", "brian2"):
            result[f"{v}_{eng}"].attrs = {"units": units, "long_name": f"{name} ({eng})"}
        result[f"agreement_{v}"].attrs = {"units": "1", "long_name": f"max |torch - brian2| / max |brian2| of {v} "
                                                                     f"per network (NaN: network missing)"}
    result["agreement_plasticity"].attrs = {"units": "1", "long_name": "the same for the short-term plasticity "
                                                                        "signature (F at trial end or TM efficacy; NaN: none)"}
    result["network_ok"].attrs = {"units": "1", "long_name": "finite weights at the last checkpoint"}
    for k, (units, long_name) in {"condition": ("", "experimental condition"), "seed": ("", "seed index"),
                                  "trial": ("", "held-out trial"), "unit": ("", "recurrent unit"),
                                  "output": ("", "output channel"), "input": ("", "input channel")}.items():
        result[k].attrs.update({"units": units, "long_name": long_name})
    result.attrs = {"brian2_codegen": ",".join(sorted(codegens)), "dt_ms": float(dt_ms or task.dt_ms),
                    "task_dt_ms": float(task.dt_ms), "checkpoint": int(ds["checkpoint"].values[-1]),
                    "root_seed": int(root), "brian2_seed": brian2_seed, "trials": int(trials),
                    "brian2_version": b2.attrs["brian2_version"], "protocol": ds.attrs["protocol"]}
    return result


def agreement_line(result: xr.Dataset) -> str:
    """One line: the worst agreement over networks, the target and the step."""
    ok = result["network_ok"].values
    worst = {v: float(np.nanmax(result[f"agreement_{v}"].values)) if ok.any() else float("nan")
             for v in ("state", "readout")}
    plast = result["agreement_plasticity"].values
    extra = f", plasticity {np.nanmax(plast):.1e}" if np.isfinite(plast).any() else ""
    step = result.attrs["dt_ms"]
    same = step == result.attrs["task_dt_ms"]
    what = "agreement" if same else f"torch (dt {result.attrs['task_dt_ms']:g} ms) vs brian2 at dt {step:g} ms"
    return (f"brian2 ({result.attrs['brian2_codegen']}) vs torch, {result.sizes['trial']} trials x {int(ok.sum())} "
            f"networks: {what}, max relative error state {worst['state']:.1e}, readout {worst['readout']:.1e}{extra}")
