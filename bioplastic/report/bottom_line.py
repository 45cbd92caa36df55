"""The bottom line: a few sentences an experimentalist can act on, each with its number, CI and n,
and the recording or manipulation that would test it. Every number is one the datasets already
hold (the same medians, CIs and tests as the rest of the report), so a quantity reads the same
everywhere: an effect below the smallest effect of interest carries the claims section's note, a
finding that is one part of a claim says that claim's verdict, and conditions are named in words
(``tcr_loss`` -> "TCR loss")."""
from __future__ import annotations

import numpy as np
import xarray as xr

from ..analysis.geometry import comparable_leads, lead_key
from ..analysis.statistics import CI_LEVEL, bootstrap_ci, nanmedian
from ..seeds import numpy_rng
from . import verdicts as V
from .text import condition_label, num

#: at most this many sentences
MAX_SENTENCES = 6
CI = f"{100 * CI_LEVEL:.0f} % CI"


def _rng(ds: xr.Dataset, claim: int) -> np.random.Generator:
    """The bootstrap stream of the claim's verdict: the bottom line quotes the verdicts' own numbers."""
    return numpy_rng(int(ds.attrs.get("root_seed", 0)), "verdict_bootstrap", claim)


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def _manipulation(info: V.CondInfo, label: str) -> str:
    """What would test a change of the search phase that a condition makes: a manipulation in an
    animal where the condition has a biological counterpart, and where it has none, that it has none."""
    if info.tcr_form == "plasticity":
        return ("Test: block short-term synaptic plasticity during learning in one group of animals and compare its "
                "learning curves with an untreated group's.")
    if info.tcr_form == "loss":
        return (f"The {label} is a term of the training objective with no biological counterpart: no manipulation "
                "switches it on and off in an animal; what can be recorded is the activity it shapes (below).")
    return "Test: compare learning curves with the manipulation that stands for it on and off, in the same animals."


def _learning(results: xr.Dataset, conditions: dict[str, V.CondInfo]) -> list[str]:
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
    out = [f"Learning is abrupt in {k} of {n} {condition_label(ref)} networks: they sit at chance for a median of "
           f"{nanmedian(r['search_phase'].values[ab == 1]):.0f} iterations, then improve within "
           f"{nanmedian(r['drop_width'].values[ab == 1]):.0f}. Test: track single-session performance across training "
           "and look for a long flat stretch followed by a jump, not a gradual rise."]
    for c in results["condition"].values[1:]:
        e = V.search_phase_evidence(results, ref, str(c), "", _rng(results, 3))  # claim 3's own comparison
        if e is not None and np.isfinite(e.estimate) and e.p_value < 1 - CI_LEVEL:
            label = condition_label(c)
            small = f": {e.note}" if e.note else ""  # below the smallest effect of interest: as the claims section says
            out.append(f"With {label}, the search phase changes by {num(e.estimate, '+.0f')} iterations ({CI} "
                       f"{num(e.ci_low, '+.0f')} to {num(e.ci_high, '+.0f')}; Wilcoxon p = {e.p_value:.2g}; "
                       f"n = {int(e.n)} paired networks){small}. "
                       + _manipulation(conditions.get(str(c), V.CondInfo()), label))
    return out


def _restructuring(analysis: xr.Dataset | None, results: xr.Dataset | None = None) -> list[str]:
    if analysis is None or "lead_time" not in analysis:
        return []
    lead_cs = analysis[lead_key(analysis)]
    lead = comparable_leads(analysis)[0].ravel()  # the networks claim 2 counts
    finite = np.isfinite(lead)
    lead = lead[finite]
    if lead.size < 3:
        return []
    med, lo, hi = bootstrap_ci(lead, _rng(analysis, 2))
    ckpt = np.diff(analysis["checkpoint"].values[:2])[0] if analysis.sizes["checkpoint"] > 1 else np.nan
    if lo > 0:
        when = f"a median of {num(med, '.0f')} iterations before the drop ("
    elif hi < 0:
        when = f"after the loss starts to drop, not before it (a median of {num(-med, '.0f')} iterations after; "
    else:
        when = f"around the drop, not clearly before it at this resolution (median lead {num(med, '.0f')} iterations; "
    abrupt = ""
    if results is not None and "abrupt" in results and set(lead_cs.dims) <= set(results["abrupt"].dims):
        ab = results["abrupt"].sel(condition=lead_cs["condition"].values).transpose(*lead_cs.dims).values.ravel()[finite]
        k = int(np.sum(ab == 1))
        if k == 0:
            abrupt = (f" None of these {lead.size} networks drops abruptly: the loss falls gradually, and 'the drop' "
                      "is where that fall begins.")
        elif k < lead.size:
            abrupt = (f" Of these {lead.size} networks, {k} drop abruptly; in the other {lead.size - k} the loss falls "
                      "gradually, and 'the drop' is where that fall begins.")
    return [f"The geometry of the population activity restructures {when}{CI} {num(lo, '.0f')} to {num(hi, '.0f')}; "
            f"{int((lead > 0).sum())} of {lead.size} networks restructure first; checkpoints every {ckpt:.0f} "
            f"iterations).{abrupt} Test: record the population across the learning jump and compare its trajectories "
            f"session by session: the model predicts they change {'before' if lo > 0 else 'no earlier than'} "
            "performance does."]


