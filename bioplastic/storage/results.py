"""The run's dataset ``OUT/results.nc``: one self-describing xarray Dataset, written atomically
through an explicitly chosen engine (h5netcdf).

Dims: ``condition``, ``seed``, ``iteration``, ``evaluation``, ``checkpoint`` and the parameter dims
(``unit``, ``unit_pre``, ``input``, ``output``, ...). Every variable carries ``units`` and ``long_name``.
"""
from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import h5py
import numpy as np
import xarray as xr

from ..networks import lstm_kernel
from .io import DamagedFileError, atomic_write

ENGINE = "h5netcdf"
#: global attribute holding the SHA-256 of the file's stored content (see :func:`content_digest`)
CHECKSUM_ATTR = "bioplastic_content_sha256"
#: HDF5 attributes holding object references (addresses, not content): left out of the digest
_REFERENCE_ATTRS = {"DIMENSION_LIST", "REFERENCE_LIST"}

#: (units, long_name) of every variable the results dataset can hold
VARIABLES: dict[str, tuple[str, str]] = {
    "loss": ("1", "training loss (task loss + lambda * TCR term)"),
    "task_loss": ("1", "task loss: masked mean squared error on the training batch"),
    "tcr_loss": ("1", "TCR term, the quantity lambda multiplies (unweighted): mean squared one-step change of the state in the window; with tcr.normalize variance divided by the state's variance in the window"),
    "lambda_tcr": ("1", "strength lambda(k) of the TCR loss term"),
    "grad_norm": ("1", "gradient norm before clipping"),
    "eta_F": ("1", "learning rate eta_F(k) of the TCR short-term plasticity (0: none)"),
    "stp_size": ("1", "mean |F| of the fast synaptic efficacies at trial end (NaN: no anti-Hebbian plasticity)"),
    "accuracy": ("1", "held-out accuracy (fraction of correct trials)"),
    "task_loss_output": ("1", "task loss of each output on its own scored steps, training batch (tasks with several outputs)"),
    "accuracy_output": ("1", "held-out accuracy of each output alone (tasks with several outputs; NaN where the task scores its outputs only together)"),
    "eval_loss": ("1", "held-out task loss"),
    "tcr_grad_ratio": ("1", "||grad(lambda * TCR term)|| / ||grad(task loss)|| over all parameters on the evaluated iteration's training batch (bptt with lambda > 0; else NaN)"),
    "tcr_grad_ratio_search": ("1", "median of tcr_grad_ratio over the evaluations before drop_onset (NaN: no drop onset or no ratio)"),
    "loss_smoothed": ("1", "task loss, centered moving average over training.loss_smoothing iterations"),
    "diverged": ("1", "network diverged (non-finite loss, gradient or weights)"),
    "diverged_at": ("iterations", "iteration at which the network diverged (NaN: never)"),
    "final_iteration": ("iterations", "iterations trained (less than planned when stopped once learned)"),
    "learned": ("1", "held-out accuracy reached the criterion"),
    "iterations_to_criterion": ("iterations", "first evaluated iteration with held-out accuracy >= criterion, met at 2 of the 3 evaluations from there (NaN: never)"),
    "final_accuracy": ("1", "held-out accuracy at the last evaluation (NaN: the network diverged)"),
    "plateau_start": ("iterations", "end of the initial transient: first iteration where the smoothed task loss settles (start of the plateau)"),
    "plateau_loss": ("1", "plateau level L_p: median smoothed task loss over the plateau (plateau_start until the loss leaves it for good)"),
    "plateau_noise": ("1", "the plateau's own noise: robust SD (1.4826 MAD) of the smoothed task loss about a line through the plateau"),
    "final_loss": ("1", "L_f: lowest smoothed task loss up to the metrics horizon (criterion + 5 smoothing windows, or the end)"),
    "drop_onset": ("iterations", "where the smoothed task loss leaves the plateau for good (last upward crossing before it is halfway down) of the level L_p - max(0.1 (L_p - L_f), 3 plateau_noise)"),
    "drop_departure": ("iterations", "width-free onset: where the smoothed task loss leaves the plateau's noise band, L_p - 3 plateau_noise, for good (at most drop_onset)"),
    "drop_time": ("iterations", "iteration of the steepest descent of the smoothed task loss within the drop"),
    "drop_width": ("iterations", "iterations from 10 % to 90 % of the drop from L_p to L_f"),
    "abruptness": ("1", "drop width / search phase (small: abrupt)"),
    "cliff_width": ("iterations", "the drop's steepest part: iterations during which the smoothed task loss's descent rate (over one window) stays at or above half its peak within the drop"),
    "cliff_fraction": ("1", "fraction of the drop (L_p - L_f) lost during the cliff (about 0.9 for one sigmoid step; less for a cliff followed by a slow tail or further steps)"),
    "search_phase": ("iterations", "iterations on the plateau: drop onset minus plateau_start"),
    "abrupt": ("1", "1: a search phase of at least one smoothing window, then a drop at most 1/3 as wide; 0: not (no plateau or no drop)"),
    **{f"output_{m}": (u, f"per output, on its own task-loss curve (task_loss_output): {d}")
       for m, (u, d) in (("plateau_start", ("iterations", "start of the plateau")),
                         ("plateau_loss", ("1", "plateau level")), ("plateau_noise", ("1", "plateau noise")),
                         ("final_loss", ("1", "lowest smoothed loss up to its horizon")),
                         ("drop_onset", ("iterations", "drop onset")), ("drop_departure", ("iterations", "width-free drop onset")),
                         ("drop_time", ("iterations", "steepest descent within the drop")),
                         ("drop_width", ("iterations", "10-90 % width of the drop")),
                         ("abruptness", ("1", "drop width / search phase")),
                         ("cliff_width", ("iterations", "the drop's steepest part (descent rate at or above half its peak)")),
                         ("cliff_fraction", ("1", "fraction of the drop lost during the cliff")), ("search_phase", ("iterations", "iterations on the plateau")),
                         ("abrupt", ("1", "1: a search phase, then an abrupt drop (as for the whole network)")),
                         ("iterations_to_criterion", ("iterations", "first evaluation where the output's own held-out accuracy reaches the criterion (the network's where the task scores outputs only together)")))},
    "curve_metrics_status": ("1", "0: learning-curve metrics computed; 1: none, the task loss is NaN from the first iteration; 2: the run is shorter than two smoothing windows (computed with the window cut to the run; not to be trusted)"),
    "abrupt_outputs": ("1", "number of outputs whose own task-loss curve drops abruptly (output_abrupt)"),
    "drop_stagger": ("iterations", "spread of the outputs' drop onsets: last minus first (NaN: fewer than two outputs with a drop)"),
    "itc_median": ("iterations", "median iterations to criterion over seeds (unlearned networks counted at the budget)"),
    "itc_ci_low": ("iterations", "bootstrap 95 % CI of itc_median, lower end"),
    "itc_ci_high": ("iterations", "bootstrap 95 % CI of itc_median, upper end"),
    "itc_difference": ("iterations", "median paired (same seed) difference of iterations to criterion, condition minus the first condition"),
    "itc_difference_ci_low": ("iterations", "bootstrap 95 % CI of itc_difference, lower end"),
    "itc_difference_ci_high": ("iterations", "bootstrap 95 % CI of itc_difference, upper end"),
    "itc_p_value": ("1", "two-sided Wilcoxon signed-rank p-value of the paired differences against the first condition"),
    "itc_n_pairs": ("1", "seeds in the paired comparison (neither network diverged)"),
    "acc_median": ("1", "median final held-out accuracy over seeds"),
    "acc_ci_low": ("1", "bootstrap 95 % CI of acc_median, lower end"),
    "acc_ci_high": ("1", "bootstrap 95 % CI of acc_median, upper end"),
    "acc_difference": ("1", "median paired (same seed) difference of final accuracy, condition minus the first condition"),
    "acc_difference_ci_low": ("1", "bootstrap 95 % CI of acc_difference, lower end"),
    "acc_difference_ci_high": ("1", "bootstrap 95 % CI of acc_difference, upper end"),
    "acc_p_value": ("1", "two-sided Wilcoxon signed-rank p-value of the paired accuracy differences against the first condition"),
    "acc_n_pairs": ("1", "seeds in the paired accuracy comparison"),
}
COORDS: dict[str, tuple[str, str]] = {
    "condition": ("", "experimental condition"),
    "seed": ("", "seed index (shared across conditions)"),
    "iteration": ("iterations", "training iteration (the loss of the batch of update k)"),
    "evaluation": ("iterations", "iteration at which held-out accuracy was measured"),
    "checkpoint": ("iterations", "iteration at which the weights were saved"),
}
PARAM_DIM_NAMES = {"unit": "recurrent unit (postsynaptic)", "unit_pre": "recurrent unit (presynaptic)",
                   "input": "input channel", "output": "output channel", "rank": "rank component",
                   "gate_unit": "LSTM gate x unit (i, f, g, o)"}


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("bioplastic", "numpy", "scipy", "torch", "xarray", "h5netcdf", "pydantic", "matplotlib"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def build_dataset(protocol, results) -> xr.Dataset:
    """Merge the groups' results into one dataset over (condition, seed)."""
    conds = protocol.condition_names
    S = protocol.config.seeds
    r0 = results[0]
    tr = protocol.conditions[0].training
    C = len(conds)
    iters = np.arange(tr.iterations)
    data: dict[str, np.ndarray] = {}

    def put(name, member_values, shape):
        arr = data.setdefault(name, np.full((C, S) + shape, np.nan))
        for r in results:
            for e, m in enumerate(r.members):
                arr[conds.index(m.name), m.seed_index] = member_values(r, e)

    for key in r0.history:
        put(key, lambda r, e, key=key: r.history[key][e], r0.history[key].shape[1:])
    for key in r0.eval_history:
        put(key, lambda r, e, key=key: r.eval_history[key][e], r0.eval_history[key].shape[1:])
    for key, arr in r0.weights.items():
        put(f"weight_{key}", lambda r, e, key=key: r.weights[key][e], arr.shape[1:])
    for key, arr in r0.buffers.items():
        put(f"buffer_{key}", lambda r, e, key=key: r.buffers[key][e], arr.shape[1:])
    put("diverged_at", lambda r, e: r.diverged_at[e], ())
    put("final_iteration", lambda r, e: r.final_iteration, ())

    ds = xr.Dataset(coords={"condition": conds, "seed": np.arange(S), "iteration": iters,
                            "evaluation": r0.eval_iterations.astype(np.int64),
                            "checkpoint": r0.checkpoint_iterations.astype(np.int64)})
    for key in list(r0.history) + list(r0.eval_history):
        dim = "iteration" if key in r0.history else "evaluation"
        ds[key] = (("condition", "seed", dim) + ("output",) * (data[key].ndim - 3), data[key])
    for key, dims in r0.param_dims.items():
        ds[f"weight_{key}"] = (("condition", "seed", "checkpoint") + dims, data[f"weight_{key}"])
    for key, dims in r0.buffer_dims.items():
        ds[f"buffer_{key}"] = (("condition", "seed") + dims, data[f"buffer_{key}"])
    ds["diverged_at"] = (("condition", "seed"), data["diverged_at"])
    ds["diverged"] = np.isfinite(ds["diverged_at"])
    ds["final_iteration"] = (("condition", "seed"), data["final_iteration"].astype(np.int64))
    describe(ds, protocol)
    ds.attrs["device"] = devices_of([getattr(r, "device", "cpu") for r in results])
    return ds


def devices_of(labels) -> str:
    """The ``device`` attribute: where the networks trained (``cpu``, ``cuda:0 (NAME)``; several,
    comma-separated, when units trained on different devices, e.g. ``auto`` on a run resumed elsewhere)."""
    return ", ".join(sorted({str(x) for x in labels})) or "cpu"


def describe(ds: xr.Dataset, protocol) -> None:
    """Attach units, long names and provenance (protocol text, seed, versions, git commit). Nothing
    about this particular writing (no time stamp, no timings): a run resumed after an interruption
    writes the same file, byte for byte, as one that ran straight through."""
    for name in ds.data_vars:
        units, long = VARIABLES.get(name, (None, None))
        if name.startswith("weight_"):
            units, long = "1", f"checkpointed parameter {name[len('weight_'):]}"
        if name.startswith("buffer_"):
            units, long = "1", f"fixed network buffer {name[len('buffer_'):]} (drawn at initialisation, never trained)"
        ds[name].attrs.update(units=units, long_name=long)
    for name, (units, long) in COORDS.items():
        ds[name].attrs.update(units=units, long_name=long)
    for dim, long in PARAM_DIM_NAMES.items():
        if dim in ds.dims:
            ds.coords[dim] = np.arange(ds.sizes[dim])
            ds[dim].attrs.update(units="", long_name=long)
    ds.attrs.update(
        title=f"bioplastic run: {protocol.name}",
        protocol_name=protocol.name,
        protocol=protocol.text,
        root_seed=int(protocol.config.seed),
        versions=json.dumps(package_versions()),
        git_commit=git_commit(),
        Conventions="CF-1.8",
    )
    if any(c.model_kind == "lstm" for c in protocol.conditions):
        # the compiled kernel and the eager code differ in their last bits (lstm_kernel's docstring): which
        # one trained the networks is part of what reproduces them
        ds.attrs["lstm_kernel"] = lstm_kernel.status()


def _feed_value(h, value) -> None:
    """Hash one stored value (an attribute or a variable's data) unambiguously: dtype, shape, bytes."""
    a = np.asarray(value)
    if a.dtype.kind in "OSU":  # strings (variable length or fixed): each one length-prefixed
        items = [x.encode() if isinstance(x, str) else bytes(x) if isinstance(x, bytes | np.bytes_) else repr(x).encode()
                 for x in a.ravel().tolist()]
        h.update(f"str{a.shape}:".encode())
        for x in items:
            h.update(len(x).to_bytes(8, "little") + x)
    else:
        h.update(f"{a.dtype.str}{a.shape}:".encode())
        h.update(np.ascontiguousarray(a).tobytes())


def content_digest(f: h5py.File) -> str:
    """SHA-256 over what an HDF5 file stores: every group's and dataset's attributes (all of them:
    the protocol text, units, long names, ...) and every dataset's values, read as stored (no
    netCDF decoding, so it does not depend on the xarray version). Reading a dataset also checks its
    fletcher32 checksums. Leaves out :data:`CHECKSUM_ATTR` and attributes of object references."""
    h = hashlib.sha256()
    objects: list[tuple[str, h5py.HLObject]] = [("/", f)]
    f.visititems(lambda name, obj: objects.append((name, obj)))
    for name, obj in sorted(objects, key=lambda t: t[0]):
        h.update(f"\0{type(obj).__name__}:{name}\0".encode())
        for key in sorted(obj.attrs):
            if key == CHECKSUM_ATTR or key in _REFERENCE_ATTRS:
                continue
            h.update(f"@{key}=".encode())
            _feed_value(h, obj.attrs[key])
        if isinstance(obj, h5py.Dataset) and obj.dtype.kind != "V":
            try:
                data = obj[()]
            except OSError as exc:  # a fletcher32 mismatch reads as "filter returned failure"
                raise OSError(f"variable {name!r} cannot be read, e.g. its checksum does not match ({exc})") from exc
            _feed_value(h, data)
    return h.hexdigest()


def _checked_encoding(ds: xr.Dataset) -> dict[str, dict]:
    """fletcher32 (HDF5's per-chunk checksum; needs a chunked layout, which h5py picks) for every
    numeric or boolean variable with at least one dimension; scalars and strings cannot take a
    filter and are covered by the content digest only."""
    enc = {}
    for name, var in ds.variables.items():
        if var.ndim and var.dtype.kind in "biufc" and var.size:
            keep = {k: v for k, v in var.encoding.items() if k not in ("contiguous", "chunksizes", "preferred_chunks")}
            enc[name] = {**keep, "fletcher32": True}
    return enc


def write_dataset(ds: xr.Dataset, path: Path) -> None:
    """Write ``ds`` atomically with h5netcdf: numeric variables with fletcher32 checksums, and the
    SHA-256 of the stored content (:func:`content_digest`) in the global attribute
    :data:`CHECKSUM_ATTR`, so that :func:`read_dataset` refuses a damaged file."""
    ds = ds.copy(deep=False)
    ds.attrs.pop(CHECKSUM_ATTR, None)
    for var in ds.variables.values():  # read back from a file: xarray writes the coordinates attribute itself
        var.encoding = {k: v for k, v in var.encoding.items() if k != "coordinates"}
    enc = _checked_encoding(ds)  # replaces these variables' encodings (a layout read from a file is chosen afresh)

    def write(p: Path) -> None:
        ds.to_netcdf(p, engine=ENGINE, encoding=enc)
        with h5py.File(p, "r+") as f:
            f.attrs[CHECKSUM_ATTR] = "sha256:" + content_digest(f)

    atomic_write(Path(path), write)


def verify_dataset(path: Path) -> bool:
    """Check a dataset file's checksums; raise :class:`DamagedFileError` when it is unreadable or
    they do not match. Returns False for a file without the content digest (written by an older
    version of bioplastic: nothing to check it against), True for a verified one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(path)
    try:
        with h5py.File(path, "r") as f:
            stored = f.attrs.get(CHECKSUM_ATTR)
            if stored is None:
                filtered = []
                f.visititems(lambda name, obj: filtered.append(name) if isinstance(obj, h5py.Dataset) and obj.fletcher32 else None)
                if filtered:
                    raise DamagedFileError(path, f"its checksum attribute {CHECKSUM_ATTR} is missing, yet its variables "
                                                 f"carry checksums ({', '.join(filtered[:3])}): the file was altered")
                return False
            stored = stored.decode() if isinstance(stored, bytes) else str(stored)
            got = "sha256:" + content_digest(f)
    except DamagedFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - h5py/HDF5 errors of truncated or garbled files, fletcher32 failures
        raise DamagedFileError(path, f"unreadable ({type(exc).__name__}: {exc})") from exc
    if got != stored:
        raise DamagedFileError(path, f"wrong checksum: its content hashes to {got[:19]}..., the file records "
                                     f"{stored[:19]}... (data or attributes were altered)")
    return True


def read_dataset(path: Path) -> xr.Dataset:
    """Read a dataset written by :func:`write_dataset`, verified (:func:`verify_dataset`) and
    loaded into memory at once; :class:`DamagedFileError` for any damage or read failure. A file
    without checksums (an older bioplastic) is read unverified. The checksum attribute is not in
    the returned dataset (it equals the one written)."""
    path = Path(path)
    verify_dataset(path)
    try:
        with xr.open_dataset(path, engine=ENGINE) as ds:
            ds = ds.load()
    except Exception as exc:  # noqa: BLE001 - any read failure of an existing file is damage
        raise DamagedFileError(path, f"unreadable ({type(exc).__name__}: {exc})") from exc
    ds.attrs.pop(CHECKSUM_ATTR, None)
    return ds


def combine_points(protocol, datasets: list[xr.Dataset]) -> xr.Dataset:
    """Merge per-point datasets of a sweep: every grid field becomes a dim (named by its dotted path),
    a zip becomes the dim ``zip`` with one coordinate per zipped field. Without a sweep: the one dataset."""
    if protocol.sweep is None:
        ds = datasets[0]
        ds.attrs["sweep_dims"] = ""
        return ds
    devices = devices_of(label.strip() for d in datasets for label in d.attrs.get("device", "cpu").split(", "))
    grid = list(protocol.sweep.grid)
    zipped = protocol.sweep.zip
    ds = xr.concat(datasets, dim="sweep_point", join="outer", combine_attrs="drop_conflicts", data_vars="all",
                   coords="minimal", compat="override")
    index_names = grid + (["zip"] if zipped else [])
    coords = {k: ("sweep_point", [p.coords[k] for p in protocol.points]) for k in grid}
    if zipped:
        n_zip = len(next(iter(zipped.values())))
        coords["zip"] = ("sweep_point", [i % n_zip for i in range(len(protocol.points))])
    ds = ds.assign_coords(coords)
    if len(index_names) == 1:
        ds = ds.swap_dims({"sweep_point": index_names[0]})
    else:
        ds = ds.set_index(sweep_point=index_names).unstack("sweep_point")
    for k, values in zipped.items():
        ds.coords[k] = ("zip", list(values))
    order = index_names + [d for d in ds.dims if d not in index_names]
    ds = ds.transpose(*order)
    describe(ds, protocol)
    for k in grid:
        ds[k].attrs.update(units="", long_name=f"swept protocol field {k}")
    for k in zipped:
        ds[k].attrs.update(units="", long_name=f"swept protocol field {k} (zipped)")
    if zipped:
        ds["zip"].attrs.update(units="", long_name="index of the zipped sweep values")
    ds.attrs["sweep_dims"] = ",".join(index_names)
    ds.attrs["device"] = devices
    return ds


def point_values(ds: xr.Dataset, index: dict) -> dict:
    """The swept fields' values (dotted path -> value) at one point of a sweep dataset (``index``: an
    isel indexer of its sweep dims, as :func:`sweep_points` gives), zipped fields included."""
    dims = set(index)
    return {c: ds[c].isel({d: i for d, i in index.items() if d in ds[c].dims}).item()
            for c in ds.coords if ds[c].dims and set(ds[c].dims) <= dims and c not in ("zip",)}


def matching_point(ds: xr.Dataset, index: dict, points: list):
    """The protocol point (``Protocol.points``) a sweep dataset holds at ``index``: matched by the swept
    values, not by position (a grid of several fields is stored with each field's values sorted).
    ValueError unless exactly one point matches."""
    here = point_values(ds, index)
    match = [pt for pt in points if all(k in here and here[k] == v for k, v in pt.coords.items())]
    if len(match) != 1:
        raise ValueError(f"the sweep point {here} matches {len(match)} points of the run's protocol")
    return match[0]


def sweep_points(ds: xr.Dataset) -> list[tuple[dict, str]]:
    """Every point of a sweep as (isel indexer, label). A zipped point is labelled by the zipped
    fields whose values differ from the first zipped point (its first point is "reference")."""
    dims = [d for d in ds.attrs.get("sweep_dims", "").split(",") if d]
    zipped = [k for k in ds.coords if k not in ds.dims and ds[k].dims == ("zip",)] if "zip" in dims else []
    points = []
    for idx in np.ndindex(*[ds.sizes[d] for d in dims]):
        parts = []
        for d, i in zip(dims, idx):
            if d == "zip":
                diff = [f"{k.split('.')[-1]}={ds[k].values[i]}" for k in zipped if ds[k].values[i] != ds[k].values[0]]
                parts.append(", ".join(diff) or "reference")
            else:
                parts.append(f"{d.split('.')[-1]}={ds[d].values[i]}")
        points.append((dict(zip(dims, idx)), "; ".join(parts)))
    return points
