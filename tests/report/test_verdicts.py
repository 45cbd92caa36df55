"""Verdict rules on synthetic numbers: for each claim, a case that holds, one that does not, one
inconclusive (and the data-missing case)."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from bioplastic.analysis.geometry import earliest_gr_event
from bioplastic.report import verdicts as V
from bioplastic.report.verdicts import FAILS, HOLDS, INCONCLUSIVE, NOT_TESTED, CondInfo, RunData

SEEDS = 8  # enough pairs for a Wilcoxon test to reach p < 0.05 (smallest p = 2/2^8)


# ------------------------------------------------------------------------------ the core rule
def test_effect_status_rules():
    # claimed decrease, CI below 0, significant
    assert V.effect_status(-50, -80, -20, 0.01, -1, 10)[0] == HOLDS
    # CI below 0 but the test cannot be significant (3 pairs): inconclusive, and it says why
    status, note = V.effect_status(-50, -80, -20, 0.25, -1, 10, min_p=V.min_p_wilcoxon(3))
    assert status == INCONCLUSIVE and "cannot reach p < 0.05" in note
    # opposite and significant
    assert V.effect_status(50, 20, 80, 0.01, -1, 10)[0] == FAILS
    # no effect, CI excludes the smallest effect of interest (-10), enough pairs
    assert V.effect_status(0, -5, 5, 0.9, -1, 10, min_p=V.min_p_wilcoxon(8))[0] == FAILS
    # no effect but CI wide enough to include the claimed effect: inconclusive
    assert V.effect_status(0, -30, 5, 0.9, -1, 10, min_p=V.min_p_wilcoxon(8))[0] == INCONCLUSIVE
    # increase claims mirror decrease claims
    assert V.effect_status(0.2, 0.1, 0.3, 0.01, +1, 0.05)[0] == HOLDS
    assert V.effect_status(np.nan, np.nan, np.nan, np.nan, +1, 0.05)[0] == INCONCLUSIVE


def test_min_p_and_combiners():
    assert V.min_p_wilcoxon(3) == 0.25 and V.min_p_wilcoxon(6) < 0.05 <= V.min_p_wilcoxon(5)
    assert V.min_p_mann_whitney(3, 3) == pytest.approx(0.1)
    assert V.combine_all([HOLDS, HOLDS]) == HOLDS
    assert V.combine_all([HOLDS, INCONCLUSIVE]) == INCONCLUSIVE
    assert V.combine_all([HOLDS, FAILS]) == FAILS
    assert V.combine_any([FAILS, HOLDS]) == HOLDS
    assert V.combine_any([FAILS, FAILS]) == FAILS
    assert V.combine_any([FAILS, INCONCLUSIVE]) == INCONCLUSIVE


# ------------------------------------------------------------------------------ synthetic results
def results(itc_by_cond: dict[str, list[float]], acc_by_cond: dict[str, list[float]] | None = None, budget=100,
            onset=None, width=None, tcr_loss=None) -> xr.Dataset:
    """A results-like dataset with the stored comparison statistics, computed as run.py does."""
    from bioplastic.analysis.statistics import censored, compare_conditions

    conds = list(itc_by_cond)
    itc = np.array([itc_by_cond[c] for c in conds], float)
    acc = np.array([(acc_by_cond or {}).get(c, [0.97] * itc.shape[1]) for c in conds], float)
    n = itc.shape[1]
    ds = xr.Dataset(coords={"condition": conds, "seed": np.arange(n), "iteration": np.arange(budget)})
    ds["iterations_to_criterion"] = (("condition", "seed"), itc)
    ds["learned"] = (("condition", "seed"), np.isfinite(itc))
    ds["final_accuracy"] = (("condition", "seed"), acc)
    ds["diverged"] = (("condition", "seed"), np.zeros_like(itc, bool))
    ds["final_iteration"] = (("condition", "seed"), np.full_like(itc, budget))
    onset = np.full_like(itc, 40.0) if onset is None else np.asarray(onset, float)
    width = np.full_like(itc, 10.0) if width is None else np.asarray(width, float)
    ds["drop_onset"] = (("condition", "seed"), onset)
    ds["search_phase"] = (("condition", "seed"), onset)
    ds["drop_width"] = (("condition", "seed"), width)
    ds["abruptness"] = (("condition", "seed"), width / onset)
    ds["abrupt"] = (("condition", "seed"), ((onset >= 10) & (width <= onset / 3)).astype(float))
    if tcr_loss is not None:
        ds["tcr_loss"] = (("condition", "seed", "iteration"), np.asarray(tcr_loss, float))
    for prefix, values in (("itc", censored(itc, budget)), ("acc", acc)):
        stats = compare_conditions(values, np.random.default_rng(0))
        for k, v in stats.items():
            name = {"median": f"{prefix}_median"}.get(k, f"{prefix}_{k}")
            ds[name] = ("condition", v)
    ds.attrs["sweep_dims"] = ""
    return ds


INFO = {"baseline": CondInfo(), "tcr_loss": CondInfo(tcr_form="loss"), "tcr_plasticity": CondInfo(tcr_form="plasticity")}
rng = np.random.default_rng(1)
BASE = list(60 + rng.integers(0, 10, SEEDS))


def test_claim3_holds_fails_inconclusive():
    fast = {"baseline": BASE, "tcr_loss": [b - 30 for b in BASE], "tcr_plasticity": [b - 25 for b in BASE]}
    assert V.claim_3(RunData(results(fast), conditions=INFO)).status == HOLDS
    slow = {"baseline": BASE, "tcr_loss": [b + 30 for b in BASE], "tcr_plasticity": [b - 25 for b in BASE]}
    assert V.claim_3(RunData(results(slow), conditions=INFO)).status == FAILS
    few = {c: v[:3] for c, v in fast.items()}
    v = V.claim_3(RunData(results(few), conditions=INFO))
    assert v.status == INCONCLUSIVE and any("cannot reach p < 0.05" in n for n in v.notes)
    never = {c: [np.nan] * SEEDS for c in fast}
    v = V.claim_3(RunData(results(never), conditions=INFO))
    assert v.status == INCONCLUSIVE and "no network" in v.evidence[0].note
    assert V.claim_3(RunData(None, conditions=INFO)).status == NOT_TESTED
    # the same iterations to criterion, but a search phase half as long in every TCR network: holds
    same = {"baseline": BASE, "tcr_loss": BASE, "tcr_plasticity": BASE}
    onset = [[40.0 + s for s in range(SEEDS)], [20.0 + s for s in range(SEEDS)], [18.0 + s for s in range(SEEDS)]]
    v = V.claim_3(RunData(results(same, onset=onset), conditions=INFO))
    assert v.status == HOLDS and any("search phase" in e.label for e in v.evidence)


def test_a_shorter_search_with_a_significantly_longer_time_to_criterion_is_not_acceleration():
    """Claims 3, 5, 6 hold on either measure - but a TCR condition whose search phase is shorter while
    its time to criterion is significantly longer is inconclusive (seen on the flip-flop at 1500
    iterations); one that is shorter on one measure and no different on the other still holds."""
    onset = [[40.0 + s for s in range(SEEDS)], [20.0 + s for s in range(SEEDS)], [18.0 + s for s in range(SEEDS)]]
    later = {"baseline": BASE, "tcr_loss": [b + 30 for b in BASE], "tcr_plasticity": [b + 25 for b in BASE]}
    v = V.claim_3(RunData(results(later, onset=onset), conditions=INFO))
    by_measure = {("search" if "search phase" in e.label else "itc"): e for e in v.evidence if "tcr_loss" in e.label}
    assert by_measure["search"].status == HOLDS and by_measure["itc"].status == FAILS and by_measure["itc"].opposite
    assert v.status == INCONCLUSIVE
    same = {"baseline": BASE, "tcr_loss": BASE, "tcr_plasticity": BASE}
    assert V.claim_3(RunData(results(same, onset=onset), conditions=INFO)).status == HOLDS
    # "no effect" is not "opposite"
    assert not V.evidence("x", 0, -5, 5, 0.9, 8, -1, 10).opposite and V.evidence("x", 30, 20, 40, 0.01, 8, -1, 10).opposite


def test_claim5_and_6_need_their_conditions():
    fast = {"baseline": BASE, "tcr_loss": [b - 30 for b in BASE]}
    ds = results(fast)
    assert V.claim_5(RunData(ds, conditions=INFO)).status == NOT_TESTED  # bptt everywhere
    local = {"baseline": CondInfo(rule="rflo"), "tcr_loss": CondInfo(tcr_form="loss", rule="rflo")}
    assert V.claim_5(RunData(ds, conditions=local)).status == HOLDS
    assert V.claim_5(RunData(results({"baseline": BASE, "tcr_loss": [b + 30 for b in BASE]}), conditions=local)).status == FAILS
    assert V.claim_5(RunData(results({c: v[:3] for c, v in fast.items()}), conditions=local)).status == INCONCLUSIVE
    lstm = {"baseline": CondInfo(model_kind="lstm"), "tcr_loss": CondInfo(tcr_form="loss", model_kind="lstm")}
    v = V.claim_6(RunData(ds, conditions=lstm))
    assert v.status == HOLDS and any("search phase" in n for n in v.numbers)
    assert V.claim_6(RunData(ds, conditions=INFO)).status == NOT_TESTED


def test_claim8_can_hurt():
    info = {"baseline": CondInfo(), "tcr_loss": CondInfo(tcr_form="loss")}
    acc_base = list(0.97 + 0.002 * rng.standard_normal(SEEDS))
    hurt = results({"baseline": BASE, "tcr_loss": BASE}, {"baseline": acc_base, "tcr_loss": [a - 0.2 for a in acc_base]})
    assert V.claim_8(RunData(hurt, conditions=info)).status == HOLDS
    helps = results({"baseline": BASE, "tcr_loss": [b - 30 for b in BASE]},
                    {"baseline": acc_base, "tcr_loss": [a + 0.01 for a in acc_base]})
    assert V.claim_8(RunData(helps, conditions=info)).status == FAILS
    few = results({"baseline": BASE[:3], "tcr_loss": BASE[:3]}, {"baseline": acc_base[:3], "tcr_loss": [a - 0.2 for a in acc_base[:3]]})
    assert V.claim_8(RunData(few, conditions=info)).status == INCONCLUSIVE


def _two_points(fast: xr.Dataset, slow: xr.Dataset, speed_fast: float, speed_slow: float) -> xr.Dataset:
    """Two sweep points (frequent and rare flips) whose reference networks end with the given mean
    squared one-step change of activity (tcr_loss), every other condition half of it."""
    pts = []
    for ds, v in ((fast, speed_fast), (slow, speed_slow)):
        shape = (ds.sizes["condition"], ds.sizes["seed"], ds.sizes["iteration"])
        act = np.full(shape, v / 2)
        act[0] = v
        pts.append(ds.assign(tcr_loss=(("condition", "seed", "iteration"), act)))
    out = xr.concat(pts, dim="task.pulse_prob").assign_coords({"task.pulse_prob": [0.2, 0.02]})
    out.attrs["sweep_dims"] = "task.pulse_prob"
    return out


def test_claim8_with_a_control_asks_for_more_harm_where_activity_must_change_fast():
    info = {"baseline": CondInfo(), "tcr_loss": CondInfo(tcr_form="loss")}
    acc_base = list(0.97 + 0.002 * rng.standard_normal(SEEDS))
    hurt = results({"baseline": BASE, "tcr_loss": BASE}, {"baseline": acc_base, "tcr_loss": [a - 0.2 for a in acc_base]})
    harmless = results({"baseline": BASE, "tcr_loss": BASE}, {"baseline": acc_base, "tcr_loss": list(acc_base)})
    # hurts where activity must change fast, not at the control: holds, and the note names the control
    v = V.claim_8(RunData(_two_points(hurt, harmless, 0.3, 0.05), conditions=info))
    assert v.status == HOLDS and "6.0 times faster" in v.notes[-1]
    assert any("minus at pulse_prob=0.02" in e.label and e.status == HOLDS for e in v.evidence)
    # hurts as much at the control (rare flips): not because of fast changes - does not hold
    v = V.claim_8(RunData(_two_points(hurt, hurt, 0.3, 0.05), conditions=info))
    assert v.status == FAILS
    # hurts only at the control: the harm at the slow point is not the claim's
    assert V.claim_8(RunData(_two_points(harmless, hurt, 0.3, 0.05), conditions=info)).status == FAILS
    # points whose networks change their activity alike are no control: each point's harm counts, as without one
    v = V.claim_8(RunData(_two_points(harmless, hurt, 0.1, 0.08), conditions=info))
    assert v.status == HOLDS and not any("minus at" in e.label for e in v.evidence)


def test_claim1_search_then_drop():
    itc = {"baseline": BASE}
    abrupt = results(itc, onset=[[40.0] * SEEDS], width=[[5.0] * SEEDS])
    assert V.claim_1(RunData(abrupt, conditions=INFO)).status == HOLDS
    gradual = results(itc, onset=[[3.0] * SEEDS], width=[[60.0] * SEEDS])
    assert V.claim_1(RunData(gradual, conditions=INFO)).status == FAILS
    half = results(itc, onset=[[40.0] * 4 + [3.0] * 4], width=[[5.0] * 4 + [60.0] * 4])
    assert V.claim_1(RunData(half, conditions=INFO)).status == INCONCLUSIVE


def analysis(lead_s: list[float]) -> xr.Dataset:
    an = xr.Dataset(coords={"condition": ["baseline"], "seed": np.arange(len(lead_s)), "checkpoint": [0, 10, 20, 30]})
    an["lead_time"] = (("condition", "seed"), np.array([lead_s], float))
    return an


def test_claim2_lead_times():
    assert V.claim_2(RunData(analysis=analysis([20, 30, 10, 40, 20, 30, 20, 10]))).status == HOLDS
    assert V.claim_2(RunData(analysis=analysis([-20, -30, -10, -40, -20, -30, -20, -10]))).status == FAILS
    v = V.claim_2(RunData(analysis=analysis([20, -30, 10, np.nan])))
    assert v.status == INCONCLUSIVE and "3 of 4 networks" in v.numbers[0]
    assert V.claim_2(RunData()).status == NOT_TESTED


def test_claim2_checkpoint_resolution_is_judged_on_the_networks_with_a_lead():
    """Networks that fall from the start (search phase 0, no lead) must not make checkpoints 10 apart
    look too coarse for the searching networks' 200-iteration plateaus, nor hide a coarse spacing."""
    conds = ["baseline", "tcr_loss", "tcr_plasticity"]
    an = xr.Dataset(coords={"condition": conds, "seed": np.arange(8), "checkpoint": np.arange(0, 400, 10)})
    an["lead_time"] = (("condition", "seed"), np.array([[20.0] * 8, [np.nan] * 8, [np.nan] * 8]))
    # most networks fall from the start: the median over all of them is 0
    res = xr.Dataset({"search_phase": (("condition", "seed"), np.array([[200.0] * 8, [0.0] * 8, [0.0] * 8]))},
                     coords={"condition": conds, "seed": np.arange(8)})
    v = V.claim_2(RunData(res, an))
    assert v.status == HOLDS and not any("too coarse" in n for n in v.notes), v.notes
    res["search_phase"] = res["search_phase"].copy(data=np.array([[30.0] * 8, [1000.0] * 8, [1000.0] * 8]))
    v = V.claim_2(RunData(res, an))
    assert any("median search phase of the networks with a lead (30 iterations): too coarse" in n for n in v.notes), v.notes


