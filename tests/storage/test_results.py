"""The results dataset: round trip through netCDF, units and names everywhere, atomic writes."""
import numpy as np
import pytest
import xarray as xr

from bioplastic.storage.io import atomic_write
from bioplastic.storage.results import read_dataset, write_dataset


@pytest.fixture
def ds(tiny_run):
    """The TINY protocol's results (trained once per session, tests/conftest.py); read, never changed."""
    return read_dataset(tiny_run / "results.nc")


def test_round_trip_is_identical(ds, tmp_path):
    write_dataset(ds, tmp_path / "copy.nc")
    xr.testing.assert_identical(ds, read_dataset(tmp_path / "copy.nc"))


def test_dims_variables_units_and_provenance(ds):
    for dim in ("condition", "seed", "iteration", "evaluation", "checkpoint", "unit", "unit_pre"):
        assert dim in ds.dims
    for var in ("loss", "task_loss", "tcr_loss", "accuracy", "iterations_to_criterion", "drop_onset", "drop_width",
                "drop_time", "abruptness", "search_phase", "diverged", "weight_W"):
        assert var in ds
    assert ds["weight_W"].dims == ("condition", "seed", "checkpoint", "unit", "unit_pre")
    for name in list(ds.data_vars) + list(ds.coords):
        assert "units" in ds[name].attrs and ds[name].attrs["long_name"], name
    assert ds.attrs["root_seed"] == 7 and ds.attrs["git_commit"] and "torch" in ds.attrs["versions"]
    assert list(ds["condition"].values) == ["baseline", "tcr_loss"]
    # the stored weights rebuild the network: checkpoint 0 equals the initialisation of the seed
    np.testing.assert_array_equal(ds["weight_W"].isel(checkpoint=0).sel(condition="baseline"),
                                  ds["weight_W"].isel(checkpoint=0).sel(condition="tcr_loss"))


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "x.nc"

    def boom(p):
        p.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def made_in_memory(api_run):
    """A tiny single-point run made with the API (no folder; tests/conftest.py): protocol and datasets."""
    return api_run


@pytest.mark.parametrize("name", ["results", "analysis", "predictions", "brian2"])
def test_every_dataset_round_trips_identically(made_in_memory, name, tmp_path):
    ds = made_in_memory[1][name]
    write_dataset(ds, tmp_path / f"{name}.nc")
    xr.testing.assert_identical(ds, read_dataset(tmp_path / f"{name}.nc"))


def test_buffers_are_stored_and_rebuilt_from_the_dataset(made_in_memory):
    """results.nc is self-sufficient: the fixed connectivity mask is a variable, and a rebuilt network
    takes it from the dataset, never from re-drawing the init stream."""
    from bioplastic import build_network, build_task, trained_network
    from bioplastic.seeds import numpy_rng

    protocol, data = made_in_memory
    ds = data["results"]
    assert ds["buffer_mask"].dims == ("condition", "seed", "unit", "unit_pre")
    task = build_task("evidence_accumulation", protocol.conditions[0].task.model_dump())
    drawn = build_network("leaky_rate", protocol.conditions[0].model.model_dump(), n_inputs=task.n_inputs,
                          n_outputs=task.n_outputs, dt_ms=task.dt_ms, rngs=[numpy_rng(3, "init", s) for s in range(2)])
    mask = ds["buffer_mask"].sel(condition="baseline").values
    np.testing.assert_array_equal(mask, drawn.buffers["mask"].numpy())
    assert 0 < mask.mean() < 1
    altered = ds.copy(deep=True)
    altered["buffer_mask"].values[:] = 1 - altered["buffer_mask"].values
    net, _ = trained_network(altered, protocol, "baseline")
    np.testing.assert_array_equal(net.buffers["mask"].numpy(), 1 - mask)
