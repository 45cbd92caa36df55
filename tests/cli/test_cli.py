"""The command line as a user meets it: exit codes, messages, files written."""
import re
import subprocess
import sys

import pytest
import xarray as xr


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "bioplastic", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_bad_protocol_exits_2_with_a_message_and_writes_nothing(write_protocol, tmp_path):
    path = write_protocol("name: x\nseed: 1\ntask: {kind: evidence_accumulation}\nmodel: {kind: leaky_rate}\n"
                          "training: {lrr: 1}\n")
    r = cli("run", path, "--out", tmp_path / "out")
    assert r.returncode == 2
    assert "training.lrr: unknown key" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


def test_missing_protocol_file(tmp_path):
    r = cli("validate", tmp_path / "nope.yaml")
    assert r.returncode == 2 and "protocol file not found" in r.stderr and "Traceback" not in r.stderr


def test_run_writes_dataset_protocol_and_figures_then_refuses_another_protocol(write_protocol, tmp_path):
    path = write_protocol()
    out = tmp_path / "run"
    r = cli("run", path, "--out", out, "--set", "output.figures=true", "--quiet")
    assert r.returncode == 0, r.stderr
    assert {"results.nc", "protocol.yaml", "learning_curves.png", "iterations_to_criterion.png"} <= {p.name for p in out.iterdir()}
    assert "baseline" in r.stdout and "tcr_loss" in r.stdout
    with xr.open_dataset(out / "results.nc", engine="h5netcdf") as ds:
        assert ds.attrs["root_seed"] == 7 and "name: tiny" in ds.attrs["protocol"]
    again = cli("run", path, "--out", out, "--quiet", "--set", "output.figures=true")
    assert again.returncode == 0  # complete: nothing retrained
    other = cli("run", path, "--out", out, "--set", "seed=8", "--quiet")
    assert other.returncode == 2 and "different protocol" in other.stderr


def test_list_and_schema():
    r = cli("list")
    assert r.returncode == 0 and "evidence_accumulation" in r.stdout and "leaky_rate" in r.stdout and "adaptive" in r.stdout
    assert "tcr forms:  none, loss, plasticity" in r.stdout and "anti_hebbian, tsodyks_markram" in r.stdout
    assert "bioplausible" in r.stdout and "freeze_in" in r.stdout
    r = cli("schema")
    assert r.returncode == 0
    for field in ("training.lr", "tcr.lambda", "tcr.schedule.target_ratio", "task.delay_min_ms", "model.g",
                  "tcr.plasticity.eta_F", "tcr.plasticity.kappa", "brian2.enabled"):
        assert field in r.stdout


@pytest.mark.parametrize("args", [["run", "protocols/evidence_accum.yaml", "--set", "training.lr=0"],
                                  ["validate", "protocols/evidence_accum.yaml", "--set", "model.kind=cnn"]])
def test_bad_overrides_exit_2(args):
    r = cli(*args)
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_killed_run_resumes_to_the_uninterrupted_result(write_protocol, tmp_path):
    """SIGTERM in the middle of training, then the same command again: same numbers as a straight run."""
    import signal
    import time

    text = write_protocol().read_text().replace("iterations: 12", "iterations: 400").replace("checkpoint_every: 4", "checkpoint_every: 20")
    path = write_protocol(text, "long.yaml")
    straight = tmp_path / "straight"
    assert cli("run", path, "--out", straight, "--quiet").returncode == 0
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "bioplastic", "run", str(path), "--out", str(out), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list((out / "state").glob("*.pt")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=180)  # generous: a loaded machine slows the workers' shutdown
    assert proc.returncode == 130 and "run the same command again" in err
    assert not (out / "results.nc").exists()
    assert cli("run", path, "--out", out, "--quiet").returncode == 0
    with xr.open_dataset(straight / "results.nc", engine="h5netcdf") as a, \
            xr.open_dataset(out / "results.nc", engine="h5netcdf") as b:
        xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())


def test_schema_documents_every_protocol_field():
    """Every field of every section (nested sections included) has a row in `bioplastic schema`."""
    from pydantic import BaseModel

    from bioplastic.protocol.docs import schema_text
    from bioplastic.protocol.schema import ProtocolConfig

    text = schema_text()
    missing = []

    def walk(cls, prefix):
        for name, f in cls.model_fields.items():
            key = prefix + (f.alias or name)
            # the schedule kinds are documented once, for tcr.schedule and tcr.plasticity.schedule alike
            if f"  {key.replace('tcr.plasticity.schedule.', 'tcr.schedule.')} " not in text:
                missing.append(key)
            for arg in (getattr(f.annotation, "__args__", None) or (f.annotation,)):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    walk(arg, key + ".")

    walk(ProtocolConfig, "")
    assert not missing, missing


ONE_CONDITION = """
conditions:
  baseline: {}
analysis: {initial_states: 4, trials: 4}
"""


def test_one_condition_run_completes_with_its_predictions(write_protocol, tmp_path):
    """One condition, no sweep: analysis, predictions (one-element list attributes) and the report."""
    from bioplastic.analysis.predictions import prediction_sentences
    from bioplastic.storage.results import read_dataset

    text = write_protocol().read_text().split("conditions:")[0] + ONE_CONDITION
    out = tmp_path / "one"
    r = cli("run", write_protocol(text, "one.yaml"), "--out", out, "--quiet")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert {"analysis.nc", "predictions.nc", "report.html"} <= {p.name for p in out.iterdir()}
    pred = read_dataset(out / "predictions.nc")
    assert pred.sizes["condition"] == 1
    assert prediction_sentences(pred) == []  # nothing to compare with; no crash
    page = (out / "report.html").read_text()
    assert "could not be formed" not in page and "not computed for sweeps" not in page


def test_one_point_sweep_says_what_it_does_not_compute(write_protocol, tmp_path):
    """A sweep (one point here) computes neither the phase-space analysis nor the predictions, and
    says so in one line and in the report; the command it suggests runs that point on its own."""
    from bioplastic.protocol.load import load_protocol
    from bioplastic.report.text import sweep_note

    text = write_protocol().read_text() + "analysis: {initial_states: 4, trials: 4}\nsweep: {grid: {model.g: [0.8]}}\n"
    path = write_protocol(text, "sweep1.yaml")
    out = tmp_path / "sweep1"
    r = cli("run", path, "--out", out, "--quiet")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("sweep: ")]
    assert len(lines) == 1 and "not computed for sweeps" in lines[0], r.stdout
    assert f"--set sweep=null --set model.g=0.8 --out {out}_point" in lines[0]
    assert not (out / "analysis.nc").exists() and not (out / "predictions.nc").exists()
    page = (out / "report.html").read_text()
    for sid in ("gr", "phase", "predictions", "ramping", "timescales"):
        body = re.search(rf"<section id='{sid}'>(.*?)</section>", page, flags=re.S).group(1)
        assert "The phase-space analysis and the predictions are not computed for sweeps" in body
        assert "--set sweep=null --set model.g=0.8" in body and "missing analysis.nc" not in body
    # the suggested overrides make the single protocol of that point
    single = load_protocol(path, ["sweep=null", "model.g=0.8"])
    assert single.sweep is None and single.conditions[0].model.g == 0.8
    assert sweep_note(single) is None
