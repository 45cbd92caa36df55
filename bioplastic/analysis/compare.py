"""The model's predictions beside a recording: every measure of a recording
(:mod:`bioplastic.analysis.recording`) on the data and in each condition of a finished run
(``predictions.nc``), on one ``source`` coordinate (``data``, then the conditions), and which
conditions the data is consistent with.

**Values** (dim ``statistic``: estimate, ci_low, ci_high). Data: the measure on the recording with a
95 % percentile-bootstrap CI (:data:`N_BOOT_DATA` resamples; stream ``numpy.random.default_rng
(seed)``) - over **units** for the measures of units (fractions of units, the median |slope|, the
median timescale), over **trials** for the measures of trials (the psychometric fit, refitted on each
resample; the population ramp and the participation ratio, recomputed on each resample); the
accuracy's CI is Clopper-Pearson. Model: the median over seeds with its 95 % bootstrap CI
(``<m>_summary`` of predictions.nc); ``<m>_networks`` keeps every network's value (``condition,
seed``) and ``network_range`` their minimum and maximum.

**Grouping** (the choice-resolved measures: build-up, decay, opposite ramps, the population ramp).
Data with ``target`` are grouped by it, as the model's predictions group their trials by the
rewarded side; data without it are grouped by the subject's choice, and the model's values are then
those with the networks' trials grouped by their own choices (``<m>_by_choice`` of predictions.nc;
an older predictions.nc without them keeps the rewarded side). ``data_grouped_by`` and
``model_grouped_by`` say which.

**Consistency** (``consistent``: source x measure; 1, 0, or -1 where not compared). A condition is
consistent with the data on a measure when the data's 95 % CI overlaps the range of that condition's
networks (min to max over seeds): a network trained that way could have produced the data's value.
Only measures whose scale does not depend on the recording are compared (:data:`COMPARED`:
fractions of units, timescales in ms, the lapse rate, the accuracy); measures in rate units (slopes),
the participation ratio (it grows with the number of units) and the psychometric slope and bias (in
the evidence's units) are shown side by side but not judged.
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from .geometry import participation_ratio
from .measures import Window, choice_resolved_ramps
from .psychometric import PsychometricFit, fit_psychometric
from .recording import (
    BY_CHOICE,
    GROUPED_MEASURES,
    RECORDING_MEASURES,
    baseline_level,
    grouping,
    period_steps,
    right_choices,
    time_step_ms,
    windows,
)
from .statistics import ALPHA, CI_LEVEL, N_BOOT, bootstrap_ci, clopper_pearson

#: bootstrap resamples of the data's CIs (units are cheap; trials refit the psychometric function)
N_BOOT_DATA = 1000
N_BOOT_TRIALS = 200
#: the measures compared between data and model (scale-free); the others are shown, not judged
COMPARED = ("fraction_ramping", "fraction_ramping_uncorrected", "fraction_buildup", "fraction_decay", "fraction_opposite_ramps",
            "timescale_median_ms", "fraction_timescale_fitted", "fraction_timescale_long", "psychometric_lapse", "accuracy")
#: what each measure tells an experimentalist (the report's table)
MEANING = {
    "fraction_ramping": "units whose rate changes steadily through the {ramp} (any direction, pooled over choices)",
    "fraction_ramping_uncorrected": "the same without correcting for testing many units (as many papers report it)",
    "median_abs_ramp_slope": "how fast a typical unit's rate changes through the {ramp} (rate units per second)",
    "fraction_buildup": "units that build up activity through the {ramp} for their preferred choice (away from their pre-stimulus level)",
    "fraction_decay": "units whose activity relaxes back towards their pre-stimulus level through the {ramp}",
    "fraction_opposite_ramps": "units that ramp up for one choice and down for the other",
    "population_ramp_slope": "how fast the population moves along its choice axis through the {ramp}",
    "population_ramp_p_value": "p-value of that population ramp",
    "timescale_median_ms": "median intrinsic timescale of single units in the input-free {timescale} (autocorrelation across trials)",
    "fraction_timescale_fitted": "units with a measurable intrinsic timescale",
    "fraction_timescale_long": "units that hold a trial-specific level through the {timescale} (timescale longer than measurable)",
    "participation_ratio": "dimensionality of the population activity (grows with the number of units)",
    "accuracy": "fraction of trials with the rewarded choice",
    "psychometric_slope": "sensitivity: slope of P(right) against the signed evidence",
    "psychometric_bias": "bias: the evidence at which both choices are equally likely",
    "psychometric_lapse": "lapse rate: choices that ignore strong evidence",
}
UNIT_LEVEL = ("fraction_ramping", "fraction_ramping_uncorrected", "median_abs_ramp_slope", "fraction_buildup", "fraction_decay",
              "fraction_opposite_ramps", "timescale_median_ms", "fraction_timescale_fitted", "fraction_timescale_long")


def _unit_statistic(m: xr.Dataset, name: str):
    """(per-unit values, statistic) whose statistic over units is the measure ``name``."""
    st = m["timescale_status"].values
    p = m["ramp_p_value"].values
    fin = np.isfinite(p)
    if name == "fraction_ramping":
        return m["ramping"].values[fin].astype(float), np.mean
    if name == "fraction_ramping_uncorrected":
        return (p[fin] < ALPHA).astype(float), np.mean
    if name == "median_abs_ramp_slope":
        return np.abs(m["ramp_slope"].values[fin]), np.median
    if name == "fraction_buildup":
        return (m["ramp_class"].values == 1).astype(float), np.mean
    if name == "fraction_decay":
        return (m["ramp_class"].values == 2).astype(float), np.mean
    if name == "fraction_opposite_ramps":
        return m["ramp_opposite"].values.astype(float), np.mean
    if name == "timescale_median_ms":
        return m["timescale_ms"].values[st == 0], np.median
    if name == "fraction_timescale_fitted":
        return (st == 0).astype(float), np.mean
    return (st == 3).astype(float), np.mean


def _percentile_ci(boots) -> tuple[float, float]:
    b = np.asarray(boots, float)
    b = b[np.isfinite(b)]
    if not len(b):
        return np.nan, np.nan
    a = (1 - CI_LEVEL) / 2
    return float(np.quantile(b, a)), float(np.quantile(b, 1 - a))


def data_intervals(rec: xr.Dataset, m: xr.Dataset, seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """measure -> (estimate, ci_low, ci_high) of the recording ``rec`` whose measures are ``m``
    (:func:`~bioplastic.analysis.recording.measure_recording`): CIs over units or trials (module docstring)."""
    rng = np.random.default_rng(seed)
    out: dict[str, tuple[float, float, float]] = {}
    for k in RECORDING_MEASURES:
        est = float(m[k])
        if not np.isfinite(est):
            out[k] = (np.nan, np.nan, np.nan)
            continue
        if k in UNIT_LEVEL and (k != "fraction_opposite_ramps" or "ramp_opposite" in m):
            v, stat = _unit_statistic(m, k)
            boots = stat(v[rng.integers(0, len(v), (N_BOOT_DATA, len(v)))], axis=1) if len(v) else []
            out[k] = (est, *_percentile_ci(boots))
        else:
            out[k] = (est, np.nan, np.nan)
    B = rec.sizes["trial"]
    if np.isfinite(out["accuracy"][0]):
        ok = np.isfinite(np.asarray(rec["choice"].values, float)) & np.isfinite(np.asarray(rec["target"].values, float))
        k = int((rec["choice"].values[ok] == rec["target"].values[ok]).sum())
        out["accuracy"] = (out["accuracy"][0], *clopper_pearson(k, int(ok.sum())))
    right = right_choices(rec)
    if right is not None and "evidence" in rec.coords and int(m["psychometric_fit_status"]) in (0, 2):
        ev = np.asarray(rec["evidence"].values, float)
        full = PsychometricFit(float(m["psychometric_slope"]), float(m["psychometric_bias"]), float(m["psychometric_lapse"]),
                               int(m["psychometric_fit_status"]), B, np.nan)
        fits = [fit_psychometric(ev[i], right[i], start=full) for i in rng.integers(0, B, (N_BOOT_TRIALS, B))]
        for name, attr in (("psychometric_slope", "slope"), ("psychometric_bias", "bias"), ("psychometric_lapse", "lapse")):
            out[name] = (out[name][0], *_percentile_ci([getattr(f, attr) for f in fits]))
    rate = np.asarray(rec["rate"].values, float)
    dt = time_step_ms(rec)
    periods = period_steps(rec)
    _, ramp_w, _ = windows(periods, rate.shape[1], m.attrs.get("ramp_period"), "none")
    group = grouping(rec)
    pop, pr = [], []
    base = baseline_level(rate, periods)
    for i in rng.integers(0, B, (N_BOOT_TRIALS, B)):
        pr.append(participation_ratio(rate[i]))
        if group is not None and np.isfinite(out["population_ramp_slope"][0]):
            g = rec[group].values[i]
            if len(np.unique(g)) >= 2:
                w = Window(ramp_w.name, ramp_w.start_b[i], ramp_w.stop_b[i])
                pop.append(choice_resolved_ramps(rate[i], w, g, base, dt)["population_ramp_slope"])
    out["participation_ratio"] = (out["participation_ratio"][0], *_percentile_ci(pr))
    if pop:
        out["population_ramp_slope"] = (out["population_ramp_slope"][0], *_percentile_ci(pop))
    return out


def model_grouping(pred: xr.Dataset, data_group: str) -> str:
    """How the model's choice-resolved measures group trials beside data grouped by ``data_group``:
    by the network's own choice (``<m>_by_choice`` of predictions.nc) when the data is grouped by the
    subject's choice and the predictions have them, else by the rewarded side (``target``)."""
    if data_group == "choice" and all(f"{k}{BY_CHOICE}" in pred for k in GROUPED_MEASURES):
        return "choice"
    return "target"


