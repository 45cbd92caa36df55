"""Networks that start from a finished run's trained networks, at a chosen distance from them.

``training.init`` (protocol/schema.py, ``InitConfig``) names a source run, its condition, sweep point
and checkpoint, and a ``distance`` d. Seed s of this protocol starts at

    theta_0 = (1 - d) * theta_src + d * theta_fresh

for every trained parameter: theta_src is seed s's network in the source run (the same seed index),
theta_fresh the weights this protocol draws for seed s without ``init``. d = 0 continues from the
trained network, d = 1 is this protocol's own random start, and the relative distance
``||theta_0 - theta_src|| / ||theta_fresh - theta_src||`` is d exactly, parameter by parameter. Fixed
buffers (a sparsity mask, Dale's signs, a rank-one network's random part) are not interpolated: the
source's networks and this protocol's own draw must have the same ones (the same root seed and the
settings that draw them), else the start is refused.

:func:`check_sources` checks every source before a run trains anything (a clear error naming the field
and what is wrong); :func:`apply_init` sets the members' initial weights inside the trainer.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from ..networks import build_network
from ..protocol.errors import describe
from ..protocol.load import merge
from ..protocol.yaml12 import load_yaml
from ..seeds import numpy_rng
from ..storage.io import DamagedFileError
from ..storage.results import read_dataset
from ..tasks import build_task

RESULTS = "results.nc"


class InitSourceError(Exception):
    """``training.init`` names a source run that is missing, damaged or does not fit the protocol
    (the message names the field, what was expected and what was found)."""


@dataclass(frozen=True)
class Source:
    """The weights of a source run at its chosen point and checkpoint: ``weights[name]`` is
    (seed, *param dims) in the network's parameter layout, ``buffers`` likewise."""

    sha256: str
    weights: dict[str, np.ndarray]
    buffers: dict[str, np.ndarray]
    checkpoint: np.ndarray  # per seed: the iteration whose weights were taken
    learned: np.ndarray  # per seed: whether the source network reached the criterion


def results_path(from_run: str | Path) -> Path:
    """The results.nc of ``from_run`` (a run folder, or its results.nc itself)."""
    path = Path(from_run).expanduser()
    return path if path.name == RESULTS and not path.is_dir() else path / RESULTS


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


#: a run folder's record of its sources as they were when the run started (``OUT/init_sources.json``)
SOURCES_FILE = "init_sources.json"


def recorded_sources(out: Path) -> dict[str, str]:
    """from_run (as written) -> the sha256 of its results.nc when the run in ``out`` started (empty
    without a record)."""
    saved = Path(out) / SOURCES_FILE
    return {r["from_run"]: r["results_sha256"] for r in json.loads(saved.read_text())} if saved.is_file() else {}


def check_unchanged(out: Path, members: Sequence[Any]) -> None:
    """Before a work unit trains (or resumes): the source of each member's ``training.init`` must be
    the results.nc recorded when the run started (``OUT/SOURCES_FILE``), so that a source rewritten
    while the run trains is not read by its later units. :class:`InitSourceError` otherwise."""
    runs = sorted({str(m.training.init.from_run) for m in members if getattr(m.training, "init", None) is not None})
    recorded = recorded_sources(out) if runs else {}
    for from_run in runs:
        path = results_path(from_run)
        if from_run in recorded and (not path.is_file() or file_sha256(path) != recorded[from_run]):
            raise InitSourceError(f"training.init.from_run: {path} {'changed' if path.is_file() else 'went missing'} "
                                  f"while this run was training in {out} (the units trained so far started from the "
                                  "results.nc recorded when the run started): restore it, or delete the run folder to "
                                  "start over")