def sweep_results(diff_by_g: dict[float, float]) -> xr.Dataset:
    pts = []
    for g, d in diff_by_g.items():
        ds = results({"baseline": BASE, "tcr_loss": [b + d for b in BASE]})
        pts.append(ds.expand_dims({"model.g": [g]}))
    ds = xr.concat(pts, "model.g")
    ds.attrs["sweep_dims"] = "model.g"
    return ds


def test_claim4_chaos():
    info = {"baseline": CondInfo(), "tcr_loss": CondInfo(tcr_form="loss")}
    assert V.claim_4(RunData(sweep_results({0.8: -1, 1.6: -30}), conditions=info)).status == HOLDS
    assert V.claim_4(RunData(sweep_results({0.8: -1, 1.6: +30}), conditions=info)).status == FAILS
    # a benefit as large without chaos: inconclusive
    assert V.claim_4(RunData(sweep_results({0.8: -40, 1.6: -30}), conditions=info)).status == INCONCLUSIVE
    v = V.claim_4(RunData(sweep_results({1.6: -30}), conditions=info))
    assert v.status == NOT_TESTED and "g <= 1" in v.reason


def distance_results(diff: dict[tuple[float, float], float]) -> xr.Dataset:
    """Points (g, start distance) with TCR's effect on the iterations to criterion at each."""
    gs, ds_ = sorted({g for g, _ in diff}), sorted({d for _, d in diff})
    rows = [xr.concat([results({"baseline": BASE, "tcr_loss": [b + diff[g, d] for b in BASE]}).expand_dims(
        {V.DISTANCE: [d]}) for d in ds_], V.DISTANCE).expand_dims({"model.g": [g]}) for g in gs]
    out = xr.concat(rows, "model.g")
    out.attrs["sweep_dims"] = f"model.g,{V.DISTANCE}"
    return out


