"""The fused recurrence and every network kind against plain autograd (the oracle)."""
import numpy as np
import pytest
import torch

from bioplastic.networks import NETWORKS, build_network
from bioplastic.networks.recurrence import PHIS, batched_affine, recurrence, recurrence_reference, time_major
from bioplastic.regularizers.tcr_loss import tcr_term

F64 = dict(dtype=torch.float64)
#: float64 agreement between two orderings of the same arithmetic (a few thousand eps)
TOL = dict(rtol=4096 * torch.finfo(torch.float64).eps, atol=4096 * torch.finfo(torch.float64).eps)


@pytest.mark.parametrize("phi", PHIS)
def test_fused_recurrence_gradients_match_autograd(phi):
    g = torch.Generator().manual_seed(0)
    E, B, T, N = 2, 3, 6, 5
    args = [torch.rand(E, N, generator=g, **F64), torch.randn(E, N, N, generator=g, **F64) / N ** 0.5,
            torch.randn(E, B, T, N, generator=g, **F64), torch.randn(E, B, N, generator=g, **F64)]
    args = [a.requires_grad_() for a in args]
    assert torch.autograd.gradcheck(lambda *a: recurrence(*a, phi), args)
    w, v = torch.randn(2, E, B, T, N, generator=g, **F64)

    def loss(hr):
        return (hr[0] * w).sum() + (hr[1] * v).sum()

    fused = torch.autograd.grad(loss(recurrence(*args, phi)), args)
    plain = torch.autograd.grad(loss(recurrence_reference(*args, phi)), args)
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, **TOL)


def _manual_leaky(net, u):
    """The leaky rate equations of science.md §2 written out step by step."""
    p, a = net.params, net.alpha
    h = torch.zeros(u.shape[0], u.shape[1], net.n_units, **F64)
    hs = []
    for t in range(u.shape[2]):
        r = torch.tanh(h)
        h = (1 - a) * h + a * (torch.einsum("ebj,eij->ebi", r, p["W"]) + torch.einsum("ebk,eik->ebi", u[:, :, t], p["W_in"]) + p["b"][:, None])
        hs.append(h)
    return torch.stack(hs, 2)


def test_leaky_rate_matches_spec_equations():
    net = build_network("leaky_rate", {"n_units": 7, "g": 1.5}, n_inputs=3, n_outputs=2, dt_ms=20,
                        rngs=[np.random.default_rng(i) for i in range(2)], dtype=torch.float64)
    u = torch.randn(2, 4, 9, 3, **F64)
    torch.testing.assert_close(net.run(u).state_exbxtxn, _manual_leaky(net, u), **TOL)


@pytest.mark.parametrize("kind", NETWORKS.names())
def test_task_plus_tcr_loss_gradient_matches_autograd_loop(kind):
    """d(task loss + lambda * TCR term)/d params through the network equals finite differences."""
    net = build_network(kind, {"n_units": 5}, n_inputs=2, n_outputs=1, dt_ms=20,
                        rngs=[np.random.default_rng(3)], dtype=torch.float64)
    u = torch.randn(1, 3, 5, 2, **F64)
    target = torch.randn(1, 3, 5, 1, **F64)
    window = torch.ones(1, 3, 5, **F64)
    params = list(net.params.values())

    def loss(*ps):
        for (k, _), p in zip(net.params.items(), ps):
            net.params[k] = p
        roll = net.run(u)
        return ((roll.output_exbxtxo - target) ** 2).mean() + 0.3 * tcr_term(roll.state_exbxtxn, window).sum()

    assert torch.autograd.gradcheck(loss, [p.detach().clone().requires_grad_() for p in params])


def test_tcr_term_is_the_mean_squared_step_inside_the_window():
    h = torch.tensor([[[[0.0], [1.0], [3.0], [6.0]]]], **F64)  # E=1, B=1, T=4, N=1; steps 1, 2, 3
    full = tcr_term(h, torch.ones(1, 1, 4, **F64))
    torch.testing.assert_close(full, torch.tensor([(1 + 4 + 9) / 3], **F64))
    only_last = tcr_term(h, torch.tensor([[[0, 0, 0, 1.0]]], **F64))
    torch.testing.assert_close(only_last, torch.tensor([9.0], **F64))
    # its gradient, by hand: d/dh_t of mean (h_t - h_{t-1})^2
    h.requires_grad_()
    (g,) = torch.autograd.grad(tcr_term(h, torch.ones(1, 1, 4, **F64)).sum(), h)
    d = torch.tensor([1.0, 2.0, 3.0], **F64)
    expected = torch.zeros(4, **F64)
    expected[1:] += 2 * d / 3
    expected[:-1] -= 2 * d / 3
    torch.testing.assert_close(g.flatten(), expected)


