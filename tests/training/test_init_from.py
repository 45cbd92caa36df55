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

from bioplastic.pipeline import INIT_SOURCES, RunError, check_init_sources, run_protocol, train
from bioplastic.protocol.errors import ProtocolError
from bioplastic.protocol.load import load_protocol
from bioplastic.storage.results import read_dataset, write_dataset
from bioplastic.training.executors import DaskExecutor, InProcessExecutor, run_unit_or_refusal
from bioplastic.training.init_from import InitSourceError
from bioplastic.training.loop import Interrupted
from bioplastic.training.units import plan_units
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
    (lambda t, s: t.replace("n_units: 12", "n_units: 10"), "other model settings (n_units: 12 there, 10 here); only the "
                                                           "settings of the initial draw (connection_prob, g, input_scale, "
                                                           "output_scale) may differ"),
    (lambda t, s: t.replace("kind: evidence_accumulation", "kind: flipflop\n  n_bits: 3\n  pulse_prob: 0.1\n  trial_ms: 200\n#")
     .replace("  stimulus_ms: 200\n  delay_min_ms: 40\n  delay_max_ms: 100\n  response_ms: 60\n", ""),
     "the source's W_out is (1, 12), this protocol's network needs (3, 12) (units, inputs, outputs and rank must match)"),
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
    protocol = protocol_of(tmp_path, started_from(source, iterations=12))
    with pytest.raises(Interrupted):
        run_protocol(protocol, tmp_path / "out", interrupt_at=6)
    assert json.loads((tmp_path / "out" / INIT_SOURCES).read_text())[0]["path"] == str((source / "results.nc").resolve())
    changed = read_dataset(source / "results.nc")
    changed.attrs["title"] += " (changed)"
    write_dataset(changed, source / "results.nc")  # intact, but another file
    with pytest.raises(RunError, match="results.nc changed since this run started"):
        run_protocol(protocol, tmp_path / "out")
    shutil.copy(tiny_run / "results.nc", source / "results.nc")  # the source as it was: the run resumes
    resumed, run = run_protocol(protocol, tmp_path / "out")
    straight = train(protocol)
    np.testing.assert_array_equal(resumed["loss"].values, straight["loss"].values)
    assert json.loads(resumed.attrs["init_sources"])[0]["from_run"] == str(source)
    shutil.rmtree(source)  # the source is needed only until training is finished
    assert check_init_sources(load_protocol(run / "protocol.yaml"), run) == []
    run_protocol(protocol, run)  # a finished run's later stages need no source


class ChangesTheSource(InProcessExecutor):
    """Trains the units in this process, rewriting the source's results.nc after the first unit (as a
    source run re-analysed or retrained while this run trains)."""

    def __init__(self, source):
        super().__init__()
        self.source = source

    def run(self, protocol_text, units, out, progress=None):
        for i, unit in enumerate(units):
            if i == 1:
                _change(self.source)
            super().run(protocol_text, [unit], out, progress)