def test_claim4_far_from_the_solution():
    """With the start's distance from a trained network swept, the g part reads the farthest start, and
    in chaotic networks TCR must help at the farthest start with a smaller benefit at the nearest start
    of the same g."""
    info = {"baseline": CondInfo(), "tcr_loss": CondInfo(tcr_form="loss")}

    def claim(diff):
        return V.claim_4(RunData(distance_results(diff), conditions=info))

    # the claim's own prediction: helps far in chaotic networks only, not near, not at g <= 1: holds
    v = claim({(0.8, 0.25): 0, (0.8, 1.0): 0, (1.6, 0.25): 0, (1.6, 1.0): -40})
    assert v.status == HOLDS, v.reason
    assert "far from the solution (distance 1, g > 1)" in v.reason and "g > 1 (farthest start)" in v.reason
    # hurts far at g > 1: does not hold, although it helps near
    assert claim({(0.8, 0.25): 0, (0.8, 1.0): -10, (1.6, 0.25): -40, (1.6, 1.0): +30}).status == FAILS
    # helps as much near as far at g > 1: the distance part is undecided
    v = claim({(0.8, 0.25): 0, (0.8, 1.0): 0, (1.6, 0.25): -40, (1.6, 1.0): -40})
    assert v.status == INCONCLUSIVE and "not smaller at g = 1.6, distance 0.25 (tcr_loss)" in v.reason
    # near and far are compared at the same g: a larger benefit near at another g does not count
    v = claim({(0.8, 0.25): 0, (0.8, 1.0): 0, (1.6, 0.25): -10, (1.6, 1.0): -30, (3.2, 0.25): -35, (3.2, 1.0): -60})
    assert v.status == HOLDS, v.reason
    # one side of g only: the distance part alone decides
    v = claim({(1.6, 0.25): 0, (1.6, 1.0): -40})
    assert v.status == HOLDS and any("one side of g only" in n for n in v.notes)
    assert claim({(1.6, 0.25): 0, (1.6, 1.0): +40}).status == FAILS
    # a distance sweep in ordered networks alone says nothing about chaotic ones
    assert claim({(0.8, 0.25): 0, (0.8, 1.0): -40}).status == NOT_TESTED
    # without a distance sweep "near the solution" is said to be untested
    v = V.claim_4(RunData(sweep_results({0.8: -1, 1.6: -30}), conditions=info))
    assert any("'Near the solution'" in n for n in v.notes)