def test_members_do_not_interact():
    """Member e's output depends on member e's parameters only."""
    net = build_network("leaky_rate", {"n_units": 6}, n_inputs=3, n_outputs=1, dt_ms=20,
                        rngs=[np.random.default_rng(i) for i in range(3)], dtype=torch.float64)
    u = torch.randn(3, 2, 8, 3, **F64)
    (g,) = torch.autograd.grad(net.run(u).output_exbxtxo[1].sum(), [net.params["W"]])
    assert g[0].abs().max() == 0 and g[2].abs().max() == 0 and g[1].abs().max() > 0


@pytest.mark.parametrize("kind", NETWORKS.names())
def test_one_step_map_reproduces_run_under_constant_input(kind):
    """Iterating one_step from the zero state gives the trajectory run() produces (the map the
    fixed-point finder uses is the network's own dynamics)."""
    net = build_network(kind, {"n_units": 6}, n_inputs=2, n_outputs=1, dt_ms=20,
                        rngs=[np.random.default_rng(i) for i in range(2)], dtype=torch.float64)
    u = torch.randn(2, 2, **F64)
    roll = net.run(u[:, None, None, :].expand(2, 1, 5, 2).contiguous())
    x = torch.zeros(2, 1, net.full_state_dim(), **F64)
    for t in range(5):
        x = net.one_step(x, u)
        torch.testing.assert_close(x[..., :net.n_units], roll.state_exbxtxn[:, :, t, :net.n_units], **TOL)


@pytest.mark.parametrize("phi", PHIS)
@pytest.mark.parametrize("uses", ["states", "rates"])
def test_fused_recurrence_gradients_when_only_states_or_only_rates_are_used(phi, uses):
    """The backward pass gets None for the output the loss does not use (each path tested)."""
    g = torch.Generator().manual_seed(1)
    E, B, T, N = 2, 3, 7, 4
    args = [torch.rand(E, N, generator=g, **F64), torch.randn(E, N, N, generator=g, **F64) / N ** 0.5,
            torch.randn(E, B, T, N, generator=g, **F64), torch.randn(E, B, N, generator=g, **F64)]
    args = [a.requires_grad_() for a in args]
    w = torch.randn(E, B, T, N, generator=g, **F64)
    pick = 0 if uses == "states" else 1
    fused = torch.autograd.grad((recurrence(*args, phi)[pick] * w).sum(), args)
    plain = torch.autograd.grad((recurrence_reference(*args, phi)[pick] * w).sum(), args)
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("time_major_storage", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_batched_affine_matches_einsum_in_either_layout(time_major_storage, bias):
    g = torch.Generator().manual_seed(3)
    E, B, T, K, M = 3, 4, 5, 6, 2
    x = torch.randn(E, T, B, K, generator=g, **F64).transpose(1, 2) if time_major_storage \
        else torch.randn(E, B, T, K, generator=g, **F64)
    W, b = torch.randn(E, M, K, generator=g, **F64), torch.randn(E, M, generator=g, **F64)
    want = 0.5 * b[:, None, None, :] * bias + 2.0 * torch.einsum("ebtk,emk->ebtm", x, W)
    got = batched_affine(x, W, b if bias else None, beta=0.5, alpha=2.0)
    torch.testing.assert_close(got, want, **TOL)
    # the result keeps the storage order of x (the recurrences' time-major states stay time-major)
    assert time_major(got) == time_major_storage and (got.is_contiguous() != time_major_storage)
    forced = batched_affine(x, W, b if bias else None, beta=0.5, alpha=2.0, time_major_out=True)
    torch.testing.assert_close(forced, want, **TOL)
    assert time_major(forced)


def test_tcr_term_gives_the_same_in_either_layout():
    """The term computes on time-major views; batch-major input gives the same values and gradients."""
    g = torch.Generator().manual_seed(4)
    h = torch.randn(2, 3, 7, 4, generator=g, **F64)
    w = (torch.rand(2, 3, 7, generator=g, **F64) > 0.3).to(torch.float64)
    hs = [h.clone().requires_grad_(), h.transpose(1, 2).contiguous().transpose(1, 2).requires_grad_()]
    for norm in ("none", "variance"):
        vals = [tcr_term(x, w, norm) for x in hs]
        grads = [torch.autograd.grad(v.sum(), x)[0] for v, x in zip(vals, hs)]
        torch.testing.assert_close(vals[0], vals[1], **TOL)
        torch.testing.assert_close(grads[0], grads[1], **TOL)
