"""Claim verdicts (science.md §7): one function per claim, each reading only the stored datasets.

Every verdict is one of :data:`HOLDS`, :data:`FAILS` ("does not hold"), :data:`INCONCLUSIVE`, or
:data:`NOT_TESTED` (the run lacks the data: which is said), and carries the numbers behind it. The
rules are stated in docs/report.md; in short, for one comparison (an effect with its 95 % CI and
p-value, claimed to go in direction ``s``):

- **holds** when the 95 % CI excludes zero in the claimed direction *and* the test's p < 0.05
  (with 3 seeds a percentile bootstrap of a median is far from 95 % coverage, so the CI alone is
  not enough; a test that cannot reach p < 0.05 with the seeds at hand makes the comparison
  *inconclusive*, and the verdict says so);
- **does not hold** when the CI excludes zero in the opposite direction with p < 0.05, or when the
  point estimate is zero or opposite and the CI excludes the smallest effect of interest ``delta``
  (an equivalence-type result; only with enough seeds for the test to reach p < 0.05);
- **inconclusive** otherwise.

A claim made of several comparisons combines them with :func:`combine_all` (every part must hold;
one part that does not hold sinks it) or :func:`combine_any` (for "can" claims: one part that holds
suffices; it does not hold only when every part does not hold).
"""
from __future__ import annotations

import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from math import comb

import numpy as np
import xarray as xr

from ..analysis.geometry import comparable_leads, earliest_gr_event, lead_summary
from ..analysis.learning_curves import compared_outcomes, still_on_plateau
from ..analysis.predictions import prediction_sentences
from ..analysis.statistics import ALPHA, N_BOOT, bootstrap_ci, clopper_pearson, nanmedian, paired_comparison
from ..seeds import numpy_rng
from ..storage.results import sweep_points
from .text import num

HOLDS = "holds"
FAILS = "does not hold"
INCONCLUSIVE = "inconclusive"
NOT_TESTED = "not tested by this run"
#: the rule itself failed (a bug or unexpected data): an error, not a verdict
FAILED = "error"

#: smallest effect of interest on iterations to criterion, as a fraction of the reference median
ITC_DELTA_FRACTION = 0.10
#: smallest effect of interest on held-out accuracy (fraction of trials)
ACC_DELTA = 0.05
#: smallest effect of interest on the fraction of ramping units
RAMP_DELTA = 0.05
#: smallest effect of interest on a time constant, as a fraction of the reference median
TAU_DELTA_FRACTION = 0.10
#: claim 1: the share of networks that must show abrupt learning (``abrupt`` in results.nc: a
#: search phase of at least one smoothing window, then a drop at most 1/3 as wide) for "most"
CLAIM1_MAJORITY = 0.5
#: claim 9: the activity measure is the mean of ``tcr_loss`` (mean squared one-step change of the
#: state) over this last fraction of the trained iterations
ACTIVITY_TAIL = 0.10
#: claim 9: smallest effect of interest on log10 activity (a tenfold drop)
LOG_ACTIVITY_DELTA = 1.0
#: claim 2: checkpoints must be at most this fraction of the median search phase apart to time GR events
GR_RESOLUTION = 0.2

CLAIMS = {
    1: "Training shows a search phase, then an abrupt drop of the loss.",
    2: "Geometric restructuring (GR) events precede the drop.",
    3: "TCR (both forms) shortens the search phase / iterations to criterion.",
    4: "TCR makes learning possible or much faster in strongly connected (chaotic, g > 1) networks; the benefit "
       "is small in non-chaotic networks.",
    5: "TCR accelerates bioplausible (local-rule) training.",
    6: "TCR helps LSTMs during the search phase.",
    7: "TCR promotes slow dynamics and ramping activity.",
    8: "TCR can hurt tasks that need fast changes of activity.",
    9: "Freeze-in training can collapse onto trivial fixed points without noise or control of its strength.",
    10: "TCR facilitates attractor formation: the stable fixed points the task needs appear earlier.",
}


# ------------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class CondInfo:
    """What the verdicts need to know about a condition (from the resolved protocol)."""

    tcr_form: str = "none"          # none, loss, plasticity
    rule: str = "bptt"
    model_kind: str = "leaky_rate"
    g: float = float("nan")
    kappa: float = 0.0              # freeze-in strength (plasticity only)
    sigma_w: float = 0.0            # weight noise (plasticity only)
    eta_schedule: str = "constant"  # controller / schedule on eta_F (plasticity only)


def condition_info(protocol) -> dict[str, CondInfo]:
    """``{condition name: CondInfo}`` from a loaded :class:`~bioplastic.protocol.load.Protocol`."""
    out = {}
    for c in protocol.conditions:
        plast = c.tcr.plasticity
        out[c.name] = CondInfo(tcr_form=c.tcr.form, rule=c.training.rule, model_kind=c.model_kind,
                               g=float(getattr(c.model, "g", float("nan")) or float("nan")),
                               kappa=float(plast.kappa), sigma_w=float(plast.sigma_w),
                               eta_schedule=str(getattr(plast.schedule, "kind", "constant")))
    return out


@dataclass
class RunData:
    """The stored datasets of one run (any may be None) and what the protocol says of its conditions."""

    results: xr.Dataset | None = None
    analysis: xr.Dataset | None = None
    predictions: xr.Dataset | None = None
    conditions: dict[str, CondInfo] = field(default_factory=dict)

    def info(self, cond: str) -> CondInfo:
        return self.conditions.get(str(cond), CondInfo())


#: the note of a comparison that is significant in the direction opposite to its claim
OPPOSITE = "opposite to the claim"


@dataclass
class Evidence:
    """One comparison: ``estimate`` [``ci_low``, ``ci_high``], test p-value, sample size, and its status."""

    label: str
    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int
    unit: str = ""
    test: str = "Wilcoxon signed-rank"
    status: str = INCONCLUSIVE
    note: str = ""

    @property
    def opposite(self) -> bool:
        """Significant and in the direction opposite to the claim (a "does not hold" that is not "no effect")."""
        return self.status == FAILS and self.note.startswith(OPPOSITE)

    def text(self) -> str:
        def f(x):
            if not np.isfinite(x):
                return "n/a"
            return f"{x:+.3g}"
        unit = f" {self.unit}" if self.unit else ""
        p = f"p = {self.p_value:.2g}" if np.isfinite(self.p_value) else "p = n/a"
        return (f"{self.label}: {f(self.estimate)}{unit} (95 % CI {f(self.ci_low)} to {f(self.ci_high)}; {self.test} {p}; "
                f"n = {self.n}): {self.status}" + (f" ({self.note})" if self.note else ""))


@dataclass
class Verdict:
    claim: int
    status: str
    reason: str
    evidence: list[Evidence] = field(default_factory=list)
    numbers: list[str] = field(default_factory=list)   # supporting numbers in words
    notes: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def statement(self) -> str:
        return CLAIMS[self.claim]


def not_tested(claim: int, *missing: str) -> Verdict:
    return Verdict(claim, NOT_TESTED, f"not tested by this run (missing: {'; '.join(missing)})", missing=list(missing))


