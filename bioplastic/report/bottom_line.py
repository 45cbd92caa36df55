"""The bottom line: a few sentences an experimentalist can act on, each with its number, CI and n,
and the recording or manipulation that would test it. Every number is one the datasets already
hold (the same medians, CIs and tests as the rest of the report), so a quantity reads the same
everywhere."""
from __future__ import annotations

import numpy as np
import xarray as xr

from ..analysis.geometry import lead_key
from ..analysis.statistics import CI_LEVEL, bootstrap_ci, nanmedian
from ..seeds import numpy_rng
from .verdicts import search_phase_evidence

#: at most this many sentences
MAX_SENTENCES = 6
CI = f"{100 * CI_LEVEL:.0f} % CI"


def _rng(ds: xr.Dataset, claim: int) -> np.random.Generator:
    """The bootstrap stream of the claim's verdict: the bottom line quotes the verdicts' own numbers."""
    return numpy_rng(int(ds.attrs.get("root_seed", 0)), "verdict_bootstrap", claim)


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def _learning(results: xr.Dataset) -> list[str]:
    if "abrupt" not in results or results.attrs.get("sweep_dims"):
        return []
    ref = str(results["condition"].values[0])
    r = results.sel(condition=ref)
    ab = r["abrupt"].values
    n = int(np.isfinite(ab).sum())
    if n == 0:
        return []
    k = int(np.nansum(ab))
    if k == 0:
        return []
    out = [f"Learning is abrupt in {k} of {n} {ref} networks: they sit at chance for a median of "
           f"{nanmedian(r['search_phase'].values[ab == 1]):.0f} iterations, then improve within "
           f"{nanmedian(r['drop_width'].values[ab == 1]):.0f}. Test: track single-session performance across training "
           "and look for a long flat stretch followed by a jump, not a gradual rise."]
    for c in results["condition"].values[1:]:
        e = search_phase_evidence(results, ref, str(c), "", _rng(results, 3))  # claim 3's own comparison
        if np.isfinite(e.estimate) and e.p_value < 1 - CI_LEVEL:
            out.append(f"With {c}, the search phase changes by {e.estimate:+.0f} iterations ({CI} "
                       f"{e.ci_low:+.0f} to {e.ci_high:+.0f}; Wilcoxon p = {e.p_value:.2g}; "
                       f"n = {int(e.n)} paired networks). Test: compare learning curves with the manipulation "
                       "that stands for it on and off, in the same animals.")
    return out


def _restructuring(analysis: xr.Dataset | None) -> list[str]:
    if analysis is None or "lead_time" not in analysis:
        return []
    lead = analysis[lead_key(analysis)].values.ravel()
    lead = lead[np.isfinite(lead)]
    if lead.size < 3:
        return []
    med, lo, hi = bootstrap_ci(lead, _rng(analysis, 2))
    ckpt = np.diff(analysis["checkpoint"].values[:2])[0] if analysis.sizes["checkpoint"] > 1 else np.nan
    when = (f"a median of {med:.0f} iterations before the drop" if lo > 0 else
             f"around the drop, not clearly before it at this resolution (median lead {med:.0f} iterations)")
    return [f"The geometry of the population activity restructures {when} ({CI} {lo:.0f} to {hi:.0f}; "
            f"{int((lead > 0).sum())} of {lead.size} networks restructure first; checkpoints every {ckpt:.0f} "
            "iterations). Test: record the population across the learning jump and compare its trajectories "
            "session by session: they should change before performance does."]