def read_source(init: Any, where: str = "training.init") -> xr.Dataset:
    """The source run's results.nc, verified; :class:`InitSourceError` naming ``where.from_run``."""
    path = results_path(init.from_run)
    if not path.is_file():
        raise InitSourceError(f"{where}.from_run: expected a finished run folder holding {RESULTS}; "
                              f"{path} does not exist (run the source protocol first)")
    try:
        return read_dataset(path)
    except DamagedFileError as exc:
        raise InitSourceError(f"{where}.from_run: {exc}") from None


def source_model(ds: xr.Dataset, condition: str, select: dict[str, Any]) -> dict[str, Any]:
    """The model settings the source's ``condition`` networks were trained with (kind included), read
    from the protocol its results.nc records - without validating it again (a source stays usable on a
    machine whose limits it would not pass) - with the point's swept model fields."""
    resolved = load_yaml(ds.attrs.get("protocol", "")) or {}
    override = ((resolved.get("conditions") or {}).get(condition) or {}).get("model") or {}
    model = merge(resolved.get("model") or {}, override)
    for key, value in select.items():
        if key.startswith("model."):
            model[key[len("model."):]] = value
    return model


def load_source(init: Any, model_kind: str, model: dict[str, Any], net_cls: type, shapes: dict[str, tuple[int, ...]],
                n_seeds: int, where: str = "training.init", ds: xr.Dataset | None = None) -> Source:
    """Read and check the source of ``init`` (an ``InitConfig``) for networks of ``model_kind`` with
    the settings ``model`` (a dict, as the protocol resolves it), of class ``net_cls``, whose parameters
    have (per member) ``shapes``, for seeds 0..n_seeds-1. The source's networks must be of the same kind
    and have the same settings but those read only when the initial weights are drawn (the class's
    ``init_fields``, e.g. a leaky network's g). :class:`InitSourceError` naming ``where``'s field for
    every problem. ``ds``: the source's results.nc, when already read."""
    path = results_path(init.from_run)
    ds = read_source(init, where) if ds is None else ds
    conds = [str(c) for c in ds["condition"].values]
    if init.condition not in conds:
        raise InitSourceError(f"{where}.condition: expected one of the source run's conditions ({', '.join(conds)}); "
                              f"got {init.condition!r}")
    src_model = source_model(ds, init.condition, init.select)
    if src_model.get("kind") != model_kind:
        raise InitSourceError(f"{where}.from_run: the source's {init.condition} networks are {src_model.get('kind')}, "
                              f"this protocol's are {model_kind}")
    differ = sorted(k for k in set(src_model) & set(model)
                    if k not in net_cls.init_fields and k != "kind" and src_model[k] != model[k])
    if differ:
        raise InitSourceError(f"{where}.from_run: the source's {init.condition} networks were trained with other model "
                              "settings (" + ", ".join(f"{k}: {src_model[k]!r} there, {model[k]!r} here" for k in differ)
                              + "); only the settings of the initial draw (" + ", ".join(sorted(net_cls.init_fields))
                              + ") may differ")
    ds = ds.sel(condition=init.condition)
    sweep = [d.strip() for d in str(ds.attrs.get("sweep_dims", "")).split(",") if d.strip()]
    unknown = sorted(set(init.select) - set(sweep))
    if unknown:
        raise InitSourceError(f"{where}.select: the source run has no swept field {', '.join(unknown)}; "
                              f"its sweep: {', '.join(sweep) or 'none'}")
    for dim in sweep:
        values = ds[dim].values.tolist()
        if dim not in init.select:
            raise InitSourceError(f"{where}.select: the source run is a sweep; choose its point, e.g. "
                                  f"{{{dim}: {values[0]!r}}} (values of {dim}: {values})")
        if init.select[dim] not in values:
            raise InitSourceError(f"{where}.select.{dim}: expected one of {values}; got {describe(init.select[dim])}")
        ds = ds.sel({dim: init.select[dim]})
    n_src = ds.sizes["seed"]
    if n_src < n_seeds:
        raise InitSourceError(f"{where}.from_run: the source has {n_src} seeds of {init.condition}; this protocol needs "
                              f"{n_seeds} (seed s starts from the source's seed s)")
    ds = ds.isel(seed=slice(0, n_seeds))
    if bool(ds["diverged"].any()):
        bad = [int(s) for s in np.flatnonzero(ds["diverged"].values)]
        raise InitSourceError(f"{where}.from_run: the source's {init.condition} networks of seeds {bad} diverged; "
                              "start from networks that trained")
    ckpts = ds["checkpoint"].values
    weights, buffers = {}, {}
    for name, dims in net_cls.param_dims.items():
        var = f"weight_{name}"
        if var not in ds or ds[var].sizes.get("checkpoint") is None:
            raise InitSourceError(f"{where}.from_run: the source has no weights {name!r} (a {model_kind} network has "
                                  f"{', '.join(net_cls.param_dims)})")
        arr = ds[var].transpose("seed", "checkpoint", *dims).values
        if arr.shape[2:] != tuple(shapes[name]):
            raise InitSourceError(f"{where}.from_run: the source's {name} is {arr.shape[2:]}, this protocol's network needs "
                                  f"{tuple(shapes[name])} (units, inputs, outputs and rank must match)")
        weights[name] = arr
    finite = np.all([np.isfinite(a).reshape(a.shape[0], a.shape[1], -1).all(-1) for a in weights.values()], axis=0)
    if init.checkpoint == "last":
        if not finite.any(1).all():
            raise InitSourceError(f"{where}.from_run: a source network has no saved weights")
        idx = np.array([np.flatnonzero(f)[-1] for f in finite])
    else:
        if init.checkpoint not in ckpts:
            raise InitSourceError(f"{where}.checkpoint: expected 'last' or one of the source's checkpoints "
                                  f"({', '.join(str(int(c)) for c in ckpts)}); got {init.checkpoint}")
        idx = np.full(n_seeds, int(np.flatnonzero(ckpts == init.checkpoint)[0]))
        missing = [s for s in range(n_seeds) if not finite[s, idx[s]]]
        if missing:
            raise InitSourceError(f"{where}.checkpoint: the source's networks of seeds {missing} stopped before "
                                  f"iteration {init.checkpoint}; choose an earlier checkpoint or 'last'")
    rows = np.arange(n_seeds)
    weights = {k: a[rows, idx] for k, a in weights.items()}
    for name, dims in net_cls.buffer_dims.items():
        if f"buffer_{name}" in ds:
            buffers[name] = ds[f"buffer_{name}"].transpose("seed", *dims).values
    learned = ds["learned"].values.astype(bool) if "learned" in ds else np.zeros(n_seeds, bool)
    return Source(file_sha256(path), weights, buffers, ckpts[idx].astype(np.int64), learned)