def predictions(ramp_effect, tau_effect, n=SEEDS) -> xr.Dataset:
    conds = ["baseline", "tcr_loss"]
    p = xr.Dataset(coords={"condition": conds, "seed": np.arange(n), "statistic": ["estimate", "ci_low", "ci_high", "p_value"],
                           "summary_statistic": ["median", "ci_low", "ci_high"]})
    for m, eff, ref in (("fraction_ramping", ramp_effect, 0.3), ("timescale_median_ms", tau_effect, 200.0)):
        p[m] = (("condition", "seed"), np.full((2, n), ref))
        p[f"{m}_summary"] = (("condition", "summary_statistic"), np.array([[ref, ref, ref], [ref, ref, ref]]))
        p[f"{m}_effect"] = (("condition", "statistic"), np.array([[np.nan] * 4, eff], float))
    return p


def test_claim7_slow_dynamics_and_ramping():
    info = {"baseline": CondInfo(), "tcr_loss": CondInfo(tcr_form="loss")}
    assert V.claim_7(RunData(predictions=predictions([0.2, 0.1, 0.3, 0.01], [80, 40, 120, 0.01]), conditions=info)).status == HOLDS
    assert V.claim_7(RunData(predictions=predictions([-0.2, -0.3, -0.1, 0.01], [80, 40, 120, 0.01]), conditions=info)).status == FAILS
    v = V.claim_7(RunData(predictions=predictions([0.2, 0.1, 0.3, 0.25], [80, 40, 120, 0.25], n=3), conditions=info))
    assert v.status == INCONCLUSIVE
    assert V.claim_7(RunData(conditions=info)).status == NOT_TESTED


