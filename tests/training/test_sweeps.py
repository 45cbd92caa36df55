"""Sweeps and executors: same numbers whatever runs them; killed workers lose only their unit."""
import textwrap
import time

import numpy as np
import pytest
import xarray as xr
from conftest import TINY
from faults import KillOnce

from bioplastic import load_protocol, run_protocol, train
from bioplastic.storage.io import DamagedFileWarning, atomic_torch_save, safe_torch_load
from bioplastic.storage.results import read_dataset
from bioplastic.training.executors import DaskExecutor, ExecutorError, InProcessExecutor, LocalPoolExecutor
from bioplastic.training.units import longest_first, plan_units, result_path, verified_results

SWEEP = """
sweep:
  grid:
    model.g: [0.5, 1.5]
"""


@pytest.fixture
def sweep_protocol(write_protocol):
    return load_protocol(write_protocol(write_protocol().read_text() + SWEEP, "sweep.yaml"))


@pytest.fixture(scope="module")
def sweep_ref(tmp_path_factory):
    """The sweep trained in this process, once for this module: the reference every executor must equal."""
    folder = tmp_path_factory.mktemp("sweep_ref")
    (folder / "sweep.yaml").write_text(textwrap.dedent(TINY) + SWEEP)
    ds, _ = run_protocol(load_protocol(folder / "sweep.yaml"), folder / "sweep")
    return ds


def _same(a, b):
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())


def test_sweep_dims_and_points_equal_single_runs(sweep_ref, write_protocol, tiny_run):
    ds = sweep_ref
    assert ds["loss"].dims[:3] == ("model.g", "condition", "seed")
    assert list(ds["model.g"].values) == [0.5, 1.5]
    # the single run at model.g=1.5 is TINY (g: 1.5), run once per session (tests/conftest.py)
    single = read_dataset(tiny_run / "results.nc")
    assert single.attrs["protocol"] == load_protocol(write_protocol(), ["model.g=1.5"]).text
    _same(ds.sel({"model.g": 1.5}, drop=True)[["loss", "accuracy", "weight_W"]], single[["loss", "accuracy", "weight_W"]])
    assert ds.attrs["sweep_dims"] == "model.g" and "sweep:" in ds.attrs["protocol"]


def test_units_split_ensembles_evenly(sweep_protocol):
    units = plan_units(sweep_protocol)  # g only draws the initial weights: both points are one group of 8
    assert [u.id for u in units] == ["sweep-g0-u0", "sweep-g0-u1"]
    assert [u.points for u in units] == [{0}, {1}]
    p = load_protocol(sweep_protocol.source, ["training.ensemble_size=3"])
    units = plan_units(p)
    assert [len(u.members) for u in units] == [3, 3, 2]
    assert units[1].points == {0, 1} and {m.model["g"] for m in units[1].members} == {0.5, 1.5}
    assert [m.label for m in units[1].members] == ["tcr_loss/1", "baseline/0@1", "baseline/1@1"]


PACKED = """
conditions:
  baseline: {}
  tcr_loss:
    tcr: {form: loss, lambda: 0.5}
  plastic:
    tcr: {form: plasticity, plasticity: {eta_F: 0.1}}
sweep:
  zip:
    model.g: [0.5, 1.5]
    training.lr: [0.01, 0.02]
    conditions.tcr_loss.tcr.lambda: [0.5, 1.0]
    conditions.plastic.tcr.plasticity.eta_F: [0.05, 0.2]
"""