# ------------------------------------------------------------------------------------------- rules
def min_p_wilcoxon(n: int) -> float:
    """Smallest two-sided p-value an exact Wilcoxon signed-rank test can give with ``n`` pairs."""
    return 1.0 if n < 1 else min(1.0, 2.0 / 2 ** n)


def min_p_mann_whitney(n1: int, n2: int) -> float:
    """Smallest two-sided p-value of an exact Mann-Whitney U test with samples of ``n1`` and ``n2``."""
    return 1.0 if min(n1, n2) < 1 else min(1.0, 2.0 / comb(n1 + n2, n1))


def min_p_sign(n: int) -> float:
    """Smallest two-sided p-value of an exact sign (binomial) test with ``n`` non-zero observations."""
    return 1.0 if n < 1 else min(1.0, 2.0 * 0.5 ** n)


def effect_status(estimate: float, ci_low: float, ci_high: float, p_value: float, direction: int,
                  delta: float, min_p: float = 0.0) -> tuple[str, str]:
    """(status, note) of one comparison claimed to go in ``direction`` (+1 increase, -1 decrease),
    with smallest effect of interest ``delta`` (> 0, in the effect's units) and the smallest p-value
    the test can reach with the data at hand (``min_p``). Rules: module docstring."""
    if not all(np.isfinite(x) for x in (estimate, ci_low, ci_high)):
        return INCONCLUSIVE, "no estimate"
    s = 1 if direction > 0 else -1
    near, far = (ci_low, ci_high) if s > 0 else (ci_high, ci_low)  # CI ends nearest to / farthest along the claim
    significant = np.isfinite(p_value) and p_value < ALPHA
    powerless = min_p >= ALPHA
    weak = (f"the test cannot reach p < {ALPHA:g} with this sample (smallest possible p = {min_p:.2g})"
            if powerless else "")
    if s * near > 0:
        if significant:
            return HOLDS, ""
        return INCONCLUSIVE, f"the CI excludes 0 but p = {p_value:.2g}" + (f"; {weak}" if weak else "")
    if s * far < 0:
        if significant:
            return FAILS, OPPOSITE
        return INCONCLUSIVE, f"opposite to the claim, but p = {p_value:.2g}" + (f"; {weak}" if weak else "")
    if s * estimate <= 0 and s * far < delta:
        if powerless:
            return INCONCLUSIVE, f"no effect, but {weak}"
        return FAILS, f"no effect: the CI excludes the smallest effect of interest ({s * delta:+.3g})"
    return INCONCLUSIVE, weak


def combine_all(statuses) -> str:
    """Every part must hold; one part that does not hold sinks the claim."""
    statuses = list(statuses)
    if not statuses:
        return INCONCLUSIVE
    if FAILS in statuses:
        return FAILS
    return HOLDS if all(s == HOLDS for s in statuses) else INCONCLUSIVE


def combine_any(statuses) -> str:
    """One part that holds suffices; the claim does not hold only when every part does not hold."""
    statuses = list(statuses)
    if not statuses:
        return INCONCLUSIVE
    if HOLDS in statuses:
        return HOLDS
    return FAILS if all(s == FAILS for s in statuses) else INCONCLUSIVE


def evidence(label: str, est, lo, hi, p, n, direction: int, delta: float, *, unit: str = "", min_p: float | None = None,
             test: str = "Wilcoxon signed-rank") -> Evidence:
    est, lo, hi, p = (float(x) for x in (est, lo, hi, p))
    n = int(n) if np.isfinite(float(n)) else 0
    mp = min_p_wilcoxon(n) if min_p is None else min_p
    status, note = effect_status(est, lo, hi, p, direction, delta, mp)
    if status == HOLDS and np.isfinite(est) and abs(est) < delta and not note:
        # significant, but the estimate is below the smallest effect of interest: say so
        note = f"significant, but smaller than the smallest effect of interest ({delta:.3g}{' ' + unit if unit else ''})"
    return Evidence(label, est, lo, hi, p, n, unit, test, status, note)


def either_shorter(pair: list[Evidence]) -> str:
    """One TCR condition's status on "shortens the search phase / iterations to criterion": it holds
    when either measure holds and the other does not go significantly the other way; a shorter search
    phase with a significantly longer time to criterion (or the reverse) is inconclusive, not
    acceleration (science.md §7); otherwise as :func:`combine_any`."""
    status = combine_any(e.status for e in pair)
    if status == HOLDS and any(e.opposite for e in pair):
        return INCONCLUSIVE
    return status


def verdict_rng(ds: xr.Dataset, claim: int) -> np.random.Generator:
    """The bootstrap stream of a claim's verdict (from the run's root seed: the report is deterministic)."""
    return numpy_rng(int(ds.attrs.get("root_seed", 0)), "verdict_bootstrap", claim)


def paired(label: str, treated_s, control_s, direction: int, delta: float, unit: str = "", *,
           rng: np.random.Generator) -> Evidence:
    """A paired (by seed) comparison computed from stored per-network values (median difference,
    bootstrap CI, Wilcoxon; :func:`bioplastic.analysis.statistics.paired_comparison`)."""
    r = paired_comparison(treated_s, control_s, rng, n_boot=N_BOOT)
    return evidence(label, r["difference"], r["difference_ci_low"], r["difference_ci_high"], r["p_value"],
                    r["n_pairs"], direction, delta, unit=unit)


def _power_notes(ev: list[Evidence]) -> list[str]:
    weak = sorted({e.n for e in ev if e.test.startswith("Wilcoxon") and min_p_wilcoxon(e.n) >= ALPHA})
    if not weak:
        return []
    return [f"Too few seeds for a definite verdict: with {', '.join(map(str, weak))} pairs the Wilcoxon signed-rank "
            f"test cannot reach p < {ALPHA:g} (smallest possible p = 2 / 2^n; at least 6 pairs are needed). "
            f"Rerun with more seeds, e.g. --set seeds=20."]


def _points(ds: xr.Dataset):
    """(label, dataset of one sweep point); one unlabelled point without a sweep."""
    dims = [d for d in ds.attrs.get("sweep_dims", "").split(",") if d and d in ds.dims]
    if not dims:
        yield "", ds
        return
    for idx, label in sweep_points(ds):
        yield label, ds.isel(idx)


def _has(ds: xr.Dataset | None, *names: str) -> bool:
    return ds is not None and all(n in ds for n in names)


def _conds(ds: xr.Dataset) -> list[str]:
    return [str(c) for c in ds["condition"].values]


def _ref(d: RunData) -> str:
    return _conds(d.results)[0]


