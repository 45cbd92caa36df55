"""scripts/compare_runs.py: the network-by-network comparison of two runs of one protocol."""
import contextlib
import io
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from conftest import load_script

from bioplastic.storage.results import read_dataset, write_dataset

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "compare_runs.py"


def _script_module():
    return load_script("compare_runs")


def compare(a, b, *more):
    """The script's command line, run in this process: (returncode, stdout, stderr)."""
    module, out, err = _script_module(), io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = [str(SCRIPT), str(a), str(b), *more]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = module.main()
            except SystemExit as exc:  # sys.exit("message"): the message goes to stderr, status 1
                code = exc.code if isinstance(exc.code, int) else 1
                if isinstance(exc.code, str):
                    err.write(exc.code)
    finally:
        sys.argv = argv
    return subprocess.CompletedProcess(sys.argv, code, out.getvalue(), err.getvalue())


def test_a_run_equals_itself_and_a_changed_network_is_counted(tiny_run, tmp_path):
    same = compare(tiny_run, tiny_run)
    assert same.returncode == 0, same.stderr
    assert " 0 differ" in same.stdout.splitlines()[1]
    changed = tmp_path / "changed"
    changed.mkdir()
    shutil.copy(tiny_run / "protocol.yaml", changed)
    ds = read_dataset(tiny_run / "results.nc")
    first = {d: 0 for d in ds["final_accuracy"].dims}
    ds["final_accuracy"][first] = ds["final_accuracy"][first] - 0.25
    write_dataset(ds, changed / "results.nc")
    out = compare(tiny_run, changed)
    assert out.returncode == 0, out.stderr
    line = next(s for s in out.stdout.splitlines() if s.strip().startswith("final_accuracy"))
    assert "1 differ (by at most 0.25" in line


def test_runs_of_different_protocols_are_refused(tiny_run, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    ds = read_dataset(tiny_run / "results.nc")
    ds.attrs["protocol_name"] = "something_else"
    write_dataset(ds, other / "results.nc")
    out = compare(tiny_run, other)
    assert out.returncode == 1 and "different protocols" in out.stdout
    assert "no results.nc" in compare(tiny_run, tmp_path / "missing").stderr


def test_recompute_applies_the_current_definitions_to_both_runs(tiny_run, tmp_path):
    """A stored metric that disagrees with its loss curve (as after a change of the definitions) shows
    as a difference, and --recompute computes it again from the curve."""
    edited = tmp_path / "edited"
    edited.mkdir()
    ds = read_dataset(tiny_run / "results.nc")
    first = {d: 0 for d in ds["search_phase"].dims}
    ds["search_phase"][first] = ds["search_phase"][first].fillna(0) + 1000
    write_dataset(ds, edited / "results.nc")
    line = lambda out: next(s for s in out.stdout.splitlines() if s.strip().startswith("search_phase"))  # noqa: E731
    assert " 1 differ" in line(compare(tiny_run, edited))
    again = compare(tiny_run, edited, "--recompute")
    assert again.returncode == 0, again.stderr
    assert " 0 differ" in line(again)


def test_recompute_uses_each_sweep_points_own_curve_settings(tmp_path):
    """A sweep over training.loss_smoothing: each point is recomputed with its own smoothing window."""
    from conftest import TINY

    from bioplastic import load_protocol, run_protocol
    from bioplastic.analysis.learning_curves import add_curve_metrics

    (tmp_path / "p.yaml").write_text(textwrap.dedent(TINY) + "sweep:\n  grid:\n    training.loss_smoothing: [1, 4]\n")
    ds, _ = run_protocol(load_protocol(tmp_path / "p.yaml", ["training.iterations=40"]), tmp_path / "out")
    # curves with a plateau and a drop whose timing differs by network, so every metric is defined
    k = np.arange(ds.sizes["iteration"])
    onset = 10 + 3 * np.arange(ds["task_loss"][..., 0].size).reshape(ds["task_loss"].shape[:-1])
    ds["task_loss"] = ds["task_loss"].dims, np.where(k < onset[..., None], 1.0, 0.01)
    module = _script_module()
    got = module.recompute(ds)
    for smoothing in (1, 4):
        want = ds.sel({"training.loss_smoothing": smoothing}).copy()
        add_curve_metrics(want, want["iterations_to_criterion"].attrs.get("criterion", 0.95), smoothing)
        for m in module.METRICS:
            np.testing.assert_array_equal(got[m].sel({"training.loss_smoothing": smoothing}).values, want[m].values, err_msg=m)
    assert np.isfinite(got["search_phase"]).all()
    assert not np.array_equal(got["drop_width"].sel({"training.loss_smoothing": 1}).values,
                              got["drop_width"].sel({"training.loss_smoothing": 4}).values)


def test_runs_with_other_sweep_values_are_refused(tiny_run, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    ds = read_dataset(tiny_run / "results.nc")
    ds = ds.assign_coords(seed=ds["seed"].values + 100)
    write_dataset(ds, other / "results.nc")
    out = compare(tiny_run, other)
    assert out.returncode == 1 and "coordinates ['seed'] differ" in out.stdout
