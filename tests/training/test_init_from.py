"""training.init: networks that start from a finished run's trained networks, at a distance from them.

Oracles: at distance 0 the initial weights are the source's saved weights, at 1 this protocol's own
draw (a run without init), in between the point on the straight line (arithmetic on the stored
arrays); a network's numbers do not depend on its ensemble-mates; every bad source is a clear error
before anything is written."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import xarray as xr

from bioplastic.pipeline import INIT_SOURCES, RunError, check_init_sources, train
from bioplastic.protocol.load import load_protocol
from tests.conftest import TINY, train_into, train_once

PARAMS = ("W", "W_in", "b", "W_out", "b_out")


def started_from(source, *, distance=None, extra="", sweep=None, seeds=2, ensemble_size=4, iterations=12) -> str:
    """TINY at another root seed (its own draw differs from the source's), baseline only, starting
    from ``source``'s baseline networks."""
    init = f"{{from_run: '{source}'{extra}" + ("" if distance is None else f", distance: {distance}") + "}"
    text = (TINY.replace("seed: 7", "seed: 11").replace("seeds: 2", f"seeds: {seeds}")
            .replace("  iterations: 12", f"  iterations: {iterations}\n  ensemble_size: {ensemble_size}\n  init: {init}")
            .split("conditions:")[0] + "conditions:\n  baseline: {}\noutput:\n  figures: false\n")
    if sweep:
        text += f"sweep: {{grid: {{training.init.distance: {sweep}}}}}\n"
    return text


@pytest.fixture(scope="module")
def swept_run(tmp_path_factory):
    """TINY swept over g (4 iterations): a source with a sweep dim."""
    return train_once(tmp_path_factory, "swept", TINY.replace("output:", "sweep: {grid: {model.g: [0.5, 1.5]}}\noutput:")
                      .replace("  iterations: 12", "  iterations: 4"))


def protocol_of(tmp_path, text, name="p.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return load_protocol(path)


def ordered(da):
    """The array in one dim order (a dataset read from a file and one made in memory may differ)."""
    return da.transpose(*sorted(da.dims)).values


def first_weights(ds, **sel):
    return {k: ordered(ds[f"weight_{k}"].sel(condition="baseline", **sel).isel(checkpoint=0)) for k in PARAMS}


def test_distances_0_half_and_1_are_the_source_the_midpoint_and_the_own_draw(tiny_run, tmp_path):
    src = xr.open_dataset(tiny_run / "results.nc")
    last = {k: ordered(src[f"weight_{k}"].sel(condition="baseline").isel(checkpoint=-1)) for k in PARAMS}
    assert not np.allclose(last["W"], src["weight_W"].sel(condition="baseline").isel(checkpoint=0).values)  # it trained
    ds = train(protocol_of(tmp_path, started_from(tiny_run, sweep=[0.0, 0.5, 1.0], iterations=4)))
    own = train(protocol_of(tmp_path, started_from(tiny_run, iterations=4).replace(
        f"  init: {{from_run: '{tiny_run}'}}\n", ""), "own.yaml"))
    fresh = first_weights(own)
    dim = "training.init.distance"
    for k in PARAMS:
        np.testing.assert_array_equal(first_weights(ds, **{dim: 0.0})[k], last[k])
        np.testing.assert_array_equal(first_weights(ds, **{dim: 1.0})[k], fresh[k])
        np.testing.assert_allclose(first_weights(ds, **{dim: 0.5})[k], (last[k] + fresh[k]) / 2, rtol=0, atol=1e-15)
    # a network started at distance 1 trains exactly as one without init
    np.testing.assert_array_equal(ds["loss"].sel({dim: 1.0}).values, own["loss"].values)
    record = json.loads(ds.attrs["init_sources"])[0]
    assert record["from_run"] == str(tiny_run) and record["source_checkpoint"] == [12, 12]
    assert len(record["results_sha256"]) == 64


def test_a_networks_numbers_do_not_depend_on_its_ensemble_mates(tiny_run, tmp_path):
    packed = train(protocol_of(tmp_path, started_from(tiny_run, sweep=[0.2, 0.7], ensemble_size=4)))
    alone = train(protocol_of(tmp_path, started_from(tiny_run, sweep=[0.2, 0.7], ensemble_size=1), "alone.yaml"))
    np.testing.assert_array_equal(packed["loss"].values, alone["loss"].values)
    np.testing.assert_array_equal(packed["weight_W"].values, alone["weight_W"].values)


def test_a_chosen_checkpoint_and_a_swept_source(tiny_run, swept_run, tmp_path):
    src = xr.open_dataset(tiny_run / "results.nc")
    ds = train(protocol_of(tmp_path, started_from(tiny_run, extra=", checkpoint: 4", iterations=4)))
    np.testing.assert_array_equal(first_weights(ds)["W"], ordered(src["weight_W"].sel(condition="baseline", checkpoint=4)))
    sw = xr.open_dataset(swept_run / "results.nc")
    ds = train(protocol_of(tmp_path, started_from(swept_run, extra=", select: {model.g: 0.5}", iterations=4), "s.yaml"))
    np.testing.assert_array_equal(first_weights(ds)["W"],
                                  ordered(sw["weight_W"].sel({"model.g": 0.5, "condition": "baseline"}).isel(checkpoint=-1)))


@pytest.mark.parametrize(("change", "message"), [
    (lambda t, s: t.replace(str(s), str(s) + "-missing"), "training.init.from_run: expected a finished run folder"),
    (lambda t, s: t.replace("}\n", ", condition: tcr}\n", 1), "training.init.condition: expected one of the source run's "
                                                              "conditions (baseline, tcr_loss); got 'tcr'"),
    (lambda t, s: t.replace("}\n", ", checkpoint: 5}\n", 1), "training.init.checkpoint: expected 'last' or one of the "
                                                             "source's checkpoints (0, 4, 8, 12); got 5"),
    (lambda t, s: t.replace("}\n", ", select: {model.g: 1}}\n", 1), "training.init.select: the source run has no swept "
                                                                    "field model.g"),
    (lambda t, s: t.replace("seeds: 2", "seeds: 3"), "the source has 2 seeds of baseline; this protocol needs 3"),
    (lambda t, s: t.replace("n_units: 12", "n_units: 10"), "the source's W is (12, 12), this protocol's network needs (10, 10)"),
    (lambda t, s: t.replace("kind: leaky_rate", "kind: plrnn").replace("  g: 1.5\n", ""), "the source's baseline networks are "
                                                                                          "leaky_rate, this protocol's are plrnn"),
])
def test_a_bad_source_is_a_clear_error_before_anything_is_written(tiny_run, tmp_path, cli, change, message):
    path = tmp_path / "p.yaml"
    path.write_text(change(started_from(tiny_run), tiny_run))
    code, out, err = cli("run", path, "--out", tmp_path / "out", "--quiet")
    assert code != 0 and message in err, err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_a_sweep_source_needs_its_point_chosen(swept_run, tmp_path):
    with pytest.raises(RunError, match=r"training.init.select: the source run is a sweep; choose its point, e.g. "
                                       r"\{model.g: 0.5\} \(values of model.g: \[0.5, 1.5\]\)"):
        train(protocol_of(tmp_path, started_from(swept_run)))


def test_a_resumed_run_refuses_a_changed_source_and_a_finished_one_needs_none(tiny_run, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(tiny_run, source)
    protocol = protocol_of(tmp_path, started_from(source, iterations=4))
    out = tmp_path / "out"
    out.mkdir()
    records = check_init_sources(protocol, out)
    (out / INIT_SOURCES).write_text(json.dumps([{**records[0], "results_sha256": "0" * 64}]))
    with pytest.raises(RunError, match="results.nc changed since this run started"):
        check_init_sources(protocol, out)
    shutil.rmtree(out)
    (tmp_path / "done").mkdir()
    run = train_into(tmp_path / "done", started_from(source, iterations=4))
    assert json.loads(xr.open_dataset(run / "results.nc").attrs["init_sources"])[0]["from_run"] == str(source)
    shutil.rmtree(source)  # the source is needed only until training is finished
    assert check_init_sources(load_protocol(run / "protocol.yaml"), run) == []


@pytest.mark.parametrize("model", ["{kind: plrnn, n_units: 6}", "{kind: lstm, n_units: 5}", "{kind: low_rank, n_units: 8, rank: 1}"])
def test_every_kind_starts_from_its_source_and_its_own_draw(tmp_path, model):
    """Every parameter of every kind, in its own layout: distance 0 is the source's last weights,
    1 this protocol's own draw, whatever the dims' order in the files."""
    base = ("name: k\nseed: 3\nseeds: 2\ntask: {kind: evidence_accumulation, stimulus_ms: 200, delay_min_ms: 40, "
            "delay_max_ms: 100, response_ms: 60}\nmodel: MODEL\ntraining: {lr: 1e-2, iterations: 4, batch_size: 4, "
            "checkpoint_every: 2, eval_every: 2, eval_trials: 8, dtype: float64INIT}\noutput: {figures: false}\n").replace("MODEL", model)
    (tmp_path / "src").mkdir()
    source = train_into(tmp_path / "src", base.replace("INIT", ""))
    src = xr.open_dataset(source / "results.nc")
    own = train(protocol_of(tmp_path, base.replace("INIT", "").replace("seed: 3", "seed: 4"), "own.yaml"))
    text = base.replace("INIT", f", init: {{from_run: '{source}'}}") + "sweep: {grid: {training.init.distance: [0.0, 1.0]}}\n"
    ds = train(protocol_of(tmp_path, text.replace("seed: 3", "seed: 4"), "d.yaml"))
    names = [str(v)[len("weight_"):] for v in ds.data_vars if str(v).startswith("weight_")]
    assert len(names) >= 4
    for k in names:
        at = ds[f"weight_{k}"].sel(condition="baseline").isel(checkpoint=0)
        np.testing.assert_array_equal(ordered(at.sel({"training.init.distance": 0.0})),
                                      ordered(src[f"weight_{k}"].sel(condition="baseline").isel(checkpoint=-1)))
        np.testing.assert_array_equal(ordered(at.sel({"training.init.distance": 1.0})),
                                      ordered(own[f"weight_{k}"].sel(condition="baseline").isel(checkpoint=0)))
