"""Phase-space analysis of a finished run: from its checkpoints only, resumable, clear errors."""
import shutil
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr
from conftest import TINY, train_once

from bioplastic import load_protocol, run_protocol
from bioplastic.analysis.joint_system import tm_steady_state
from bioplastic.analysis.memory_probe import hold_steps, memory_held
from bioplastic.analysis.phase_space import portrait_indices
from bioplastic.pipeline import PARTS_DIR, RunError, analyze_run
from bioplastic.plotting.field import spectra
from bioplastic.plotting.figures import recurrent_weights
from bioplastic.plotting.phase import phase_portraits, portrait_caption
from bioplastic.plotting.phase import portrait_checkpoints as phase_portraits_checkpoints
from bioplastic.regularizers.tcr_plasticity import PlasticityConfig
from bioplastic.storage.rebuild import protocol_of, trained_network
from bioplastic.storage.results import read_dataset
from bioplastic.tasks import build_task

# one pytest-xdist worker runs this module, so that its module-scoped run (analysed_run) is made once
pytestmark = pytest.mark.xdist_group("phase_space")

ANALYSIS = """
analysis:
  initial_states: 16
  trials: 4
  gr_baseline: 1
"""


@pytest.fixture(scope="module")
def analysed_run(tmp_path_factory):
    """TINY with ANALYSIS, trained and analysed once for this module; tests read it or copy it."""
    return train_once(tmp_path_factory, "analysed", textwrap.dedent(TINY) + ANALYSIS)


@pytest.fixture
def run_dir(analysed_run, tmp_path):
    """A private copy of the analysed run: tests may delete or rewrite its files."""
    return shutil.copytree(analysed_run, tmp_path / "run")


def test_run_with_analysis_section_writes_analysis(analysed_run):
    run_dir = analysed_run
    a = read_dataset(run_dir / "analysis.nc")
    for var in ("fp_x", "fp_q", "fp_kind", "fp_eig_real", "fp_tau_ms", "n_stable", "n_saddle", "fp_distance",
                "trajectory_change", "participation_ratio", "gr_event", "first_gr_event", "lead_time"):
        assert var in a
    assert a["fp_x"].dims == ("condition", "seed", "checkpoint", "context", "fp", "unit")
    assert list(a["checkpoint"].values) == [0, 4, 8, 12]
    for name in list(a.data_vars) + list(a.coords):
        assert "units" in a[name].attrs and a[name].attrs["long_name"], name
    # every stored fixed point is one: |F(x) - x| small, consistent with its q
    q = a["fp_q"].values[a["fp_valid"].values & a["fp_is_fixed"].values]
    assert len(q) > 0 and np.all(q < 1e-12)
    # counts agree with the stored kinds
    zero = a.sel(context="zero")
    n_stable = ((zero["fp_kind"] == 0) & zero["fp_is_fixed"]).sum("fp")
    xr.testing.assert_equal(n_stable.drop_vars("context"), a["n_stable"].astype(n_stable.dtype))
    lead = a["lead_time"].values
    np.testing.assert_array_equal(np.isnan(lead), np.isnan(a["first_gr_event"].values) | np.isnan(a["drop_onset"].values))
    # the GR rule's floors are recorded; fp_distance's is scale free (a fraction of the trajectories' RMS radius)
    assert "0.01 for trajectory_change" in a["gr_event"].attrs["rule"]
    floor = a["fp_distance_floor"].values
    assert floor.shape == (2, 2) and np.all(floor[np.isfinite(floor)] > 0)
    # fixed-point counts around the drop: NaN exactly where there is no drop, else the counts at those checkpoints
    res = read_dataset(run_dir / "results.nc")
    onset, width = res["drop_onset"].values, res["drop_width"].values
    ck = a["checkpoint"].values
    for kind in ("stable", "saddle"):
        before, after = a[f"n_{kind}_before_drop"].values, a[f"n_{kind}_after_drop"].values
        assert np.all(np.isnan(before[np.isnan(onset)])) and np.all(np.isnan(after[np.isnan(onset)]))
        for ci, s in zip(*np.nonzero(np.isfinite(onset))):
            j = np.flatnonzero(ck <= onset[ci, s])[-1]
            assert before[ci, s] == a[f"n_{kind}"].values[ci, s, j]
            later = np.flatnonzero(ck >= onset[ci, s] + width[ci, s])
            assert (after[ci, s] == a[f"n_{kind}"].values[ci, s, later[0]]) if len(later) else np.isnan(after[ci, s])
    # the memory probe at each network's last checkpoint: the rebuilt network probed directly gives the same
    assert a["memory_held"].dims == ("condition", "seed", "hold_ms")
    np.testing.assert_array_equal(a["memory_checkpoint"].values, ck[-1])
    task = build_task("evidence_accumulation", protocol_of(res).conditions[0].task.model_dump())
    np.testing.assert_array_equal(a["hold_ms"].values, np.array(hold_steps(task)) * task.dt_ms)
    for ci, cond in enumerate(a["condition"].values):
        net, _ = trained_network(res, protocol_of(res), str(cond), checkpoint=-1)
        np.testing.assert_array_equal(a["memory_held"].values[ci], memory_held(net, task, hold_steps(task)))
    assert set(np.unique(a["memory_held"].values)) <= {0.0, 0.5, 1.0}
    # leads: none where the drop departs at or before the first checkpoint a GR event can be flagged at
    assert a.attrs["gr_baseline"] == 1
    first, dep = a["first_gr_event"].values, a["drop_departure"].values
    with np.errstate(invalid="ignore"):
        early = np.isfinite(first) & np.isfinite(dep) & (dep <= ck[1])
    np.testing.assert_array_equal(a["lead_left_out"].values, early)
    expected = np.where(early, np.nan, dep - first)
    np.testing.assert_array_equal(a["lead_time_departure"].values, expected)