def _itc_evidence(sub: xr.Dataset, ref: str, cond: str, where: str, direction: int = -1) -> Evidence:
    """Iterations to criterion, ``cond`` minus ``ref``: the stored paired comparison, or - where in
    some pairs neither network learned - the comparison over the other pairs. An unlearned network
    counts at the budget (a lower bound), so a pair that both leave unlearned has a difference of 0 that
    says nothing about the effect; counted, such pairs pin the median difference and its CI to 0 and
    read as "no effect". Left out, they are counted in the note."""
    c = sub.sel(condition=cond)
    delta = ITC_DELTA_FRACTION * float(sub["itc_median"].sel(condition=ref))
    delta = delta if np.isfinite(delta) and delta > 0 else 1.0
    label = f"{cond} vs {ref}{where}: iterations to criterion (paired difference)"
    stored = evidence(label, c["itc_difference"], c["itc_difference_ci_low"], c["itc_difference_ci_high"], c["itc_p_value"],
                      c["itc_n_pairs"], direction, delta, unit="iterations")
    learned = sub["learned"].sel(condition=[ref, cond]).values.astype(bool)
    if not learned.any():
        stored.status, stored.note = INCONCLUSIVE, "no network of either condition learned within the budget"
        return stored
    neither = ~learned.any(0)
    if not neither.any() or "iterations_to_criterion" not in sub:
        return stored
    itc = compared_outcomes(sub.sel(condition=[ref, cond]))[0].astype(float)  # unlearned at the budget, as stored
    itc[:, neither] = np.nan
    root = int(sub.attrs.get("root_seed", 0))
    ci = [str(x) for x in sub["condition"].values].index(str(cond))
    ev = paired(label, itc[1], itc[0], direction, delta, "iterations", rng=numpy_rng(root, "verdict_itc_censored", ci, zlib.crc32(where.encode())))
    note = f"{int(neither.sum())} pairs where neither network learned left out (no information on the difference)"
    ev.note = f"{ev.note}; {note}" if ev.note else note
    return ev


def searching_at_least(sub: xr.Dataset, cond: str) -> np.ndarray:
    """The search phases of a condition's networks, with a network still on its plateau at the end
    (:func:`~bioplastic.analysis.learning_curves.still_on_plateau`) counted at its time there - a lower
    bound, as an unlearned network's iterations to criterion are counted at the budget."""
    c = sub.sel(condition=cond)
    search = c["search_phase"].values.astype(float)
    if "final_iteration" not in c or "plateau_start" not in c:
        return search
    return np.where(still_on_plateau(c), c["final_iteration"].values - c["plateau_start"].values, search)


def search_phase_evidence(sub: xr.Dataset, ref: str, cond: str, where: str, rng: np.random.Generator) -> Evidence | None:
    """Search phase (iterations on the plateau), ``cond`` minus ``ref``, paired by seed over the
    networks with a drop or still on their plateau (:func:`searching_at_least`) in both; None when the
    results hold no search phase."""
    if "search_phase" not in sub:
        return None
    a, b = searching_at_least(sub, cond), searching_at_least(sub, ref)
    delta = ITC_DELTA_FRACTION * nanmedian(b)
    return paired(f"{cond} vs {ref}{where}: search phase (paired difference)", a, b, -1,
                  delta if np.isfinite(delta) and delta > 0 else 1.0, "iterations", rng=rng)


def _acc_evidence(sub: xr.Dataset, ref: str, cond: str, where: str, direction: int) -> Evidence:
    c = sub.sel(condition=cond)
    return evidence(f"{cond} vs {ref}{where}: final held-out accuracy (paired difference)", c["acc_difference"],
                    c["acc_difference_ci_low"], c["acc_difference_ci_high"], c["acc_p_value"], c["acc_n_pairs"],
                    direction, ACC_DELTA)


def _median_ci(sub: xr.Dataset, cond: str, prefix: str, fmt: str = "{:.0f}") -> str:
    c = sub.sel(condition=cond)
    m, lo, hi = (float(c[f"{prefix}_{k}"]) for k in ("median", "ci_low", "ci_high"))
    return f"{fmt.format(m)} (95 % CI {fmt.format(lo)} to {fmt.format(hi)})" if np.isfinite(m) else "n/a"


def _tcr_vs_reference(d: RunData, claim: int, select: Callable[[CondInfo], bool], what: str,
                      combine=combine_all) -> Verdict:
    """Claims 3, 5, 6: each TCR condition passing ``select`` against the reference (first) condition,
    which must be a no-TCR condition passing ``select``; iterations to criterion or the search phase
    (paired by seed), claimed shorter: per condition combine_any of the two, over conditions ``combine``."""
    if not _has(d.results, "itc_difference"):
        return not_tested(claim, "results.nc with the comparison statistics (itc_difference)")
    ref = _ref(d)
    if d.info(ref).tcr_form != "none" or not select(d.info(ref)):
        return not_tested(claim, f"a reference (first) condition without TCR{' ' + what if what else ''}; the first condition is {ref}")
    tcr = [c for c in _conds(d.results)[1:] if d.info(c).tcr_form != "none" and select(d.info(c))]
    if not tcr:
        return not_tested(claim, f"a TCR condition {what}")
    ev, numbers, per_cond = [], [], []
    for where, sub in _points(d.results):
        at = f" ({where})" if where else ""
        for c in tcr:
            # "shortens the search phase / iterations to criterion": either measure, per condition
            pair = [e for e in (_itc_evidence(sub, ref, c, at), search_phase_evidence(sub, ref, c, at, verdict_rng(d.results, claim))) if e is not None]
            ev += pair
            per_cond.append(either_shorter(pair))
        numbers += [f"{c}{at}: median iterations to criterion {_median_ci(sub, c, 'itc')}, "
                    f"{int(sub['learned'].sel(condition=c).sum())}/{sub.sizes['seed']} learned"
                    + (f", median search phase {nanmedian(sub['search_phase'].sel(condition=c).values):.0f} iterations"
                       if "search_phase" in sub else "") for c in [ref] + tcr]
    status = combine(per_cond)
    return Verdict(claim, status, _reason(status, ev), ev, numbers,
                   _power_notes(ev) + [f"Unlearned networks count at the budget ({d.results.sizes['iteration']} "
                                       "iterations), so differences involving them are lower bounds."])


def _reference_and_tcr(d: RunData, ds: xr.Dataset, claim: int) -> tuple[str, list[str]] | Verdict:
    """(the no-TCR reference - the first condition of ``ds`` -, the TCR conditions), or the
    not-tested verdict of ``claim`` when the run has no such reference or no TCR condition."""
    conds = _conds(ds)
    ref = conds[0]
    if d.info(ref).tcr_form != "none":
        return not_tested(claim, f"a no-TCR reference (first) condition; the first condition is {ref}")
    tcr = [c for c in conds[1:] if d.info(c).tcr_form != "none"]
    return (ref, tcr) if tcr else not_tested(claim, "a TCR condition")


def _reason(status: str, ev: list[Evidence]) -> str:
    if not ev:
        return status
    counts = {s: sum(e.status == s for e in ev) for s in (HOLDS, FAILS, INCONCLUSIVE)}
    return f"{status} (of {len(ev)} comparisons: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n) + ")"