def test_claim9_freeze_in():
    info = {"stp_only": CondInfo(tcr_form="plasticity"), "freeze_in": CondInfo(tcr_form="plasticity", kappa=1.0),
            "freeze_in_noise": CondInfo(tcr_form="plasticity", kappa=1.0, sigma_w=0.05)}
    budget = 50
    live = np.full((SEEDS, budget), 1e-2) * (1 + 0.01 * rng.random((SEEDS, budget)))
    dead = live * np.linspace(1, 1e-4, budget)
    acc_ok = list(0.95 + 0.01 * rng.random(SEEDS))
    itc = {c: [np.nan] * SEEDS for c in info}

    def run(loss_free, acc_free, seeds=SEEDS):
        tl = np.stack([live, loss_free, live])[:, :seeds]
        accs = {"stp_only": acc_ok[:seeds], "freeze_in": acc_free[:seeds], "freeze_in_noise": acc_ok[:seeds]}
        return RunData(results({c: v[:seeds] for c, v in itc.items()}, accs, budget=budget, tcr_loss=tl), conditions=info)

    collapsed = run(dead, [a - 0.45 for a in acc_ok])
    v = V.claim_9(collapsed)
    assert v.status == HOLDS, v.evidence
    assert V.claim_9(run(live, [a + 0.001 for a in acc_ok])).status == FAILS
    assert V.claim_9(run(dead, [a - 0.45 for a in acc_ok], seeds=3)).status == INCONCLUSIVE
    none = {"stp_only": info["stp_only"], "freeze_in": info["freeze_in_noise"], "freeze_in_noise": info["freeze_in_noise"]}
    assert V.claim_9(RunData(collapsed.results, conditions=none)).status == NOT_TESTED


