"""The command line as a user meets it: exit codes, messages, files written. ``cli`` (tests/conftest.py)
runs ``python -m bioplastic`` in this process; the kill test runs a separate process."""
import re
import subprocess
import sys

import pytest
import xarray as xr

from bioplastic import load_protocol, run_protocol


def test_bad_protocol_exits_2_with_a_message_and_writes_nothing(write_protocol, tmp_path, cli):
    path = write_protocol("name: x\nseed: 1\ntask: {kind: evidence_accumulation}\nmodel: {kind: leaky_rate}\n"
                          "training: {lrr: 1}\n")
    code, _, err = cli("run", path, "--out", tmp_path / "out")
    assert code == 2
    assert "training.lrr: unknown key" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_missing_protocol_file(tmp_path, cli):
    code, _, err = cli("validate", tmp_path / "nope.yaml")
    assert code == 2 and "protocol file not found" in err and "Traceback" not in err


def test_run_writes_dataset_protocol_and_figures_then_refuses_another_protocol(write_protocol, tmp_path, cli):
    path = write_protocol()
    out = tmp_path / "run"
    code, stdout, err = cli("run", path, "--out", out, "--set", "output.figures=true", "--quiet", "--executor", "inprocess")
    assert code == 0, err
    assert {"results.nc", "protocol.yaml", "learning_curves.png", "iterations_to_criterion.png"} <= {p.name for p in out.iterdir()}
    assert "baseline" in stdout and "tcr_loss" in stdout
    with xr.open_dataset(out / "results.nc", engine="h5netcdf") as ds:
        assert ds.attrs["root_seed"] == 7 and "name: tiny" in ds.attrs["protocol"]
    code, _, _ = cli("run", path, "--out", out, "--quiet", "--set", "output.figures=true")
    assert code == 0  # complete: nothing retrained
    code, _, err = cli("run", path, "--out", out, "--set", "seed=8", "--quiet")
    assert code == 2 and "different protocol" in err and "seed: 7 -> 8" in err  # names what differs


@pytest.mark.parametrize("installed", [False, True])
def test_list_names_the_neurogym_kind_and_how_to_get_it(cli, monkeypatch, installed):
    """The optional kind is listed with the tasks where neurogym is installed; elsewhere `list` names it
    and the one install recipe (the same as in README.md and docs/tasks.md)."""
    import bioplastic.cli

    monkeypatch.setattr(bioplastic.cli, "_importable", lambda kind: installed)
    code, out, _ = cli("list")
    tasks = [ln for ln in out.splitlines() if ln.startswith("tasks:")][0]
    recipe = "python -m venv ngvenv --system-site-packages && ngvenv/bin/pip install -e '.[neurogym]'"
    assert code == 0 and tasks.endswith(", neurogym") == installed
    assert ("neurogym: neurogym environments" in out and recipe in out) != installed
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for doc in ("README.md", "docs/tasks.md"):
        assert recipe in (root / doc).read_text(), doc


def test_help_and_version(cli, capsys):
    code, out, _ = cli("--help")
    assert code == 0 and "Thin:" not in out and "biologically plausible learning in recurrent rate networks" in out
    assert "--version" in out


def test_list_and_schema(cli):
    code, out, _ = cli("list")
    assert code == 0 and "evidence_accumulation" in out and "leaky_rate" in out and "adaptive" in out
    assert "tcr forms:  none, loss, plasticity" in out and "anti_hebbian, tsodyks_markram" in out
    assert "bioplausible" in out and "freeze_in" in out
    code, out, _ = cli("schema")
    assert code == 0
    for field in ("training.lr", "tcr.lambda", "tcr.schedule.target_ratio", "task.delay_min_ms", "model.g",
                  "tcr.plasticity.eta_F", "tcr.plasticity.kappa", "brian2.enabled"):
        assert field in out


@pytest.mark.parametrize("args", [["run", "protocols/evidence_accum.yaml", "--set", "training.lr=0"],
                                  ["validate", "protocols/evidence_accum.yaml", "--set", "model.kind=cnn"]])
def test_bad_overrides_exit_2(args, cli):
    code, _, err = cli(*args)
    assert code == 2 and "Traceback" not in err


@pytest.mark.integration
def test_killed_run_resumes_to_the_uninterrupted_result(write_protocol, tmp_path, cli):
    """SIGTERM in the middle of training (a separate ``python -m bioplastic run`` process), then the
    same command again: same numbers as a straight run (trained in this process; every executor gives
    identical numbers, tests/training/test_sweeps.py)."""
    import signal
    import time

    text = write_protocol().read_text().replace("iterations: 12", "iterations: 400").replace("checkpoint_every: 4", "checkpoint_every: 20")
    path = write_protocol(text, "long.yaml")
    straight = tmp_path / "straight"
    run_protocol(load_protocol(path), straight)
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
    code, _, err = cli("run", path, "--out", out, "--quiet")
    assert code == 0, err
    assert (out / "results.nc").read_bytes() == (straight / "results.nc").read_bytes()  # attributes and content hash included


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