# ------------------------------------------------------------------------------------------- claims
def _abrupt_evidence(ds: xr.Dataset, ref: str, where: str) -> Evidence | None:
    """The fraction of ``ref``'s networks (diverged ones left out) with ``abrupt`` = 1, with an exact
    (Clopper-Pearson) 95 % CI; None when no network is left."""
    c = ds.sel(condition=ref)
    abrupt = c["abrupt"].values.ravel()
    diverged = c["diverged"].values.ravel().astype(bool) if "diverged" in c else np.zeros(abrupt.shape, bool)
    ok = ~diverged & np.isfinite(abrupt)
    n, k = int(ok.sum()), int((ok & (abrupt == 1)).sum())
    if n == 0:
        return None
    lo, hi = clopper_pearson(k, n)
    ev = Evidence(f"{ref} networks with a search phase then an abrupt drop{where}", k / n, lo, hi, np.nan, n, "",
                  "Clopper-Pearson CI")
    if lo > CLAIM1_MAJORITY:
        ev.status = HOLDS
    elif hi < CLAIM1_MAJORITY:
        ev.status = FAILS
    else:
        ev.status = INCONCLUSIVE
        if (0.025 ** (1 / n)) <= CLAIM1_MAJORITY:
            ev.note = f"with {n} networks even all of them showing it would not put the CI above 1/2 (at least 6 needed)"
    return ev


def claim_1(d: RunData) -> Verdict:
    """Search phase then abrupt drop, judged on the reference condition (the first, e.g. the
    baseline: the claim is about training itself, TCR is the intervention): the fraction of its
    networks with ``abrupt`` = 1 (see analysis/learning_curves.py), with an exact 95 % CI. Holds
    when the CI lies above CLAIM1_MAJORITY, does not hold when it lies below. In a sweep each point
    is judged apart and the claim holds where some point holds (combine_any): a sweep maps the
    regimes, and the claim is that the phenomenon exists in one."""
    if not _has(d.results, "abrupt", "search_phase", "drop_width"):
        return not_tested(1, "results.nc with the learning-curve metrics (abrupt, search_phase)")
    ref = str(d.results["condition"].values[0])
    ev, numbers = [], []
    for where, sub in _points(d.results):
        at = f" ({where})" if where else ""
        e = _abrupt_evidence(sub, ref, at)
        if e is None:
            continue
        ev.append(e)
        sp = sub["search_phase"].sel(condition=ref).values
        k = int(round(e.estimate * e.n))
        numbers.append(f"{ref}{at}: {k} of {e.n} networks ({100 * e.estimate:.0f} %, 95 % CI {100 * e.ci_low:.0f} to "
                       f"{100 * e.ci_high:.0f} %) show a search phase (at least one smoothing window on the plateau) "
                       f"followed by a drop at most 1/3 as wide; {int((~np.isfinite(sp)).sum())} without a drop")
    if not ev:
        return not_tested(1, "networks that did not diverge")
    if not d.results.attrs.get("sweep_dims"):
        for cond in d.results["condition"].values:
            c = d.results.sel(condition=cond)
            sp, w = c["search_phase"].values, c["drop_width"].values
            numbers.append(f"{cond}: median search phase {nanmedian(sp):.0f} iterations, median drop width "
                           f"{nanmedian(w):.0f} iterations; {int(np.nansum(c['abrupt'].values))}/"
                           f"{int(np.isfinite(c['abrupt'].values).sum())} abrupt"
                           if np.isfinite(sp).any() else f"{cond}: no drop detected")
    status = combine_any(e.status for e in ev)
    notes = list(dict.fromkeys(e.note for e in ev if e.note))
    if len(ev) == 1:
        e = ev[0]
        k = int(round(e.estimate * e.n))
        reason = (f"{status}: {k}/{e.n} {ref} networks ({100 * e.estimate:.0f} %, 95 % CI {100 * e.ci_low:.0f} to "
                  f"{100 * e.ci_high:.0f} %) show it; the rule asks for a CI above {100 * CLAIM1_MAJORITY:.0f} %")
    else:
        held = [e.label.split("(", 1)[-1].rstrip(")") for e in ev if e.status == HOLDS]
        reason = (f"{status}: it holds at {len(held)} of {len(ev)} sweep points"
                  + (f" ({'; '.join(held)})" if held else ""))
    return Verdict(1, status, reason, ev, numbers, notes)


def _width_correlation(lead: np.ndarray, width: np.ndarray) -> tuple[float, float, int]:
    """Spearman correlation of lead times with drop widths over networks with both (rho, p, n)."""
    from scipy.stats import spearmanr

    ok = np.isfinite(lead) & np.isfinite(width)
    if ok.sum() < 3 or np.ptp(lead[ok]) == 0 or np.ptp(width[ok]) == 0:
        return np.nan, np.nan, int(ok.sum())
    r = spearmanr(lead[ok], width[ok])
    return float(r.statistic), float(r.pvalue), int(ok.sum())