def compare_dataset(pred: xr.Dataset, rec: xr.Dataset, m: xr.Dataset, seed: int = 0) -> xr.Dataset:
    """compare.nc (module docstring): the data's measures ``m`` of the recording ``rec`` beside the
    conditions of the predictions ``pred``."""
    conds = [str(c) for c in pred["condition"].values]
    sources = ["data"] + conds
    data = data_intervals(rec, m, seed)
    ds = xr.Dataset(coords={"source": sources, "statistic": ["estimate", "ci_low", "ci_high"], "condition": conds,
                            "seed": pred["seed"].values, "bound": ["min", "max"]})
    consistent = np.full((len(sources), len(RECORDING_MEASURES)), -1, np.int8)
    model_group = model_grouping(pred, m.attrs.get("grouped_by", "none"))
    for j, (k, (units, long)) in enumerate(RECORDING_MEASURES.items()):
        v = np.full((len(sources), 3), np.nan)
        v[0] = data[k]
        rng_ = np.full((len(sources), 2), np.nan)
        if model_group == "choice" and k in GROUPED_MEASURES:  # the networks grouped by their own choices, as the data
            nets = pred[f"{k}{BY_CHOICE}"].values.astype(float)
            v[1:] = [bootstrap_ci(nets[c], np.random.default_rng([seed, j, c]), np.median, N_BOOT) for c in range(len(conds))]
            ds[f"{k}_networks"] = (("condition", "seed"), nets, {"units": units, "long_name": f"each network's value: {long}"})
            with np.errstate(all="ignore"):
                have = np.isfinite(nets).any(1)
                rng_[1:][have] = np.stack([np.nanmin(nets[have], 1), np.nanmax(nets[have], 1)], 1)
        elif f"{k}_summary" in pred:
            v[1:] = pred[f"{k}_summary"].values
            nets = pred[k].values.astype(float)
            ds[f"{k}_networks"] = (("condition", "seed"), nets, {"units": units, "long_name": f"each network's value: {long}"})
            with np.errstate(all="ignore"):
                fin = np.where(np.isfinite(nets), nets, np.nan)
                have = np.isfinite(fin).any(1)
                rng_[1:][have] = np.stack([np.nanmin(fin[have], 1), np.nanmax(fin[have], 1)], 1)
        ds[k] = (("source", "statistic"), v, {"units": units, "long_name": f"{long} (data: 95 % CI over "
                                                                            f"{'units' if k in UNIT_LEVEL else 'trials'}; model: median over seeds, 95 % CI)"})
        ds[f"{k}_network_range"] = (("source", "bound"), rng_, {"units": units, "long_name": f"range over the condition's networks: {long}"})
        if k in COMPARED and np.isfinite(v[0, 0]):
            lo, hi = (v[0, 1], v[0, 2]) if np.isfinite(v[0, 1]) else (v[0, 0], v[0, 0])
            for s in range(1, len(sources)):
                if np.isfinite(rng_[s]).all():
                    consistent[s, j] = int(lo <= rng_[s, 1] and hi >= rng_[s, 0])
    if "psychometric_fit_status" in pred:
        ds["psychometric_fit_status_networks"] = (("condition", "seed"), pred["psychometric_fit_status"].values.astype(int),
                                                  dict(pred["psychometric_fit_status"].attrs))
    ds["data_psychometric_fit_status"] = ((), int(m["psychometric_fit_status"]), dict(m["psychometric_fit_status"].attrs))
    ds.coords["measure"] = list(RECORDING_MEASURES)
    ds["consistent"] = (("source", "measure"), consistent,
                        {"units": "1", "long_name": "1: the data's 95 % CI overlaps the range of the condition's networks; 0: it does not; "
                                                    "-1: not compared (scale-dependent measure, or no value)", "flag_values": [-1, 0, 1],
                         "flag_meanings": "not_compared inconsistent consistent"})
    if "p_right" in m:
        ds.coords["evidence_level"] = m["evidence_level"]
        ds["data_p_right"] = (("evidence_level",), m["p_right"].values, m["p_right"].attrs)
        ds["data_n_trials_at_evidence"] = (("evidence_level",), m["n_trials_at_evidence"].values, m["n_trials_at_evidence"].attrs)
    if "p_right" in pred:
        ds.coords["model_evidence_level"] = ("model_evidence_level", pred["evidence_level"].values, dict(pred["evidence_level"].attrs))
        ds["model_p_right"] = (("condition", "seed", "model_evidence_level"), pred["p_right"].values, dict(pred["p_right"].attrs))
    for name, (units, long) in {"source": ("", "data, then each condition of the run"), "statistic": ("", "estimate and 95 % CI bounds"),
                                "condition": ("", "experimental condition"), "seed": ("", "seed index"),
                                "bound": ("", "minimum and maximum over networks"), "measure": ("", "measure name")}.items():
        ds[name].attrs.update(units=units, long_name=long)
    ds.attrs.update(data_ramp_period=m.attrs["ramp_period"], data_timescale_period=m.attrs["timescale_period"],
                    data_grouped_by=m.attrs["grouped_by"], model_grouped_by=model_group,
                    data_n_trials=int(m.attrs["n_trials"]), data_n_units=int(m.attrs["n_units"]),
                    data_dt_ms=float(m.attrs["dt_ms"]), model_ramp_period=str(pred.attrs.get("ramp_period", "")),
                    model_timescale_period=str(pred.attrs.get("timescale_period", "")), ci_level=CI_LEVEL, bootstrap_seed=int(seed),
                    compared=" ".join(COMPARED))
    for k in ("protocol_name", "root_seed", "checkpoint"):
        if k in pred.attrs:
            ds.attrs[f"model_{k}"] = pred.attrs[k]
    return ds


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def _fmt(k: str, x: float) -> str:
    if not np.isfinite(x):
        return "n/a"
    if k.startswith("fraction") or k == "accuracy" or k == "psychometric_lapse":
        return _pct(x)
    if k.endswith("_ms"):
        return f"{x:.0f} ms"
    return f"{x:.3g}"