def test_verdicts_never_raise():
    bad = xr.Dataset({"itc_difference": ("condition", [1.0])}, coords={"condition": ["a"]})
    (v,) = V.verdicts([3], RunData(bad, conditions={"a": CondInfo()}))
    assert v.status in (NOT_TESTED, INCONCLUSIVE)


def test_a_significant_effect_below_the_smallest_of_interest_says_so():
    e = V.evidence("x", -2.0, -3.0, -1.0, 0.004, 10, -1, 6.3, unit="iterations")
    assert e.status == HOLDS and "smaller than the smallest effect of interest (6.3 iterations)" in e.note
    big = V.evidence("x", -12.0, -20.0, -8.0, 0.002, 10, -1, 6.3, unit="iterations")
    assert big.status == HOLDS and not big.note


def _same_start_wider_drops(gr_event: float, widths) -> RunData:
    """Networks whose drops all start at iteration 500, ever wider, each with its first GR event at
    ``gr_event``: the learning-curve metrics are measured on the synthetic curves."""
    from bioplastic.analysis.learning_curves import curve_metrics

    k = np.arange(1500)
    onset, departure, width = [], [], []
    for i, w in enumerate(widths):
        ramp = np.clip((k - 500) / (1.25 * w), 0, 1)
        curve = 1.0 - 0.9 * ramp * ramp * (3 - 2 * ramp) + 0.002 * np.random.default_rng(i).standard_normal(len(k))
        m = curve_metrics(curve, window=5)
        onset.append(m["drop_onset"])
        departure.append(m["drop_departure"])
        width.append(m["drop_width"])
    seeds = np.arange(len(widths))
    an = xr.Dataset(coords={"condition": ["baseline"], "seed": seeds, "checkpoint": np.arange(0, 1500, 10)})
    an["lead_time"] = (("condition", "seed"), np.array([onset]) - gr_event)
    an["lead_time_departure"] = (("condition", "seed"), np.array([departure]) - gr_event)
    res = xr.Dataset({"drop_width": (("condition", "seed"), np.array([width]))},
                     coords={"condition": ["baseline"], "seed": seeds})
    return RunData(res, an, conditions=INFO)


def test_claim2_rests_on_the_width_free_lead():
    widths = [10, 20, 40, 60, 80, 100, 120, 140, 160, 180]
    # GR 10 iterations after the drops start: the 10 % onset of every drop wider than ~40 comes later
    # still, so the onset's lead is positive for most networks - carried by the width alone
    late = _same_start_wider_drops(510, widths)
    assert (late.analysis["lead_time"].values > 0).sum() >= 7
    v = V.claim_2(late)
    assert v.status == FAILS, v.reason
    assert "rho = 1.00" in v.reason or "rho = 0.9" in v.reason  # the onset's lead follows the width
    # GR 40 iterations before the drops start: holds, and the width-free lead is the same for all
    early = _same_start_wider_drops(460, widths)
    v = V.claim_2(early)
    assert v.status == HOLDS, v.reason
    dep = early.analysis["lead_time_departure"].values
    assert np.ptp(dep) <= 0.5 * np.ptp(early.analysis["lead_time"].values) and np.ptp(early.analysis["lead_time"].values) >= 30
    assert any("correlation with the drop width" in n for n in v.numbers)


def test_attractor_formation_is_the_first_checkpoint_with_the_needed_stable_points():
    from bioplastic.analysis.phase_space import attractor_formation

    n = np.array([[[1, 1, 2, 1, 2, 2], [1, 1, 1, 1, 1, 1]]])    # (condition, seed, checkpoint)
    t = attractor_formation(n, np.arange(0, 60, 10), 2)
    np.testing.assert_array_equal(t, [[20.0, np.nan]])              # the first appearance; never: NaN
    assert np.isnan(attractor_formation(n, np.arange(0, 60, 10), 3)).all()
    with pytest.raises(ValueError, match="needed"):
        attractor_formation(n, np.arange(0, 60, 10), 0)