def test_memory_probe_reads_each_network_at_its_last_checkpoint_with_weights(analysed_run):
    """A network whose last checkpoint holds no weights (stopped early) is probed at the one before; one
    that diverged is not probed."""
    from bioplastic.analysis.phase_space import add_memory_held

    res = read_dataset(analysed_run / "results.nc").load()
    protocol = protocol_of(res)
    task = build_task("evidence_accumulation", protocol.conditions[0].task.model_dump())
    for w in [v for v in res.data_vars if str(v).startswith("weight_")]:
        res[w].loc[{"condition": "baseline", "seed": 1, "checkpoint": res["checkpoint"].values[-1]}] = np.nan
    res["diverged"].loc[{"condition": "tcr_loss", "seed": 0}] = True
    out = xr.Dataset(coords={"condition": res["condition"].values, "seed": res["seed"].values})
    add_memory_held(out, res, protocol, task, "cpu")
    ck = res["checkpoint"].values
    assert out["memory_checkpoint"].sel(condition="baseline").values.tolist() == [ck[-1], ck[-2]]
    net, _ = trained_network(res, protocol, "baseline", checkpoint=-2, seed=1)
    np.testing.assert_array_equal(out["memory_held"].sel(condition="baseline").values[1], memory_held(net, task, hold_steps(task))[0])
    assert np.isnan(out["memory_held"].sel(condition="tcr_loss").values[0]).all()
    assert np.isfinite(out["memory_held"].sel(condition="tcr_loss").values[1]).all()


def test_analysis_is_deterministic_and_leaves_results_untouched(run_dir):
    before = (run_dir / "results.nc").read_bytes()
    first = read_dataset(run_dir / "analysis.nc")
    again = analyze_run(run_dir)
    xr.testing.assert_identical(first.drop_attrs(), again.drop_attrs())
    assert (run_dir / "results.nc").read_bytes() == before


