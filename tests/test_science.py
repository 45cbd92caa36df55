"""Slow scientific checks (``python -m pytest -m slow``): the shipped default protocol does what the
README promises. They train real networks for minutes."""
import numpy as np
import pytest

from bioplastic import load_protocol, run_protocol
from bioplastic.training.executors import LocalPoolExecutor


@pytest.mark.slow
def test_default_protocol_baseline_networks_learn_evidence_accumulation(tmp_path):
    protocol = load_protocol("protocols/evidence_accum.yaml", ["analysis=null", "output.figures=false"])
    ds, _ = run_protocol(protocol, tmp_path / "run", executor=LocalPoolExecutor())
    baseline = ds.sel(condition="baseline")
    assert bool(baseline["learned"].all()), baseline["final_accuracy"].values
    assert np.all(baseline["final_accuracy"].values >= 0.95)
    assert not bool(ds["diverged"].any())
