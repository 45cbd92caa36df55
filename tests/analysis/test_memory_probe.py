"""The memory probe (analysis/memory_probe.py) against closed forms: a decaying linear memory loses the
flip-flop's patterns exactly when its remaining state falls below the readout's bias; bistable units
hold every pattern at every hold; the tasks' probe trials set and score each memory state."""
import numpy as np
import pytest
import torch

from bioplastic.analysis.memory_probe import HOLD_TRIALS, hold_steps, memory_held
from bioplastic.networks import build_network
from bioplastic.seeds import numpy_rng
from bioplastic.tasks import build_task


def _diagonal_network(task, phi: str, w: float, w_in: float, b_out: float, members: int = 2):
    """k independent leaky units, unit i driven by bit i and read out by output i: W = w I."""
    k = task.n_inputs
    net = build_network("leaky_rate", {"n_units": k, "phi": phi, "tau_ms": 100.0}, n_inputs=k, n_outputs=k, dt_ms=task.dt_ms,
                        rngs=[numpy_rng(0, "init", m) for m in range(members)], dtype=torch.float64)
    eye = torch.eye(k, dtype=torch.float64).expand(members, k, k).clone()
    with torch.no_grad():
        net.params["W"], net.params["W_in"], net.params["W_out"] = w * eye, w_in * eye, eye.clone()
        net.params["b"] = torch.zeros(members, k, dtype=torch.float64)
        net.params["b_out"] = torch.full((members, k), b_out, dtype=torch.float64)
    return net


def test_a_decaying_linear_memory_loses_the_patterns_when_its_state_falls_below_the_bias():
    task = build_task("flipflop", {"n_bits": 3, "trial_ms": 1000.0})
    w, w_in, b_out = 0.9, 5.0, 0.05
    net = _diagonal_network(task, "linear", w, w_in, b_out)
    steps = hold_steps(task)
    assert steps == [h * task.n_steps for h in HOLD_TRIALS]
    held = memory_held(net, task, steps)
    # closed form: n steps after the pulse h_n = (1 - a + a w)^n a w_in s, read at n = hold + 1; a pattern
    # is read right iff every -1 bit's |h_n| exceeds the bias b_out (the +1 bits always are), so 1 while
    # |h_n| > b_out, else the all-+ pattern alone
    a = task.dt_ms / 100.0
    magnitude = (1 - a + a * w) ** (np.array(steps, float) + 1) * a * w_in
    expected = np.where(magnitude > b_out, 1.0, 1 / 8)
    assert expected[0] == 1.0 and expected[-1] == 1 / 8  # the closed form itself spans both cases
    np.testing.assert_array_equal(held, np.broadcast_to(expected, held.shape))


def test_bistable_units_hold_every_pattern_at_every_hold():
    task = build_task("flipflop", {"n_bits": 3, "trial_ms": 400.0})
    # h = 3 tanh(h) has stable points +-2.985; one pulse of a * 25 = 5 crosses from one to the other
    held = memory_held(_diagonal_network(task, "tanh", 3.0, 25.0, 0.05), task, hold_steps(task))
    np.testing.assert_array_equal(held, 1.0)


@pytest.mark.parametrize("kind, states", [("flipflop", 8), ("evidence_accumulation", 2)])
def test_probe_trials_set_each_memory_state_once_and_score_only_the_read_out(kind, states):
    task = build_task(kind, {})
    p = task.memory_probes(7)
    assert p.inputs_bxtxi.shape[0] == states
    assert np.array_equal(task.score(p.targets_bxtxo, p), np.ones(states))      # the targets themselves: held
    assert np.array_equal(task.score(-p.targets_bxtxo, p), np.zeros(states))    # every sign flipped: none held
    first = np.argmax(p.mask_bxtxo.any(-1), axis=1)                             # the first scored step
    assert all(not p.inputs_bxtxi[i, f - 7:f].any() for i, f in enumerate(first))  # after 7 steps of zero input
    assert all(p.inputs_bxtxi[i, : f - 7].any() for i, f in enumerate(first))       # which follow the state's setting
    signs = {tuple(np.sign(t[m.any(-1)][0])) for t, m in zip(p.targets_bxtxo, p.mask_bxtxo)}
    assert len(signs) == states                                                 # every memory state once
    with pytest.raises(ValueError, match="hold_steps"):
        task.memory_probes(-1)


def test_tasks_without_memory_states_have_no_probes():
    net_task = build_task("delayed_addition", {})
    assert net_task.attractors_needed is None and net_task.memory_probes(5) is None


def test_evidence_probes_keep_a_majority_at_rates_too_low_for_even_spacing():
    task = build_task("evidence_accumulation", {"pulse_prob": 0.01, "stimulus_ms": 100.0})
    p = task.memory_probes(3)
    counts = p.inputs_bxtxi[:, :, :2].sum(1)                                    # (trial, left/right)
    assert counts.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert np.array_equal(task.score(p.targets_bxtxo, p), np.ones(2))