def test_interrupted_analysis_resumes_to_the_same_result(run_dir):
    straight = read_dataset(run_dir / "analysis.nc")
    (run_dir / "analysis.nc").unlink()
    calls = []

    def stop_after_three(n, info):
        calls.append(n)
        if len(calls) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        analyze_run(run_dir, progress=stop_after_three)
    assert len(list((run_dir / PARTS_DIR).glob("*.pt"))) == 3 and not (run_dir / "analysis.nc").exists()
    resumed = analyze_run(run_dir)
    xr.testing.assert_identical(straight.drop_attrs(), resumed.drop_attrs())
    assert not (run_dir / PARTS_DIR).exists()


def test_analyze_refuses_folders_that_are_not_finished_runs(tmp_path, analysed_run, cli):
    with pytest.raises(RunError, match="is not a finished run"):
        analyze_run(tmp_path)
    code, _, err = cli("analyze", tmp_path)
    assert code == 2 and "results.nc is missing" in err and "Traceback" not in err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "results.nc").write_bytes((analysed_run / "results.nc").read_bytes()[:2000])
    code, _, err = cli("analyze", broken)
    assert code == 2 and "may be corrupt" in err and "Traceback" not in err


@pytest.mark.parametrize("kind", ["plrnn", "lstm"])
def test_every_model_kind_can_be_analysed(write_protocol, tmp_path, kind):
    text = (write_protocol().read_text().replace("kind: leaky_rate", f"kind: {kind}").replace("  g: 1.5\n", "")
            .replace("iterations: 12", "iterations: 4") + ANALYSIS)
    _, out = run_protocol(load_protocol(write_protocol(text, f"{kind}.yaml")), tmp_path / kind)
    a = read_dataset(out / "analysis.nc")
    assert a.sizes["unit"] == (24 if kind == "lstm" else 12)  # the LSTM's state is (h, c)
    assert a["fp_valid"].any()
    # the report's spectra figure: the weights' eigenvalues where the kind has one square recurrent matrix
    # (the LSTM's W_hh is 4N x N: none), the attractors' Jacobians for every kind
    res = read_dataset(out / "results.nc")
    assert ("lstm_kernel" in res.attrs) == (kind == "lstm")  # which LSTM code trained it: part of its provenance
    weights = recurrent_weights(res)
    assert (weights == {}) == (kind == "lstm")
    spectra(a, weights)
    plt.close("all")


