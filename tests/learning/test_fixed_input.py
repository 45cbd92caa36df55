"""``model.train_input: false``: every rule trains the recurrent and readout weights and leaves the
input weights and biases as drawn."""
import numpy as np
import pytest

from bioplastic import load_protocol, train

TASK = {"kind": "evidence_accumulation", "stimulus_ms": 200, "delay_min_ms": 40, "delay_max_ms": 100, "response_ms": 60}


@pytest.mark.parametrize("rule,tcr", [("bptt", {}), ("bptt", {"form": "loss", "lambda": 0.5}),
                                      ("bptt", {"form": "plasticity", "plasticity": {"eta_F": 0.2}}),
                                      ("rflo", {}), ("node_perturbation", {})])
def test_fixed_input_weights_stay_as_drawn(rule, tcr):
    ds = train(load_protocol({
        "name": "fixed_input", "seed": 3, "seeds": 2, "task": TASK,
        "model": {"kind": "leaky_rate", "n_units": 10, "train_input": False},
        "training": {"rule": rule, "iterations": 4, "batch_size": 8, "checkpoint_every": 2, "eval_every": 2,
                     "eval_trials": 16},
        "conditions": {"c": {"tcr": tcr}},
    }))
    first, last = ds.isel(checkpoint=0), ds.isel(checkpoint=-1)
    for fixed in ("weight_W_in", "weight_b"):
        np.testing.assert_array_equal(first[fixed].values, last[fixed].values, err_msg=fixed)
    for trained in ("weight_W", "weight_W_out"):
        assert not np.array_equal(first[trained].values, last[trained].values), trained
    assert np.isfinite(ds["loss"].values).all()
