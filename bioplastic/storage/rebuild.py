"""Rebuild trained networks from a run's dataset (never retrain): the seeds of one condition as one
ensemble, with the parameters of a chosen checkpoint and the condition's short-term plasticity.

Used by every analysis that simulates trained networks (phase space, predictions, re-simulation).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import xarray as xr

from ..networks import Network, build_network
from ..protocol.load import Protocol, protocol_from_text
from ..regularizers.tcr_plasticity import attach_plasticity
from ..seeds import numpy_rng
from ..tasks import Task, build_task


def protocol_of(ds: xr.Dataset, source: str = "<results dataset>") -> Protocol:
    """The resolved protocol a results (or analysis, predictions) dataset was made from."""
    return protocol_from_text(ds.attrs["protocol"], source)


def condition_of(protocol, name: str):
    for c in protocol.conditions:
        if c.name == name:
            return c
    raise KeyError(f"condition {name!r} not in the protocol; it has {', '.join(protocol.condition_names)}")


def protocol_task(protocol) -> Task:
    c = protocol.conditions[0]
    return build_task(c.task_kind, c.task.model_dump())


def _seed_indices(ds: xr.Dataset, seed) -> list[int]:
    seeds = [seed] if isinstance(seed, int | np.integer) else list(seed)
    have = [int(s) for s in ds["seed"].values]
    wrong = [s for s in seeds if not isinstance(s, int | np.integer) or int(s) not in have]
    if wrong or not seeds:
        raise ValueError(f"seed: expected a seed index of the run ({have[0]} to {have[-1]}) or a list of them; got {seed!r}")
    return [int(s) for s in seeds]


def trained_network(ds: xr.Dataset, protocol, condition: str, checkpoint: int = -1,
                    dtype: torch.dtype | None = None, plasticity: bool = True,
                    device: torch.device | str = "cpu", seed: int | Sequence[int] | None = None) -> tuple[Network, np.ndarray]:
    """The networks of ``condition`` at checkpoint index ``checkpoint``: every seed's (E = seeds), or
    with ``seed`` one seed index's (E = 1) or those of a list of seed indices (in its order).

    Returns ``(network, ok_e)``; members whose checkpoint holds non-finite values (diverged, or
    stopped before it) get zeros and ``ok_e`` False. With ``plasticity`` (default) the condition's
    TCR short-term plasticity is attached (at its base strength ``eta_F``), as it was in training;
    ``plasticity=False`` gives the same networks with it blocked (a lesion). ``device``: where the
    network's tensors go (the CPU by default; the values are the dataset's, exactly).
    """
    cond = condition_of(protocol, condition)
    task = protocol_task(protocol)
    if seed is not None:
        ds = ds.sel(seed=_seed_indices(ds, seed))
    S = ds.sizes["seed"]
    if dtype is None:
        dtype = torch.float64 if cond.training.dtype == "float64" else torch.float32
    net = build_network(cond.model_kind, cond.model.model_dump(), n_inputs=task.n_inputs, n_outputs=task.n_outputs,
                        dt_ms=task.dt_ms, rngs=[numpy_rng(protocol.config.seed, "init", int(s)) for s in ds["seed"].values],
                        dtype=dtype)
    ok = np.ones(S, bool)
    with torch.no_grad():
        for k in net.params:
            values = ds[f"weight_{k}"].sel(condition=condition).isel(checkpoint=checkpoint).values
            ok &= np.isfinite(values.reshape(S, -1)).all(1)
            net.params[k] = torch.as_tensor(np.nan_to_num(values), dtype=dtype, device="cpu")
        for k in net.buffers:  # the stored buffers, never re-drawn (datasets without them: the init stream's)
            if f"buffer_{k}" in ds:
                net.buffers[k] = torch.as_tensor(ds[f"buffer_{k}"].sel(condition=condition).values, dtype=dtype, device="cpu")
    if plasticity:
        attach_plasticity(net, cond.tcr)
    return net.to(device), ok