def test_a_source_changed_while_the_run_trains_stops_its_later_units(tiny_run, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(tiny_run, source)
    protocol = protocol_of(tmp_path, started_from(source, iterations=4, ensemble_size=1))
    assert len(plan_units(protocol)) == 2
    with pytest.raises(RunError, match=r"results.nc changed while this run was training in .*restore it, or delete"):
        run_protocol(protocol, tmp_path / "out", executor=ChangesTheSource(source))
    assert not (tmp_path / "out" / "results.nc").exists()
    assert len(list((tmp_path / "out" / "units").glob("*.pt"))) == 1  # the unit trained before the change


def _change(source):
    changed = read_dataset(source / "results.nc")
    changed.attrs["title"] += " (changed)"
    write_dataset(changed, source / "results.nc")


class Stop(Exception):
    pass


class CollectsRefusals(InProcessExecutor):
    """Rewrites the source, then runs every unit as a Dask task would, keeping what each returns."""

    def __init__(self, source):
        super().__init__()
        self.source, self.returned = source, []

    def run(self, protocol_text, units, out, progress=None):
        _change(self.source)
        self.returned = [run_unit_or_refusal(protocol_text, u.id, str(out), None, 1, None, self.runner) for u in units]
        raise Stop


def test_a_dask_task_returns_the_refusal_so_that_its_retries_do_not_repeat_it(tiny_run, tmp_path):
    """Dask retries a task that raises; a changed source would fail every try, so the task returns
    the refusal and the client raises it (DaskExecutor.run)."""
    source = tmp_path / "source"
    shutil.copytree(tiny_run, source)
    executor = CollectsRefusals(source)
    with pytest.raises(Stop):
        run_protocol(protocol_of(tmp_path, started_from(source, iterations=4, ensemble_size=1)), tmp_path / "out",
                     executor=executor)
    assert len(executor.returned) == 2
    assert all(isinstance(r, InitSourceError) and "changed while this run was training" in str(r) for r in executor.returned)
    assert not list((tmp_path / "out" / "units").glob("*.pt"))


class DaskChangesTheSource(DaskExecutor):
    """Rewrites the source, then runs the units on a Dask cluster of one worker thread in this process
    (so that a test can count the calls the tasks make)."""

    def __init__(self, source):
        super().__init__(workers=1)
        self.source = source

    def client(self):
        from dask.distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None)
        return Client(cluster), cluster

    def run(self, protocol_text, units, out, progress=None):
        _change(self.source)
        super().run(protocol_text, units, out, progress)


@pytest.mark.integration
def test_a_source_changed_under_a_dask_run_stops_it_once_with_the_same_error(tiny_run, tmp_path, monkeypatch):
    """The task returns the refusal instead of raising it, so Dask's retries (3) do not run it again."""
    from bioplastic.training import executors

    tries = tmp_path / "tries"  # a file: Dask may run a copy of the function below
    real = executors.run_unit

    def counted(*args):
        with open(tries, "a") as f:
            f.write(args[1] + "\n")
        return real(*args)

    monkeypatch.setattr(executors, "run_unit", counted)
    source = tmp_path / "source"
    shutil.copytree(tiny_run, source)
    protocol = protocol_of(tmp_path, started_from(source, iterations=4, ensemble_size=1))
    with pytest.raises(RunError, match=r"results.nc changed while this run was training in .*restore it, or delete"):
        run_protocol(protocol, tmp_path / "out", executor=DaskChangesTheSource(source))
    assert not list((tmp_path / "out" / "units").glob("*.pt"))
    calls = tries.read_text().split()
    assert 1 <= len(calls) <= 2 and len(set(calls)) == len(calls)  # each unit tried once (the run stops at the first)


def test_a_source_folder_or_its_results_file(tiny_run, tmp_path):
    by_file = train(protocol_of(tmp_path, started_from(tiny_run / "results.nc", iterations=4)))
    by_folder = train(protocol_of(tmp_path, started_from(tiny_run, iterations=4), "f.yaml"))
    np.testing.assert_array_equal(by_file["weight_W"].values, by_folder["weight_W"].values)


SPARSE = TINY.replace("  g: 1.5\n", "  g: 1.5\n  connection_prob: 0.5\n").replace("  iterations: 12", "  iterations: 4")


def test_fixed_buffers_must_be_the_same_and_then_distance_1_is_the_own_draw(tmp_path):
    """A sparse network's mask is not interpolated: a start between two networks needs the same mask,
    which the source's root seed gives; then distance 1 is this protocol's own draw, mask included."""
    (tmp_path / "src").mkdir()
    source = train_into(tmp_path / "src", SPARSE)
    other_seed = started_from(source, iterations=4).replace("  g: 1.5\n", "  g: 1.5\n  connection_prob: 0.5\n")
    with pytest.raises(RunError, match=r"the source's networks have other fixed buffers \(mask\)"):
        train(protocol_of(tmp_path, other_seed))
    same_seed = other_seed.replace("seed: 11", "seed: 7") + "sweep: {grid: {training.init.distance: [1.0]}}\n"
    ds = train(protocol_of(tmp_path, same_seed, "same.yaml"))
    own = train(protocol_of(tmp_path, SPARSE.split("conditions:")[0] + "conditions:\n  baseline: {}\noutput:\n  figures: false\n",
                            "own.yaml"))
    np.testing.assert_array_equal(ds["loss"].sel({"training.init.distance": 1.0}).values, own["loss"].values)
    np.testing.assert_array_equal(ordered(ds["buffer_mask"].sel({"training.init.distance": 1.0})), ordered(own["buffer_mask"]))


