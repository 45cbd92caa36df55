"""Readers of recorded data into a recording (:mod:`bioplastic.analysis.recording`): firing rates
(trial, time, unit) with trial labels and period boundaries.

- :func:`read_netcdf_recording`: a netCDF file that already holds a recording (``rate`` with dims
  trial, time, unit; ``time`` in ms or s; trial coordinates ``<period>_start`` / ``<period>_stop``,
  ``choice``, ``evidence``, optionally ``target``).
- :func:`read_nwb_recording` (optional: ``pip install 'bioplastic[nwb]'``, pynwb): an NWB file's
  **Units** table (spike times, s) binned into rates (spikes/s) in bins of ``bin_ms`` from each
  trial's start, and its **trials** table: ``start_time``, ``stop_time``, ``choice``, ``evidence``,
  optionally ``target``, and period boundaries ``<period>_start_time`` (and ``<period>_stop_time``;
  without one a period ends where the next period starts, the last at ``stop_time``). The time from
  ``start_time`` to the first period is the ``fixation`` period (the pre-stimulus baseline) unless
  the table has one. Columns with other names are mapped by ``columns`` (``{"evidence":
  "signed_coherence", "stimulus_start_time": "cue_on"}``). Bins that end after a trial's
  ``stop_time`` are NaN. ``choice`` / ``target`` may be numbers or the strings ``left`` / ``right``
  (read as -1 / +1).
- :func:`read_recording`: either, by the file's suffix (``.nwb``; else netCDF).
- :func:`recording_from_spikes`: the NWB reader's binning of a trials table and spike times held in
  memory (no pynwb needed).

Every reader checks what it reads and raises :class:`~bioplastic.analysis.recording.RecordingError`
naming what is missing or inconsistent: no trials table, missing columns, units without spikes,
trials shorter than their periods, spike times outside every trial (a different time base).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from ..analysis.recording import RecordingError, check_recording
from .results import ENGINE

NWB_HINT = "pip install 'bioplastic[nwb]' (pynwb)"
#: default bin width of the NWB reader, ms
DEFAULT_BIN_MS = 20.0
#: the trial columns the NWB reader needs, and the optional ones
REQUIRED_COLUMNS = ("start_time", "stop_time", "choice", "evidence")
OPTIONAL_COLUMNS = ("target",)
#: string codings of a choice that the readers accept
CHOICE_STRINGS = {"left": -1.0, "right": 1.0}


def read_recording(path, *, columns: dict[str, str] | None = None, bin_ms: float = DEFAULT_BIN_MS,
                   units: list | None = None) -> xr.Dataset:
    """A recording from ``path``: NWB for a ``.nwb`` file (:func:`read_nwb_recording`), else a
    netCDF recording (:func:`read_netcdf_recording`); ``columns`` maps the names the reader expects
    to the file's own (trial columns, or the netCDF's variables)."""
    path = Path(path)
    if path.suffix.lower() == ".nwb":
        return read_nwb_recording(path, columns=columns, bin_ms=bin_ms, units=units)
    if units is not None:
        raise RecordingError("units= selects units of an NWB file's Units table; for a netCDF recording select them with .sel(unit=...)")
    return read_netcdf_recording(path, columns=columns)


def read_netcdf_recording(path, *, columns: dict[str, str] | None = None) -> xr.Dataset:
    """A recording stored as netCDF (module docstring), loaded and checked; ``columns``: expected
    name -> the file's name, e.g. ``{"rate": "firing_rate", "evidence": "coh_signed"}``."""
    path = Path(path)
    _is_file(path)
    try:
        with xr.open_dataset(path, engine=ENGINE) as ds:
            rec = ds.load()
    except (OSError, ValueError) as exc:
        raise RecordingError(f"{path} is not a readable netCDF file ({type(exc).__name__}: {exc}); a recording is an NWB file "
                             "(suffix .nwb) or a netCDF recording of rates (docs/compare.md)") from exc
    if columns:
        missing = [v for v in columns.values() if v not in rec.variables]
        if missing:
            raise RecordingError(f"{path}: mapped names {missing} are not in the file; it has {sorted(map(str, rec.variables))}")
        rec = rec.rename({v: k for k, v in columns.items()})
    for label in ("choice", "target"):
        if label in rec.variables:
            rec = rec.assign_coords({label: ("trial", _choice_values(rec[label].values, label, str(path)))})
    for name in [str(k) for k in rec.data_vars if str(k) != "rate" and rec[k].dims == ("trial",)]:
        rec = rec.set_coords(name)  # trial labels written as variables
    try:
        check_recording(rec)
    except RecordingError as exc:
        raise RecordingError(f"{path}: {exc}") from exc
    return rec


def _is_file(path: Path) -> None:
    if path.is_dir():
        raise RecordingError(f"{path} is a folder; the recording is one file: an NWB file (.nwb) or a netCDF recording of rates")
    if not path.is_file():
        raise FileNotFoundError(f"no recording at {path}")


