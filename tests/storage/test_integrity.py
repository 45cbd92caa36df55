"""Damaged files are found, never read as wrong numbers: 64 garbled bytes or a truncation of a resume
state, a finished unit, an analysis part or a dataset raises DamagedFileError (or is deleted and
computed again where that gives the same numbers)."""
import pickle

import h5py
import pytest
import torch
import xarray as xr

from bioplastic import load_protocol
from bioplastic.pipeline import TorchFileCache, run_protocol
from bioplastic.storage.io import DamagedFileError, DamagedFileWarning, atomic_torch_save, safe_torch_load, verify_torch_file
from bioplastic.storage.results import CHECKSUM_ATTR, read_dataset, verify_dataset, write_dataset
from bioplastic.training.loop import Interrupted
from bioplastic.training.units import load_result, plan_units, result_path, run_unit, verified_results

DATASETS = ["results", "analysis", "predictions", "brian2"]


def garble(path, at=None, n=64):
    """Overwrite ``n`` bytes of ``path`` (in its middle unless ``at``) with their complement."""
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if at is None else at
    data[at:at + n] = bytes(255 - b for b in data[at:at + n])
    path.write_bytes(bytes(data))


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {"garbled": garble, "truncated": truncate}


# ---------------------------------------------------------------------------------------- torch files
def test_torch_files_round_trip_and_refuse_damage(tmp_path):
    obj = {"w": torch.randn(50, 40, dtype=torch.float64), "k": 3, "names": ["a", "b"]}
    path = tmp_path / "x.pt"
    atomic_torch_save(obj, path)
    back = safe_torch_load(path)
    assert torch.equal(back["w"], obj["w"]) and back["k"] == 3 and back["names"] == ["a", "b"]
    for name, damage in DAMAGE.items():
        atomic_torch_save(obj, path)
        damage(path)
        with pytest.raises(DamagedFileError, match="x.pt is damaged") as err:
            safe_torch_load(path)
        assert err.value.path == path, name
        with pytest.raises(DamagedFileError):
            verify_torch_file(path)
    atomic_torch_save(obj, path)
    garble(path, at=30, n=4)  # inside the header's checksum
    with pytest.raises(DamagedFileError):
        safe_torch_load(path)