#: the compared measures in words, and the words for the data lying above / below the networks
IN_WORDS = {
    "fraction_ramping": ("ramping units", "more", "fewer"),
    "fraction_ramping_uncorrected": ("ramping units at p < 0.05 uncorrected", "more", "fewer"),
    "fraction_buildup": ("build-up units", "more", "fewer"),
    "fraction_decay": ("units relaxing back to their pre-stimulus level", "more", "fewer"),
    "fraction_opposite_ramps": ("units ramping in opposite directions for the two choices", "more", "fewer"),
    "timescale_median_ms": ("median single-unit timescale", "a longer", "a shorter"),
    "fraction_timescale_fitted": ("units with a measurable timescale", "more", "fewer"),
    "fraction_timescale_long": ("units holding a trial-specific level", "more", "fewer"),
    "psychometric_lapse": ("lapse rate", "a higher", "a lower"),
    "accuracy": ("accuracy", "a higher", "a lower"),
}


def consistency_sentences(cmp: xr.Dataset) -> list[str]:
    """Per condition, in words: whether the data is consistent with it and, where not, on which
    measures and which way (the data's value against the range of the condition's networks; the
    CIs are in compare.nc and the table of compare.html)."""
    lines = []
    measures = [str(x) for x in cmp["measure"].values]
    for s, cond in enumerate(cmp["source"].values):
        if s == 0:
            continue
        flags = cmp["consistent"].values[s]
        judged = [k for k, f in zip(measures, flags) if f >= 0]
        bad = [k for k, f in zip(measures, flags) if f == 0]
        if not judged:
            lines.append(f"{cond}: nothing to compare (no measure has a value in both the data and the model).")
            continue
        if not bad:
            lines.append(f"The data is consistent with {cond} on all {len(judged)} compared measures "
                         f"({', '.join(IN_WORDS.get(k, (k,))[0] for k in judged)}): a network trained this way could have produced it.")
            continue
        parts = []
        for k in bad:
            est, lo, hi = cmp[k].values[0]
            mn, mx = cmp[f"{k}_network_range"].values[s]
            name, more, less = IN_WORDS.get(k, (k.replace("_", " "), "higher", "lower"))
            parts.append(f"{more if lo > mx else less} {name} ({_fmt(k, est)} vs {_fmt(k, mn)} to {_fmt(k, mx)})")
        lines.append(f"The data is NOT consistent with {cond}: on {len(bad)} of {len(judged)} compared measures its 95 % CI lies "
                     f"outside the range of every {cond} network - the data has " + ", ".join(parts) + ".")
    return lines