def claim_2(d: RunData) -> Verdict:
    """GR precedes the drop: lead times (the drop's departure from the plateau's noise band minus the
    first GR event) of all networks with both, pooled over conditions; median with bootstrap CI,
    exact sign test of the fraction positive. The departure, unlike the 10 % onset, does not move
    when the same drop is wider (science.md §5), so the verdict rests on it; the onset's lead and
    both leads' Spearman correlation with the drop width are stated beside it. Smallest effect of
    interest: one checkpoint interval (the resolution of a lead time)."""
    if not _has(d.analysis, "lead_time"):
        return not_tested(2, "analysis.nc (run `bioplastic analyze OUT`)")
    from scipy.stats import binomtest

    width_free = _has(d.analysis, "lead_time_departure")
    what = "drop departure" if width_free else "drop onset"
    lead_cs, early_cs = comparable_leads(d.analysis)
    earliest = earliest_gr_event(d.analysis)
    total = lead_cs.size
    n_early = int(early_cs.sum())
    lead = lead_cs.ravel()
    if not np.isfinite(lead).any():
        if n_early:
            return Verdict(2, INCONCLUSIVE, f"inconclusive: every drop of the {n_early} networks with a GR event and a drop (of "
                                            f"{total}) starts at or before iteration {earliest:.0f}, before a GR event can be flagged",
                           numbers=[f"0 of {total} networks have a lead GR could make positive; {n_early} left out (drop at or before "
                                    f"iteration {earliest:.0f}, the first checkpoint a GR event can be flagged at)"])
        return Verdict(2, INCONCLUSIVE, f"inconclusive: none of {total} networks has both a GR event and a drop",
                       numbers=[f"0 of {total} networks have both a GR event and a drop onset"])
    width = (d.results["drop_width"].sel(condition=d.analysis["condition"].values).values.ravel()
             if _has(d.results, "drop_width") else np.full(total, np.nan))
    onset_lead = comparable_leads(d.analysis, "lead_time")[0].ravel()
    lead = lead[np.isfinite(lead)]
    med, lo, hi = bootstrap_ci(lead, verdict_rng(d.analysis, 2), n_boot=N_BOOT)
    pos, neg = int((lead > 0).sum()), int((lead < 0).sum())
    p = binomtest(pos, pos + neg).pvalue if pos + neg else np.nan
    ckpt = d.analysis["checkpoint"].values
    step = float(np.median(np.diff(ckpt))) if ckpt.size > 1 else 1.0
    ev = evidence(f"median lead time ({what} minus first GR event), all networks", med, lo, hi, p, lead.size, +1, step,
                  unit="iterations", min_p=min_p_sign(pos + neg), test="sign test")
    numbers = [f"{lead.size} of {total} networks have both a GR event and a drop; GR comes before the {what} in {pos} "
               f"({100 * pos / lead.size:.0f} %), after it in {neg}, at the same checkpoint in {lead.size - pos - neg}"]
    rho_on, p_on, n_on = _width_correlation(onset_lead, width)
    if n_early:
        numbers.append(f"left out: {n_early} network{'s' * (n_early != 1)} whose drop's {what.removeprefix('drop ')} comes at or before iteration "
                       f"{earliest:.0f}, the first checkpoint at which a GR event can be flagged (after the rule's baseline): "
                       "GR cannot come first there")
    if width_free:
        rho_dep, p_dep, _ = _width_correlation(lead_cs.ravel(), width)
        ok = np.isfinite(onset_lead)
        numbers.append(f"lead to the 10 % drop onset (earlier measure): median {num(nanmedian(onset_lead), '.0f')} iterations, "
                       f"positive in {int((onset_lead[ok] > 0).sum())}/{int(ok.sum())}")
        numbers.append(f"correlation with the drop width (Spearman, {n_on} networks): lead to the onset rho = {rho_on:.2f} "
                       f"(p = {p_on:.2g}); lead to the departure rho = {rho_dep:.2f} (p = {p_dep:.2g})")
    else:
        numbers.append(f"correlation of the lead with the drop width (Spearman, {n_on} networks): rho = {rho_on:.2f} (p = {p_on:.2g})")
    for ci, cond in enumerate(d.analysis["condition"].values):
        lc = lead_cs[ci][np.isfinite(lead_cs[ci])]
        if lc.size:
            cmed, clo, chi = lead_summary(d.analysis, ci, lc)
            numbers.append(f"{cond}: {int((lc > 0).sum())}/{lc.size} positive, median lead {num(cmed, '.0f')} iterations "
                           f"(95 % CI {num(clo, '.0f')} to {num(chi, '.0f')})"
                           + (f"; {int(early_cs[ci].sum())} left out" if early_cs[ci].any() else ""))
    if _has(d.analysis, "gr_growth"):
        gg = d.analysis["gr_growth"].values.ravel()
        if np.isfinite(gg).any():
            numbers.append(f"growth of the trajectory change through the search phase (Spearman with the iteration, "
                           f"threshold-free): median {nanmedian(gg):.2f}, above 0 in {int((gg > 0).sum())}/{int(np.isfinite(gg).sum())} networks")
    notes = [f"Lead times are resolved to one checkpoint interval ({step:.0f} iterations)."]
    if width_free:
        notes.append("The verdict uses the lead to the drop's departure from the plateau's noise band, which a wider drop "
                     "starting at the same time does not move; the lead to the 10 % onset grows with the drop's width.")
    # the search phases of the networks whose leads are counted (a network that falls from the start has none)
    search = (d.results["search_phase"].sel(condition=d.analysis["condition"].values).values[np.isfinite(lead_cs)]
              if _has(d.results, "search_phase") else np.array([np.nan]))
    if np.isfinite(search).any() and step > GR_RESOLUTION * nanmedian(search):
        notes.append(f"Checkpoints are {step:.0f} iterations apart, more than {GR_RESOLUTION:g} of the median search "
                     f"phase of the networks with a lead ({nanmedian(search):.0f} iterations): too coarse to resolve GR "
                     "before the drop; lower "
                     "training.checkpoint_every.")
    if min_p_sign(pos + neg) >= ALPHA:
        notes.append(f"Too few networks: with {pos + neg} non-zero lead times the sign test cannot reach p < {ALPHA:g}.")
    return Verdict(2, ev.status, f"{ev.status}: median lead {num(med, '.0f')} iterations before the {what} (95 % CI "
                                 f"{num(lo, '.0f')} to {num(hi, '.0f')}), GR first in {pos}/{lead.size} networks, sign test p = {p:.2g}; "
                                 f"lead to the 10 % onset vs drop width: Spearman rho = {rho_on:.2f}", [ev], numbers, notes)


def claim_3(d: RunData) -> Verdict:
    """Every TCR condition (loss and plasticity forms) against the no-TCR reference: iterations to
    criterion shorter (combine_all)."""
    v = _tcr_vs_reference(d, 3, lambda i: True, "")
    if v.status != NOT_TESTED:
        forms = {d.info(c).tcr_form for c in _conds(d.results)} - {"none"}
        if forms != {"loss", "plasticity"}:
            v.notes.append(f"Only the {', '.join(sorted(forms))} form of TCR is in this run; the claim names both.")
    return v


#: claim 4's second factor: where a run sweeps the start's distance from a trained network (training.init)
DISTANCE = "training.init.distance"


def _factor_part(strong: list[tuple[str, Evidence]], weak: list[tuple[str, Evidence]],
                 pairs: list[tuple[Evidence, tuple[str, Evidence]]] | None = None) -> tuple[str, str]:
    """One factor of claim 4: TCR must help at every ``strong`` point, and its median benefit at the
    ``weak`` points must be smaller - than the smallest at a strong point, or, given ``pairs`` (strong
    evidence, (label, weak evidence) of the same network settings), than its own pair's. Returns
    (status, reason)."""
    ev = [e for _, e in strong]
    status = combine_all(e.status for e in ev)
    if pairs is None:
        smallest = min(-e.estimate for e in ev)
        bigger = [label for label, e in weak if np.isfinite(e.estimate) and -e.estimate >= smallest]
    else:
        bigger = [label for s_e, (label, e) in pairs if np.isfinite(e.estimate) and -e.estimate >= -s_e.estimate]
    if status == HOLDS and bigger:
        status = INCONCLUSIVE
    return status, (f"{_reason(combine_all(e.status for e in ev), ev)}; the benefit is "
                    + ("not smaller at " + ", ".join(dict.fromkeys(bigger)) if bigger else "smaller at every weaker point"))


