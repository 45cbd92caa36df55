"""The filtered-noise task: its target against scipy's lfilter, its mask, the lag weights of the
expected loss against Monte Carlo and against the project's own masked MSE on a linear network, and
the validation of its config (each error naming the field)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.signal as ss
import torch

from bioplastic import load_protocol
from bioplastic.learning.bptt import masked_mse
from bioplastic.networks import build_network
from bioplastic.protocol.errors import ProtocolError
from bioplastic.tasks import TASKS, build_task

CASES = [({"poles": [0.95, 0.6], "residues": [0.25, -0.9]}, 2),
         ({"poles": [0.9, [0.5, 0.45]], "residues": [0.3, [-0.2, 0.35]]}, 3),
         ({"poles": [[-0.3, 0.8]], "residues": [[1.0, 0.0]], "burn_in_steps": 0, "trial_steps": 30}, 2)]


@pytest.mark.parametrize("params,order", CASES)
def test_target_is_lfilter_of_the_input(params, order):
    """The target equals scipy.signal.lfilter with the transfer function of the poles and residues
    (from scipy's invresz, zero initial conditions), complex pairs included."""
    task = build_task("filtered_noise", params)
    assert task.order == order and TASKS.get("filtered_noise") is type(task)
    trials = task.sample(np.random.default_rng(1), 16)
    b, a = ss.invresz(task.residues_j, task.poles_j, [])
    assert np.abs(np.imag(b)).max() < 1e-12 and np.abs(np.imag(a)).max() < 1e-12
    x = trials.inputs_bxtxi[..., 0].astype(np.float64)
    y = ss.lfilter(np.real(b), np.real(a), x, axis=1)
    np.testing.assert_allclose(trials.targets_bxtxo[..., 0], y, rtol=0, atol=2e-6 * np.abs(y).max())


def test_layout_mask_and_reproducibility():
    task = build_task("filtered_noise", {"burn_in_steps": 10, "trial_steps": 25, "input_std": 0.5})
    tr = task.sample(np.random.default_rng(3), 7)
    assert tr.inputs_bxtxi.shape == (7, 25, 1) and tr.targets_bxtxo.shape == tr.mask_bxtxo.shape == (7, 25, 1)
    assert tr.inputs_bxtxi.dtype == tr.targets_bxtxo.dtype == tr.mask_bxtxo.dtype == np.float32
    np.testing.assert_array_equal(tr.mask_bxtxo[0, :, 0], (np.arange(25) >= 10).astype(np.float32))
    assert (tr.periods["burn_in"] == [0, 10]).all() and (tr.periods["scored"] == [10, 25]).all()
    again = task.sample(np.random.default_rng(3), 7)
    np.testing.assert_array_equal(tr.inputs_bxtxi, again.inputs_bxtxi)
    # a perfect output scores 1, a zero output 0
    assert task.score(tr.targets_bxtxo, tr).min() == 1.0 and task.score(0 * tr.targets_bxtxo, tr).max() == 0.0


def test_lag_weights_give_the_expected_loss_of_any_linear_readout():
    """Monte Carlo: the masked MSE of an output made by filtering the input with g (scipy's lfilter,
    one pole) equals input_std^2 sum_k w_k (h_k - g_k)^2; and of a zero output, the weighted variance."""
    task = build_task("filtered_noise", {"burn_in_steps": 20, "trial_steps": 41, "input_std": 1.5})
    tr = task.sample(np.random.default_rng(0), 40_000)
    x = tr.inputs_bxtxi[..., 0].astype(np.float64)
    y = tr.targets_bxtxo[..., 0].astype(np.float64)
    m = tr.mask_bxtxo[..., 0] > 0
    h, w = task.impulse_response(), task.lag_weights()
    assert w[:21].min() == 1.0 and w[-1] == 1 / 21 and w.shape == (41,)
    for c, p in ((0.0, 0.0), (-0.6, 0.4), (0.3, 0.9)):
        g = c * p ** np.arange(41)
        out = ss.lfilter([c], [1, -p], x, axis=1)
        mc = ((out - y) ** 2)[m].mean()
        assert mc == pytest.approx(1.5 ** 2 * (w * (h - g) ** 2).sum(), rel=0.02)


def test_lag_weights_match_the_loss_a_linear_network_sees():
    """The normalisation of the oracle: the project's masked MSE of a linear leaky network (tau =
    dt, random weights) over many trials equals input_std^2 sum_k w_k (h_k - g_k)^2 with its
    impulse response g_k = W_out M^k alpha W_in, M = (1 - alpha) I + alpha W, plus the squared
    constant offset of its biases (zero here)."""
    task = build_task("filtered_noise", {"burn_in_steps": 15, "trial_steps": 31})
    for tau in (20.0, 40.0):
        net = build_network("leaky_rate", {"n_units": 6, "phi": "linear", "tau_ms": tau, "g": 0.8},
                            n_inputs=1, n_outputs=1, dt_ms=20.0, rngs=[np.random.default_rng(5)], dtype=torch.float64)
        tr = task.sample(np.random.default_rng(2), 20_000)
        with torch.no_grad():
            roll = net.run(torch.as_tensor(tr.inputs_bxtxi, dtype=torch.float64)[None])
            mse = masked_mse(roll.output_exbxtxo, torch.as_tensor(tr.targets_bxtxo, dtype=torch.float64)[None],
                             torch.as_tensor(tr.mask_bxtxo, dtype=torch.float64)[None]).item()
        a = net.alpha
        M = (1 - a) * np.eye(6) + a * net.params["W"][0].detach().numpy()
        v, u = net.params["W_out"][0, 0].detach().numpy(), a * net.params["W_in"][0, :, 0].detach().numpy()
        g, Mk = np.zeros(31), np.eye(6)
        for k in range(31):
            g[k], Mk = v @ Mk @ u, M @ Mk
        h, w = task.impulse_response(), task.lag_weights()
        assert mse == pytest.approx((w * (h - g) ** 2).sum(), rel=0.03)


def _problems(**task) -> list[str]:
    with pytest.raises(ProtocolError) as err:
        load_protocol({"name": "t", "seed": 1, "task": {"kind": "filtered_noise", **task},
                       "model": {"kind": "leaky_rate", "phi": "linear", "n_units": 4}})
    return err.value.problems


@pytest.mark.parametrize("task,field,words", [
    ({"poles": [1.02, 0.5]}, "task.poles", "inside the unit circle"),
    ({"poles": [[0.8, 0.7]], "residues": [[1.0, 0.0]]}, "task.poles", "|p| = 1.063"),
    ({"poles": [0.9, 0.5], "residues": [0.3]}, "task", "residues: expected one per pole (2"),
    ({"poles": [[0.5, 0.2]], "residues": [0.3]}, "task", "residues: entry 0 is 0.3 but pole [0.5, 0.2] is a complex pair"),
    ({"poles": [[0.5, 0.2, 0.1]], "residues": [1.0]}, "task.poles", "expected a number or a pair [re, im]"),
    ({"poles": [[0.5, 0.0]], "residues": [[1.0, 0.0]]}, "task.poles", "needs im != 0"),
    ({"burn_in_steps": 121, "trial_steps": 121}, "task", "burn_in_steps: expected fewer than trial_steps = 121"),
    ({"poles": []}, "task.poles", "at least one pole"),
])
def test_bad_filters_are_refused_naming_the_field(task, field, words):
    problems = _problems(**task)
    assert any(p.startswith(f"{field}:") and words in p for p in problems), problems


def test_linear_nonlinearity_is_the_identity_in_the_network():
    net = build_network("leaky_rate", {"n_units": 3, "phi": "linear"}, n_inputs=1, n_outputs=1, dt_ms=20.0,
                        rngs=[np.random.default_rng(0)], dtype=torch.float64)
    roll = net.run(torch.randn(1, 2, 5, 1, dtype=torch.float64))
    torch.testing.assert_close(net.rates(roll), roll.state_exbxtxn)
