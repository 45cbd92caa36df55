"""The prediction measures on recorded data: a synthetic session with planted truth (a known
fraction of build-up units, choice-selective and unselective units, known timescales, a known
psychometric function) read through the netCDF reader and, when pynwb is installed, an NWB file;
and bad recordings refused with errors that name what is missing."""
import numpy as np
import pytest
import xarray as xr

from bioplastic.analysis.recording import RecordingError, check_recording, make_recording, measure_recording
from bioplastic.storage.recordings import read_netcdf_recording, read_nwb_recording, read_recording, recording_from_spikes
from bioplastic.storage.synthetic import synthetic_session, write_nwb

BIN_MS = 20.0


@pytest.fixture(scope="module")
def session():
    return synthetic_session(0)


@pytest.fixture(scope="module")
def recording(session, tmp_path_factory):
    """The session binned into rates, written as a netCDF recording and read back."""
    path = tmp_path_factory.mktemp("rec") / "rec.nc"
    recording_from_spikes(session.trials, session.spikes, {}, BIN_MS, "synthetic").to_netcdf(path, engine="h5netcdf")
    return read_netcdf_recording(path)


@pytest.fixture(scope="module")
def measured(recording):
    return measure_recording(recording)


def test_the_build_up_fraction_and_units_are_recovered(session, measured):
    kind = session.truth["kind"]
    assert measured.attrs["ramp_period"] == "delay" and measured.attrs["grouped_by"] == "choice"
    # every planted build-up unit is found; of the 28 others at most 2 are called build-up (FDR 5 %)
    assert (measured["ramp_class"].values[kind == "buildup"] == 1).all()
    assert (measured["ramp_class"].values[kind != "buildup"] == 1).sum() <= 2
    assert float(measured["fraction_buildup"]) == pytest.approx(session.truth["fraction_buildup"], abs=0.05)
    np.testing.assert_array_equal(measured["ramp_preferred_choice"].values[kind == "buildup"],
                                  session.truth["preferred_choice"][kind == "buildup"])
    # the planted ramp is 20 spikes/s per second on the preferred choice's trials
    np.testing.assert_allclose(measured["ramp_slope_preferred"].values[kind == "buildup"], 20.0, rtol=0.25)
    assert float(measured["population_ramp_slope"]) > 0 and float(measured["population_ramp_p_value"]) < 1e-6


def test_the_choice_axis_weights_choice_selective_units(session, measured):
    kind = session.truth["kind"]
    w = measured["choice_axis"].values
    selective = kind != "timescale"
    assert np.abs(w[selective]).min() > 3 * np.abs(w[~selective]).max()
    # the sign of a selective unit's weight is its preferred choice (+1 prefers right)
    np.testing.assert_array_equal(np.sign(w[selective]), session.truth["preferred_choice"][selective])


def test_timescales_in_the_delay_are_recovered(session, measured):
    tau = session.truth["timescale_ms"]
    assert measured.attrs["timescale_period"] == "delay"
    for true in (100.0, 300.0):
        sel = tau == true
        assert (measured["timescale_status"].values[sel] == 0).all()
        # the median over the 10 units of a timescale within 20 % of it
        assert np.median(measured["timescale_ms"].values[sel]) == pytest.approx(true, rel=0.2)


def test_the_psychometric_function_is_recovered(session, measured):
    # 400 trials: standard errors about 0.1 (slope), 0.15 (bias) and 0.03 (lapse)
    t = session.truth
    assert int(measured["psychometric_fit_status"]) == 0
    assert float(measured["psychometric_slope"]) == pytest.approx(t["psychometric_slope"], abs=0.3)
    assert float(measured["psychometric_bias"]) == pytest.approx(t["psychometric_bias"], abs=0.4)
    assert float(measured["psychometric_lapse"]) == pytest.approx(t["psychometric_lapse"], abs=0.08)
    ev, ch = session.trials["evidence"], session.trials["choice"]
    np.testing.assert_allclose(measured["p_right"].values, [(ch[ev == v] > 0).mean() for v in measured["evidence_level"].values])


def test_the_model_layout_and_the_data_layout_give_the_same_measures(recording, measured):
    """make_recording (the model's path: steps x dt) and a recording in seconds give the same numbers."""
    steps = {n: np.stack([np.ceil(recording[f"{n}_start"].values / BIN_MS - 1e-6),
                          np.ceil(recording[f"{n}_stop"].values / BIN_MS - 1e-6)], 1).astype(int)
             for n in ("fixation", "stimulus", "delay")}
    rec = make_recording(recording["rate"].values, BIN_MS, steps, choice=recording["choice"].values, evidence=recording["evidence"].values)
    again = measure_recording(rec)
    for k in ("fraction_buildup", "population_ramp_slope", "timescale_median_ms", "psychometric_slope"):
        assert float(again[k]) == float(measured[k]), k
    bounds = [k for k in recording.coords if k.endswith(("_start", "_stop"))]
    seconds = recording.assign_coords(time=recording["time"] / 1000.0, **{k: recording[k] / 1000.0 for k in bounds})
    seconds["time"].attrs["units"] = "s"
    np.testing.assert_allclose(measure_recording(seconds)["ramp_slope"], measured["ramp_slope"])


def test_nwb_round_trip_and_column_mapping(session, recording, tmp_path):
    pytest.importorskip("pynwb")
    path = tmp_path / "session.nwb"
    write_nwb(session, path, columns={"evidence": "signed_coherence", "delay_stop_time": "go_cue_time"})
    with pytest.raises(RecordingError, match=r"lacks the columns \['evidence'\].*--column evidence=your_column"):
        read_nwb_recording(path)
    rec = read_recording(path, columns={"evidence": "signed_coherence", "delay_stop_time": "go_cue_time"})
    xr.testing.assert_allclose(rec.drop_attrs(), recording.drop_attrs())
    assert rec["rate"].attrs["units"] == "1/s"
    sub = read_recording(path, columns={"evidence": "signed_coherence", "delay_stop_time": "go_cue_time"}, units=[0, 5], bin_ms=50.0)
    assert sub["unit"].values.tolist() == [0, 5] and sub["time"].values[1] == 50.0