def claim_4(d: RunData) -> Verdict:
    """TCR's benefit (iterations to criterion, TCR minus no-TCR) against the gain g: it must hold at
    every g > 1 point, and the median benefit at every g <= 1 point must be smaller than the smallest
    median benefit at g > 1. Where the run sweeps the start's distance from a trained network
    (``training.init.distance``), the g part reads the farthest start only, and a second part asks the
    same of the distance in chaotic networks: at every g > 1, TCR must help at the farthest start, with
    a smaller benefit at the nearest start of the same g (and TCR condition). The verdict combines the
    parts present (combine_all); a part that does not hold sinks it, one that is undecided leaves it
    inconclusive."""
    if not _has(d.results, "itc_difference"):
        return not_tested(4, "results.nc with the comparison statistics")
    ref = _ref(d)
    tcr = [c for c in _conds(d.results)[1:] if d.info(c).tcr_form != "none"]
    if d.info(ref).tcr_form != "none" or not tcr:
        return not_tested(4, "a no-TCR reference (first) condition and a TCR condition")
    swept = DISTANCE in str(d.results.attrs.get("sweep_dims", "")).split(",") and DISTANCE in d.results.dims
    far_d = float(d.results[DISTANCE].max()) if swept else np.nan
    near_d = float(d.results[DISTANCE].min()) if swept else np.nan
    chaotic, ordered, far, near, numbers = [], [], {}, {}, []
    for where, sub in _points(d.results):
        g = float(sub["model.g"]) if "model.g" in sub.coords else d.info(ref).g
        if not np.isfinite(g):
            continue
        dist = float(sub[DISTANCE]) if swept else np.nan
        at = f" ({where or f'g = {g:g}'})"
        for c in tcr:
            e = _itc_evidence(sub, ref, c, at)
            label = f"g = {g:g}" + (f", distance {dist:g}" if swept else "")
            if not swept or dist == far_d:
                (chaotic if g > 1 else ordered).append((f"g = {g:g}", e))
            if swept and g > 1 and dist in (far_d, near_d):  # the same network settings but for the start
                others = tuple(str(sub[k].values) for k in d.results.attrs["sweep_dims"].split(",") if k and k != DISTANCE and k in sub.coords)
                (far if dist == far_d else near).setdefault(others + (c,), (f"{label} ({c})", e))
            numbers.append(f"{label}, {c}: TCR minus no TCR {e.estimate:+.0f} iterations (95 % CI {e.ci_low:+.0f} to "
                           f"{e.ci_high:+.0f}, p = {e.p_value:.2g}); reference median {_median_ci(sub, ref, 'itc')}")
    parts, reasons, ev_all = [], [], []
    if chaotic and ordered:
        status, why = _factor_part(chaotic, ordered)
        parts.append(status)
        reasons.append(f"at g > 1{' (farthest start)' if swept else ''} {why.replace('weaker point', 'g <= 1 point')}")
        ev_all += [e for _, e in chaotic] + [e for _, e in ordered]
    keys = [k for k in far if k in near] if far_d != near_d else []
    if keys:
        status, why = _factor_part([far[k] for k in keys], [near[k] for k in keys], [(far[k][1], near[k]) for k in keys])
        parts.append(status)
        reasons.append(f"far from the solution (distance {far_d:g}, g > 1) "
                       f"{why.replace('weaker point', f'nearest start (distance {near_d:g})')}")
        ev_all += [far[k][1] for k in keys if all(far[k][1] is not x for x in ev_all)] + [near[k][1] for k in keys]
    if not parts:
        missing = ([] if chaotic else ["networks with g > 1 (chaotic)"]) + ([] if ordered else ["networks with g <= 1 (non-chaotic)"])
        v = not_tested(4, *missing, "a sweep over model.g such as protocols/chaos_sweep.yaml (or, at g > 1, over "
                                    f"{DISTANCE}, from near to far from a trained network: protocols/chaos_adam_distance.yaml)")
        v.numbers = numbers
        return v
    status = combine_all(parts)
    notes = _power_notes([e for _, e in chaotic] + [far[k][1] for k in keys if all(far[k][1] is not x for _, x in chaotic)])
    if not keys:
        notes.append("'Near the solution' (the claim's last words) is not tested by these numbers: every network starts "
                     f"from a random draw; sweep {DISTANCE} at g > 1 (protocols/chaos_adam_distance.yaml).")
    elif not (chaotic and ordered):
        notes.append("The run has one side of g only: the verdict rests on the start's distance from the solution.")
    return Verdict(4, status, f"{status}: " + "; ".join(reasons), ev_all, numbers, notes)


def claim_5(d: RunData) -> Verdict:
    """As claim 3, for conditions trained by a local rule (anything but bptt)."""
    return _tcr_vs_reference(d, 5, lambda i: i.rule != "bptt", "trained by a local rule (rflo, eprop, node_perturbation)")


def claim_6(d: RunData) -> Verdict:
    """As claim 3, for LSTM conditions; the search-phase lengths are shown alongside."""
    v = _tcr_vs_reference(d, 6, lambda i: i.model_kind == "lstm", "with an LSTM model")
    if v.status != NOT_TESTED and "search_phase" in d.results:
        for c in _conds(d.results):
            sp = d.results["search_phase"].sel(condition=c).values
            v.numbers.append(f"{c}: median search phase {nanmedian(sp):.0f} iterations ({int(np.isfinite(sp).sum())} "
                             "networks with a drop)" if np.isfinite(sp).any() else f"{c}: no drop detected")
    return v


def _pred_evidence(pred: xr.Dataset, m: str, cond: str, direction: int, delta: float, unit: str) -> Evidence | None:
    if f"{m}_effect" not in pred:
        return None
    est, lo, hi, p = (float(x) for x in pred[f"{m}_effect"].sel(condition=cond).values)
    conds = _conds(pred)
    j = conds.index(cond)
    paired_flags = list(np.atleast_1d(pred[f"{m}_effect"].attrs.get("paired", [1] * len(conds))))
    a, b = pred[m].sel(condition=cond).values, pred[m].sel(condition=conds[0]).values
    if paired_flags[j] if j < len(paired_flags) else True:
        n = int((np.isfinite(a) & np.isfinite(b)).sum())
        mp, test = min_p_wilcoxon(n), "Wilcoxon signed-rank"
    else:
        n1, n2 = int(np.isfinite(a).sum()), int(np.isfinite(b).sum())
        n, mp, test = min(n1, n2), min_p_mann_whitney(n1, n2), "Mann-Whitney U"
    return evidence(f"{cond} vs {conds[0]}: {pred[m].attrs.get('long_name', m)}", est, lo, hi, p, n, direction, delta,
                    unit=unit, min_p=mp, test=test)


def claim_7(d: RunData) -> Verdict:
    """Per TCR condition against the no-TCR reference (predictions.nc): more ramping units - units
    that build up activity for their preferred choice (fraction_buildup; fraction_ramping in
    datasets without it), delta 5 percentage points - and slower dynamics (the single-unit
    autocorrelation timescale or the attractors' slowest mode longer, delta 10 % of the reference,
    or more units longer than measurable, delta 5 points; combine_any, none may not hold). Per
    condition combine_all(ramping, slow); over TCR conditions combine_all."""
    pred = d.predictions
    if not _has(pred, "fraction_ramping_effect"):
        return not_tested(7, "predictions.nc (compute_predictions)")
    split = _reference_and_tcr(d, pred, 7)
    if isinstance(split, Verdict):
        return split
    ref, tcr = split

    def ref_median(m):
        return float(pred[f"{m}_summary"].sel(condition=ref).values[0]) if f"{m}_summary" in pred else np.nan

    ev, per_cond, notes = [], [], []
    for c in tcr:
        ramp = _pred_evidence(pred, "fraction_buildup" if "fraction_buildup_effect" in pred else "fraction_ramping",
                              c, +1, RAMP_DELTA, "")
        slow = []
        for m in ("timescale_median_ms", "fraction_timescale_long", "attractor_slow_tau_ms"):
            if f"{m}_effect" not in pred:
                continue
            r = ref_median(m)
            delta = RAMP_DELTA if m == "fraction_timescale_long" else TAU_DELTA_FRACTION * r if np.isfinite(r) and r > 0 else 1.0
            e = _pred_evidence(pred, m, c, +1, delta, "" if m == "fraction_timescale_long" else "ms")
            if e is not None and np.isfinite(e.estimate):
                slow.append(e)
            elif e is not None:
                notes.append(f"{c}: {m} has no estimate (e.g. no analysis.nc, or no fitted unit)")
        ev += [ramp] + slow
        slow_status = (FAILS if any(e.status == FAILS for e in slow) else combine_any(e.status for e in slow))
        per_cond.append(combine_all([ramp.status, slow_status]))
    numbers = [s for s in prediction_sentences(pred)
               if any(k in s for k in ("ramp", "build up", "autocorrelation timescale", "longer than measurable",
                                       "Slowest Jacobian"))]
    if "fraction_timescale_long_summary" in pred:
        for c in _conds(pred):
            m, lo, hi = pred["fraction_timescale_long_summary"].sel(condition=c).values
            if np.isfinite(m):
                numbers.append(f"{c}: {100 * m:.0f} % (95 % CI {100 * lo:.0f} to {100 * hi:.0f} %) of units have an "
                               "autocorrelation timescale longer than measurable")
    status = combine_all(per_cond)
    return Verdict(7, status, _reason(status, ev), ev, numbers, _power_notes(ev) + notes)