def test_tasks_name_the_attractors_their_solution_needs():
    from bioplastic.tasks import build_task

    assert build_task("evidence_accumulation").attractors_needed == 2
    assert build_task("flipflop", {"n_bits": 3}).attractors_needed == 8
    assert build_task("delayed_addition").attractors_needed is None


def _formation(ref, tcr):
    checkpoints = np.arange(0, 210, 10)
    a = xr.Dataset({"attractor_formation": (("condition", "seed"), np.array([ref, tcr], float), {"needed": 2})},
                   coords={"condition": ["baseline", "tcr"], "seed": np.arange(len(ref)), "checkpoint": checkpoints},
                   attrs={"root_seed": 3})
    return RunData(analysis=a, conditions={"baseline": CondInfo(), "tcr": CondInfo(tcr_form="plasticity")})


def test_claim10_attractor_formation():
    ref = [60, 70, 80, 90, 100, 110, 120, 130, 140, 150]
    v = V.claim_10(_formation(ref, [r - 30 for r in ref]))
    assert v.status == HOLDS and "formed in 10/10" in v.numbers[1]
    assert V.claim_10(_formation(ref, ref)).status == FAILS                 # no change, a tight CI
    assert V.claim_10(_formation(ref, [r + 30 for r in ref])).status == FAILS
    # never formed with TCR: counted one interval past the last checkpoint (210), later than every baseline
    v = V.claim_10(_formation(ref, [np.nan] * 10))
    assert v.status == FAILS and "formed in 0/10" in v.numbers[1]
    # formed by no network of either condition: every time is the same bound - no information, not "no change"
    v = V.claim_10(_formation([np.nan] * 10, [np.nan] * 10))
    assert v.status == INCONCLUSIVE and "formed them within the run" in v.evidence[0].note
    assert V.claim_10(RunData()).status == NOT_TESTED
    plain = _formation(ref, ref)
    assert V.claim_10(RunData(analysis=plain.analysis, conditions={"baseline": CondInfo(), "tcr": CondInfo()})).status == NOT_TESTED


def test_networks_still_on_their_plateau_count_at_their_time_there():
    # seed 0 dropped after 300 iterations; seed 1 never left its plateau (from iteration 40 to the end
    # of 4000): at least 3960; seed 2 fell from the start and learned (no search phase); seed 3 diverged
    ds = xr.Dataset({"search_phase": (("condition", "seed"), [[300.0, np.nan, np.nan, np.nan]]),
                     "plateau_start": (("condition", "seed"), [[50.0, 40.0, 0.0, 30.0]]),
                     "iterations_to_criterion": (("condition", "seed"), [[350.0, np.nan, 60.0, np.nan]]),
                     "final_iteration": (("condition", "seed"), [[4000, 4000, 4000, 1200]]),
                     "diverged_at": (("condition", "seed"), [[np.nan, np.nan, np.nan, 1200.0]])},
                    coords={"condition": ["baseline"], "seed": [0, 1, 2, 3]})
    np.testing.assert_array_equal(V.searching_at_least(ds, "baseline"), [300.0, 3960.0, np.nan, np.nan])


def test_claim10_reports_how_many_networks_hold_their_memory_after_each_hold():
    ref = [60, 70, 80, 90, 100, 110, 120, 130, 140, 150]
    d = _formation(ref, ref)
    held = np.ones((2, 10, 3))
    held[0, :4, 2] = 0.125     # 4 baseline networks lose all but one pattern by the longest hold
    held[1, 0] = np.nan        # a TCR network without weights: left out of the count
    d.analysis["memory_held"] = (("condition", "seed", "hold_ms"), held)
    d.analysis.coords["hold_ms"] = [2000.0, 10000.0, 50000.0]
    v = V.claim_10(d)
    assert any("baseline: at its last checkpoint, 10/10 networks hold every memory state after 2 s of zero input, "
               "6/10 after 50 s" in n for n in v.numbers)
    assert any(n.startswith("tcr: at its last checkpoint, 9/9 ") for n in v.numbers)
    assert any("slow transients" in n for n in v.notes)
    assert v.status == V.claim_10(_formation(ref, ref)).status    # the probe informs; it does not change the verdict


def _early_drops(departure, gr_event, **attrs) -> RunData:
    seeds = np.arange(len(departure))
    an = xr.Dataset(coords={"condition": ["baseline"], "seed": seeds, "checkpoint": np.arange(0, 1000, 20)}, attrs=attrs)
    lead = np.array([departure], float) - np.array([gr_event], float)
    an["lead_time"] = an["lead_time_departure"] = (("condition", "seed"), lead)
    an["drop_departure"] = (("condition", "seed"), np.array([departure], float))
    return RunData(analysis=an)


