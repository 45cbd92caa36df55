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

import gc
from collections.abc import Iterator
from contextlib import contextmanager

import torch

PHIS = ("tanh", "relu", "softplus", "linear")


def phi(name: str, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    if name == "tanh":
        return torch.tanh(x, out=out)
    if name == "relu":
        return torch.clamp(x, min=0, out=out)
    if name == "softplus":
        return torch.nn.functional.softplus(x) if out is None else out.copy_(torch.nn.functional.softplus(x))
    if name == "linear":  # the identity: a linear network (science.md §8)
        return x if out is None else out.copy_(x)
    raise ValueError(f"unknown nonlinearity {name!r}; expected one of {PHIS}")


def phi_prime(name: str, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Derivative of phi at ``h`` (``r = phi(h)`` given to save work)."""
    if name == "tanh":
        return torch.addcmul(r.new_ones(()), r, r, value=-1)  # 1 - r^2 in one pass
    if name == "relu":
        return torch.sign(r)  # 1 where h > 0, else 0, in one pass (r = relu(h) >= 0)
    if name == "softplus":
        return torch.sigmoid(h)
    if name == "linear":
        return torch.ones_like(h)
    raise ValueError(f"unknown nonlinearity {name!r}; expected one of {PHIS}")


@contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused for a recurrence's loop. The loop holds a view of
    every step of its buffers at once (hundreds of tensor objects, freed together at its end), which
    starts collections, now and then a full one of the whole process (measured: ~15 ms, the cost of
    a whole iteration of a small network). Nothing the loop allocates forms a reference cycle."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _tanh_from_sigmoid_(s: torch.Tensor) -> torch.Tensor:
    """``s <- 2 s - 1`` in one pass (tanh(h) from s = sigmoid(2h)), in place."""
    return s.lerp_(s.new_ones(()), -1.0)


def _phi_step(phi_name: str, h: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """phi(h) into ``out`` for one step (small, cache-resident tensors)."""
    if phi_name == "tanh":
        # torch's tanh is ~5x slower than its sigmoid on small CPU tensors: tanh(h) = 2 sigmoid(2h) - 1
        torch.sigmoid(torch.mul(h, 2, out=out), out=out)
        return _tanh_from_sigmoid_(out)
    return phi(phi_name, h, out=out)


def _tanh_units(W_exnxn: torch.Tensor, drive_exbxtxn: torch.Tensor, h0_exbxn: torch.Tensor):
    """The tanh recurrence in doubled units, where one sigmoid per step is the whole nonlinearity.

    With ``z = 2h`` and ``s = sigmoid(z)``, ``tanh(h) = 2s - 1``, so ``W tanh(h) = 2W s - W 1`` and

        z_t = d z_{t-1} + (4W) s_{t-1} + (2 drive_t - 2 W 1)

    (torch's tanh is ~5-10x slower than its sigmoid on small CPU tensors, and the affine map from
    ``s`` to ``tanh`` moves into the weights and the drive). The price is a little float32 precision
    where a unit's input weights have a large sum: ``4W s`` and ``2 W 1`` then cancel (measured: a
    state error of 1.5e-5 instead of 3.6e-6 against float64 with row sums ~10). Returns the transposed step weights,
    the drive in doubled units (a new contiguous tensor that becomes ``z``) and ``z0``."""
    Wt = W_exnxn.transpose(1, 2).mul(4).contiguous()
    offset = W_exnxn.sum(2).mul(-2)[:, None, None, :]  # -2 W 1, (E, 1, 1, N)
    z = torch.add(offset, drive_exbxtxn, alpha=2, out=drive_exbxtxn.new_empty(drive_exbxtxn.shape))
    return Wt, z, torch.mul(h0_exbxn, 2)


class _Recurrence(torch.autograd.Function):
    # Layout: inside, states are kept time-major per member, (E, T, B, N), so that each step's
    # (E, B, N) slice is one contiguous block per member (cache- and TLB-friendly; the (E, B, T, N)
    # layout callers use scatters a step over B rows far apart); callers get (E, B, T, N) views.
    # R holds phi(h_{t-1}) at index t (R[:, 0] = phi(h0)), and the backward buffer D holds delta_t at
    # index t with a zero block at T, so dW = D^T R is one matrix product over views.
    # Each step is one matrix product and two elementwise operations in both directions; everything
    # that does not depend on the previous step (phi'(h), the outside gradients) is done once over
    # the whole tensor.
    @staticmethod
    def forward(ctx, decay_exn, W_exnxn, drive_exbxtxn, h0_exbxn, phi_name: str):
        E, B, T, N = drive_exbxtxn.shape
        d = decay_exn.unsqueeze(1)  # (E, 1, N)
        R = drive_exbxtxn.new_empty((E, T + 1, B, N))
        drive = drive_exbxtxn.transpose(1, 2)
        tanh = phi_name == "tanh"
        if tanh:  # hs holds z = 2h and R holds s = sigmoid(z) until the loop ends
            Wt, hs, h = _tanh_units(W_exnxn, drive, h0_exbxn)
            torch.sigmoid(h, out=R[:, 0])
        else:
            Wt, hs, h = W_exnxn.transpose(1, 2).contiguous(), drive.contiguous(), h0_exbxn
            if hs.data_ptr() == drive_exbxtxn.data_ptr():
                hs = hs.clone()
            phi(phi_name, h, out=R[:, 0])
        hl, Rl = hs.unbind(1), R.unbind(1)  # every step's views at once (cheaper than slicing per step)
        for t in range(T):
            ht = hl[t]
            ht.addcmul_(d, h).baddbmm_(Rl[t], Wt)
            h = ht
            if tanh:
                torch.sigmoid(h, out=Rl[t + 1])
            else:
                phi(phi_name, h, out=Rl[t + 1])
        if tanh:
            hs.mul_(0.5)
            _tanh_from_sigmoid_(R)
        ctx.save_for_backward(decay_exn, W_exnxn, h0_exbxn, hs, R)
        ctx.set_materialize_grads(False)  # an unused output's gradient comes as None, not a tensor of zeros
        ctx.phi_name = phi_name
        return hs.transpose(1, 2), R[:, 1:].transpose(1, 2)

    @staticmethod
    def backward(ctx, grad_h_exbxtxn, grad_r_exbxtxn):
        decay, W, h0, hs, R = ctx.saved_tensors
        E, T, B, N = hs.shape
        name = ctx.phi_name
        dphi = phi_prime(name, hs, R[:, 1:])  # phi'(h_t) for every t at once
        D = hs.new_empty((E, T + 1, B, N))
        D[:, T] = 0
        g_h = grad_h_exbxtxn.transpose(1, 2) if grad_h_exbxtxn is not None else None
        if grad_r_exbxtxn is not None:  # g_t = dL/dh_t + phi'(h_t) dL/dr_t, in one pass
            torch.addcmul(g_h if g_h is not None else D.new_zeros(()), grad_r_exbxtxn.transpose(1, 2), dphi, out=D[:, :T])
        elif g_h is not None:
            D[:, :T] = g_h
        else:
            D[:, :T] = 0
        d = decay.unsqueeze(1)
        m = hs.new_empty((E, B, N))  # W^T delta_{t+1}, as rows
        Dl, dphil = D.unbind(1), dphi.unbind(1)
        for t in range(T - 2, -1, -1):
            torch.bmm(Dl[t + 1], W, out=m)
            Dl[t].addcmul_(d, Dl[t + 1]).addcmul_(dphil[t], m)
        delta0 = D[:, 0]
        dh0 = None
        if ctx.needs_input_grad[3]:
            dh0 = torch.addcmul(d * delta0, phi_prime(name, h0, R[:, 0]), torch.bmm(delta0, W))
        ddecay = None
        if ctx.needs_input_grad[0]:  # sum_t delta_t * h_{t-1}, over views (no copy of the states)
            ddecay = (D[:, 1:T] * hs[:, :T - 1]).sum(dim=(1, 2)) + (delta0 * h0).sum(1)
        dW = None
        if ctx.needs_input_grad[1]:
            dW = torch.bmm(D.view(E, (T + 1) * B, N).transpose(1, 2), R.view(E, (T + 1) * B, N))
        return ddecay, dW, D[:, :T].transpose(1, 2), dh0, None


def time_major(x_exbxtxk: torch.Tensor) -> bool:
    """Whether an (E, B, T, K) tensor is a view of time-major (E, T, B, K) storage, as the recurrences return."""
    return not x_exbxtxk.is_contiguous() and x_exbxtxk.transpose(1, 2).is_contiguous()


def batched_affine(x_exbxtxk: torch.Tensor, W_exmxk: torch.Tensor, b_exm: torch.Tensor | None = None,
                   *, beta: float = 1.0, alpha: float = 1.0, time_major_out: bool | None = None) -> torch.Tensor:
    """``beta b + alpha W x`` per member, trial and step: (E, B, T, M), as one batched matrix product.

    Computed in the layout ``x`` is stored in (time-major storage gives a time-major result, as a
    transposed view), or time-major when ``time_major_out`` says so, so that no pass copies the
    states into another layout (einsum on a time-major view copies it, ~3x the product's time)."""
    E, B, T, K = x_exbxtxk.shape
    tm = time_major(x_exbxtxk) if time_major_out is None else time_major_out
    x = x_exbxtxk.transpose(1, 2) if tm else x_exbxtxk
    x = x.reshape(E, B * T, K)
    Wt = W_exmxk.transpose(1, 2)
    if b_exm is None:
        y = torch.bmm(x, Wt) if alpha == 1 else torch.bmm(x, Wt).mul_(alpha)
    else:
        y = torch.baddbmm(b_exm.unsqueeze(1), x, Wt, beta=beta, alpha=alpha)
    M = W_exmxk.shape[1]
    return y.view(E, T, B, M).transpose(1, 2) if tm else y.view(E, B, T, M)


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
