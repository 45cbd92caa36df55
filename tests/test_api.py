"""The low-level API as a notebook user calls it: settings as a Config or a mapping, one network
without an ensemble axis, rates of a state tensor, one seed's trained network, overrides as a
mapping, a protocol that prints in one line. Each form is checked against the explicit one."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import bioplastic as bp
from bioplastic.seeds import numpy_rng


def test_build_task_takes_the_kinds_config_or_a_mapping():
    protocol = bp.load_protocol("evidence_accum", {"seeds": 2})
    config = protocol.conditions[0].task
    from_config = bp.build_task("evidence_accumulation", config)  # "argument after ** must be a mapping" before
    from_mapping = bp.build_task("evidence_accumulation", config.model_dump())
    assert from_config.config == from_mapping.config == config
    a, b = (t.sample(np.random.default_rng(3), 4) for t in (from_config, from_mapping))
    np.testing.assert_array_equal(a.inputs_bxtxi, b.inputs_bxtxi)
    assert bp.build_task("evidence_accumulation").config == type(config)()  # no settings: the defaults
    with pytest.raises(TypeError, match=r"task settings: expected a .*Config or a mapping, got a LeakyRateConfig \(the settings of another kind\?\)"):
        bp.build_task("evidence_accumulation", protocol.conditions[0].model)
    net = bp.build_network("leaky_rate", protocol.conditions[0].model, n_inputs=from_config.n_inputs,
                           n_outputs=from_config.n_outputs, dt_ms=from_config.dt_ms, rngs=[np.random.default_rng(0)])
    assert net.config == protocol.conditions[0].model


def _network(kind: str, members: int = 2, **settings):
    task = bp.build_task("evidence_accumulation", {"stimulus_ms": 200, "delay_min_ms": 40, "delay_max_ms": 100,
                                                   "response_ms": 60})
    net = bp.build_network(kind, {"n_units": 6, **settings}, n_inputs=task.n_inputs, n_outputs=task.n_outputs,
                           dt_ms=task.dt_ms, rngs=[numpy_rng(5, "init", s) for s in range(members)], dtype=torch.float64)
    return task, net


@pytest.mark.parametrize("kind", ["leaky_rate", "plrnn", "lstm", "low_rank"])
def test_run_takes_one_batch_of_trials_for_every_member(kind):
    """(trial, time, input), numpy or torch, runs every member on those trials: the same numbers as
    the explicit (ensemble, trial, time, input) tensor."""
    task, net = _network(kind, **({"rank": 2} if kind == "low_rank" else {}))
    trials = task.sample(np.random.default_rng(1), 3)
    explicit = net.run(torch.as_tensor(np.stack([trials.inputs_bxtxi] * 2), dtype=torch.float64))
    for given in (trials.inputs_bxtxi, torch.as_tensor(trials.inputs_bxtxi, dtype=torch.float64)):
        rollout = net.run(given)
        assert rollout.output_exbxtxo.shape == (2, 3, task.n_steps, task.n_outputs)
        torch.testing.assert_close(rollout.output_exbxtxo, explicit.output_exbxtxo, rtol=0, atol=0)
        torch.testing.assert_close(rollout.state_exbxtxn, explicit.state_exbxtxn, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"inputs: expected \(trial, time, input\).*got shape \(" + f"{task.n_steps}, 3\\)"):
        net.run(trials.inputs_bxtxi[0])


@pytest.mark.parametrize("kind, phi", [("leaky_rate", torch.tanh), ("plrnn", torch.relu), ("lstm", lambda h: h)])
def test_rates_take_a_state_tensor(kind, phi):
    """``net.rates(h)``: the rates of a state, in its shape (ensemble axis or not); the same as of the rollout."""
    task, net = _network(kind)
    rollout = net.run(task.sample(np.random.default_rng(2), 3).inputs_bxtxi)
    expected = net.rates(rollout)
    torch.testing.assert_close(expected, phi(rollout.state_exbxtxn.detach()), rtol=0, atol=0)  # the kind's own rates
    torch.testing.assert_close(net.rates(rollout.state_exbxtxn), expected, rtol=0, atol=0)
    torch.testing.assert_close(net.rates(rollout.state_exbxtxn[1]), expected[1], rtol=0, atol=0)
    torch.testing.assert_close(net.rates(rollout.state_exbxtxn[1].detach().numpy()), expected[1], rtol=0, atol=0)


def test_trained_network_of_one_seed(api_run):
    """``seed=`` rebuilds one seed's network (E = 1) or a list of them, in the list's order: the
    members of the whole ensemble, exactly (weights, buffers, plasticity, outputs)."""
    protocol, data = api_run
    results = data["results"]
    for cond in ("baseline", "tcr_plasticity"):
        every, ok = bp.trained_network(results, protocol, cond)
        one, ok1 = bp.trained_network(results, protocol, cond, seed=1)
        two, ok2 = bp.trained_network(results, protocol, cond, seed=[1, 0])
        assert one.n_members == 1 and two.n_members == 2
        np.testing.assert_array_equal(ok1, ok[[1]])
        np.testing.assert_array_equal(ok2, ok[[1, 0]])
        for k in every.params:
            torch.testing.assert_close(one.params[k], every.params[k][[1]], rtol=0, atol=0)
            torch.testing.assert_close(two.params[k], every.params[k][[1, 0]], rtol=0, atol=0)
        for k in every.buffers:
            torch.testing.assert_close(one.buffers[k], every.buffers[k][[1]], rtol=0, atol=0)
        assert (one.plasticity is None) == (every.plasticity is None) == (cond == "baseline")
        trials = bp.build_task(protocol.conditions[0].task_kind, protocol.conditions[0].task).sample(np.random.default_rng(4), 2)
        with torch.no_grad():
            torch.testing.assert_close(one.run(trials.inputs_bxtxi).output_exbxtxo[0],
                                       every.run(trials.inputs_bxtxi).output_exbxtxo[1], rtol=0, atol=0)
    for bad in (2, [0, 5], [], "0"):
        with pytest.raises(ValueError, match=r"seed: expected a seed index of the run \(0 to 1\) or a list of them"):
            bp.trained_network(results, protocol, "baseline", seed=bad)


def test_overrides_as_a_mapping():
    """``load_protocol(name, {"seeds": 2})``: the protocol that ``--set seeds=2`` makes; its errors
    name the mapping's key, not a command-line option."""
    assert bp.load_protocol("evidence_accum", {"seeds": 2}).text == bp.load_protocol("evidence_accum", ["seeds=2"]).text
    both = bp.load_protocol("evidence_accum", {"seeds": 3, "training.lr": 1e-3, "conditions.tcr_loss.tcr.lambda": 0.5})
    assert both.config.seeds == 3 and both.conditions[0].training.lr == 1e-3
    assert both.conditions[1].tcr.lambda_ == 0.5
    with pytest.raises(bp.ProtocolError, match=r"overrides\['conditions.tcr_los.tcr.lambda'\]: the protocol has no condition 'tcr_los'"):
        bp.load_protocol("evidence_accum", {"conditions.tcr_los.tcr.lambda": 0.5})
    with pytest.raises(bp.ProtocolError, match=r"overrides\[1\]: expected a field name or a dotted path as the key"):
        bp.load_protocol("evidence_accum", {1: 2})
    with pytest.raises(bp.ProtocolError) as info:
        bp.load_protocol("evidence_accum", {"seeds": "many"})
    assert info.value.problems[0].startswith("seeds:") and "--set" not in str(info.value)
    assert bp.load_protocol("evidence_accum", "seeds=2").config.seeds == 2  # one --set string


def test_a_protocol_prints_in_one_line():
    protocol = bp.load_protocol("evidence_accum")
    text = repr(protocol)
    assert str(protocol) == text and "\n" not in text and len(text) < 300
    assert text == ("<Protocol evidence_accum: task evidence_accumulation, model leaky_rate (N = 100), rule bptt, 300 iterations; "
                    "3 condition(s) (baseline, tcr_loss, tcr_plasticity) x 10 seed(s) = 30 network(s); .text holds the resolved YAML>")
    sweep = repr(bp.load_protocol("chaos_sweep"))
    assert " x 4 sweep points (model.g: 4) = 120 network(s)" in sweep