def test_a_torch_file_without_the_header_is_refused(tmp_path):
    torch.save({"w": torch.zeros(3)}, tmp_path / "old.pt")  # as an older bioplastic wrote it
    with pytest.raises(DamagedFileError, match="no integrity header"):
        safe_torch_load(tmp_path / "old.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(DamagedFileError, match="empty"):
        safe_torch_load(tmp_path / "empty.pt")
    with pytest.raises(FileNotFoundError):  # absent is not damaged
        safe_torch_load(tmp_path / "missing.pt")


def test_damaged_file_error_names_the_file_and_pickles(tmp_path):
    err = DamagedFileError(tmp_path / "a.pt", "wrong checksum")
    assert str(err) == f"{tmp_path / 'a.pt'} is damaged: wrong checksum"
    back = pickle.loads(pickle.dumps(err))  # crosses worker processes intact
    assert str(back) == str(err) and back.path == err.path and back.cause == err.cause


# ---------------------------------------------------------------------------- resume states and units
@pytest.fixture
def tiny(write_protocol):
    return load_protocol(write_protocol())


@pytest.fixture
def straight(tiny, tiny_run):
    """The uninterrupted run's results dataset: TINY run straight through once per session (tests/conftest.py)."""
    ds = read_dataset(tiny_run / "results.nc")
    assert ds.attrs["protocol"] == tiny.text  # the very protocol the tests below resume
    return ds


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_resume_state_restarts_its_unit_with_the_same_numbers(tiny, straight, tmp_path, damage):
    out = tmp_path / "run"
    with pytest.raises(Interrupted):
        run_protocol(tiny, out, interrupt_at=6)
    states = sorted((out / "state").glob("*.pt"))
    assert states
    for s in states:
        DAMAGE[damage](s)
    with pytest.warns(DamagedFileWarning, match=r"state.*\.pt is damaged.*restarts from iteration 0"):
        ds, _ = run_protocol(tiny, out)
    xr.testing.assert_equal(ds, straight)  # every number, bit for bit (attrs: creation time differs)
    xr.testing.assert_equal(read_dataset(out / "results.nc"), straight)


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_unit_result_is_refused_deleted_and_trained_again(tiny, straight, tmp_path, damage):
    out = tmp_path / "run"
    out.mkdir()
    (out / "protocol.yaml").write_text(tiny.text)
    (unit,) = plan_units(tiny)
    run_unit(tiny.text, unit.id, str(out))
    path = result_path(out, unit.id)
    assert load_result(unit, path).weights  # sound
    DAMAGE[damage](path)
    with pytest.raises(DamagedFileError, match=unit.id):  # never weights of 1e183
        load_result(unit, path)
    with pytest.warns(DamagedFileWarning, match=f"{unit.id}.pt is damaged.*trained again"):
        assert verified_results(tiny, out) == [unit.id]
    assert not path.exists()
    assert verified_results(tiny, out) == []  # nothing left to delete
    ds, _ = run_protocol(tiny, out)  # the unit's result is missing: trained again
    xr.testing.assert_equal(ds, straight)


def test_sound_unit_results_are_kept(tiny, tmp_path):
    (unit,) = plan_units(tiny)
    run_unit(tiny.text, unit.id, str(tmp_path))
    before = result_path(tmp_path, unit.id).read_bytes()
    assert verified_results(tiny, tmp_path) == []
    assert result_path(tmp_path, unit.id).read_bytes() == before


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_analysis_part_is_never_returned(tmp_path, damage):
    """The phase-space analysis's parts: a damaged one is deleted with a warning and counts as
    absent (the analysis computes it again) - its numbers are never used."""
    cache = TorchFileCache(tmp_path / "analysis_parts")
    part = {"fixed_points": torch.randn(20, 12, dtype=torch.float64), "n": torch.tensor(3)}
    cache["c0-k1"] = part
    assert torch.equal(cache["c0-k1"]["fixed_points"], part["fixed_points"])
    DAMAGE[damage](tmp_path / "analysis_parts" / "c0-k1.pt")
    with pytest.warns(DamagedFileWarning, match="c0-k1.pt"):
        assert "c0-k1" not in cache
    assert not (tmp_path / "analysis_parts" / "c0-k1.pt").exists()


# -------------------------------------------------------------------------------------------- datasets
@pytest.fixture(scope="module")
def datasets(api_run):
    """A tiny single-point run's datasets, made with the API (tests/conftest.py): results, analysis, predictions, brian2."""
    return api_run[1]


def largest_chunk(path):
    """(offset, size) of the first chunk of the file's largest checksummed variable."""
    with h5py.File(path, "r") as f:
        dsets = [f[k] for k in f if isinstance(f[k], h5py.Dataset) and f[k].chunks and f[k].fletcher32]
        assert dsets, "no variable with fletcher32"
        d = max(dsets, key=lambda d: d.id.get_chunk_info(0).size)
        info = d.id.get_chunk_info(0)
        return info.byte_offset, info.size


@pytest.mark.parametrize("name", DATASETS)
def test_every_numeric_variable_carries_fletcher32(datasets, name, tmp_path):
    ds = datasets[name]
    path = tmp_path / f"{name}.nc"
    write_dataset(ds, path)
    assert CHECKSUM_ATTR not in ds.attrs  # the caller's dataset is left as it was
    with h5py.File(path, "r") as f:
        assert f.attrs[CHECKSUM_ATTR].startswith("sha256:")
        for v, var in ds.variables.items():
            if var.ndim and var.size and var.dtype.kind in "biuf":
                assert f[v].fletcher32, v
    back = read_dataset(path)
    xr.testing.assert_identical(ds, back)
    assert verify_dataset(path) is True


@pytest.mark.parametrize("name", DATASETS)
def test_a_garbled_data_chunk_is_found(datasets, name, tmp_path):
    path = tmp_path / f"{name}.nc"
    write_dataset(datasets[name], path)
    offset, size = largest_chunk(path)
    assert size >= 128
    garble(path, at=offset + size // 2 - 32)
    with pytest.raises(DamagedFileError, match=f"{name}.nc is damaged"):
        read_dataset(path)


@pytest.mark.parametrize("name", DATASETS)
def test_a_truncated_dataset_is_refused(datasets, name, tmp_path):
    path = tmp_path / f"{name}.nc"
    write_dataset(datasets[name], path)
    truncate(path)
    with pytest.raises(DamagedFileError, match=f"{name}.nc is damaged"):
        read_dataset(path)


@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize("where", [0.25, 0.5, 0.75])
def test_garbled_bytes_anywhere_are_refused_or_harmless(datasets, name, where, tmp_path):
    """64 garbled bytes at a quarter, half, three quarters of the file: refused, or they fell where
    nothing is stored (then the dataset read is the one written)."""
    path = tmp_path / f"{name}.nc"
    write_dataset(datasets[name], path)
    garble(path, at=int(path.stat().st_size * where))
    try:
        back = read_dataset(path)
    except DamagedFileError:
        return
    xr.testing.assert_identical(datasets[name], back)


def test_an_altered_protocol_attribute_is_refused(datasets, tmp_path):
    path = tmp_path / "results.nc"
    write_dataset(datasets["results"], path)
    data = path.read_bytes()
    at = data.find(b"stimulus_ms: 200")
    assert at > 0 and data.count(b"stimulus_ms: 200") == 1
    path.write_bytes(data[:at] + b"stimulus_ms: 900" + data[at + 16:])  # a valid file with other text
    with h5py.File(path, "r") as f:
        assert "stimulus_ms: 900" in f.attrs["protocol"]  # the alteration reads without error
    with pytest.raises(DamagedFileError, match="wrong checksum"):
        read_dataset(path)


def test_an_altered_string_coordinate_is_refused(datasets, tmp_path):
    path = tmp_path / "results.nc"
    write_dataset(datasets["results"], path)
    data = path.read_bytes()
    assert data.count(b"tcr_plasticity") >= 1
    path.write_bytes(data.replace(b"tcr_plasticity", b"tcr_plasticitY"))  # string data: no fletcher32
    with pytest.raises(DamagedFileError, match="wrong checksum"):
        read_dataset(path)


def test_a_removed_checksum_attribute_is_refused(datasets, tmp_path):
    path = tmp_path / "results.nc"
    write_dataset(datasets["results"], path)
    with h5py.File(path, "r+") as f:
        del f.attrs[CHECKSUM_ATTR]
    with pytest.raises(DamagedFileError, match="missing"):
        read_dataset(path)


def test_a_dataset_of_an_older_version_is_read_unverified(datasets, tmp_path):
    """Files written before checksums (e.g. tests/data/reference_run) stay readable."""
    path = tmp_path / "old.nc"
    datasets["predictions"].to_netcdf(path, engine="h5netcdf")
    assert verify_dataset(path) is False
    xr.testing.assert_identical(datasets["predictions"], read_dataset(path))
    with pytest.raises(FileNotFoundError):
        read_dataset(tmp_path / "missing.nc")
    (tmp_path / "junk.nc").write_bytes(b"not a netCDF file")
    with pytest.raises(DamagedFileError, match="junk.nc is damaged"):
        read_dataset(tmp_path / "junk.nc")