def check_buffers(source: Source, fresh: dict[str, np.ndarray], seeds: Sequence[int], where: str = "training.init") -> None:
    """A network between two networks needs them to share their fixed buffers (a sparsity mask, Dale's
    signs, a rank-one network's random part): :class:`InitSourceError` where this protocol's own draw
    (``fresh[name]``, one row per seed of ``seeds``) has other buffers than the source's networks."""
    differ = sorted(k for k, v in fresh.items()
                    if k not in source.buffers or not np.array_equal(source.buffers[k][list(seeds)], np.asarray(v, np.float64)))
    if differ:
        raise InitSourceError(f"{where}.from_run: the source's networks have other fixed buffers ({', '.join(differ)}) "
                              "than this protocol's own draw, and a start between two networks needs the same ones: use "
                              "the source's root seed and the settings that draw them (e.g. connection_prob, "
                              "frac_excitatory, a rank-one network's g)")


def start_point(source: Sequence[np.ndarray] | np.ndarray, fresh: np.ndarray, distance: float) -> np.ndarray:
    """``(1 - distance) * source + distance * fresh``, in float64: the straight line from the
    source's network, at 0, to the fresh draw, at 1 (both ends exactly)."""
    d = float(distance)
    return (1.0 - d) * np.asarray(source, np.float64) + d * np.asarray(fresh, np.float64)