def _choice_values(v, label: str, where: str) -> np.ndarray:
    """Numbers, or the strings left / right as -1 / +1."""
    a = np.asarray(v)
    if a.dtype.kind in "biuf":
        return a.astype(float)
    s = np.char.lower(np.char.strip(a.astype(str)))
    bad = ~np.isin(s, list(CHOICE_STRINGS))
    if bad.any():
        raise RecordingError(f"{where}: '{label}' must be numbers or the strings left / right; got {sorted(set(s[bad].tolist()))[:5]}")
    return np.array([CHOICE_STRINGS[x] for x in s])


def _pynwb():
    try:
        import pynwb
    except ImportError as exc:
        raise RecordingError(f"reading NWB files needs pynwb: {NWB_HINT}") from exc
    return pynwb


def read_nwb_recording(path, *, columns: dict[str, str] | None = None, bin_ms: float = DEFAULT_BIN_MS,
                       units: list | None = None) -> xr.Dataset:
    """A recording from an NWB file (module docstring): spike times binned into rates (spikes/s)
    in bins of ``bin_ms`` from each trial's ``start_time``; ``columns``: expected name -> the trials
    table's column; ``units``: the ids of the Units table to use (default: all)."""
    path = Path(path)
    _is_file(path)
    if not (np.isfinite(bin_ms) and bin_ms > 0):
        raise RecordingError(f"bin_ms must be a positive number of milliseconds; got {bin_ms}")
    pynwb = _pynwb()
    where = str(path)
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        nwb = io.read()
        if nwb.trials is None or len(nwb.trials) == 0:
            raise RecordingError(f"{where}: the NWB file has no trials table (nwb.trials): the measures need each trial's start_time, "
                                 "stop_time, choice, evidence and period boundaries (<period>_start_time)")
        if nwb.units is None or len(nwb.units) == 0:
            raise RecordingError(f"{where}: the NWB file has no Units table (nwb.units) with spike times")
        table = {str(c): np.asarray(nwb.trials[c].data[:]) for c in nwb.trials.colnames}
        table["start_time"] = np.asarray(nwb.trials["start_time"].data[:], float)
        table["stop_time"] = np.asarray(nwb.trials["stop_time"].data[:], float)
        ids = np.asarray(nwb.units.id.data[:])
        if "spike_times" not in nwb.units.colnames:
            raise RecordingError(f"{where}: the Units table has no spike_times column")
        chosen = range(len(ids)) if units is None else [_unit_index(ids, u, where) for u in units]
        spikes = {int(ids[i]): np.asarray(nwb.units.get_unit_spike_times(i), float) for i in chosen}
    return recording_from_spikes(table, spikes, columns or {}, float(bin_ms), where)


def _unit_index(ids, u, where) -> int:
    hit = np.flatnonzero(ids == u)
    if not len(hit):
        raise RecordingError(f"{where}: unit id {u!r} is not in the Units table; its ids are {ids[:10].tolist()}{' ...' if len(ids) > 10 else ''}")
    return int(hit[0])