def _predictions(pred: xr.Dataset | None) -> list[str]:
    if pred is None:
        return []
    conds = [str(c) for c in pred["condition"].values]
    out = []
    period = pred.attrs.get("ramp_period", "delay")
    if "fraction_buildup_summary" in pred:
        s, eff = pred["fraction_buildup_summary"].values, pred["fraction_buildup_effect"].values
        sig = [c for c in range(1, len(conds)) if np.isfinite(eff[c, 3]) and eff[c, 3] < 1 - CI_LEVEL]
        test = (f"Test: record single units in the {period}, sort trials by choice, and separate build-up from the "
                "decay after the stimulus.")
        if sig:
            c = max(sig, key=lambda k: abs(eff[k, 0]))
            n = int((np.isfinite(pred["fraction_buildup"].values[c]) & np.isfinite(pred["fraction_buildup"].values[0])).sum())
            out.append(f"{_pct(s[c, 0])} of units build up their activity during the {period} for their preferred choice "
                       f"with {conds[c]}, against {_pct(s[0, 0])} with {conds[0]} ({100 * eff[c, 0]:+.0f} points, {CI} "
                       f"{100 * eff[c, 1]:+.0f} to {100 * eff[c, 2]:+.0f}; Wilcoxon p = {eff[c, 3]:.2g}; n = {n} paired "
                       f"networks). {test}")
        elif np.isfinite(s[0, 0]):
            n = int(np.isfinite(pred["fraction_buildup"].values[0]).sum())
            out.append(f"{_pct(s[0, 0])} of units ({CI} {_pct(s[0, 1])} to {_pct(s[0, 2])}; n = {n} networks, {conds[0]}) "
                       f"build up their activity during the {period} for their preferred choice. {test}")
    if "lesion_effect" in pred:
        les = pred["lesion_effect"].values
        for c, cond in enumerate(conds):
            if np.isfinite(les[c, 0]) and les[c, 3] < 1 - CI_LEVEL:
                n = int(np.isfinite(pred["accuracy_plasticity_blocked"].values[c]).sum())
                # lesion_effect is with minus without plasticity; blocking changes accuracy by its negative
                # (one decimal: accuracies are multiples of 1/eval_trials, often under a point apart)
                out.append(f"Blocking the short-term plasticity of trained {cond} networks changes accuracy by "
                           f"{-100 * les[c, 0]:+.1f} points ({CI} {-100 * les[c, 2]:+.1f} to {-100 * les[c, 1]:+.1f}; "
                           f"Wilcoxon p = {les[c, 3]:.2g}; n = {n} networks). Test: block fast synaptic plasticity after "
                           "learning (pharmacologically or optogenetically) and measure performance.")
    if "fraction_timescale_long_summary" in pred and pred.attrs.get("timescale_period", "none") != "none":
        s = pred["fraction_timescale_long_summary"].values
        c = int(np.nanargmax(s[:, 0])) if np.isfinite(s[:, 0]).any() else None
        if c is not None and s[c, 0] > 0.5:
            out.append(f"{_pct(s[c, 0])} of units ({CI} {_pct(s[c, 1])} to {_pct(s[c, 2])}; {conds[c]}) hold a "
                       f"trial-specific level through the {pred.attrs['timescale_period']}, longer than its duration "
                       "can measure. Test: across-trial autocorrelations of delay activity should not decay within it.")
    return out


def caveats(results: xr.Dataset) -> list[str]:
    """What limits every sentence of the bottom line: networks that did not learn, too few seeds."""
    out = []
    if "learned" in results and not results.attrs.get("sweep_dims"):
        learned = results["learned"].values.astype(bool)
        if not learned.any():
            out.append("No network reached the criterion: the recordings below would be of untrained networks, so no "
                       "prediction is stated (train longer, e.g. --set training.iterations=300).")
        elif not learned.all():
            out.append(f"{int(learned.sum())} of {learned.size} networks reached the criterion; the predictions include "
                       "those that did not.")
    S = results.sizes.get("seed", 0)
    if 0 < S < 6:
        out.append(f"With {S} seeds no paired test can reach p < 0.05 and the CIs are too narrow to trust; use "
                   "--set seeds=10 or more for predictions.")
    return out


def bottom_line(results: xr.Dataset, analysis: xr.Dataset | None = None, predictions: xr.Dataset | None = None) -> list[str]:
    """At most :data:`MAX_SENTENCES` sentences, learning first, then geometry, then recordings;
    nothing but the caveat when no network learned. Every sentence's number is finite and, for a
    comparison, significant."""
    if "learned" in results and not results.attrs.get("sweep_dims") and not results["learned"].values.any():
        return []
    lines = _learning(results) + _restructuring(analysis) + _predictions(predictions)
    return [s for s in lines if "nan" not in s.split()][:MAX_SENTENCES]
