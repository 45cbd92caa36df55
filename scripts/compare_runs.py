"""How far two runs of the same protocol differ, network by network (e.g. before and after a change
of the arithmetic): the learning-curve metrics of every network and their medians per condition.

    python scripts/compare_runs.py OLD_RUN_DIR NEW_RUN_DIR [--recompute]

Reads ``results.nc`` of both folders. ``--recompute`` first recomputes both runs' learning-curve
metrics from their stored loss curves and accuracies with this version's definitions, so that a
change of the definitions between the runs does not show as a change of the numbers. For each metric it prints how many networks have the same
value, how many differ and by how much at most, and then the median per sweep point and condition in
both runs. Exits with status 1 when the folders hold different protocols or networks.
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import xarray as xr
import yaml

from bioplastic.analysis.learning_curves import add_curve_metrics
from bioplastic.pipeline import RunError, recomputed_results
from bioplastic.storage.io import DamagedFileError
from bioplastic.storage.rebuild import protocol_of
from bioplastic.storage.results import read_dataset

METRICS = ("search_phase", "iterations_to_criterion", "drop_width", "abrupt", "learned", "final_accuracy")


def _load(folder: str) -> xr.Dataset:
    path = Path(folder) / "results.nc"
    if not path.is_file():
        sys.exit(f"{folder}: no results.nc (expected a finished run folder)")
    try:
        return read_dataset(path)  # verified against its checksums
    except DamagedFileError as exc:
        sys.exit(str(exc))


CURVE_SETTINGS = ("training.criterion", "training.loss_smoothing")


def recompute(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with its learning statistics recomputed by this version, point by point (as
    ``python -m bioplastic recompute`` does); for a run whose protocol this version no longer reads,
    its curve metrics with the criterion and smoothing its protocol text names."""
    try:
        protocol = protocol_of(ds)
    except Exception as err:  # noqa: BLE001 - a protocol this version no longer accepts
        return _recompute_unreadable(ds, err)
    try:
        return recomputed_results(ds, protocol)
    except RunError as err:
        sys.exit(f"cannot recompute: {err}")


def _recompute_unreadable(ds: xr.Dataset, err: Exception) -> xr.Dataset:
    swept = [c for c in ds.coords if c in CURVE_SETTINGS]
    if swept:
        sys.exit(f"cannot recompute: this version cannot read the run's protocol ({err}) and the run sweeps {swept}")
    tr = yaml.safe_load(ds.attrs["protocol"])["training"]
    sweep = [d for d in ds["search_phase"].dims if d not in ("condition", "seed")]
    out = {m: ds[m].copy() for m in METRICS}
    for index in itertools.product(*(range(ds.sizes[d]) for d in sweep)):
        sel = dict(zip(sweep, index))
        part = ds.isel(sel).copy()
        add_curve_metrics(part, tr["criterion"], tr["loss_smoothing"])
        for m in METRICS:
            out[m][sel] = part[m].transpose(*out[m].isel(sel).dims).values
    return ds.assign(out)


def _per_network(a: xr.DataArray, b: xr.DataArray) -> str:
    x, y = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    both_nan = np.isnan(x) & np.isnan(y)
    same = both_nan | (x == y)
    differ = ~same
    one_nan = np.isnan(x) != np.isnan(y)
    size = np.abs(x - y)[differ & ~one_nan]
    text = f"{same.sum():4d} same, {differ.sum():3d} differ"
    if size.size:
        text += f" (by at most {size.max():.4g}, median {np.median(size):.4g})"
    if one_nan.any():
        text += f"; {one_nan.sum()} defined in one run only"
    return text


def _provenance(ds) -> str:
    """The git commit a run was made with (and when, for runs of versions that recorded it in the dataset)."""
    when = f" ({ds.attrs['created']})" if "created" in ds.attrs else ""
    return f"{ds.attrs.get('git_commit', '?')[:10]}{when}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--recompute", action="store_true",
                    help="recompute both runs' learning-curve metrics with this version's definitions first")
    args = ap.parse_args()
    old, new = _load(args.old), _load(args.new)
    if args.recompute:
        old, new = recompute(old), recompute(new)
    if old.attrs.get("protocol_name") != new.attrs.get("protocol_name"):
        print(f"different protocols: {old.attrs.get('protocol_name')!r} and {new.attrs.get('protocol_name')!r}")
        return 1
    dims = [d for d in old["search_phase"].dims]
    if dims != list(new["search_phase"].dims) or any(old.sizes[d] != new.sizes[d] for d in dims):
        print(f"different networks: {dict(old['search_phase'].sizes)} and {dict(new['search_phase'].sizes)}")
        return 1
    differ = [c for c in old["search_phase"].coords if c not in new.coords or not np.array_equal(old[c].values, new[c].values)]
    if differ:
        print(f"different networks: the runs' coordinates {differ} differ")
        return 1
    print(f"{old.attrs.get('protocol_name')}: {int(np.prod([old.sizes[d] for d in dims]))} networks; "
          f"old {_provenance(old)}, new {_provenance(new)}")
    metrics = [m for m in METRICS if m in old and m in new]
    for m in metrics:
        print(f"  {m:<24}{_per_network(old[m], new[m])}")
    groups = [d for d in dims if d != "seed"]
    print(f"\nmedians over seeds ({', '.join(groups)}): old -> new")
    med_old = {m: old[m].astype(float).median("seed") for m in metrics}
    med_new = {m: new[m].astype(float).median("seed") for m in metrics}
    stacked = med_old[metrics[0]].stack(group=groups)
    for key in stacked["group"].values:
        sel = dict(zip(groups, key if isinstance(key, tuple) else (key,)))
        label = ", ".join(str(v) for v in sel.values())
        parts = [f"{m} {float(med_old[m].sel(sel)):.4g} -> {float(med_new[m].sel(sel)):.4g}" for m in metrics
                 if m not in ("abrupt", "learned")]
        counts = [f"{m} {int(old[m].sel(sel).sum())} -> {int(new[m].sel(sel).sum())}" for m in ("abrupt", "learned") if m in metrics]
        print(f"  {label:<28}" + "; ".join(parts + counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
