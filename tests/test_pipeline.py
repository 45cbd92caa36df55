"""The pipeline: stages in order, each reported with its progress and timed, resumable one by one."""
from __future__ import annotations

import json
import re
import shutil

import pytest

from bioplastic import load_protocol
from bioplastic.pipeline import REPORT, TIMINGS, StageProgress, run_protocol

# one pytest-xdist worker runs this module, so that its module-scoped run (staged_run) is made once
pytestmark = pytest.mark.xdist_group("pipeline")

WITH_ANALYSIS = """
name: stages
seed: 7
seeds: 2
task: {kind: evidence_accumulation, stimulus_ms: 200, delay_min_ms: 40, delay_max_ms: 100, response_ms: 60}
model: {kind: leaky_rate, n_units: 8}
training: {iterations: 6, batch_size: 4, checkpoint_every: 3, eval_every: 3, eval_trials: 8}
conditions: {baseline: {}, tcr_loss: {tcr: {form: loss, lambda: 0.5}}}
analysis: {initial_states: 4, trials: 4}
output: {figures: true}
"""


class Recorder(StageProgress):
    def __init__(self):
        self.events = []

    def start(self, stage, total, unit):
        self.events.append(["start", stage, total, 0])

    def advance(self, n=1):
        self.events[-1][3] += n

    def end(self, stage, seconds):
        assert self.events[-1][1] == stage and seconds >= 0
        self.events[-1][0] = "done"


@pytest.fixture(scope="module")
def staged_run(tmp_path_factory):
    """WITH_ANALYSIS run once for this module (strict), with a Recorder listening: (protocol, run
    folder, the recorded stage events). Shared: tests that change the folder work on a copy."""
    folder = tmp_path_factory.mktemp("stages")
    (folder / "p.yaml").write_text(WITH_ANALYSIS)
    protocol = load_protocol(folder / "p.yaml")
    rec = Recorder()
    _, out = run_protocol(protocol, folder / "run", stages=rec, strict=True)
    return protocol, out, rec.events


def test_every_stage_reports_progress_to_its_total_and_is_timed(staged_run):
    _, out, events = staged_run
    assert [e[1] for e in events] == ["fixed points", "predictions", "figures", "report"]
    for state, name, total, done in events:
        assert state == "done" and done == total > 0, name
    assert events[0][2] == 2 * 3  # conditions x checkpoints
    from bioplastic.pipeline import UNIT_TIMES, read_times, read_unit_times
    from bioplastic.storage.results import read_dataset

    times = json.loads((out / TIMINGS).read_text())
    assert list(times) == ["training work units", "training", "results.nc written", "fixed points", "predictions", "figures", "report"]
    assert list(read_times(out)) == ["training", "fixed points", "predictions", "figures", "report"]
    assert all(v >= 0 for v in read_times(out).values())
    units = read_unit_times(out)
    assert units == times[UNIT_TIMES] and set(units) == {"p000-g0-u0"} and units["p000-g0-u0"] > 0  # one unit: both conditions share it
    attrs = read_dataset(out / "results.nc").attrs
    assert not any("seconds" in k or k == "created" for k in attrs)  # timings and time stamps are not results
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", times["results.nc written"])


def test_figures_and_report_are_remade_when_lost(staged_run, tmp_path):
    """A kill while figures and report were written: the rerun makes them again (and only them)."""
    protocol, out, _ = staged_run
    out = shutil.copytree(out, tmp_path / "run")  # files are deleted: not in the shared run
    (out / REPORT).unlink()
    (out / "learning_curves.png").unlink()
    rec = Recorder()
    run_protocol(protocol, out, stages=rec, strict=True)
    assert [e[1] for e in rec.events] == ["figures", "report"]
    assert (out / REPORT).is_file() and (out / "learning_curves.png").is_file()


def test_the_expected_figure_names_are_those_drawn(staged_run):
    from bioplastic.pipeline import expected_files

    protocol, out, _ = staged_run
    drawn = sorted(p.name for p in out.glob("*.png"))
    assert drawn == sorted(f for f in expected_files(protocol) if f.endswith(".png"))
    assert all((out / f).is_file() for f in expected_files(protocol))


