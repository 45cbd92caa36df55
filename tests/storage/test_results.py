"""The results dataset: round trip through netCDF, units and names everywhere, atomic writes."""
import numpy as np
import pytest
import xarray as xr

from bioplastic import load_protocol, run_protocol
from bioplastic.storage.io import atomic_write
from bioplastic.storage.results import read_dataset, write_dataset


@pytest.fixture
def ds(write_protocol, tmp_path):
    ds, _ = run_protocol(load_protocol(write_protocol()), tmp_path / "run")
    return ds


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
