"""Shared fixtures: tiny protocols that train in a second or two."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

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