def test_one_condition_run_completes_with_its_predictions(write_protocol, tmp_path, cli):
    """One condition, no sweep: analysis, predictions (one-element list attributes) and the report."""
    from bioplastic.analysis.predictions import prediction_sentences
    from bioplastic.storage.results import read_dataset

    text = write_protocol().read_text().split("conditions:")[0] + ONE_CONDITION
    out = tmp_path / "one"
    code, _, err = cli("run", write_protocol(text, "one.yaml"), "--out", out, "--quiet", "--executor", "inprocess")
    assert code == 0 and "Traceback" not in err, err
    assert {"analysis.nc", "predictions.nc", "report.html"} <= {p.name for p in out.iterdir()}
    pred = read_dataset(out / "predictions.nc")
    assert pred.sizes["condition"] == 1
    # nothing to compare with: only the condition's own psychometric fit is stated; no crash
    assert all(s.startswith("Psychometric function with baseline") for s in prediction_sentences(pred))
    page = (out / "report.html").read_text()
    assert "could not be formed" not in page and "not computed for sweeps" not in page


def test_one_point_sweep_says_what_it_does_not_compute(write_protocol, tmp_path, cli):
    """A sweep (one point here) computes neither the phase-space analysis nor the predictions, and
    says so in one line and in the report; the command it suggests runs that point on its own."""
    from bioplastic.protocol.load import load_protocol
    from bioplastic.report.text import sweep_note

    text = write_protocol().read_text() + "analysis: {initial_states: 4, trials: 4}\nsweep: {grid: {model.g: [0.8]}}\n"
    path = write_protocol(text, "sweep1.yaml")
    out = tmp_path / "sweep1"
    code, stdout, err = cli("run", path, "--out", out, "--quiet", "--executor", "inprocess")
    assert code == 0 and "Traceback" not in err, err
    lines = [ln for ln in stdout.splitlines() if ln.startswith("sweep: ")]
    assert len(lines) == 1 and "not computed for sweeps" in lines[0], stdout
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


@pytest.mark.parametrize("args, says", [
    (["--scheduler="], "--scheduler '' is not a Dask scheduler address"),
    (["--scheduler", "tcp://127.0.0.1:8786", "--executor", "inprocess"],
     "--scheduler 'tcp://127.0.0.1:8786' is the address of a Dask scheduler: it runs with --executor dask (or no --executor), "
     "not --executor inprocess"),
    (["--scheduler", "tcp://127.0.0.1:8786", "--executor", "local"], "not --executor local"),
])
def test_a_scheduler_option_that_cannot_be_followed_is_refused(write_protocol, tmp_path, cli, args, says):
    """An empty --scheduler is no address (it was ignored: the run went to the local pool), and a
    --scheduler beside another --executor contradicts it (the scheduler silently won)."""
    code, _, err = cli("run", write_protocol(), "--out", tmp_path / "out", "--quiet", *args)
    assert code == 2 and says in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_scheduler_writes_nothing(write_protocol, tmp_path, cli):
    """Refused before the run folder is made or locked: no protocol.yaml, no .lock (an existing empty
    folder stays empty)."""
    port = _closed_port()
    for out in (tmp_path / "new", tmp_path / "empty"):
        if out.name == "empty":
            out.mkdir()
        code, _, err = cli("run", write_protocol(), "--out", out, "--quiet", "--scheduler", f"tcp://127.0.0.1:{port}")
        assert code == 2 and f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in err and "Traceback" not in err
        assert not out.exists() if out.name == "new" else list(out.iterdir()) == []


def test_an_unreachable_scheduler_given_to_the_api_writes_nothing(write_protocol, tmp_path):
    from bioplastic.training.executors import DaskExecutor, ExecutorError

    with pytest.raises(ExecutorError, match="cannot reach the Dask scheduler"):
        run_protocol(load_protocol(write_protocol()), tmp_path / "out", executor=DaskExecutor(f"tcp://127.0.0.1:{_closed_port()}"))
    assert not (tmp_path / "out").exists()


def test_report_of_an_empty_folder_leaves_it_empty(tmp_path, cli):
    out = tmp_path / "empty"
    out.mkdir()
    code, _, err = cli("report", out)
    assert code == 2 and "no report written" in err and "Traceback" not in err
    assert list(out.iterdir()) == []


@pytest.mark.integration
def test_a_run_whose_networks_all_diverge_ends_cleanly(write_protocol, tmp_path):
    """``--set training.lr=1e300`` as a new user tries it (a separate process, every stage and figure):
    exit 0, the divergence reported, no failure sent in as a bug and no warning printed."""
    from conftest import COMPLETE

    path = write_protocol(COMPLETE.replace("brian2: {enabled: true, trials: 2, codegen: numpy}", "")
                          .replace("iterations: 12", "iterations: 4").replace("checkpoint_every: 4", "checkpoint_every: 2"))
    proc = subprocess.run([sys.executable, "-m", "bioplastic", "run", str(path), "--out", str(tmp_path / "out"), "--quiet",
                           "--executor", "inprocess", "--set", "training.lr=1e300"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "6 network(s) diverged" in proc.stdout
    assert "Please report" not in proc.stderr and "Warning" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