def test_claim2_leaves_out_drops_that_start_before_a_gr_event_can_be_flagged():
    # checkpoints every 20 and a 3-checkpoint baseline: no GR event can be flagged before iteration 60, so
    # a drop departing at iteration 10 has a negative lead whatever the network does
    plateau, none = [200] * 8, [10] * 8
    d = _early_drops(plateau + none, [150] * 8 + [60] * 8, gr_baseline=3)
    assert earliest_gr_event(d.analysis) == 60
    v = V.claim_2(d)
    assert v.status == HOLDS and "GR first in 8/8" in v.reason, v.reason
    assert any(n.startswith("left out: 8 networks") for n in v.numbers)
    assert any(n.startswith("baseline: 8/8 positive, median lead 50 iterations") and n.endswith("; 8 left out") for n in v.numbers)
    # counted (a file that cannot say when its drops start), the forced negatives sink it: the rule is what
    # changes the verdict
    counted = _early_drops(plateau + none, [150] * 8 + [60] * 8, gr_baseline=3)
    counted.analysis = counted.analysis.drop_vars("drop_departure")
    assert V.claim_2(counted).status != HOLDS
    # every drop too early: inconclusive, and said so (not "no GR event")
    v = V.claim_2(_early_drops(none, [60] * 8, gr_baseline=3))
    assert v.status == INCONCLUSIVE and "starts at or before iteration 60" in v.reason and "8 left out" in v.numbers[0]
    # a drop departing just after the first possible event is kept; the baseline is read from the
    # settings of files written before gr_baseline was stored on its own
    d = _early_drops([21] * 8, [20] * 8, analysis=str({"gr_baseline": 1, "trials": 16}))
    assert earliest_gr_event(d.analysis) == 20
    v = V.claim_2(d)
    assert "GR first in 8/8" in v.reason and not any(n.startswith("left out") for n in v.numbers)


def test_pairs_where_neither_network_learned_carry_no_information_on_the_time_to_criterion():
    # 8 pairs where neither learned (both at the budget: a difference of 0) and 2 where the TCR network
    # learned late and the baseline not at all: counted, the zeros pin the median difference and its CI to 0
    # and read as "no effect"; left out, 2 pairs cannot decide anything
    base = [np.nan] * 10
    tcr = [np.nan] * 8 + [90.0, 95.0]
    info = {"baseline": CondInfo(), "tcr": CondInfo(tcr_form="loss")}
    d = RunData(results(dict(baseline=base, tcr=tcr)), conditions=info)
    stored = d.results.sel(condition="tcr")
    assert float(stored["itc_difference"]) == 0 and float(stored["itc_difference_ci_high"]) == 0   # the zeros' verdict
    e = V._itc_evidence(d.results, "baseline", "tcr", "")
    assert e.status == INCONCLUSIVE and e.n == 2 and "8 pairs where neither network learned left out" in e.note
    assert e.estimate < 0                                                          # the learned pairs' direction
    # no pair without a learner: the stored comparison, unchanged
    full = RunData(results(dict(baseline=[50.0] * 10, tcr=[40.0] * 10)), conditions=info)
    e = V._itc_evidence(full.results, "baseline", "tcr", "")
    assert e.n == int(full.results["itc_n_pairs"].sel(condition="tcr")) and "left out" not in e.note
    # an opposite effect stays recognisable behind the note
    late = RunData(results(dict(baseline=[50.0] * 8 + [np.nan] * 2, tcr=[90.0] * 8 + [np.nan] * 2)), conditions=info)
    e = V._itc_evidence(late.results, "baseline", "tcr", "")
    assert e.status == FAILS and e.opposite and "2 pairs where neither" in e.note


def test_a_condition_trained_with_the_exact_plasticity_gradient_says_so():
    from bioplastic.protocol.load import load_protocol
    from bioplastic.report.html import describe_condition

    protocol = load_protocol({"name": "p", "seed": 1, "seeds": 1, "task": {"kind": "evidence_accumulation"},
                              "model": {"kind": "leaky_rate", "n_units": 8},
                              "conditions": {"detached": {"tcr": {"form": "plasticity"}},
                                             "exact": {"tcr": {"form": "plasticity", "plasticity": {"gradient": "exact"}}}}})
    detached, exact = (describe_condition(c, protocol.conditions[0]) for c in protocol.conditions)
    assert "gradient: exact" not in detached and "gradient through the fast variables (gradient: exact)" in exact