def _claim_7_note(verdicts: list[V.Verdict]) -> str:
    """When claim 7 is tested and does not hold: the sentence that keeps a build-up finding from reading
    as its support."""
    v = next((v for v in verdicts if v.claim == 7), None)
    if v is None or v.status == V.HOLDS:
        return ""
    why = v.reason.removeprefix(v.status).strip().removeprefix("(").removesuffix(")")
    return (f" This alone is not claim 7 ({V.CLAIMS[7][:-1]}), which {v.status} in this run: its verdict also weighs "
            "the units' timescales and the attractors' slowest modes" + (f" ({why})." if why else "."))


def _lesion_quantum(pred: xr.Dataset, c: int, change: float, lo: float, hi: float) -> str:
    """Why a CI of a change in accuracy can end at its estimate: accuracies count trials, and several
    networks change by exactly the median number of trials."""
    n_trials = int(pred.attrs.get("n_trials", 0))
    if n_trials <= 0 or not (np.isclose(change, lo) or np.isclose(change, hi)):
        return ""
    d = pred["accuracy_plasticity_blocked"].values[c] - pred["accuracy"].values[c]
    d = d[np.isfinite(d)]
    k = int(np.isclose(d, change).sum())
    return (f" (accuracies count the {n_trials} held-out trials, in steps of {100 / n_trials:.1f} points; {k} of "
            f"{d.size} networks change by exactly {num(100 * change, '+.1f')}, so the estimate is also an end of its CI)")


def _predictions(pred: xr.Dataset | None, verdicts: list[V.Verdict]) -> list[str]:
    if pred is None:
        return []
    conds = [condition_label(c) for c in pred["condition"].values]
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
                       f"with {conds[c]}, against {_pct(s[0, 0])} with {conds[0]} ({num(100 * eff[c, 0], '+.0f')} points, {CI} "
                       f"{num(100 * eff[c, 1], '+.0f')} to {num(100 * eff[c, 2], '+.0f')}; Wilcoxon p = {eff[c, 3]:.2g}; n = {n} paired "
                       f"networks).{_claim_7_note(verdicts)} {test}")
        elif np.isfinite(s[0, 0]):
            n = int(np.isfinite(pred["fraction_buildup"].values[0]).sum())
            out.append(f"{_pct(s[0, 0])} of units ({CI} {_pct(s[0, 1])} to {_pct(s[0, 2])}; n = {n} networks, {conds[0]}) "
                       f"build up their activity during the {period} for their preferred choice. {test}")
    if "lesion_effect" in pred:
        les = pred["lesion_effect"].values
        for c, cond in enumerate(conds):
            if np.isfinite(les[c, 0]) and les[c, 3] < 1 - CI_LEVEL:
                n = int(np.isfinite(pred["accuracy_plasticity_blocked"].values[c]).sum())
                # lesion_effect is with minus without plasticity; blocking changes accuracy by its negative, the
                # convention of the predictions table too (one decimal: accuracies count trials, often under a
                # point apart)
                change, lo, hi = -les[c, 0], -les[c, 2], -les[c, 1]
                out.append(f"Blocking the short-term plasticity of trained {cond} networks changes accuracy by "
                           f"{num(100 * change, '+.1f')} points ({CI} {num(100 * lo, '+.1f')} to {num(100 * hi, '+.1f')}; "
                           f"Wilcoxon p = {les[c, 3]:.2g}; n = {n} networks){_lesion_quantum(pred, c, change, lo, hi)}. "
                           "Test: block fast synaptic plasticity after learning (pharmacologically or optogenetically) "
                           "and measure performance.")
    if "fraction_timescale_long_summary" in pred and pred.attrs.get("timescale_period", "none") != "none":
        s = pred["fraction_timescale_long_summary"].values
        c = int(np.nanargmax(s[:, 0])) if np.isfinite(s[:, 0]).any() else None
        if c is not None and s[c, 0] > 0.5:
            out.append(f"{_pct(s[c, 0])} of units ({CI} {_pct(s[c, 1])} to {_pct(s[c, 2])}; {conds[c]}) hold a "
                       f"trial-specific level through the {pred.attrs['timescale_period']}, longer than its duration "
                       "can measure. Test: across-trial autocorrelations of delay activity should not decay within it.")
    return out