#: claim 8's control: the sweep point whose reference networks change their activity this many times
#: faster (final mean squared one-step change) than at the slowest point needs "fast changes"
FAST_RATIO = 2.0


def _harm(sub: xr.Dataset, ref: str, cond: str) -> tuple[np.ndarray, np.ndarray]:
    """Per seed, ``cond`` minus ``ref``: iterations to criterion (unlearned networks at the budget)
    and final accuracy (:func:`~bioplastic.analysis.learning_curves.compared_outcomes`)."""
    itc, acc = compared_outcomes(sub)
    i, j = _conds(sub).index(cond), _conds(sub).index(ref)
    return itc[i] - itc[j], acc[i] - acc[j]


def _fast_and_slow(d: RunData, ref: str):
    """The sweep points where the reference networks change their activity fastest and slowest (median
    final mean squared one-step change), when they differ at least FAST_RATIO-fold; else None."""
    points = list(_points(d.results))
    if len(points) < 2 or "tcr_loss" not in d.results:
        return None
    speed = [nanmedian(final_activity(sub.sel(condition=[ref]))[0]) for _, sub in points]
    fast, slow = int(np.nanargmax(speed)), int(np.nanargmin(speed))
    if not (np.isfinite(speed[fast]) and speed[slow] > 0 and speed[fast] >= FAST_RATIO * speed[slow]):
        return None
    return points[fast], points[slow], speed[fast], speed[slow]


def claim_8(d: RunData) -> Verdict:
    """TCR can hurt: per TCR condition, final accuracy lower (delta 0.05) or iterations to criterion
    longer (delta 10 % of the reference); combine_any over measures and conditions. With a control -
    a sweep whose points differ in how fast the reference networks' activity changes (at least
    FAST_RATIO-fold, measured, e.g. frequent vs rare flips) - the claim is that TCR hurts *because* the
    solution needs fast changes: it must hurt at the fastest point (combine_any) and hurt more there
    than at the slowest (the per-seed harm at the fastest point minus that at the slowest, paired by
    seed; combine_any), both required."""
    if not _has(d.results, "itc_difference", "acc_difference"):
        return not_tested(8, "results.nc with the comparison statistics")
    ref = _ref(d)
    tcr = [c for c in _conds(d.results)[1:] if d.info(c).tcr_form != "none"]
    if d.info(ref).tcr_form != "none" or not tcr:
        return not_tested(8, "a no-TCR reference (first) condition and a TCR condition")
    ev, numbers = [], []
    control = _fast_and_slow(d, ref)
    for where, sub in _points(d.results):
        at = f" ({where})" if where else ""
        if control is None or where == control[0][0]:
            ev += [e for c in tcr for e in (_acc_evidence(sub, ref, c, at, -1), _itc_evidence(sub, ref, c, at, direction=+1))]
        numbers += [f"{c}{at}: final accuracy {_median_ci(sub, c, 'acc', '{:.3f}')}, iterations to criterion "
                    f"{_median_ci(sub, c, 'itc')}" for c in [ref] + tcr]
    notes = ["Whether the task needs fast changes of activity is a property of the protocol "
             "(e.g. protocols/fast_switching.yaml), not checked here."]
    status = combine_any(e.status for e in ev)
    if control is not None:
        (fast, fsub), (slow, ssub), vf, vs = control
        rng = verdict_rng(d.results, 8)
        specific = []
        for c in tcr:
            (itc_f, acc_f), (itc_s, acc_s) = _harm(fsub, ref, c), _harm(ssub, ref, c)
            delta = ITC_DELTA_FRACTION * float(fsub["itc_median"].sel(condition=ref))
            specific += [paired(f"{c} vs {ref}: accuracy cost at {fast} minus at {slow} (paired by seed)", acc_f, acc_s, -1,
                                ACC_DELTA, rng=rng),
                         paired(f"{c} vs {ref}: extra iterations to criterion at {fast} minus at {slow} (paired by seed)",
                                itc_f, itc_s, +1, delta if np.isfinite(delta) and delta > 0 else 1.0, "iterations", rng=rng)]
        ev += specific
        status = combine_all([status, combine_any(e.status for e in specific)])
        notes = [f"Control: the reference networks' activity changes {vf / vs:.1f} times faster (final mean squared one-step "
                 f"change {vf:.3g} vs {vs:.3g}) at {fast} than at {slow}; TCR must hurt at {fast} and hurt more there than "
                 f"at {slow} (the harm at {slow} alone is not the claim's)."]
    return Verdict(8, status, _reason(status, ev), ev, numbers, _power_notes(ev) + notes)


def final_activity(results: xr.Dataset) -> np.ndarray:
    """(condition, seed): mean ``tcr_loss`` (mean squared one-step change of the state) over the last
    ACTIVITY_TAIL of the iterations."""
    tl = results["tcr_loss"].values
    n = tl.shape[-1]
    tail = tl[..., n - max(1, int(round(ACTIVITY_TAIL * n))):]
    with warnings.catch_warnings():  # all-NaN rows (diverged networks) give NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(tail, axis=-1)


