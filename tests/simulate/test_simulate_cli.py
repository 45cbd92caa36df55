"""``python -m bioplastic simulate OUT --engine brian2``: a finished run's networks re-simulated in
brian2 and torch, OUT/brian2.nc, the agreement line, and the exit-2 paths."""
import signal

import numpy as np
import pytest
import yaml

from bioplastic.cli import main
from bioplastic.seeds import numpy_rng
from bioplastic.simulate.run import agreement_line
from bioplastic.storage.results import read_dataset, write_dataset
from bioplastic.tasks import build_task

# one pytest-xdist worker runs this module, so that its module-scoped run (run_dir) is made once
pytestmark = pytest.mark.xdist_group("simulate_cli")

TOL = 1e-6
PROTOCOL = """
name: tiny_b2
seed: 7
seeds: 2
task: {kind: evidence_accumulation, stimulus_ms: 200, delay_min_ms: 40, delay_max_ms: 100, response_ms: 60}
model: {kind: leaky_rate, n_units: 10, g: 1.5}
training: {lr: 1e-2, iterations: 8, batch_size: 8, checkpoint_every: 4, eval_every: 4, eval_trials: 8, dtype: float64}
conditions:
  baseline: {}
  anti_hebbian:
    tcr: {form: plasticity, plasticity: {rule: anti_hebbian, eta_F: 0.5, F_max: 0.2}}
  tm:
    tcr: {form: plasticity, plasticity: {rule: tsodyks_markram}}
output: {figures: false}
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """PROTOCOL run by ``python -m bioplastic run`` (in this process) once for this module; the tests
    below write brian2.nc into it in turn."""
    folder = tmp_path_factory.mktemp("b2run")
    (folder / "p.yaml").write_text(PROTOCOL)
    handler = signal.getsignal(signal.SIGTERM)
    try:
        assert main(["run", str(folder / "p.yaml"), "--out", str(folder / "out"), "--quiet", "--executor", "inprocess"]) == 0
    finally:
        signal.signal(signal.SIGTERM, handler)
    return folder / "out"


def test_simulate_writes_both_engines_and_their_agreement(run_dir, cli):
    code, stdout, stderr = cli("simulate", run_dir, "--engine", "brian2", "--trials", 4, "--codegen", "numpy")
    assert code == 0, stderr
    assert "brian2 (numpy) vs torch, 4 trials x 6 networks: agreement" in stdout
    ds = read_dataset(run_dir / "brian2.nc")
    assert list(ds["condition"].values) == ["baseline", "anti_hebbian", "tm"]
    assert ds.attrs["brian2_codegen"] == "numpy" and ds.attrs["dt_ms"] == ds.attrs["task_dt_ms"]
    assert ds["state_brian2"].dims == ("condition", "seed", "trial", "time", "unit")
    assert ds["readout_torch"].dims == ("condition", "seed", "trial", "time", "output")
    assert (ds["agreement_state"] <= TOL).all() and (ds["agreement_readout"] <= TOL).all()
    np.testing.assert_allclose(ds["state_brian2"], ds["state_torch"], rtol=0, atol=TOL)
    plast = ds["agreement_plasticity"]
    assert plast.sel(condition="baseline").isnull().all()
    assert (plast.sel(condition=["anti_hebbian", "tm"]) <= TOL).all()
    # the plasticity conditions really run differently (same weights would give the same states otherwise)
    s = ds["state_torch"]
    assert float(abs(s.sel(condition="tm") - s.sel(condition="baseline")).max()) > 1e-3
    # held-out trials from the run's re-simulation stream
    protocol_task = build_task("evidence_accumulation", dict(stimulus_ms=200, delay_min_ms=40, delay_max_ms=100,
                                                             response_ms=60))
    expected = protocol_task.sample(numpy_rng(7, "resimulation_trials"), 4).inputs_bxtxi
    np.testing.assert_array_equal(ds["inputs"].values, expected.astype(np.float64))
    for v in ds.data_vars:
        assert "units" in ds[v].attrs and "long_name" in ds[v].attrs
    assert agreement_line(ds) in stdout


def test_finer_brian2_step_reports_the_discretisation_error(run_dir, tmp_path, capsys):
    code = main(["simulate", str(run_dir), "--trials", "2", "--codegen", "numpy", "--dt-ms", "5"])
    assert code == 0
    out = capsys.readouterr().out
    assert "torch (dt 20 ms) vs brian2 at dt 5 ms" in out
    ds = read_dataset(run_dir / "brian2.nc")
    assert ds.attrs["dt_ms"] == 5.0 and float(ds["agreement_state"].max()) > 100 * TOL


def test_missing_run_exits_2(tmp_path, capsys):
    assert main(["simulate", str(tmp_path / "nothing"), "--codegen", "numpy"]) == 2
    assert "results.nc is missing" in capsys.readouterr().err


def test_bad_settings_exit_2(run_dir, capsys):
    assert main(["simulate", str(run_dir), "--trials", "0", "--codegen", "numpy"]) == 2
    assert "trials" in capsys.readouterr().err
    assert main(["simulate", str(run_dir), "--trials", "2", "--codegen", "numpy", "--dt-ms", "3"]) == 2
    assert "whole multiple" in capsys.readouterr().err


def test_unsupported_model_kind_exits_2(run_dir, tmp_path, capsys):
    ds = read_dataset(run_dir / "results.nc")
    protocol = yaml.safe_load(ds.attrs["protocol"])
    protocol["model"] = {"kind": "plrnn", "n_units": 10}
    protocol["conditions"] = {"baseline": {}, "tcr_loss": {"tcr": {"form": "loss"}}}
    ds.attrs["protocol"] = yaml.safe_dump(protocol)
    write_dataset(ds, tmp_path / "results.nc")
    assert main(["simulate", str(tmp_path), "--codegen", "numpy"]) == 2
    err = capsys.readouterr().err
    assert "plrnn" in err and "leaky_rate, low_rank" in err
    assert not (tmp_path / "brian2.nc").exists()
