"""The LSTM's fused recurrence (networks/lstm.py) against its oracles: a plain autograd loop of the
cell in float64, torch.nn.LSTM with the same weights, gradcheck; and the same numbers for a network
alone and inside an ensemble, and for one or two torch threads."""
import numpy as np
import pytest
import torch

from bioplastic.networks import build_network
from bioplastic.networks import lstm as lstm_module
from bioplastic.networks.lstm import lstm_recurrence, lstm_reference
from bioplastic.regularizers.tcr_loss import tcr_term

F64 = dict(dtype=torch.float64)
#: float64 agreement between two orderings of the same arithmetic (a few thousand eps)
TOL = dict(rtol=4096 * torch.finfo(torch.float64).eps, atol=4096 * torch.finfo(torch.float64).eps)


def _layer_args(E=2, B=3, T=7, N=4, n_in=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    args = [torch.randn(E, B, T, n_in, generator=g, **F64), torch.randn(E, 4 * N, n_in, generator=g, **F64),
            torch.randn(E, 4 * N, generator=g, **F64), torch.randn(E, 4 * N, N, generator=g, **F64) / N ** 0.5,
            torch.randn(E, B, N, generator=g, **F64), torch.randn(E, B, N, generator=g, **F64)]
    return [a.requires_grad_() for a in args], torch.randn(E, B, T, N, generator=g, **F64)


LOSSES = {  # which outputs the loss uses: each path of the backward pass (None gradients included)
    "h": lambda h, c, hc, w: (h * w[..., :h.shape[-1]]).sum(),
    "c": lambda h, c, hc, w: (c * w[..., :c.shape[-1]]).sum(),
    "h and c": lambda h, c, hc, w: (h * w[..., :h.shape[-1]]).sum() + (c.square() * w[..., -c.shape[-1]:]).sum(),
    "(h, c) and h": lambda h, c, hc, w: (hc * w).sum() + h.square().sum(),
}


@pytest.mark.parametrize("chunk_bytes", [1, 1 << 20])  # one step per block of the backward pass; all steps
@pytest.mark.parametrize("loss", LOSSES)
def test_fused_lstm_matches_the_plain_loop(loss, chunk_bytes, monkeypatch):
    """States and gradients in every input (weights, inputs, initial state) equal autograd through the
    plain cell, with the noise on the g pre-activation."""
    monkeypatch.setattr(lstm_module, "CHUNK_BYTES", chunk_bytes)
    args, noise = _layer_args()
    h, c, hc = lstm_recurrence(*args, noise)
    h_ref, c_ref = lstm_reference(*args, noise)
    hc_ref = torch.cat([h_ref, c_ref], -1)
    for got, want in ((h, h_ref), (c, c_ref), (hc, hc_ref)):
        torch.testing.assert_close(got, want, **TOL)
    w = torch.randn(hc.shape, generator=torch.Generator().manual_seed(1), **F64)
    fused = torch.autograd.grad(LOSSES[loss](h, c, hc, w), args)
    plain = torch.autograd.grad(LOSSES[loss](h_ref, c_ref, hc_ref, w), args)
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, **TOL)


def test_fused_lstm_gradcheck():
    args, noise = _layer_args(E=2, B=2, T=5, N=3)
    assert torch.autograd.gradcheck(lambda *a: lstm_recurrence(*a, noise), args)


def _net(E, tcr_on_cell=False, sigma_h=0.0, dtype=torch.float64, N=5, seeds=None):
    seeds = range(E) if seeds is None else seeds
    return build_network("lstm", {"n_units": N, "tcr_on_cell": tcr_on_cell, "sigma_h": sigma_h}, n_inputs=3, n_outputs=2,
                         dt_ms=20, rngs=[np.random.default_rng(s) for s in seeds], dtype=dtype)