def _without_device(text: str) -> str:
    """A resolved protocol as versions before ``training.device`` wrote it."""
    lines = text.splitlines(keepends=True)
    assert "  device: cpu\n" in lines
    return "".join(line for line in lines if line != "  device: cpu\n")


@pytest.mark.parametrize("finished", [True, False])
def test_a_run_folder_of_an_earlier_version_goes_on(tiny_run, write_protocol, tmp_path, finished):
    """A folder whose protocol.yaml lacks a field added since (at its default) is the same protocol:
    the run goes on, with a warning, and the file is brought up to date; another value is refused."""
    from bioplastic.pipeline import EarlierVersionWarning, RunError
    from bioplastic.storage.results import read_dataset

    out = tmp_path / "out"
    shutil.copytree(tiny_run, out)
    if not finished:  # training to be finished: the unit results are there, the dataset is not
        (out / "results.nc").unlink()
    protocol = load_protocol(write_protocol())
    (out / "protocol.yaml").write_text(_without_device(protocol.text))
    with pytest.warns(EarlierVersionWarning, match="earlier version.*training.device"):
        ds, _ = run_protocol(protocol, out)
    assert (out / "protocol.yaml").read_text() == protocol.text
    reference = read_dataset(tiny_run / "results.nc")
    for v in ("loss", "accuracy", "weight_W"):
        assert (ds[v].values == reference[v].values).all(), v
    (out / "protocol.yaml").write_text(_without_device(load_protocol(write_protocol(), ["seed=8"]).text))
    with pytest.raises(RunError, match="different protocol.*seed: 8 -> 7"):
        run_protocol(protocol, out)


def _garble(path, at: int = 12) -> None:
    data = bytearray(path.read_bytes())
    data[at] = 0xFF  # never a byte of UTF-8 text
    path.write_bytes(bytes(data))


def test_a_garbled_protocol_yaml_of_a_finished_run_is_written_again_from_its_results(tiny_run, write_protocol, tmp_path):
    """results.nc records the protocol (checksummed); protocol.yaml is its copy: garbled in a finished
    run, it is written again (with a warning), and nothing else changes."""
    from bioplastic.storage.io import DamagedFileWarning

    out = shutil.copytree(tiny_run, tmp_path / "out")
    protocol = load_protocol(write_protocol())
    before = (out / "results.nc").read_bytes()
    _garble(out / "protocol.yaml")
    with pytest.warns(DamagedFileWarning, match=r"protocol.yaml is damaged \(not UTF-8 text: byte 0xff at position 12\); "
                                                r"written again from .*results.nc"):
        run_protocol(protocol, out)
    assert (out / "protocol.yaml").read_text() == protocol.text
    assert (out / "results.nc").read_bytes() == before  # not retrained, not rewritten
    (out / "protocol.yaml").write_text("name: [unclosed\n")  # text, but no protocol
    with pytest.warns(DamagedFileWarning, match=r"protocol.yaml is damaged \(not a protocol: "):
        run_protocol(protocol, out)
    assert (out / "protocol.yaml").read_text() == protocol.text


def test_a_garbled_protocol_yaml_of_an_unfinished_run_is_refused_naming_it(tiny_run, write_protocol, tmp_path, cli):
    """Without results.nc nothing records which protocol the folder trained: refused (exit 2, no
    traceback), the folder left as it was."""
    out = shutil.copytree(tiny_run, tmp_path / "out")
    (out / "results.nc").unlink()
    _garble(out / "protocol.yaml")
    files = sorted(p.name for p in out.iterdir())
    code, _, err = cli("run", write_protocol(), "--out", out, "--executor", "inprocess", "--quiet")
    assert code == 2 and "Traceback" not in err
    assert f"error: {out / 'protocol.yaml'} is damaged (not UTF-8 text: byte 0xff at position 12)" in err
    assert f"delete {out} to start over" in err
    assert sorted(p.name for p in out.iterdir()) == files
