"""A fused, hand-differentiated recurrence shared by the rate networks.

    h_t = d * h_{t-1} + W phi(h_{t-1}) + drive_t          t = 0 .. T-1,  h_{-1} = h0

with a per-unit decay ``d`` (E, N), recurrent weights ``W`` (E, N, N) in ``[unit, unit_pre]`` order,
and an external drive (E, B, T, N) that already holds inputs, biases and noise. The leaky rate
network is ``d = 1 - alpha`` and ``W = alpha W_rec``; the PLRNN is ``d = diag(A)``, ``phi = relu``.

Why hand-written: autograd records ~5 small ops per step and replays them one by one; here the
forward pass runs 3 ops per step without a graph, and the backward pass (BPTT) runs 3 ops per step,
with the weight gradient summed over time and trials in one batched matrix product at the end:

    delta_t = g_t + d * delta_{t+1} + phi'(h_t) * (W^T delta_{t+1})
    dL/dW   = sum_t delta_t phi(h_{t-1})^T,   dL/dd = sum_t delta_t * h_{t-1},   dL/d drive_t = delta_t

where ``g_t`` is the gradient of the loss with respect to ``h_t`` from outside the recurrence
(readout, TCR term). Tested against autograd on a plain loop (tests/networks/test_recurrence.py).
"""
from __future__ import annotations

import torch

PHIS = ("tanh", "relu", "softplus")


def phi(name: str, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    if name == "tanh":
        return torch.tanh(x, out=out)
    if name == "relu":
        return torch.clamp(x, min=0, out=out)
    if name == "softplus":
        return torch.nn.functional.softplus(x) if out is None else out.copy_(torch.nn.functional.softplus(x))
    raise ValueError(f"unknown nonlinearity {name!r}; expected one of {PHIS}")


def phi_prime(name: str, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Derivative of phi at ``h`` (``r = phi(h)`` given to save work)."""
    if name == "tanh":
        return 1 - r * r
    if name == "relu":
        return (h > 0).to(h.dtype)
    if name == "softplus":
        return torch.sigmoid(h)
    raise ValueError(f"unknown nonlinearity {name!r}; expected one of {PHIS}")


def _phi_step(phi_name: str, h: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """phi(h) into ``out`` for one step (small, cache-resident tensors)."""
    if phi_name == "tanh":
        # torch's tanh is ~4x slower than its sigmoid on small CPU tensors: tanh(h) = 2 sigmoid(2h) - 1
        torch.sigmoid(torch.mul(h, 2), out=out)
        return out.mul_(2).sub_(1)
    return phi(phi_name, h, out=out)


class _Recurrence(torch.autograd.Function):
    # Layout: states are kept as (E, B, T, N), the layout callers use, so that no full-size
    # permuted copies are made (on CPU every pass over a full (E, B, T, N) tensor costs as much as
    # many per-step operations, which work on cache-resident (E, B, N) slices). R holds
    # phi(h_{t-1}) at index t (R[:, :, 0] = phi(h0)), and the backward buffer D holds delta_t at index
    # t with a zero row at T, so dW = D^T R is one matrix product over views.
    @staticmethod
    def forward(ctx, decay_exn, W_exnxn, drive_exbxtxn, h0_exbxn, phi_name: str):
        E, B, T, N = drive_exbxtxn.shape
        Wt = W_exnxn.transpose(1, 2).contiguous()
        d = decay_exn.unsqueeze(1)  # (E, 1, N)
        hs = drive_exbxtxn.contiguous().clone()
        R = drive_exbxtxn.new_empty((E, B, T + 1, N))
        _phi_step(phi_name, h0_exbxn, R[:, :, 0])
        h = h0_exbxn
        for t in range(T):
            ht = hs[:, :, t]
            ht.addcmul_(d, h).baddbmm_(R[:, :, t], Wt)
            h = ht
            _phi_step(phi_name, h, R[:, :, t + 1])
        ctx.save_for_backward(decay_exn, W_exnxn, h0_exbxn, hs, R)
        ctx.phi_name = phi_name
        return hs, R[:, :, 1:]

    @staticmethod
    def backward(ctx, grad_h_exbxtxn, grad_r_exbxtxn):
        decay, W, h0, hs, R = ctx.saved_tensors
        E, B, T, N = hs.shape
        D = hs.new_empty((E, B, T + 1, N))
        D[:, :, T] = 0
        if grad_h_exbxtxn is not None:
            D[:, :, :T] = grad_h_exbxtxn
        else:
            D[:, :, :T] = 0
        d = decay.unsqueeze(1)
        name = ctx.phi_name
        m = None
        for t in range(T - 1, -1, -1):
            dt = D[:, :, t]
            dphi = phi_prime(name, hs[:, :, t], R[:, :, t + 1])  # phi'(h_t)
            if grad_r_exbxtxn is not None:
                dt.addcmul_(grad_r_exbxtxn[:, :, t], dphi)
            if m is not None:  # recurrent part from t + 1
                dt.addcmul_(d, D[:, :, t + 1]).addcmul_(dphi, m)
            m = torch.bmm(dt, W)  # rows of W^T delta_t, used at t - 1
        delta0 = D[:, :, 0]
        dh0 = None
        if ctx.needs_input_grad[3]:
            dh0 = torch.addcmul(d * delta0, phi_prime(name, h0, R[:, :, 0]), m)
        ddecay = None
        if ctx.needs_input_grad[0]:
            h_prev = torch.cat([h0.unsqueeze(2), hs[:, :, :-1]], 2)
            ddecay = (D[:, :, :T] * h_prev).sum(dim=(1, 2))
        dW = None
        if ctx.needs_input_grad[1]:
            dW = torch.bmm(D.view(E, B * (T + 1), N).transpose(1, 2), R.view(E, B * (T + 1), N))
        return ddecay, dW, D[:, :, :T], dh0, None


def recurrence(decay_exn: torch.Tensor, W_exnxn: torch.Tensor, drive_exbxtxn: torch.Tensor,
               h0_exbxn: torch.Tensor, phi_name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the recurrence; returns (h, phi(h)), each (E, B, T, N). Differentiable in all four tensors."""
    return _Recurrence.apply(decay_exn, W_exnxn, drive_exbxtxn, h0_exbxn, phi_name)


def recurrence_reference(decay_exn, W_exnxn, drive_exbxtxn, h0_exbxn, phi_name: str):
    """The same recurrence as a plain autograd loop (the oracle for tests and benchmarks)."""
    h, out = h0_exbxn, []
    for t in range(drive_exbxtxn.shape[2]):
        h = decay_exn.unsqueeze(1) * h + torch.bmm(phi(phi_name, h), W_exnxn.transpose(1, 2)) + drive_exbxtxn[:, :, t]
        out.append(h)
    hs = torch.stack(out, 2)
    return hs, phi(phi_name, hs)