def test_trajectories_of_plastic_networks_include_the_plasticity(write_protocol, tmp_path):
    """At checkpoint 0 all conditions share their weights (paired seeds): the trajectories differ only
    where the analysis simulates the short-term plasticity. Plastic conditions get the points of their
    joint system (state and plastic variables): anti-Hebbian, the long-term weights' fixed points at
    F = 0, classified jointly; Tsodyks-Markram, fixed points with u, x at their steady values."""
    text = (write_protocol().read_text() + ANALYSIS + "  contexts: [zero]\n").replace(
        "conditions:\n", "conditions:\n  plastic:\n    tcr: {form: plasticity, plasticity: {eta_F: 0.5, tau_F_ms: 200}}\n"
                          "  tm:\n    tcr: {form: plasticity, plasticity: {rule: tsodyks_markram}}\n")
    results, out = run_protocol(load_protocol(write_protocol(text, "p.yaml")), tmp_path / "run")
    a = read_dataset(out / "analysis.nc")
    pr = a["participation_ratio"].isel(checkpoint=0)
    np.testing.assert_array_equal(pr.sel(condition="baseline").values, pr.sel(condition="tcr_loss").values)
    assert np.abs(pr.sel(condition="plastic").values - pr.sel(condition="baseline").values).max() > 1e-6
    # no joint system without plasticity
    for cond in ("baseline", "tcr_loss"):
        assert not a["joint_valid"].sel(condition=cond).any() and np.isnan(a["n_joint_stable"].sel(condition=cond)).all()
        assert not a["joint_slow_searched"].sel(condition=cond).any()
    # anti-Hebbian: the joint fixed points are the fixed points of W, at F = 0
    p = a.sel(condition="plastic", context="zero")
    for s in range(a.sizes["seed"]):
        for k in range(a.sizes["checkpoint"]):
            x = p.isel(seed=s, checkpoint=k)
            fw = x["fp_valid"].values & x["fp_is_fixed"].values
            fj = x["joint_valid"].values & x["joint_is_fixed"].values
            hw, hj = x["fp_x"].values[fw], x["joint_h"].values[fj]
            assert len(hj) >= len(hw) > 0  # (the slow-point search may find fixed points the pool's search missed)
            d = np.linalg.norm(hw[:, None] - hj[None], axis=-1)
            assert d.min(1).max() < 1e-8
            match = d.argmin(1)
            np.testing.assert_array_equal(x["fp_n_unstable"].values[fw], x["joint_n_unstable_frozen"].values[fj][match])
            assert np.nanmax(x["joint_F_norm"].values[fj]) < 1e-8 and np.nanmax(x["joint_q"].values[fj]) < 1e-20
            searched = bool(a["joint_slow_searched"].sel(condition="plastic").isel(seed=s, checkpoint=k))
            assert searched or len(hj) == len(hw)
    # slow points were searched where seed 0's portrait looks
    r0 = results.sel(condition="plastic").isel(seed=0)
    want = portrait_indices(a["checkpoint"].values, float(r0["drop_onset"]), float(r0["drop_width"]))
    searched = a["joint_slow_searched"].sel(condition="plastic").values
    np.testing.assert_array_equal(np.flatnonzero(searched[0]), sorted(want))
    assert not searched[1:].any()
    # Tsodyks-Markram: u, x at their steady values at every joint fixed point
    t = a.sel(condition="tm", context="zero")
    fj = t["joint_valid"].values & t["joint_is_fixed"].values
    assert fj.any()
    cfg = PlasticityConfig(rule="tsodyks_markram")
    u_s, x_s = tm_steady_state(np.tanh(t["joint_h"].values[fj]), U=cfg.U, tau_f_ms=cfg.tau_facilitation_ms,
                               tau_d_ms=cfg.tau_depression_ms, max_rate_hz=cfg.max_rate_hz)
    np.testing.assert_allclose(t["joint_u"].values[fj], u_s.numpy(), atol=1e-9)
    np.testing.assert_allclose(t["joint_x"].values[fj], x_s.numpy(), atol=1e-9)
    assert a.attrs["joint_rules"] == "plastic: anti_hebbian, tm: tsodyks_markram"
    # the portraits draw the joint points for the plastic rows, the weights' fixed points elsewhere, and say so
    axes = phase_portraits(results, a)
    caption = portrait_caption(a)
    assert caption in [t.get_text() for t in axes[0, 0].figure.texts + axes[0, 0].figure.axes[-1].texts]
    assert "baseline, tcr_loss: fixed points of the one-step map" in caption
    assert "plastic (anti-Hebbian fast efficacies F): fixed points of the joint system" in caption and "F = 0" in caption
    assert "tm (Tsodyks-Markram u, x)" in caption and "Left out" in caption
    conds = list(a["condition"].values)
    for cond in ("baseline", "plastic", "tm"):
        i = conds.index(cond)
        k = phase_portraits_checkpoints(results, a, cond)[-1]
        ax = axes[i, len(phase_portraits_checkpoints(results, a, cond)) - 1]
        f = a.sel(condition=cond, context="zero").isel(seed=0, checkpoint=k)
        pre = "fp" if cond == "baseline" else "joint"
        want = f[f"{pre}_pc"].values[f[f"{pre}_valid"].values & f[f"{pre}_is_fixed"].values][:, :2]
        drawn = np.concatenate([np.c_[ln.get_xdata(), ln.get_ydata()] for ln in ax.lines
                                if ln.get_linestyle() == "None" and ln.get_marker() in ("o", "x", "s") and ln.get_markersize() == 7])
        np.testing.assert_allclose(np.sort(drawn, 0), np.sort(want, 0))
    plt.close("all")
