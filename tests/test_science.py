"""Slow scientific checks (``python -m pytest -m slow``): the shipped default protocol does what the
README promises. They train real networks for minutes. Thresholds are on fractions and medians over
the protocol's 10 seeds, so that a last-bit difference on another CPU (which can move one network's
drop by an iteration or two) cannot flip them."""
import pytest

from bioplastic import load_protocol, run_protocol
from bioplastic.analysis.statistics import nanmedian
from bioplastic.training.executors import LocalPoolExecutor


@pytest.mark.slow
def test_default_protocol_baseline_networks_show_abrupt_learning(tmp_path):
    """Measured on the shipped seeds: 10/10 abrupt, search phases 46-145 iterations, drop widths
    11-15, all learn (docs/results.md)."""
    protocol = load_protocol("protocols/evidence_accum.yaml",
                             ["analysis=null", "output.figures=false", "conditions={baseline: {}}"])
    ds, _ = run_protocol(protocol, tmp_path / "run", executor=LocalPoolExecutor())
    baseline = ds.sel(condition="baseline")
    assert not bool(ds["diverged"].any())
    assert float(baseline["learned"].mean()) >= 0.8, baseline["final_accuracy"].values
    assert nanmedian(baseline["final_accuracy"].values) >= 0.95
    # the phenomenon: most networks sit on a plateau, then drop much faster than they searched
    assert float(baseline["abrupt"].mean()) >= 0.8, baseline["search_phase"].values
    assert nanmedian(baseline["search_phase"].values) >= 3 * nanmedian(baseline["drop_width"].values)
    assert nanmedian(baseline["plateau_loss"].values) > 0.8  # the plateau is at chance (output ~0, MSE ~1)
