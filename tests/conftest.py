"""Shared fixtures: tiny protocols that train in a second or two."""
from __future__ import annotations

import signal
import textwrap
from pathlib import Path

import pytest

from bioplastic.cli import main
from bioplastic.pipeline import run_protocol
from bioplastic.protocol.load import load_protocol

TINY = """
name: tiny
seed: 7
seeds: 2
task:
  kind: evidence_accumulation
  stimulus_ms: 200
  delay_min_ms: 40
  delay_max_ms: 100
  response_ms: 60
model:
  kind: leaky_rate
  n_units: 12
  g: 1.5
training:
  lr: 1e-2
  iterations: 12
  batch_size: 8
  checkpoint_every: 4
  eval_every: 3
  eval_trials: 16
  dtype: float64
conditions:
  baseline: {}
  tcr_loss:
    tcr: {form: loss, lambda: 0.5}
output:
  figures: false
"""


@pytest.fixture
def write_protocol(tmp_path: Path):
    """Write a protocol (TINY by default, or the given YAML text) and return its path."""

    def write(text: str = TINY, name: str = "p.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


#: the tiny protocol with every dataset: plasticity, analysis, predictions, brian2 (numpy), figures
COMPLETE = """
name: tiny
claims: [1, 2, 3, 7, 9]
seed: 7
seeds: 2
task: {kind: evidence_accumulation, stimulus_ms: 200, delay_min_ms: 40, delay_max_ms: 100, response_ms: 60}
model: {kind: leaky_rate, n_units: 12, g: 1.5}
training: {lr: 1e-2, iterations: 12, batch_size: 8, checkpoint_every: 4, eval_every: 3, eval_trials: 16, dtype: float64}
conditions:
  baseline: {}
  tcr_loss: {tcr: {form: loss, lambda: 0.5}}
  tcr_plasticity: {tcr: {form: plasticity, plasticity: {eta_F: 0.05}}}
analysis: {initial_states: 4, trials: 4}
brian2: {enabled: true, trials: 2, codegen: numpy}
output: {figures: true}  # PNGs written by the run are reused by the report
"""


def train_once(tmp_path_factory, name: str, text: str, **kwargs) -> Path:
    """Run a protocol through ``bioplastic.pipeline.run_protocol`` into a fresh temporary folder and
    return the run folder. Session-scoped fixtures share the folder: a test that changes it copies it
    first (``shutil.copytree(run, tmp_path / ...)``)."""
    folder = tmp_path_factory.mktemp(name)
    path = folder / "p.yaml"
    path.write_text(textwrap.dedent(text))
    _, out = run_protocol(load_protocol(path), folder / "out", **kwargs)
    return out


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """TINY run once per session (results.nc, protocol.yaml, report.html). Shared: read it, or copy it
    before changing anything in it."""
    return train_once(tmp_path_factory, "tiny", TINY)


@pytest.fixture(scope="session")
def complete_run(tmp_path_factory) -> Path:
    """COMPLETE run once per session with ``strict=True`` (a failing report section raises). Shared:
    read it, or copy it before changing anything in it."""
    return train_once(tmp_path_factory, "complete", COMPLETE, strict=True)


@pytest.fixture
def cli(capsys):
    """``python -m bioplastic ARGS`` in this process: returns (exit code, stdout, stderr). The SIGTERM
    handler that ``run`` installs is put back afterwards. Tests of a separate process (a kill, the
    installed package) use a subprocess instead."""

    def call(*args):
        capsys.readouterr()  # start from empty buffers
        handler = signal.getsignal(signal.SIGTERM)
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
        finally:
            signal.signal(signal.SIGTERM, handler)
        out, err = capsys.readouterr()
        return code, out, err

    return call


@pytest.fixture(scope="session")
def api_run():
    """A tiny single-point run made with the Python API (no folder), once per session: its protocol
    and datasets (results, analysis, predictions, brian2 via the numpy target). Read, never change."""
    from bioplastic import analyze, load_protocol, predict, resimulate, train

    protocol = load_protocol({
        "name": "api_run", "seed": 3, "seeds": 2,
        "task": {"kind": "evidence_accumulation", "stimulus_ms": 200, "delay_min_ms": 40, "delay_max_ms": 100,
                 "response_ms": 60},
        "model": {"kind": "leaky_rate", "n_units": 8, "connection_prob": 0.5},
        "training": {"iterations": 6, "batch_size": 4, "checkpoint_every": 3, "eval_every": 3, "eval_trials": 8},
        "conditions": {"baseline": {}, "tcr_plasticity": {"tcr": {"form": "plasticity"}}},
        "analysis": {"initial_states": 4, "trials": 4},
    })
    results = train(protocol)
    analysis = analyze(results, protocol)
    return protocol, {"results": results, "analysis": analysis, "predictions": predict(results, protocol, analysis, trials=16),
                      "brian2": resimulate(results, protocol, trials=2, codegen="numpy")}