def _plain_run(net, u, noise=None):
    """The network's rollout written out with the plain cell (science.md §2)."""
    p, N = net.params, net.n_units
    x = torch.einsum("ebti,egi->ebtg", u, p["W_ih"]) + p["b"][:, None, None, :]
    if noise is not None:
        x = x + torch.cat([torch.zeros_like(x[..., :2 * N]), net.config.sigma_h * noise, torch.zeros_like(x[..., 3 * N:])], -1)
    h = c = torch.zeros(u.shape[0], u.shape[1], N, dtype=u.dtype)
    hs, cs = [], []
    for t in range(u.shape[2]):
        i, f, g, o = (x[:, :, t] + torch.einsum("ebn,egn->ebg", h, p["W_hh"])).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        hs.append(h)
        cs.append(c)
    H, C = torch.stack(hs, 2), torch.stack(cs, 2)
    y = torch.einsum("ebtn,eon->ebto", H, p["W_out"]) + p["b_out"][:, None, None, :]
    return (torch.cat([H, C], -1) if net.config.tcr_on_cell else H), y, torch.cat([H, C], -1)


def _loss(state, y, target, window):
    return ((y - target) ** 2).mean((1, 2, 3)) + 0.3 * tcr_term(state, window)


@pytest.mark.parametrize("tcr_on_cell", [False, True])
@pytest.mark.parametrize("sigma_h", [0.0, 0.2])
def test_network_matches_the_written_out_equations(tcr_on_cell, sigma_h):
    """The rollout (state, output, full state) and the gradient of task loss + TCR term (on h, or on
    (h, c) with tcr_on_cell) in every parameter, against autograd through the plain equations."""
    net = _net(2, tcr_on_cell, sigma_h)
    g = torch.Generator().manual_seed(2)
    u, noise = torch.randn(2, 4, 9, 3, generator=g, **F64), torch.randn(2, 4, 9, 5, generator=g, **F64)
    target, window = torch.randn(2, 4, 9, 2, generator=g, **F64), torch.ones(2, 4, 9, **F64)
    roll = net.run(u, noise)
    state, y, full = _plain_run(net, u, noise if sigma_h else None)
    for got, want in ((roll.state_exbxtxn, state), (roll.output_exbxtxo, y), (roll.full_state, full)):
        torch.testing.assert_close(got, want, **TOL)
    params = list(net.params.values())
    fused = torch.autograd.grad(_loss(roll.state_exbxtxn, roll.output_exbxtxo, target, window).sum(), params)
    plain = torch.autograd.grad(_loss(state, y, target, window).sum(), params)
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, **TOL)


def test_network_matches_torch_nn_lstm():
    """Gate order i, f, g, o is torch's: with the weights copied, torch.nn.LSTM + Linear give the same
    output and the same gradients (torch's two biases each get the gradient of the one bias here)."""
    net = _net(1, N=6)
    p = {k: v.detach()[0] for k, v in net.params.items()}
    lstm = torch.nn.LSTM(3, 6, batch_first=True).double()
    readout = torch.nn.Linear(6, 2).double()
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(p["W_ih"])
        lstm.weight_hh_l0.copy_(p["W_hh"])
        lstm.bias_ih_l0.copy_(p["b"])
        lstm.bias_hh_l0.zero_()
        readout.weight.copy_(p["W_out"])
        readout.bias.copy_(p["b_out"])
    g = torch.Generator().manual_seed(3)
    u, target = torch.randn(1, 5, 11, 3, generator=g, **F64), torch.randn(1, 5, 11, 2, generator=g, **F64)
    roll = net.run(u)
    H, _ = lstm(u[0])
    y = readout(H)
    torch.testing.assert_close(roll.state_exbxtxn[0], H, **TOL)
    torch.testing.assert_close(roll.output_exbxtxo[0], y, **TOL)
    ours = torch.autograd.grad(((roll.output_exbxtxo - target) ** 2).mean(), [net.params[k] for k in ("W_ih", "W_hh", "b", "W_out", "b_out")])
    theirs = torch.autograd.grad(((y - target[0]) ** 2).mean(), [lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0,
                                                                 readout.weight, readout.bias, lstm.bias_hh_l0])
    for a, b in zip(ours, theirs[:5]):
        torch.testing.assert_close(a[0], b, **TOL)
    torch.testing.assert_close(ours[2][0], theirs[5], **TOL)


#: float32 against the float64 oracle: the fused recurrence computes tanh as 2 sigmoid(2x) - 1, so
#: its states carry an absolute error of a few float32 eps (the plain float32 loop: about the same)
F32_TOL = dict(rtol=1e-5, atol=2e-6)