def test_points_packed_into_one_ensemble_train_as_they_would_alone(write_protocol):
    """Networks of different sweep points (gain, learning rate, TCR strength, eta_F) share
    ensembles, and each point's numbers equal that point run as a protocol of its own, bit for bit."""
    text = TINY.split("conditions:")[0] + PACKED
    sweep = load_protocol(write_protocol(text, "packed.yaml"), ["training.ensemble_size=8"])
    units = plan_units(sweep)
    assert len(units) == 2 and all(u.points == {0, 1} for u in units)  # one ensemble per group, both points
    ds = train(sweep)
    alone_text = TINY.split("conditions:")[0] + PACKED.split("sweep:")[0]
    for i, (g, lr, lam, eta) in enumerate([(0.5, 0.01, 0.5, 0.05), (1.5, 0.02, 1.0, 0.2)]):
        alone = train(load_protocol(write_protocol(alone_text, "alone.yaml"), [
            f"model.g={g}", f"training.lr={lr}", f"conditions.tcr_loss.tcr.lambda={lam}",
            f"conditions.plastic.tcr.plasticity.eta_F={eta}"]))
        point = ds.isel(zip=i)
        for v in ("loss", "accuracy", "eval_loss", "lambda_tcr", "eta_F", "weight_W", "weight_W_out", "buffer_mask"):
            np.testing.assert_array_equal(point[v].transpose(*alone[v].dims).values, alone[v].values, err_msg=f"point {i}: {v}")
        assert point["eta_F"].sel(condition="plastic").values[:, 0].tolist() == [eta, eta]


@pytest.mark.integration
def test_local_pool_equals_in_process_and_survives_a_killed_worker(sweep_protocol, sweep_ref, tmp_path):
    ref = sweep_ref
    pooled, _ = run_protocol(sweep_protocol, tmp_path / "pool",
                             executor=LocalPoolExecutor(2, runner=KillOnce(str(tmp_path / "killed-once"))))
    assert (tmp_path / "killed-once").exists()  # a worker did die mid-unit
    _same(ref, pooled)


@pytest.mark.integration
def test_dask_local_cluster_equals_local_and_survives_a_killed_worker(sweep_protocol, sweep_ref, tmp_path):
    ref = sweep_ref
    executor = DaskExecutor(workers=2, runner=KillOnce(str(tmp_path / "killed-once")))
    ds, _ = run_protocol(sweep_protocol, tmp_path / "dask", executor=executor)
    assert (tmp_path / "killed-once").exists()
    assert executor.dashboard.startswith("http://127.0.0.1:")  # the local cluster listens on loopback only
    _same(ref, ds)
    # a second run does no work
    calls = []
    t0 = time.perf_counter()
    again, _ = run_protocol(sweep_protocol, tmp_path / "dask", executor=DaskExecutor(workers=2),
                            progress=lambda n, info: calls.append(n))
    assert calls == [] and time.perf_counter() - t0 < 5
    _same(ds, again)


