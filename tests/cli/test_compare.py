"""``python -m bioplastic compare RUN RECORDING``: the data beside the model on a finished tiny run,
with a synthetic recording of known truth (NWB when pynwb is installed; the netCDF recording always),
and the errors that leave nothing written."""
import shutil

import numpy as np
import pytest

from bioplastic.analysis.recording import measure_recording
from bioplastic.storage.recordings import read_recording, recording_from_spikes
from bioplastic.storage.results import read_dataset
from bioplastic.storage.synthetic import synthetic_session, write_nwb


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """The synthetic session as a netCDF recording and (with pynwb) as an NWB file."""
    folder = tmp_path_factory.mktemp("recordings")
    s = synthetic_session(0, n_trials=200, n_units=20)
    recording_from_spikes(s.trials, s.spikes, {}, 20.0, "synthetic").to_netcdf(folder / "rec.nc", engine="h5netcdf")
    paths = {"nc": folder / "rec.nc"}
    try:
        write_nwb(s, folder / "rec.nwb")
        paths["nwb"] = folder / "rec.nwb"
    except Exception as exc:  # noqa: BLE001 - only the missing optional dependency is expected here
        assert "pynwb" in str(exc), exc
    return s, paths


@pytest.mark.parametrize("kind", ["nc", "nwb"])
def test_compare_writes_the_data_beside_each_condition(cli, tiny_run, recordings, tmp_path, kind):
    s, paths = recordings
    if kind not in paths:
        pytest.skip("pynwb is not installed: the netCDF recording carries the same checks")
    code, out, err = cli("compare", tiny_run, paths[kind], "--out", tmp_path / "cmp")
    assert code == 0, err
    cmp = read_dataset(tmp_path / "cmp" / "compare.nc")
    pred = read_dataset(tiny_run / "predictions.nc")
    assert list(cmp["source"].values) == ["data"] + list(pred["condition"].values)
    # the data's values are the measures of the recording; the model's are predictions.nc's medians over seeds
    m = measure_recording(read_recording(paths[kind]))
    for k in ("fraction_buildup", "timescale_median_ms", "psychometric_slope", "fraction_ramping"):
        assert cmp[k].sel(source="data", statistic="estimate").item() == pytest.approx(float(m[k]), nan_ok=True), k
    for k in ("timescale_median_ms", "psychometric_slope", "fraction_ramping"):
        np.testing.assert_array_equal(cmp[k].values[1:], pred[f"{k}_summary"].values)
    # no target in the recording: its trials are grouped by the subject's choice, the networks' by their own choices
    assert cmp.attrs["data_grouped_by"] == "choice" and cmp.attrs["model_grouped_by"] == "choice"
    np.testing.assert_array_equal(cmp["fraction_buildup_networks"].values, pred["fraction_buildup_by_choice"].values)
    np.testing.assert_allclose(cmp["fraction_buildup"].values[1:, 0], np.nanmedian(pred["fraction_buildup_by_choice"].values, 1))
    # the planted build-up fraction (0.3) lies inside the data's CI over units
    lo, hi = cmp["fraction_buildup"].sel(source="data").values[1:]
    assert lo <= 0.3 <= hi and hi - lo > 0
    # consistency: judged only for the scale-free measures, one sentence per condition
    judged = cmp["consistent"].sel(source="data").values
    assert (judged == -1).all()
    assert (cmp["consistent"].sel(measure="median_abs_ramp_slope").values == -1).all()
    assert set(np.unique(cmp["consistent"].sel(measure="fraction_buildup").values[1:])) <= {0, 1}
    assert sum("consistent with" in line for line in out.splitlines()) == len(pred["condition"])
    page = (tmp_path / "cmp" / "compare.html").read_text()
    assert "What the data is consistent with" in page and "data:image/png;base64," in page
    assert not (tiny_run / "compare.nc").exists()  # --out, not the run's folder