def test_float32_states_and_gradients_stay_near_the_float64_oracle():
    net64 = _net(3, tcr_on_cell=True, N=16)
    net32 = _net(3, tcr_on_cell=True, N=16, dtype=torch.float32)
    g = torch.Generator().manual_seed(4)
    u, target, window = torch.randn(3, 8, 40, 3, generator=g, **F64), torch.randn(3, 8, 40, 2, generator=g, **F64), torch.ones(3, 8, 40, **F64)
    r64, r32 = net64.run(u), net32.run(u.float())
    torch.testing.assert_close(r32.full_state.double(), r64.full_state, **F32_TOL)
    g64 = torch.autograd.grad(_loss(r64.state_exbxtxn, r64.output_exbxtxo, target, window).sum(), list(net64.params.values()))
    g32 = torch.autograd.grad(_loss(r32.state_exbxtxn, r32.output_exbxtxo, target.float(), window.float()).sum(),
                              list(net32.params.values()))
    for a, b in zip(g32, g64):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-5)


def _rollout_and_grads(net, u, noise, target, window):
    roll = net.run(u, noise)
    grads = torch.autograd.grad(_loss(roll.state_exbxtxn, roll.output_exbxtxo, target, window).sum(), list(net.params.values()))
    return [roll.full_state.detach(), roll.output_exbxtxo.detach(), *grads]


@pytest.mark.parametrize("tcr_on_cell", [False, True])
def test_a_member_of_an_ensemble_computes_what_it_computes_alone(tcr_on_cell, monkeypatch):
    """Bit for bit in float32: member e of ensembles of 3 and 9 equals the same network trained
    alone - states, outputs, gradients (the blocks of steps of the backward pass differ: 2, 6, 20)."""
    monkeypatch.setattr(lstm_module, "CHUNK_BYTES", 20_000)
    g = torch.Generator().manual_seed(5)
    E, B, T = 9, 6, 30
    u, noise = torch.randn(E, B, T, 3, generator=g), torch.randn(E, B, T, 7, generator=g)
    target, window = torch.randn(E, B, T, 2, generator=g), torch.ones(E, B, T)
    nine = _rollout_and_grads(_net(E, tcr_on_cell, 0.1, torch.float32, N=7), u, noise, target, window)
    three = _rollout_and_grads(_net(3, tcr_on_cell, 0.1, torch.float32, N=7, seeds=[2, 3, 4]), u[2:5], noise[2:5],
                               target[2:5], window[2:5])
    for e in (0, 4, 8):
        alone = _rollout_and_grads(_net(1, tcr_on_cell, 0.1, torch.float32, N=7, seeds=[e]), u[e:e + 1], noise[e:e + 1],
                                   target[e:e + 1], window[e:e + 1])
        for a, b in zip(nine, alone):
            assert torch.equal(a[e:e + 1], b)
    for a, b in zip(nine, three):
        assert torch.equal(a[2:5], b)


def test_the_same_numbers_for_one_and_two_threads():
    g = torch.Generator().manual_seed(6)
    E, B, T = 4, 16, 25
    u, noise = torch.randn(E, B, T, 3, generator=g), torch.randn(E, B, T, 24, generator=g)
    target, window = torch.randn(E, B, T, 2, generator=g), torch.ones(E, B, T)
    threads = torch.get_num_threads()
    try:
        out = []
        for n in (1, 2):
            torch.set_num_threads(n)
            out.append(_rollout_and_grads(_net(E, True, 0.1, torch.float32, N=24), u, noise, target, window))
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*out):
        assert torch.equal(a, b)


def test_one_step_map_is_the_rollouts_dynamics_in_h_and_c():
    """The fixed-point finder's map (plain cell) iterated under a constant input reproduces the fused
    rollout's full state (h, c)."""
    net = _net(2)
    u = torch.randn(2, 3, generator=torch.Generator().manual_seed(7), **F64)
    full = net.run(u[:, None, None, :].expand(2, 1, 6, 3).contiguous()).full_state
    x = torch.zeros(2, 1, net.full_state_dim(), **F64)
    for t in range(6):
        x = net.one_step(x, u)
        torch.testing.assert_close(x, full[:, :, t], **TOL)