def test_settings_beyond_the_initial_draw_must_match(tiny_run, tmp_path):
    text = started_from(tiny_run, iterations=4).replace("  g: 1.5\n", "  g: 1.5\n  tau_ms: 50\n")
    with pytest.raises(RunError, match=r"other model settings \(tau_ms: 100.0 there, 50.0 here\)"):
        train(protocol_of(tmp_path, text))
    ok = started_from(tiny_run, iterations=4).replace("  g: 1.5\n", "  g: 3.0\n")  # the draw's gain may differ
    assert np.isfinite(train(protocol_of(tmp_path, ok, "g.yaml"))["loss"].values).all()


def test_every_point_and_condition_is_checked_and_errors_name_the_field(tiny_run, tmp_path):
    swept_size = started_from(tiny_run, iterations=4) + "sweep: {grid: {model.n_units: [12, 10]}}\n"
    with pytest.raises(RunError, match=r"training.init.from_run: the source's baseline networks were trained with other model "
                                       r"settings \(n_units: 12 there, 10 here\)"):
        train(protocol_of(tmp_path, swept_size))
    two = started_from(tiny_run, iterations=4).replace("  baseline: {}\n", "  baseline: {}\n  tcr: {tcr: {form: loss}}\n")
    with pytest.raises(RunError, match=r"invalid protocol: training.init.checkpoint: expected 'last' or one"):
        train(protocol_of(tmp_path, two.replace("}\n", ", checkpoint: 5}\n", 1), "two.yaml"))
    own = two.replace("  tcr: {tcr: {form: loss}}", "  tcr: {tcr: {form: loss}, training: {init: {from_run: nowhere}}}")
    with pytest.raises(RunError, match=r"conditions.tcr.training.init.from_run: expected a finished run folder"):
        train(protocol_of(tmp_path, own, "own.yaml"))
    with pytest.raises(ProtocolError, match=r"training.init.distance: init is null \(off\) in this protocol"):
        load_protocol(tmp_path / "p.yaml", ["training.init=null", "sweep={grid: {training.init.distance: [0.5]}}"])


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
    # a rank-one network's random part is a fixed buffer: it starts between networks of one root seed only
    seed = "seed: 3" if "low_rank" in model else "seed: 4"
    own = train(protocol_of(tmp_path, base.replace("INIT", "").replace("seed: 3", seed), "own.yaml"))
    text = base.replace("INIT", f", init: {{from_run: '{source}'}}") + "sweep: {grid: {training.init.distance: [0.0, 1.0]}}\n"
    ds = train(protocol_of(tmp_path, text.replace("seed: 3", seed), "d.yaml"))
    names = [str(v)[len("weight_"):] for v in ds.data_vars if str(v).startswith("weight_")]
    assert len(names) >= 4
    for k in names:
        at = ds[f"weight_{k}"].sel(condition="baseline").isel(checkpoint=0)
        np.testing.assert_array_equal(ordered(at.sel({"training.init.distance": 0.0})),
                                      ordered(src[f"weight_{k}"].sel(condition="baseline").isel(checkpoint=-1)))
        np.testing.assert_array_equal(ordered(at.sel({"training.init.distance": 1.0})),
                                      ordered(own[f"weight_{k}"].sel(condition="baseline").isel(checkpoint=0)))
