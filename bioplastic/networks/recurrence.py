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


class _Recurrence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, decay_exn, W_exnxn, drive_exbxtxn, h0_exbxn, phi_name: str):
        E, B, T, N = drive_exbxtxn.shape
        drive_t = drive_exbxtxn.permute(2, 0, 1, 3)  # (T, E, B, N) view
        d = decay_exn.unsqueeze(1)  # (E, 1, N)
        hs = drive_exbxtxn.new_empty((T, E, B, N))
        rs = drive_exbxtxn.new_empty((T + 1, E, B, N))  # rs[0] = phi(h0), rs[t+1] = phi(h_t)
        if phi_name == "tanh":
            # torch's tanh is ~4x slower than its sigmoid on small CPU tensors, so iterate
            # g = 2h and s = sigmoid(g), with tanh(h) = 2 s - 1:
            #   g_t = d g_{t-1} + (4 W) s_{t-1} + 2 (drive_t - W 1)
            Wt4 = (4 * W_exnxn).transpose(1, 2).contiguous()
            drive2 = 2 * (drive_t - W_exnxn.sum(2).unsqueeze(1))
            torch.sigmoid(2 * h0_exbxn, out=rs[0])
            g = 2 * h0_exbxn
            for t in range(T):
                torch.baddbmm(torch.addcmul(drive2[t], d, g), rs[t], Wt4, out=hs[t])
                g = hs[t]
                torch.sigmoid(g, out=rs[t + 1])
            hs.mul_(0.5)
            rs.mul_(2).sub_(1)
        else:
            Wt = W_exnxn.transpose(1, 2).contiguous()
            phi(phi_name, h0_exbxn, out=rs[0])
            h = h0_exbxn
            for t in range(T):
                torch.baddbmm(torch.addcmul(drive_t[t], d, h), rs[t], Wt, out=hs[t])
                h = hs[t]
                phi(phi_name, h, out=rs[t + 1])
        ctx.save_for_backward(decay_exn, W_exnxn, h0_exbxn, hs, rs)
        ctx.phi_name = phi_name
        return hs.permute(1, 2, 0, 3), rs[1:].permute(1, 2, 0, 3)

    @staticmethod
    def backward(ctx, grad_h_exbxtxn, grad_r_exbxtxn):
        decay, W, h0, hs, rs = ctx.saved_tensors
        T, E, B, N = hs.shape
        dphi = phi_prime(ctx.phi_name, hs, rs[1:])  # dphi[t] = phi'(h_t)
        # deltas[t] = dL/dh_t, computed in place over a (T, E, B, N) copy of the outside gradient
        deltas = torch.empty_like(hs)
        if grad_h_exbxtxn is not None:
            deltas.copy_(grad_h_exbxtxn.permute(2, 0, 1, 3))
        else:
            deltas.zero_()
        if grad_r_exbxtxn is not None:
            deltas.addcmul_(grad_r_exbxtxn.permute(2, 0, 1, 3), dphi)
        d = decay.unsqueeze(1)
        for t in range(T - 2, -1, -1):
            m = torch.bmm(deltas[t + 1], W)  # rows of W^T delta_{t+1}
            deltas[t].addcmul_(d, deltas[t + 1]).addcmul_(dphi[t], m)
        delta0 = deltas[0]
        dh0 = None
        if ctx.needs_input_grad[3]:
            dh0 = torch.addcmul(d * delta0, phi_prime(ctx.phi_name, h0, rs[0]), torch.bmm(delta0, W))
        ddecay = None
        if ctx.needs_input_grad[0]:
            h_prev = torch.cat([h0.unsqueeze(0), hs[:-1]], 0)
            ddecay = (deltas * h_prev).sum(dim=(0, 2))
        dW = None
        if ctx.needs_input_grad[1]:
            dflat = deltas.transpose(0, 1).reshape(E, T * B, N)
            rflat = rs[:-1].transpose(0, 1).reshape(E, T * B, N)
            dW = torch.bmm(dflat.transpose(1, 2), rflat)
        return ddecay, dW, deltas.permute(1, 2, 0, 3), dh0, None


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