def _where(protocol, condition: str) -> str:
    """The field to name in an error: the condition's own ``training.init`` where it sets one."""
    own = ((protocol.config.conditions.get(condition) or {}).get("training") or {}).get("init")
    return f"conditions.{condition}.training.init" if own is not None else "training.init"


def apply_init(net, members: Sequence[Any]) -> None:
    """Set the initial parameters of every member of ``net`` whose ``training.init`` is set, from its
    source run; the members without one keep their fresh draw. :class:`InitSourceError` when a
    source no longer fits (it was checked by :func:`check_sources` before the run)."""
    inits = [getattr(m.training, "init", None) for m in members]
    if all(i is None for i in inits):
        return
    shapes = {k: tuple(v.shape[1:]) for k, v in net.params.items()}
    cache: dict[str, Source] = {}
    params = {k: v.detach().cpu().numpy().astype(np.float64) for k, v in net.params.items()}
    bufs = {k: v.cpu().numpy().astype(np.float64) for k, v in net.buffers.items()}
    for e, (m, init) in enumerate(zip(members, inits)):
        if init is None:
            continue
        key = json.dumps(init.model_dump(mode="json", exclude={"distance"}), sort_keys=True)
        if key not in cache:
            n_seeds = 1 + max(mm.seed_index for mm, i in zip(members, inits) if i is not None)
            cache[key] = load_source(init, m.model_kind, json.loads(json.dumps(dict(m.model))), type(net), shapes, n_seeds)
        src = cache[key]
        check_buffers(src, {k: b[e:e + 1] for k, b in bufs.items()}, [m.seed_index])
        for k in params:
            params[k][e] = start_point(src.weights[k][m.seed_index], params[k][e], init.distance)
    for k, v in net.params.items():
        net.params[k] = torch.as_tensor(params[k], dtype=v.dtype, device=v.device).requires_grad_(True)


def check_sources(protocol) -> list[dict]:
    """Every source of ``protocol`` read and checked against every point's and condition's networks
    (their kind, settings, parameter shapes and fixed buffers, seed by seed), before anything trains:
    :class:`InitSourceError` for the first problem. Returns one record per distinct source
    (from_run as written and as an absolute path, condition, select, checkpoint, the sha256 of its
    results.nc, the source's checkpoint iteration and learned flag per seed) for the run's provenance."""
    records, read = {}, {}
    for point in protocol.points:
        for c in point.protocol.conditions:
            init = c.training.init
            if init is None:
                continue
            where = _where(protocol, c.name)
            path = results_path(init.from_run)
            if path not in read:
                read[path] = read_source(init, where)
            task = build_task(c.task_kind, c.task.model_dump())
            seeds = range(point.protocol.config.seeds)
            fresh = build_network(c.model_kind, c.model.model_dump(), n_inputs=task.n_inputs, n_outputs=task.n_outputs,
                                  dt_ms=task.dt_ms, rngs=[numpy_rng(protocol.config.seed, "init", s) for s in seeds],
                                  dtype=torch.float64 if c.training.dtype == "float64" else torch.float32)
            src = load_source(init, c.model_kind, c.model.model_dump(mode="json"), type(fresh),
                              {k: tuple(v.shape[1:]) for k, v in fresh.params.items()}, len(seeds), where, read[path])
            check_buffers(src, {k: v.numpy() for k, v in fresh.buffers.items()}, seeds, where)
            key = json.dumps(init.model_dump(mode="json", exclude={"distance"}), sort_keys=True)
            records.setdefault(key, {**json.loads(key), "path": str(path.resolve()), "results_sha256": src.sha256,
                                     "source_checkpoint": src.checkpoint.tolist(), "source_learned": src.learned.tolist()})
    return list(records.values())
