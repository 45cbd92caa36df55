"""scripts/compare_runs.py: the network-by-network comparison of two runs of one protocol."""
import shutil
import subprocess
import sys
from pathlib import Path

import xarray as xr

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "compare_runs.py"


def compare(a, b):
    return subprocess.run([sys.executable, str(SCRIPT), str(a), str(b)], capture_output=True, text=True)


def test_a_run_equals_itself_and_a_changed_network_is_counted(tiny_run, tmp_path):
    same = compare(tiny_run, tiny_run)
    assert same.returncode == 0, same.stderr
    assert " 0 differ" in same.stdout.splitlines()[1]
    changed = tmp_path / "changed"
    changed.mkdir()
    shutil.copy(tiny_run / "protocol.yaml", changed)
    ds = xr.load_dataset(tiny_run / "results.nc")
    first = {d: 0 for d in ds["final_accuracy"].dims}
    ds["final_accuracy"][first] = ds["final_accuracy"][first] - 0.25
    ds.to_netcdf(changed / "results.nc")
    out = compare(tiny_run, changed)
    assert out.returncode == 0, out.stderr
    line = next(s for s in out.stdout.splitlines() if s.strip().startswith("final_accuracy"))
    assert "1 differ (by at most 0.25" in line


def test_runs_of_different_protocols_are_refused(tiny_run, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    ds = xr.load_dataset(tiny_run / "results.nc")
    ds.attrs["protocol_name"] = "something_else"
    ds.to_netcdf(other / "results.nc")
    out = compare(tiny_run, other)
    assert out.returncode == 1 and "different protocols" in out.stdout
    assert "no results.nc" in compare(tiny_run, tmp_path / "missing").stderr


def test_recompute_applies_the_current_definitions_to_both_runs(tiny_run, tmp_path):
    """A stored metric that disagrees with its loss curve (as after a change of the definitions) shows
    as a difference, and --recompute computes it again from the curve."""
    edited = tmp_path / "edited"
    edited.mkdir()
    ds = xr.load_dataset(tiny_run / "results.nc")
    first = {d: 0 for d in ds["search_phase"].dims}
    ds["search_phase"][first] = ds["search_phase"][first].fillna(0) + 1000
    ds.to_netcdf(edited / "results.nc")
    line = lambda out: next(s for s in out.stdout.splitlines() if s.strip().startswith("search_phase"))  # noqa: E731
    assert " 1 differ" in line(compare(tiny_run, edited))
    again = subprocess.run([sys.executable, str(SCRIPT), str(tiny_run), str(edited), "--recompute"],
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert " 0 differ" in line(again)
