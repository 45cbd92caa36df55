"""The determinism contract: a network's numbers do not depend on its ensemble-mates (how many, and
which), nor on the number of torch threads - for every network kind, learning rule and TCR form.
Each case trains three seeds together (one ensemble of 3) and one at a time (three ensembles of 1)
and compares seed by seed, bit for bit, in the default float32."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bioplastic import load_protocol, train

TASK = {"kind": "evidence_accumulation", "stimulus_ms": 200, "delay_min_ms": 40, "delay_max_ms": 100, "response_ms": 60}
PLASTIC = {"form": "plasticity", "plasticity": {"eta_F": 0.2}}
CASES = {
    "leaky_rate/bptt": ("leaky_rate", "bptt", {}, {}),
    "leaky_rate/bptt/tcr_loss": ("leaky_rate", "bptt", {}, {"form": "loss", "lambda": 0.5}),
    "leaky_rate/bptt/tcr_loss_variance": ("leaky_rate", "bptt", {}, {"form": "loss", "lambda": 0.5, "normalize": "variance"}),
    "leaky_rate/bptt/anti_hebbian": ("leaky_rate", "bptt", {}, PLASTIC),
    "leaky_rate/bptt/freeze_in": ("leaky_rate", "bptt", {}, {"form": "plasticity",
                                                             "plasticity": {"eta_F": 0.2, "kappa": 0.05, "sigma_w": 0.01}}),
    "leaky_rate/bptt/anti_hebbian_exact": ("leaky_rate", "bptt", {}, {"form": "plasticity",
                                                                      "plasticity": {"eta_F": 0.2, "gradient": "exact"}}),
    "leaky_rate/bptt/tsodyks_markram": ("leaky_rate", "bptt", {}, {"form": "plasticity", "plasticity": {"rule": "tsodyks_markram"}}),
    "leaky_rate/rflo": ("leaky_rate", "rflo", {}, {}),
    "leaky_rate/rflo/tcr_loss": ("leaky_rate", "rflo", {}, {"form": "loss", "lambda": 0.5}),
    "leaky_rate/node_perturbation": ("leaky_rate", "node_perturbation", {}, {}),
    "low_rank/bptt/anti_hebbian": ("low_rank", "bptt", {"rank": 2}, PLASTIC),
    "plrnn/bptt": ("plrnn", "bptt", {}, {}),
    "plrnn/eprop": ("plrnn", "eprop", {}, {}),
    "lstm/bptt/tcr_loss": ("lstm", "bptt", {}, {"form": "loss", "lambda": 0.5}),
}


#: a task with several outputs: its per-output records (task_loss_output, accuracy_output) too
FLIPFLOP = {"kind": "flipflop", "n_bits": 3, "trial_ms": 200, "pulse_prob": 0.1}


def protocol(kind, rule, model, tcr, ensemble_size, task=TASK):
    return load_protocol({
        "name": "determinism", "seed": 5, "seeds": 3, "task": task,
        "model": {"kind": kind, "n_units": 12, **model},
        "training": {"rule": rule, "iterations": 6, "batch_size": 8, "checkpoint_every": 3, "eval_every": 3,
                     "eval_trials": 16, "ensemble_size": ensemble_size},
        "conditions": {"c": {"tcr": tcr}},
    })


def assert_same_numbers(a, b, what):
    per_output = tuple(k for k in ("task_loss_output", "accuracy_output") if k in a)
    for v in ("loss", "task_loss", "tcr_loss", "accuracy", "eval_loss") + per_output + tuple(k for k in a.data_vars if k.startswith("weight_")):
        np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=f"{what}: {v}")


@pytest.mark.parametrize("case", CASES)
def test_a_network_does_not_depend_on_its_ensemble_mates(case):
    kind, rule, model, tcr = CASES[case]
    together = train(protocol(kind, rule, model, tcr, ensemble_size=3))
    alone = train(protocol(kind, rule, model, tcr, ensemble_size=1))
    assert_same_numbers(together, alone, case)


@pytest.mark.parametrize("rule", ["bptt", "rflo", "node_perturbation"])
def test_per_output_records_do_not_depend_on_ensemble_mates(rule):
    together = train(protocol("leaky_rate", rule, {}, {}, ensemble_size=3, task=FLIPFLOP))
    alone = train(protocol("leaky_rate", rule, {}, {}, ensemble_size=1, task=FLIPFLOP))
    assert "task_loss_output" in together and "accuracy_output" in together
    assert_same_numbers(together, alone, f"flipflop/{rule}")


@pytest.mark.parametrize("case", ["leaky_rate/bptt/tcr_loss_variance", "leaky_rate/bptt/anti_hebbian", "lstm/bptt/tcr_loss",
                                  "flipflop:leaky_rate/bptt/anti_hebbian"])
def test_a_network_does_not_depend_on_the_thread_count(case):
    task = FLIPFLOP if case.startswith("flipflop:") else TASK
    kind, rule, model, tcr = CASES[case.removeprefix("flipflop:")]
    p = protocol(kind, rule, model, tcr, ensemble_size=3, task=task)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = train(p)
        torch.set_num_threads(2)
        two = train(p)
    finally:
        torch.set_num_threads(threads)
    assert ("task_loss_output" in one) == (task is FLIPFLOP)
    assert_same_numbers(one, two, case)