def test_unreachable_scheduler_fails_fast_and_clearly():
    t0 = time.perf_counter()
    with pytest.raises(ExecutorError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        DaskExecutor("tcp://127.0.0.1:9", connect_timeout_s=2).client()
    assert time.perf_counter() - t0 < 15


def test_sweep_errors_name_the_entry(write_protocol):
    from bioplastic import ProtocolError

    base = write_protocol().read_text()
    for sweep, expected in [("model.gg: [1, 2]", "sweep.grid.model.gg = 1: model.gg: unknown key"),
                            ("model.g: []", "sweep.grid: model.g: expected a non-empty list"),
                            ("training.lr: [0.1, -1]", "sweep.grid.training.lr = -1: training.lr: expected greater than 0")]:
        with pytest.raises(ProtocolError) as info:
            load_protocol(write_protocol(base + f"sweep:\n  grid:\n    {sweep}\n", "bad.yaml"))
        assert any(p.startswith(expected) for p in info.value.problems), info.value.problems


def test_zip_sweep(write_protocol, tmp_path):
    text = write_protocol().read_text() + "sweep:\n  zip:\n    model.g: [0.5, 1.5]\n    training.lr: [0.01, 0.02]\n"
    ds, _ = run_protocol(load_protocol(write_protocol(text, "zip.yaml")), tmp_path / "zip")
    assert ds["loss"].dims[0] == "zip" and list(ds["model.g"].values) == [0.5, 1.5]
    assert np.all(ds["training.lr"].values == [0.01, 0.02])
    # figures of a sweep draw from the dataset alone: one row per point, labelled by what differs
    from bioplastic.plotting import curves

    axes = curves.regimes(ds)
    assert [t.get_text() for t in axes[0].get_yticklabels()] == ["reference", "g=1.5, lr=0.02"]
    ax = curves.annotated_curve(ds.isel(zip=0), "baseline", 0)
    assert "search phase" in "".join(t.get_text() for t in ax.texts) or "abrupt" in ax.get_title()
    curves.save(axes, tmp_path / "regimes.png")
    curves.save(ax, tmp_path / "curve.png")


def test_zipped_fields_are_validated_together(write_protocol):
    """A zipped row is one point: delay_min_ms and delay_max_ms may move together past each other's
    base value; a bad row is named by its point."""
    from bioplastic import ProtocolError

    base = write_protocol().read_text()
    ok = base + "sweep:\n  zip:\n    task.delay_min_ms: [40, 200]\n    task.delay_max_ms: [100, 300]\n"
    assert len(load_protocol(write_protocol(ok, "ok.yaml")).points) == 2
    bad = base + "sweep:\n  zip:\n    task.delay_min_ms: [40, 200]\n    task.delay_max_ms: [100, 150]\n"
    with pytest.raises(ProtocolError) as info:
        load_protocol(write_protocol(bad, "bad.yaml"))
    assert any(p.startswith("sweep point task.delay_min_ms=200, task.delay_max_ms=150: task:") for p in info.value.problems), \
        info.value.problems


def test_sweeping_the_number_of_seeds_is_refused(write_protocol):
    from bioplastic import ProtocolError

    text = write_protocol().read_text() + "sweep:\n  grid:\n    seeds: [1, 2]\n"
    with pytest.raises(ProtocolError) as info:
        load_protocol(write_protocol(text, "seeds.yaml"))
    assert any(p.startswith("sweep.grid: seeds: cannot sweep over the number of networks") for p in info.value.problems), \
        info.value.problems


def test_pools_start_the_longest_units_first(write_protocol):
    """Plasticity units cost ~2.5 times as much per network-iteration; larger units more."""
    text = TINY.split("conditions:")[0] + PACKED.split("sweep:")[0]
    units = plan_units(load_protocol(write_protocol(text, "cost.yaml"), ["seeds=3", "training.ensemble_size=4"]))
    assert [len(u.members) for u in units] == [3, 3, 3]  # baseline + tcr_loss (6 -> 3, 3), plastic (3)
    order = longest_first(units)
    assert order[0] is units[2] and order[1:] == units[:2]


def test_points_stay_apart_when_a_setting_is_one_per_ensemble(write_protocol):
    """The optimizer's momentum is one per ensemble (points with equal momentum still pack), and
    stop_when_learned stops an ensemble when all of its networks have learned (points never pack)."""
    base = TINY.replace("  lr: 1e-2\n", "  lr: 1e-2\n  optimizer: sgd\n") + "sweep:\n  grid:\n    model.g: [0.5, 1.5]\n"
    units = plan_units(load_protocol(write_protocol(base + "    training.momentum: [0.0, 0.9]\n", "m.yaml"),
                                     ["training.ensemble_size=8"]))
    assert all(len({m.training.momentum for m in u.members}) == 1 for u in units)
    assert sorted(len(u.points) for u in units) == [2, 2]
    stop = load_protocol(write_protocol(base, "s.yaml"), ["training.ensemble_size=8", "training.stop_when_learned=true"])
    assert [len(u.points) for u in plan_units(stop)] == [1, 1]


def test_result_files_of_an_earlier_work_plan_are_trained_again(write_protocol, tmp_path):
    """A unit's result file that holds other networks (written when the plan grouped them otherwise)
    is deleted with a warning naming both lists, and the unit is trained again."""
    protocol = load_protocol(write_protocol())
    out = tmp_path / "run"
    InProcessExecutor().run(protocol.text, plan_units(protocol), out)
    unit = plan_units(protocol)[0]
    d = safe_torch_load(result_path(out, unit.id))
    d["members"] = ["baseline/0", "baseline/0"]
    atomic_torch_save(d, result_path(out, unit.id))
    with pytest.warns(DamagedFileWarning, match=r"holds networks \['baseline/0', 'baseline/0'\], not this work unit's"):
        assert verified_results(protocol, out) == [unit.id]
    assert not result_path(out, unit.id).exists()
