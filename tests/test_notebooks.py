"""The notebooks of examples/ execute as a user runs them (nbclient, a fresh kernel) with their
`parameters` cell made small, and the snippet of README, docs/api.md and help(bioplastic) is one
snippet, that runs. (examples/own_recording.ipynb measures an example recording with planted truth and
compares it with a finished run.)"""
from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import pytest

import bioplastic

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
#: notebook -> the source of its `parameters` cell in the tests (tiny budgets)
NOTEBOOKS = {"study.ipynb": "seeds, n_units, iterations = 2, 12, 20",
             "analyse_a_run.ipynb": None,  # RUN: the session's complete run (set in the test)
             "own_recording.ipynb": None}  # RUN and OUT (set in the test)


def _parameters(nb) -> int:
    (i,) = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    return i


def _execute(name: str, parameters: str, tmp_path: Path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code"), \
        f"{name} is stored with outputs: clear them"
    nb.cells[_parameters(nb)].source = parameters
    # the kernel imports the package under test (this checkout), one thread
    pkg = str(Path(bioplastic.__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", pkg + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    return nb


def _text(nb) -> str:
    out = []
    for c in nb.cells:
        for o in c.get("outputs", []):
            out.append(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")))
    return "\n".join(out)


def test_the_study_notebook_runs_every_stage(tmp_path, monkeypatch):
    nb = _execute("study.ipynb", NOTEBOOKS["study.ipynb"], tmp_path, monkeypatch)
    text = _text(nb)
    assert "study: task evidence_accumulation" in text and "abrupt" in text and "search_phase" in text
    assert "n_stable_before_drop" in text
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 2  # the learning curves and the choice-sorted activity
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no folder, no file


def test_the_run_notebook_reads_a_finished_run(complete_run, tmp_path, monkeypatch):
    nb = _execute("analyse_a_run.ipynb", f"RUN = {str(complete_run)!r}", tmp_path, monkeypatch)
    text = _text(nb)
    assert "missing: nothing" in text and "iterations_to_criterion" in text and "tcr_loss" in text
    assert "units ramp" in text and "failing sections: none" in text
    assert any("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


def test_the_recording_notebook_recovers_the_planted_truth_and_compares(complete_run, tmp_path, monkeypatch):
    out = tmp_path / "cmp"
    nb = _execute("own_recording.ipynb", f"RUN = {str(complete_run)!r}\nOUT = {str(out)!r}\nRECORDING = None",
                  tmp_path, monkeypatch)
    text = _text(nb)
    assert "build-up units: planted 30%, measured 30%" in text
    assert "timescale 100 ms: measured median" in text and "psychometric lapse: planted" in text
    assert "compare.nc compare.html" in text and "consistent" in text
    assert (out / "compare.nc").is_file() and (out / "compare.html").is_file()


def _readme_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## From Python"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _api_snippet() -> str:
    return re.search(r"```python\n(.*?)```", (ROOT / "docs" / "api.md").read_text(), re.S).group(1)


def _help_snippet() -> str:
    doc = bioplastic.__doc__
    block = doc[doc.index("::\n") + 3:doc.index("\nThe pieces:")]
    return textwrap.dedent(block).strip("\n") + "\n"


def test_one_snippet_in_readme_api_docs_and_help_in_the_abrupt_regime():
    """The first code a newcomer copies is the same everywhere and trains in the default regime of
    protocols/evidence_accum.yaml (the settings that decide abrupt learning, and its root seed)."""
    readme, api, help_ = _readme_snippet(), _api_snippet(), _help_snippet()
    assert readme == api == help_
    from bioplastic.protocol.load import load_protocol

    shipped = load_protocol("evidence_accum").resolved
    ns = {}
    exec(readme.split("results = bp.train")[0], ns)  # noqa: S102 - the snippet's own protocol, nothing trained
    mine = ns["protocol"].resolved
    assert mine["seed"] == shipped["seed"] and mine["task"] == shipped["task"] and mine["model"] == shipped["model"]
    for key in ("optimizer", "lr", "iterations", "batch_size", "clip_grad_norm", "checkpoint_every", "loss_smoothing",
                "criterion", "rule"):
        assert mine["training"][key] == shipped["training"][key], key
    assert mine["conditions"]["tcr_loss"] == shipped["conditions"]["tcr_loss"]


def test_the_snippet_runs(monkeypatch):
    """At a tiny budget (the protocol's sizes made small): every stage of it runs."""
    import bioplastic as bp

    load = bp.load_protocol
    tiny = {"seeds": 2, "model.n_units": 12, "training.iterations": 20, "analysis.initial_states": 8, "analysis.trials": 4}
    monkeypatch.setattr(bp, "load_protocol", lambda spec, overrides=None: load(spec, tiny))
    ns = {}
    exec(_readme_snippet(), ns)  # noqa: S102
    assert ns["results"].sizes["seed"] == 2 and "abrupt" in ns["results"]
    assert ns["axes"].shape[1] == 2


@pytest.mark.slow
def test_the_snippet_shows_abrupt_learning():
    """As written: every baseline network of its 4 seeds learns abruptly (search phases 46-108)."""
    ns = {}
    exec(_readme_snippet().split("analysis = bp.analyze")[0], ns)  # noqa: S102
    r = ns["results"].sel(condition="baseline")
    assert int(r["abrupt"].sum()) == 4
    assert r["search_phase"].values.tolist() == [60.0, 50.0, 46.0, 108.0]