# ------------------------------------------------------------------------------------------- bad recordings
def small(**change):
    s = synthetic_session(1, n_trials=40, n_units=4)
    trials = {**s.trials, **{k: v for k, v in change.items() if k in s.trials or k.endswith("_time")}}
    spikes = change.get("spikes", s.spikes)
    return trials, spikes


def test_bad_trials_tables_are_refused_naming_what_is_missing():
    trials, spikes = small()
    with pytest.raises(RecordingError, match=r"lacks the columns \['choice'\].*--column choice=your_column"):
        recording_from_spikes({k: v for k, v in trials.items() if k != "choice"}, spikes, {}, BIN_MS, "f.nwb")
    # a period's stop without its start (the start under another name) is refused, not silently dropped
    renamed = {("delay_on" if k == "delay_start_time" else k): v for k, v in trials.items()}
    with pytest.raises(RecordingError, match="has delay_stop_time but no delay_start_time.*--column delay_start_time=your_column"):
        recording_from_spikes(renamed, spikes, {}, BIN_MS, "f.nwb")
    assert "delay_start" in recording_from_spikes(renamed, spikes, {"delay_start_time": "delay_on"}, BIN_MS, "f.nwb").coords
    with pytest.raises(RecordingError, match="no period boundaries"):
        recording_from_spikes({k: v for k, v in trials.items() if not k.endswith("_start_time")}, spikes, {}, BIN_MS, "f.nwb")
    short = dict(trials, delay_stop_time=trials["stop_time"] + 0.5)
    with pytest.raises(RecordingError, match="trial 0 .* is shorter than its delay period"):
        recording_from_spikes(short, spikes, {}, BIN_MS, "f.nwb")
    with pytest.raises(RecordingError, match="mapped columns \\['evidence -> coh'\\] are not in the trials table"):
        recording_from_spikes(trials, spikes, {"evidence": "coh"}, BIN_MS, "f.nwb")
    with pytest.raises(RecordingError, match="'choice' must be numbers or the strings left / right"):
        recording_from_spikes(dict(trials, choice=np.array(["L"] * len(trials["choice"]))), spikes, {}, BIN_MS, "f.nwb")
    words = recording_from_spikes(dict(trials, choice=np.where(trials["choice"] > 0, "Right", "left")), spikes, {}, BIN_MS, "f.nwb")
    np.testing.assert_array_equal(words["choice"].values, trials["choice"])


def test_bad_units_are_refused_naming_them():
    trials, spikes = small()
    with pytest.raises(RecordingError, match=r"units \[2\] have no spikes"):
        recording_from_spikes(trials, {**spikes, 2: np.zeros(0)}, {}, BIN_MS, "f.nwb")
    in_ms = {u: t * 1000.0 for u, t in spikes.items()}  # spike times in ms, trials in s: another time base
    with pytest.raises(RecordingError, match="must share one time base"):
        recording_from_spikes(trials, in_ms, {}, BIN_MS, "f.nwb")


def test_nwb_files_without_trials_or_units_are_refused(tmp_path):
    pynwb = pytest.importorskip("pynwb")
    from datetime import UTC, datetime

    nwb = pynwb.NWBFile(session_description="no trials", identifier="x", session_start_time=datetime(2026, 1, 1, tzinfo=UTC))
    nwb.add_unit(spike_times=[0.1, 0.2])
    with pynwb.NWBHDF5IO(str(tmp_path / "a.nwb"), "w") as io:
        io.write(nwb)
    with pytest.raises(RecordingError, match="has no trials table"):
        read_recording(tmp_path / "a.nwb")
    with pytest.raises(FileNotFoundError):
        read_recording(tmp_path / "missing.nwb")


def test_bad_netcdf_recordings_are_refused(recording, tmp_path):
    with pytest.raises(RecordingError, match="no 'rate' variable"):
        check_recording(recording.rename({"rate": "spikes"}))
    with pytest.raises(RecordingError, match="dims \\('trial', 'time', 'unit'\\)"):
        check_recording(recording.transpose("unit", "trial", "time"))
    bad = recording.copy()
    bad["time"].attrs["units"] = "frames"
    with pytest.raises(RecordingError, match="units attribute 'ms' or 's'; got 'frames'"):
        check_recording(bad)
    with pytest.raises(RecordingError, match="delay_start.*has no partner|\\['delay_start'\\] has no partner"):
        check_recording(recording.drop_vars("delay_stop"))
    late = recording.assign_coords(delay_stop=recording["delay_stop"] + 5000.0)
    with pytest.raises(RecordingError, match="'delay_stop' of trial 0 .* outside the time axis"):
        check_recording(late)
    rate = recording["rate"].values.copy()
    rate[3, 50, 0] = np.nan  # inside trial 3's delay
    with pytest.raises(RecordingError, match="not finite inside the delay period of trial 3"):
        check_recording(recording.copy(data={"rate": rate}))
    with pytest.raises(RecordingError, match="'choice' must have two values"):
        check_recording(recording.assign_coords(choice=("trial", np.arange(recording.sizes["trial"]) % 3)))
    (tmp_path / "junk.nc").write_text("not a netCDF file")
    with pytest.raises(RecordingError, match="not a readable netCDF file"):
        read_recording(tmp_path / "junk.nc")