def claim_9(d: RunData) -> Verdict:
    """Freeze-in collapse. Uncontrolled freeze-in conditions (kappa > 0, no weight noise, constant
    eta_F) against the reference (first) condition, which must have no freeze-in: log10 of the final
    activity lower (delta: tenfold) and final accuracy lower (delta 0.05), both required
    (combine_all). Controlled freeze-in conditions (weight noise or an eta_F controller) against the
    uncontrolled ones: final accuracy higher (combine_any). Overall combine_all of collapse and
    rescue; without a controlled condition the rescue part is reported as not tested and the verdict
    rests on the collapse part alone. Attractor counts (analysis.nc) are shown, not used."""
    res = d.results
    if not _has(res, "tcr_loss", "final_accuracy"):
        return not_tested(9, "results.nc with tcr_loss and final_accuracy")
    conds = _conds(res)
    info = {c: d.info(c) for c in conds}
    free = [c for c in conds if info[c].tcr_form == "plasticity" and info[c].kappa > 0
            and info[c].sigma_w == 0 and info[c].eta_schedule == "constant"]
    ctrl = [c for c in conds if info[c].tcr_form == "plasticity" and info[c].kappa > 0 and c not in free]
    ref = conds[0]
    if not free:
        return not_tested(9, "a freeze-in condition without weight noise or eta_F control (kappa > 0, sigma_w = 0, "
                             "constant schedule)")
    if info[ref].kappa > 0:
        return not_tested(9, f"a reference (first) condition without freeze-in (kappa = 0); the first is {ref}")
    if res.attrs.get("sweep_dims"):
        return not_tested(9, "a run without a sweep")
    act = final_activity(res)
    acc = res["final_accuracy"].values
    with np.errstate(divide="ignore"):
        logact = np.log10(np.where(act > 0, act, np.nan))
    i = {c: k for k, c in enumerate(conds)}
    collapse, ev = [], []
    for c in free:
        a = paired(f"{c} vs {ref}: log10 final activity (mean squared one-step change of the state)",
                   logact[i[c]], logact[i[ref]], -1, LOG_ACTIVITY_DELTA, "log10 units", rng=verdict_rng(res, 9))
        b = paired(f"{c} vs {ref}: final held-out accuracy", acc[i[c]], acc[i[ref]], -1, ACC_DELTA, rng=verdict_rng(res, 9))
        ev += [a, b]
        collapse.append(combine_all([a.status, b.status]))
    rescue = []
    for k in ctrl:
        for c in free:
            e = paired(f"{k} vs {c}: final held-out accuracy (control rescues)", acc[i[k]], acc[i[c]], +1, ACC_DELTA,
                       rng=verdict_rng(res, 9))
            ev.append(e)
            rescue.append(e.status)
    notes = _power_notes(ev)
    parts = [combine_all(collapse)]
    if rescue:
        parts.append(combine_any(rescue))
    else:
        notes.append("No freeze-in condition with weight noise or an eta_F controller: the 'without noise or control' "
                     "part is not tested.")
    numbers = []
    for c in conds:
        txt = (f"{c}: final activity {nanmedian(act[i[c]]):.3g} (median over seeds; initial "
               f"{nanmedian(res['tcr_loss'].values[i[c], :, 0]):.3g}), final accuracy {nanmedian(acc[i[c]]):.3f}")
        if _has(d.analysis, "n_stable", "n_saddle"):
            a = d.analysis.sel(condition=c).isel(checkpoint=-1)
            st, sa = a["n_stable"].values, a["n_saddle"].values
            trivial = int(((st == 1) & (sa == 0)).sum())
            txt += (f"; final checkpoint: median {nanmedian(st):.0f} stable point(s), {trivial}/{st.size} networks with a "
                    "single stable point and no saddle (trivial fixed point)")
        numbers.append(txt)
    if not _has(d.analysis, "n_stable"):
        notes.append("analysis.nc missing: attractor counts not shown.")
    status = combine_all(parts)
    return Verdict(9, status, _reason(status, ev), ev, numbers, notes)


def claim_10(d: RunData) -> Verdict:
    """Every TCR condition against the no-TCR reference: the first checkpoint with the stable fixed
    points the task needs (``attractor_formation``) earlier, paired by seed (combine_all). A network
    that never forms them counts one checkpoint interval past the last checkpoint (a lower bound);
    where no network of either condition forms them the comparison is inconclusive."""
    if not _has(d.analysis, "attractor_formation"):
        return not_tested(10, "analysis.nc with attractor_formation (a task whose solution is a set of point attractors: "
                              "evidence accumulation, the flip-flop)")
    a = d.analysis
    split = _reference_and_tcr(d, a, 10)
    if isinstance(split, Verdict):
        return split
    ref, tcr = split
    ck = a["checkpoint"].values.astype(float)
    step = float(np.diff(ck)[-1]) if len(ck) > 1 else 1.0
    needed = int(a["attractor_formation"].attrs["needed"])

    def formation(c):
        t = a["attractor_formation"].sel(condition=c).values.astype(float)
        return np.where(np.isfinite(t), t, ck[-1] + step), int(np.isfinite(t).sum())

    r, r_formed = formation(ref)
    delta = ITC_DELTA_FRACTION * float(np.median(r))
    ev, per_cond = [], []
    numbers = [f"{ref}: the {needed} stable fixed points first appear at a median of {np.median(r):.0f} iterations; "
               f"formed in {r_formed}/{len(r)} networks"]
    for c in tcr:
        t, formed = formation(c)
        e = paired(f"{c} vs {ref}: iteration at which the {needed} stable fixed points first appear (paired difference)",
                   t, r, -1, delta if np.isfinite(delta) and delta > 0 else 1.0, "iterations", rng=verdict_rng(a, 10))
        if formed == 0 and r_formed == 0:  # every time censored at the same bound: no information, not "no effect"
            e.status, e.note = INCONCLUSIVE, "no network of either condition formed them within the run"
        ev.append(e)
        per_cond.append(e.status)
        numbers.append(f"{c}: median {np.median(t):.0f} iterations; formed in {formed}/{len(t)} networks")
    status = combine_all(per_cond)
    notes = [f"Stable fixed points at zero input, counted at each checkpoint (every {step:.0f} iterations); counts are "
             "lower bounds (the search may miss a point), so formation times are upper bounds at checkpoint resolution. "
             "A network that never forms them counts one checkpoint interval past the last (a lower bound)."]
    if "memory_held" in a:
        numbers += [_memory_line(a, c) for c in [ref] + list(tcr)]
        notes.append("Memory probe (analysis/memory_probe.py): each memory state set once, then held with zero input and read "
                     "out; an attractor solution holds every state at every hold. A network that holds them for one trial "
                     "length but not for the longest hold keeps its memory in slow transients, not in the attractors counted here. "
                     "Plastic networks are probed with their short-term plasticity, which may hold a state the long-term "
                     "weights' attractors (counted here) do not.")
    return Verdict(10, status, _reason(status, ev), ev, numbers, _power_notes(ev) + notes)


def _memory_line(a, cond: str) -> str:
    """How many of a condition's networks hold every memory state after the shortest and the longest hold."""
    m = a["memory_held"].sel(condition=cond)
    hold_s = a["hold_ms"].values / 1000.0
    have = np.isfinite(m.values).all(-1)
    full = (m.values[have] >= 1.0).sum(0)
    return (f"{cond}: at its last checkpoint, {full[0]}/{have.sum()} networks hold every memory state after {hold_s[0]:g} s "
            f"of zero input, {full[-1]}/{have.sum()} after {hold_s[-1]:g} s")


RULES: dict[int, Callable[[RunData], Verdict]] = {1: claim_1, 2: claim_2, 3: claim_3, 4: claim_4, 5: claim_5,
                                                  6: claim_6, 7: claim_7, 8: claim_8, 9: claim_9, 10: claim_10}


def verdicts(claims, data: RunData, strict: bool = False) -> list[Verdict]:
    """A verdict for each claim number. A rule that fails on unexpected data raises with
    ``strict`` (tests); otherwise it gives a verdict marked :data:`FAILED` that names the error, so
    the report is still written and the caller (the pipeline) reports the run as incomplete."""
    out = []
    for n in claims:
        try:
            out.append(RULES[int(n)](data))
        except Exception as exc:  # noqa: BLE001 - shown as an error in the report; strict mode raises
            if strict:
                raise
            out.append(Verdict(int(n), FAILED, f"error: the verdict could not be computed ({type(exc).__name__}: {exc})"))
    return out
