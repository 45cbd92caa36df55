"""Phase-space analysis of a finished run: from its checkpoints only, resumable, clear errors."""
import shutil
import textwrap

import numpy as np
import pytest
import xarray as xr
from conftest import TINY, train_once

from bioplastic import load_protocol, run_protocol
from bioplastic.pipeline import PARTS_DIR, RunError, analyze_run
from bioplastic.storage.results import read_dataset

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


def test_trajectories_of_plastic_networks_include_the_plasticity(write_protocol, tmp_path):
    """At checkpoint 0 all conditions share their weights (paired seeds): the trajectories differ only
    where the analysis simulates the short-term plasticity."""
    text = (write_protocol().read_text() + ANALYSIS + "  contexts: [zero]\n").replace(
        "conditions:\n", "conditions:\n  plastic:\n    tcr: {form: plasticity, plasticity: {eta_F: 0.5, tau_F_ms: 200}}\n")
    _, out = run_protocol(load_protocol(write_protocol(text, "p.yaml")), tmp_path / "run")
    pr = read_dataset(out / "analysis.nc")["participation_ratio"].isel(checkpoint=0)
    np.testing.assert_array_equal(pr.sel(condition="baseline").values, pr.sel(condition="tcr_loss").values)
    assert np.abs(pr.sel(condition="plastic").values - pr.sel(condition="baseline").values).max() > 1e-6