def test_compare_refuses_bad_input_and_writes_nothing(cli, tiny_run, recordings, tmp_path):
    s, paths = recordings
    empty = tmp_path / "empty_run"
    empty.mkdir()
    code, _, err = cli("compare", empty, paths["nc"])
    assert code == 2 and "has no predictions.nc" in err and not list(empty.iterdir())
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    bad = tmp_path / "bad.nc"
    read_recording(paths["nc"]).drop_vars(["delay_start", "delay_stop"]).rename({"rate": "r"}).to_netcdf(bad, engine="h5netcdf")
    code, _, err = cli("compare", run, bad)
    assert code == 2 and "no 'rate' variable" in err and str(bad) in err
    assert not (run / "compare.nc").exists() and not (run / "compare.html").exists()
    code, _, err = cli("compare", run, paths["nc"], "--column", "evidence")
    assert code == 2 and "--column: expected NAME=COLUMN" in err
    (tmp_path / "afile").write_text("")
    code, _, err = cli("compare", run, paths["nc"], "--out", tmp_path / "afile")
    assert code == 2 and "is a file" in err
    code, _, err = cli("compare", run, tmp_path / "missing.nwb")
    assert code == 2 and "no recording at" in err
    code, _, err = cli("compare", run, tmp_path)
    assert code == 2 and "is a folder; the recording is one file" in err
    code, _, err = cli("compare", run, run / "results.nc")  # the arguments mixed up: a short list, and a hint
    assert code == 2 and "and " in err and " more (a run's results.nc? the recording is compare's second argument)" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = cli("compare", tmp_path / "no_run", paths["nc"])
    assert code == 2 and "is not a folder; expected a finished run's folder" in err
    assert not (run / "compare.nc").exists()


def test_model_and_data_group_trials_the_same_way(tiny_run, recordings, tmp_path):
    """With a target column both sides group by the rewarded side (the model's own measures); without
    it both by the choice made (the networks' measures by their own choices); an older predictions.nc
    without those keeps the rewarded side, and the page says so and how to recompute."""
    from bioplastic.analysis.compare import compare_dataset
    from bioplastic.analysis.recording import GROUPED_MEASURES, grouped_measures
    from bioplastic.report.compare import compare_html

    _, paths = recordings
    rec = read_recording(paths["nc"])
    pred = read_dataset(tiny_run / "predictions.nc")
    target = np.where(rec["evidence"].values > 0, 1.0, np.where(rec["evidence"].values < 0, -1.0, rec["choice"].values))
    with_target = rec.assign_coords(target=("trial", target))
    assert (with_target["target"].values != rec["choice"].values).any()  # error trials: the groupings differ
    # the grouped measures are those measure_recording computes with that grouping
    for r, group in ((rec, "choice"), (with_target, "target")):
        m = measure_recording(r)
        assert m.attrs["grouped_by"] == group
        assert grouped_measures(r, group) == pytest.approx({k: float(m[k]) for k in GROUPED_MEASURES}, nan_ok=True)
    assert grouped_measures(with_target, "choice") != pytest.approx(grouped_measures(with_target, "target"), nan_ok=True)

    cmp = compare_dataset(pred, with_target, measure_recording(with_target))
    assert cmp.attrs["data_grouped_by"] == "target" and cmp.attrs["model_grouped_by"] == "target"
    np.testing.assert_array_equal(cmp["fraction_buildup"].values[1:], pred["fraction_buildup_summary"].values)
    assert "the rewarded side (<code>target</code>) in the data and by the rewarded side in the model: both sides the same way" in compare_html(cmp)

    cmp = compare_dataset(pred, rec, measure_recording(rec))
    assert cmp.attrs["model_grouped_by"] == "choice"
    page = compare_html(cmp)
    assert "the subject's choice (<code>choice</code>) in the data and by the network's own choice in the model: both sides" in page

    old = pred.drop_vars([f"{k}_by_choice" for k in GROUPED_MEASURES])
    cmp = compare_dataset(old, rec, measure_recording(rec))
    assert cmp.attrs["model_grouped_by"] == "target"
    np.testing.assert_array_equal(cmp["fraction_buildup"].values[1:], pred["fraction_buildup_summary"].values)
    assert "error trials are grouped differently" in compare_html(cmp) and "without retraining" in compare_html(cmp)