def recording_from_spikes(table: dict[str, np.ndarray], spikes: dict[int, np.ndarray], columns: dict[str, str] | None = None,
                          bin_ms: float = DEFAULT_BIN_MS, where: str = "the recording") -> xr.Dataset:
    """The recording of a trials table (column -> (trial,) values, NWB's column names, times in s)
    and spike times (s) per unit id, binned as :func:`read_nwb_recording` does (without pynwb);
    ``where`` names the source in error messages."""
    columns = columns or {}
    missing_mapped = [f"{k} -> {v}" for k, v in columns.items() if v not in table]
    if missing_mapped:
        raise RecordingError(f"{where}: mapped columns {missing_mapped} are not in the trials table; it has {sorted(table)}")
    t = dict(table)
    for ours, theirs in columns.items():
        t[ours] = table[theirs]
    missing = [c for c in REQUIRED_COLUMNS if c not in t]
    if missing:
        raise RecordingError(f"{where}: the trials table lacks the columns {missing} (it has {sorted(table)}); "
                             f"map other names with columns={{'{missing[0]}': 'your_column', ...}} (--column {missing[0]}=your_column)")
    start, stop = np.asarray(t["start_time"], float), np.asarray(t["stop_time"], float)
    B = len(start)
    bad = ~(np.isfinite(start) & np.isfinite(stop) & (stop > start))
    if bad.any():
        raise RecordingError(f"{where}: trial {int(np.flatnonzero(bad)[0])} has start_time {start[bad][0]:g} s and stop_time "
                             f"{stop[bad][0]:g} s; every trial needs stop_time > start_time")
    names = [c[:-len("_start_time")] for c in t if c.endswith("_start_time") and c != "start_time"]
    if not names:
        raise RecordingError(f"{where}: the trials table has no period boundaries: columns <period>_start_time (e.g. "
                             f"stimulus_start_time, delay_start_time) and optionally <period>_stop_time; it has {sorted(table)}")
    orphans = [c for c in t if c.endswith("_stop_time") and c != "stop_time" and f"{c[:-len('_stop_time')]}_start_time" not in t]
    if orphans:
        c = orphans[0]
        raise RecordingError(f"{where}: the trials table has {c} but no {c[:-len('_stop_time')]}_start_time (it has {sorted(table)}); "
                             f"a period needs its start: map the column that holds it with --column "
                             f"{c[:-len('_stop_time')]}_start_time=your_column (columns={{...}} in Python)")
    onsets = {n: np.asarray(t[f"{n}_start_time"], float) for n in names}
    names.sort(key=lambda n: float(np.nanmedian(onsets[n])))
    bounds: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for i, n in enumerate(names):
        end = (np.asarray(t[f"{n}_stop_time"], float) if f"{n}_stop_time" in t
               else onsets[names[i + 1]] if i + 1 < len(names) else stop)
        bounds[n] = (onsets[n], end)
    if "fixation" not in bounds:
        bounds = {"fixation": (start, onsets[names[0]]), **bounds}
    for n, (s, e) in bounds.items():
        for what, v in (("start", s), ("stop", e)):
            nan = ~np.isfinite(v)
            if nan.any():
                raise RecordingError(f"{where}: the {n} period's {what} is missing (NaN) in trial {int(np.flatnonzero(nan)[0])} "
                                     f"({int(nan.sum())} trials)")
        short = (s < start - 1e-9) | (e > stop + 1e-9) | (e < s)
        if short.any():
            b = int(np.flatnonzero(short)[0])
            raise RecordingError(f"{where}: trial {b} (start_time {start[b]:g} s, stop_time {stop[b]:g} s) is shorter than its {n} "
                                 f"period ({s[b]:g} s to {e[b]:g} s), or the period ends before it starts ({int(short.sum())} trials)")
    empty = [u for u, sp in spikes.items() if len(sp) == 0]
    if empty:
        raise RecordingError(f"{where}: units {empty[:10]} have no spikes; leave them out with units=[...] (--units)")
    lo, hi = start.min(), stop.max()
    outside = [u for u, sp in spikes.items() if not ((sp >= lo) & (sp < hi)).any()]
    if outside:
        u = outside[0]
        raise RecordingError(f"{where}: no spike of units {outside[:10]} falls within the trials ({lo:g} s to {hi:g} s; unit {u}'s spikes "
                             f"lie at {spikes[u].min():g} to {spikes[u].max():g} s): spike times and the trials table must share one time "
                             "base (seconds from the session's start)")
    dur = stop - start
    bin_s = bin_ms / 1000.0
    T = int(np.floor(dur.max() / bin_s + 1e-9))
    if T < 2:
        raise RecordingError(f"{where}: the longest trial ({dur.max() * 1000:g} ms) holds fewer than 2 bins of {bin_ms:g} ms")
    edges = np.arange(T + 1) * bin_s
    unit_ids = list(spikes)
    rate = np.full((B, T, len(unit_ids)), np.nan)
    n_full = np.floor(dur / bin_s + 1e-9).astype(int)  # bins that end by the trial's stop_time
    inside = np.arange(T)[None, :] < n_full[:, None]
    for j, u in enumerate(unit_ids):
        # spikes in [start + edge_k, start + edge_k+1) of every trial at once: counts of the sorted spike times
        counts = np.diff(np.searchsorted(np.sort(spikes[u]), start[:, None] + edges[None, :], side="left"), axis=1)
        rate[:, :, j] = np.where(inside, counts / bin_s, np.nan)
    # a period ends at the last whole bin of its trial (a bin that the trial's stop_time cuts is not measured)
    bounds = {n: (np.minimum(s, start + n_full * bin_s), np.minimum(e, start + n_full * bin_s)) for n, (s, e) in bounds.items()}
    coords: dict = {"trial": np.arange(B), "unit": ("unit", np.asarray(unit_ids), {"long_name": "unit id of the NWB Units table"}),
                    "time": ("time", edges[:-1] * 1000.0, {"units": "ms", "long_name": "time since the trial's start_time (bin start)"})}
    for n, (s, e) in bounds.items():
        coords[f"{n}_start"] = ("trial", (s - start) * 1000.0, {"units": "ms", "long_name": f"start of the {n} period"})
        coords[f"{n}_stop"] = ("trial", (e - start) * 1000.0, {"units": "ms", "long_name": f"end of the {n} period"})
    coords["choice"] = ("trial", _choice_values(t["choice"], "choice", where))
    coords["evidence"] = ("trial", np.asarray(t["evidence"], float))
    if "target" in t:
        coords["target"] = ("trial", _choice_values(t["target"], "target", where))
    rec = xr.Dataset({"rate": (("trial", "time", "unit"), rate, {"units": "1/s", "long_name": "firing rate (spikes per second)"})},
                     coords=coords, attrs={"source": where, "bin_ms": bin_ms})
    try:
        check_recording(rec)
    except RecordingError as exc:
        raise RecordingError(f"{where}: {exc}") from exc
    return rec