#: a network whose best held-out accuracy rose by less than this over the last quarter of its evaluations
#: has stopped improving (accuracy is a fraction of trials)
STALLED_GAIN = 0.01


def _unreached(results: xr.Dataset) -> str:
    """Why no network reached the criterion, and what would help: training longer only where accuracy
    was still rising at the end of the budget; otherwise what is wrong."""
    crit = float(results["iterations_to_criterion"].attrs.get("criterion", np.nan)) if "iterations_to_criterion" in results else np.nan
    budget = int(results.sizes.get("iteration", 0))
    head = f"No network reached the criterion (held-out accuracy >= {crit:g})" if np.isfinite(crit) else \
        "No network reached the criterion"
    tail = "; the recordings below would be of networks that did not learn, so no prediction is stated."
    if "accuracy" not in results or results.sizes.get("evaluation", 0) < 4:
        return head + tail
    acc = results["accuracy"].transpose(..., "evaluation").values.reshape(-1, results.sizes["evaluation"])
    acc = acc[np.isfinite(acc).all(axis=1)]
    if acc.size == 0:
        return head + ": every network diverged (see the 'diverged' variable)" + tail
    q = acc.shape[1] // 4
    gain = nanmedian(acc[:, -q:].max(axis=1) - acc[:, -2 * q:-q].max(axis=1))
    reached = f": the best reached {np.max(acc[:, -1]):.2f}, the median network {nanmedian(acc[:, -1]):.2f}"
    if gain >= STALLED_GAIN:
        return (head + reached + f", and accuracy was still rising at the end ({num(100 * gain, '+.0f')} points over the "
                f"last quarter of the budget): train longer, e.g. --set training.iterations={2 * budget}" + tail)
    return (head + reached + f", and accuracy stopped rising (median {num(100 * gain, '+.0f')} points over the last quarter "
            "of the budget), so training longer will not help. The criterion is out of these networks' reach: it may be "
            "above what the task allows (trials without evidence, e.g. zero coherence, cap accuracy near chance on them; "
            "docs/tasks.md), or the learning rate or model cannot learn the task; check the task's ceiling, then lower "
            "training.criterion or change the training settings" + tail)


def caveats(results: xr.Dataset) -> list[str]:
    """What limits every sentence of the bottom line: networks that did not learn, too few seeds."""
    out = []
    if "learned" in results and not results.attrs.get("sweep_dims"):
        learned = results["learned"].values.astype(bool)
        if not learned.any():
            out.append(_unreached(results))
        elif not learned.all():
            out.append(f"{int(learned.sum())} of {learned.size} networks reached the criterion; the predictions include "
                       "those that did not.")
    S = results.sizes.get("seed", 0)
    if 0 < S < 6:
        out.append(f"With {S} seeds no paired test can reach p < 0.05 and the CIs are too narrow to trust; use "
                   "--set seeds=10 or more for predictions.")
    return out


def bottom_line(results: xr.Dataset, analysis: xr.Dataset | None = None, predictions: xr.Dataset | None = None, *,
                conditions: dict[str, V.CondInfo] | None = None, verdicts: list[V.Verdict] | None = None) -> list[str]:
    """At most :data:`MAX_SENTENCES` sentences, learning first, then geometry, then recordings;
    nothing but the caveat when no network learned. Every sentence's number is finite and, for a
    comparison, significant. ``conditions`` (:func:`~bioplastic.report.verdicts.condition_info`) says
    what each condition is (a loss term has no manipulation in an animal); ``verdicts`` (the report's)
    let a finding that is one part of a claim name that claim's verdict."""
    if "learned" in results and not results.attrs.get("sweep_dims") and not results["learned"].values.any():
        return []
    lines = _learning(results, conditions or {}) + _restructuring(analysis, results) + _predictions(predictions, verdicts or [])
    return [s for s in lines if "nan" not in s.split()][:MAX_SENTENCES]
