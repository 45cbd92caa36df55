"""LSTM (science.md §2): the standard cell, batched over ensemble members. TCR acts on ``h``
(``tcr_on_cell: true`` appends ``c`` to the TCR state). Gates in the order i, f, g, o (torch's)::

    (i, f, g, o)_t = W_ih u_t + b + W_hh h_{t-1}   (+ sigma_h xi_t on the g block)
    c_t = sigmoid(f) c_{t-1} + sigmoid(i) tanh(g),    h_t = sigmoid(o) tanh(c_t),    y_t = W_out h_t + b_out

Training runs the recurrence as one fused operation with a hand-written backward pass
(:class:`_LSTMRecurrence`); :meth:`LSTM.step` is the plain cell (the one-step map of the fixed-point
finder) and :func:`lstm_reference` the plain autograd loop (the oracle of the tests).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field

from ..schema_base import Schema
from . import lstm_kernel
from .base import NETWORKS, Network, Rollout
from .lstm_kernel import gate_scale
from .recurrence import _tanh_from_sigmoid_, gc_paused


class LSTMConfig(Schema):
    kind: Literal["lstm"] = "lstm"
    n_units: int = Field(64, gt=0, description="hidden units N (state is (h, c), 2N numbers)")
    forget_bias: float = Field(1.0, description="initial bias of the forget gate")
    tcr_on_cell: bool = Field(False, description="TCR acts on (h, c) instead of h alone")
    sigma_h: float = Field(0.0, ge=0, description="std of noise added to the cell input each step")


def _cell(gates_exbxg, c_exbxn):
    """The plain LSTM cell on pre-activations (i, f, g, o): ``(h, c)``."""
    i, f, g, o = gates_exbxg.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c_exbxn + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def lstm_reference(u_exbxtxi: torch.Tensor, W_ih_exgxi: torch.Tensor, b_exg: torch.Tensor, W_hh_exgxn: torch.Tensor,
                   h0_exbxn: torch.Tensor, c0_exbxn: torch.Tensor, noise_exbxtxn: torch.Tensor | None = None):
    """:func:`lstm_recurrence` as a plain autograd loop (the oracle for tests and benchmarks):
    (h, c), each (E, B, T, N)."""
    N = W_hh_exgxn.shape[2]
    x = torch.einsum("ebti,egi->ebtg", u_exbxtxi, W_ih_exgxi) + b_exg[:, None, None, :]
    if noise_exbxtxn is not None:
        x = x + torch.cat([torch.zeros_like(x[..., :2 * N]), noise_exbxtxn, torch.zeros_like(x[..., 3 * N:])], -1)
    h, c, hs, cs = h0_exbxn, c0_exbxn, [], []
    for t in range(x.shape[2]):
        h, c = _cell(x[:, :, t] + torch.bmm(h, W_hh_exgxn.transpose(1, 2)), c)
        hs.append(h)
        cs.append(c)
    return torch.stack(hs, 2), torch.stack(cs, 2)


#: the backward pass computes its per-step factors for blocks of steps of about this many bytes
#: (cache-resident: a pass over all T steps at once streams them through main memory)
CHUNK_BYTES = 1 << 20


class _LSTMRecurrence(torch.autograd.Function):
    """The LSTM layer with a hand-written backward pass (BPTT).

    Forward: the input drive of every step in one batched product (bias folded in as a column of
    ones), then per step one matrix product into the step's pre-activations and six elementwise
    operations, without a graph. Two exact rescalings by powers of two make sigmoid the only
    nonlinearity (torch's tanh is ~5x slower than its sigmoid on small CPU tensors): the g rows of
    the weights are doubled, so ``sigmoid`` of all 4N gates at once gives ``sigmoid(2g)`` and
    ``tanh(g) = 2 sigmoid(2g) - 1``; and the cell is carried as ``c' = -2c``, so
    ``tanh(c) = 1 - 2 sigmoid(c')`` and ``h = o - 2 o sigmoid(c')`` is one fused multiply-add.

    Backward, per step (``delta`` = dL/d pre-activations, ``g_h, g_c`` the gradients from outside
    the recurrence: readout, TCR term)::

        dh_t = g_h,t + W_hh^T delta_{t+1}
        dc_t = g_c,t + f_{t+1} dc_{t+1} + o_t (1 - tanh^2 c_t) dh_t
        delta_t = (dc_t tanh(g) i (1-i),  dc_t c_{t-1} f (1-f),  dc_t i (1 - tanh^2 g),  dh_t tanh(c_t) o (1-o))

    one matrix product and four elementwise operations; the factors that do not depend on the
    recurrence are computed for blocks of steps at once (:data:`CHUNK_BYTES`), and the weight
    gradients ``sum_t delta_t (h_{t-1}, u_t, 1)^T`` are two batched matrix products at the end.

    Layout: time-major per member, (E, T, B, .), so a step's slice is one contiguous block per
    member; ``HC`` holds (h, c) side by side with (h0, c0) at index 0, so h, c and (h, c) are views
    of one tensor and ``h_{t-1}`` for the weight gradient is a view too.
    """

    @staticmethod
    def forward(ctx, u_exbxtxi, W_ih_exgxi, b_exg, W_hh_exgxn, h0_exbxn, c0_exbxn, noise_exbxtxn):
        with gc_paused():
            return _LSTMRecurrence._forward(ctx, u_exbxtxi, W_ih_exgxi, b_exg, W_hh_exgxn, h0_exbxn, c0_exbxn, noise_exbxtxn)

    @staticmethod
    def backward(ctx, grad_h, grad_c, grad_hc):
        with gc_paused():
            return _LSTMRecurrence._backward(ctx, grad_h, grad_c, grad_hc)

    @staticmethod
    def _forward(ctx, u_exbxtxi, W_ih_exgxi, b_exg, W_hh_exgxn, h0_exbxn, c0_exbxn, noise_exbxtxn):
        E, B, T, n_in = u_exbxtxi.shape
        G = W_hh_exgxn.shape[1]
        N = G // 4
        scale = gate_scale(W_hh_exgxn, N)
        # inputs time-major with a column of ones: drive = U1 @ [W_ih | b]^T, and its gradient is D^T U1
        U1 = u_exbxtxi.new_empty((E, T, B, n_in + 1))
        U1[..., :n_in] = u_exbxtxi.transpose(1, 2)
        U1[..., n_in] = 1
        Wb2 = torch.cat([W_ih_exgxi, b_exg.unsqueeze(2)], 2).mul_(scale[:, None])
        S = torch.bmm(U1.view(E, T * B, n_in + 1), Wb2.transpose(1, 2)).view(E, T, B, G)
        if noise_exbxtxn is not None:
            S[..., 2 * N:3 * N].add_(noise_exbxtxn.transpose(1, 2), alpha=2)
        W2 = W_hh_exgxn * scale[:, None]
        Wt2 = W2.transpose(1, 2).contiguous()  # (E, N, 4N): h @ Wt2
        HC = S.new_empty((E, T + 1, B, 2 * N))
        U = S.new_empty((E, T, B, N))  # sigmoid(c') = sigmoid(-2c)
        HC[:, 0, :, :N] = h0_exbxn
        torch.mul(c0_exbxn, -2, out=HC[:, 0, :, N:])
        S4 = S.unflatten(-1, (4, N))
        Sl, Il, Fl, Gl, Ol = S.unbind(1), *(S4[..., k, :].unbind(1) for k in range(4))
        Hl, Cl, Ul = HC[..., :N].unbind(1), HC[..., N:].unbind(1), U.unbind(1)
        for t in range(T):
            Sl[t].baddbmm_(Hl[t], Wt2).sigmoid_()
            tg = _tanh_from_sigmoid_(Gl[t])
            torch.mul(Fl[t], Cl[t], out=Cl[t + 1]).addcmul_(Il[t], tg, value=-2)
            torch.addcmul(Ol[t], Ol[t], torch.sigmoid(Cl[t + 1], out=Ul[t]), value=-2, out=Hl[t + 1])
        HC[..., N:].mul_(-0.5)  # back to c
        ctx.save_for_backward(U1, Wb2, W2, S, HC, U)
        ctx.set_materialize_grads(False)
        out = HC[:, 1:].transpose(1, 2)
        return out[..., :N], out[..., N:], out

    @staticmethod
    def _backward(ctx, grad_h, grad_c, grad_hc):
        U1, Wb2, W2, S, HC, U = ctx.saved_tensors
        E, T, B, G = S.shape
        N = G // 4
        if grad_hc is not None:  # (h, c) side by side: add its halves to the others
            grad_h = grad_hc[..., :N] if grad_h is None else grad_h + grad_hc[..., :N]
            grad_c = grad_hc[..., N:] if grad_c is None else grad_c + grad_hc[..., N:]
        gH = None if grad_h is None else grad_h.transpose(1, 2).unbind(1)
        gC = None if grad_c is None else grad_c.transpose(1, 2).unbind(1)
        S4 = S.unflatten(-1, (4, N))
        D = S.new_empty((E, T, B, G))  # dL/d pre-activations (the g block: d/d 2g)
        D4 = D.unflatten(-1, (4, N))
        Dl, D3l, Dol = D.unbind(1), D4[..., :3, :].unbind(1), D4[..., 3, :].unbind(1)
        dh, dc, dc_next = (S.new_empty((E, B, N)) for _ in range(3))
        Fl = S4[..., 1, :].unbind(1)  # f_t
        K = max(1, min(T, CHUNK_BYTES // (E * B * 6 * N * S.element_size())))  # P, A and tanh(c) of a step
        P = S.new_empty((E, K, B, 4, N))  # d pre-activations / (dc, dc, dc, dh), for a block of steps
        A = S.new_empty((E, K, B, N))     # d c_t / d h_t through tanh: o (1 - tanh^2 c)
        one = S.new_ones(())
        for t1 in range(T, 0, -K):
            t0 = max(0, t1 - K)
            k = t1 - t0
            s4, p, a = S4[:, t0:t1], P[:, :k], A[:, :k]
            i, f, tg, o = s4.unbind(3)
            torch.addcmul(s4, s4, s4, value=-1, out=p)  # sigmoid' = s (1 - s) (g block overwritten below)
            p[..., 0, :].mul_(tg)
            p[..., 1, :].mul_(HC[:, t0:t1, :, N:])  # c_{t-1}
            torch.addcmul(one.mul(0.5), tg, tg, value=-0.5, out=p[..., 2, :]).mul_(i)  # d tanh(g) / d 2g, times i
            tc = torch.add(one, U[:, t0:t1], alpha=-2)  # tanh(c)
            p[..., 3, :].mul_(tc)
            torch.addcmul(one, tc, tc, value=-1, out=a).mul_(o)
            P3l, Pol, Al = p[..., :3, :].unbind(1), p[..., 3, :].unbind(1), a.unbind(1)
            for t in range(t1 - 1, t0 - 1, -1):
                j = t - t0
                if t == T - 1:
                    dh.copy_(gH[t]) if gH is not None else dh.zero_()
                    dc.copy_(gC[t]) if gC is not None else dc.zero_()
                else:
                    torch.baddbmm(gH[t], Dl[t + 1], W2, out=dh) if gH is not None else torch.bmm(Dl[t + 1], W2, out=dh)
                    dc, dc_next = dc_next, dc
                    if gC is not None:
                        torch.addcmul(gC[t], Fl[t + 1], dc_next, out=dc)
                    else:
                        torch.mul(Fl[t + 1], dc_next, out=dc)
                dc.addcmul_(Al[j], dh)
                torch.mul(dc.unsqueeze(2), P3l[j], out=D3l[t])
                torch.mul(dh, Pol[j], out=Dol[t])
        scale = gate_scale(S, N)[:, None]
        Df = D.view(E, T * B, G).transpose(1, 2)
        dW_ih = db = dW_hh = dh0 = dc0 = None
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:  # (U1^T D)^T: ~6x faster than D^T U1 for few inputs
            dWb = torch.bmm(U1.view(E, T * B, -1).transpose(1, 2), D.view(E, T * B, G)).transpose(1, 2).mul_(scale)
            dW_ih, db = dWb[..., :-1], dWb[..., -1]
        if ctx.needs_input_grad[3]:
            dW_hh = torch.bmm(Df, HC[:, :T, :, :N].reshape(E, T * B, N)).mul_(scale)
        if ctx.needs_input_grad[4]:
            dh0 = torch.bmm(D[:, 0], W2)
        if ctx.needs_input_grad[5]:
            dc0 = S4[:, 0, :, 1] * dc
        du = None
        if ctx.needs_input_grad[0]:
            du = torch.bmm(D.view(E, T * B, G), Wb2[..., :-1]).view(E, T, B, -1).transpose(1, 2)
        return du, dW_ih, db, dW_hh, dh0, dc0, None


def lstm_recurrence(u_exbxtxi: torch.Tensor, W_ih_exgxi: torch.Tensor, b_exg: torch.Tensor, W_hh_exgxn: torch.Tensor,
                    h0_exbxn: torch.Tensor, c0_exbxn: torch.Tensor, noise_exbxtxn: torch.Tensor | None = None):
    """Run the LSTM layer: inputs ``u`` (E, B, T, I), weights ``W_ih`` (E, 4N, I), ``b`` (E, 4N) and
    ``W_hh`` (E, 4N, N) in gate order i, f, g, o, initial ``(h0, c0)`` (E, B, N) each, and an
    optional additive noise (E, B, T, N) on the g pre-activation (already scaled). Returns
    ``(h, c, hc)``: h and c (E, B, T, N) and both side by side (E, B, T, 2N), views of one
    time-major tensor. Differentiable in all but the noise.

    Runs the compiled kernel (:mod:`.lstm_kernel`) where it is available for the tensors' device
    and dtype, else the eager torch code (:class:`_LSTMRecurrence`)."""
    args = (u_exbxtxi, W_ih_exgxi, b_exg, W_hh_exgxn, h0_exbxn, c0_exbxn, noise_exbxtxn)
    if lstm_kernel.kernel_for(W_hh_exgxn) is not None:
        return lstm_kernel.LSTMRecurrenceCompiled.apply(*args)
    return _LSTMRecurrence.apply(*args)


@NETWORKS.register("lstm")
class LSTM(Network):
    kind = "lstm"
    Config = LSTMConfig
    param_dims = {"W_ih": ("gate_unit", "input"), "W_hh": ("gate_unit", "unit_pre"), "b": ("gate_unit",),
                  "W_out": ("output", "unit"), "b_out": ("output",)}
    init_fields = frozenset({"forget_bias"})

    def init_member(self, rng):
        N, I, O = self.n_units, self.n_inputs, self.n_outputs
        k = 1 / np.sqrt(N)
        b = rng.uniform(-k, k, 4 * N)
        b[N:2 * N] += self.config.forget_bias
        return {"W_ih": rng.uniform(-k, k, (4 * N, I)), "W_hh": rng.uniform(-k, k, (4 * N, N)), "b": b,
                "W_out": rng.normal(0, k, (O, N)), "b_out": np.zeros(O)}

    def state_dim(self) -> int:
        return 2 * self.n_units if self.config.tcr_on_cell else self.n_units

    def recurrent_weights(self) -> torch.Tensor:
        return self.params["W_hh"]

    def step(self, h, c, x_t):
        """One plain LSTM step (autograd); ``x_t`` (E, B, 4N) is the precomputed input drive."""
        return _cell(torch.baddbmm(x_t, h, self.params["W_hh"].transpose(1, 2)), c)

    def full_state_dim(self) -> int:
        return 2 * self.n_units

    def one_step(self, x_exkxs, u_exi):
        N = self.n_units
        p = self.params
        x = (torch.einsum("ei,egi->eg", u_exi, p["W_ih"]) + p["b"])[:, None, :].expand(-1, x_exkxs.shape[1], -1)
        h, c = self.step(x_exkxs[..., :N], x_exkxs[..., N:], x)
        return torch.cat([h, c], -1)

    def run(self, inputs_exbxtxi, noise_exbxtxn=None):
        E, B, T, _ = inputs_exbxtxi.shape
        N = self.n_units
        p = self.params
        noise = None
        if noise_exbxtxn is not None and self.config.sigma_h > 0:
            noise = self.config.sigma_h * noise_exbxtxn
        zeros = torch.zeros(E, B, N, dtype=self.dtype, device=inputs_exbxtxi.device)
        H, _, full = lstm_recurrence(inputs_exbxtxi, p["W_ih"], p["b"], p["W_hh"], zeros, zeros, noise)
        # the readout on the time-major storage of h (rows 2N apart): one product, no copy
        h_rows = H.transpose(1, 2).reshape(E, T * B, N)
        y = torch.baddbmm(p["b_out"].unsqueeze(1), h_rows, p["W_out"].transpose(1, 2)).view(E, T, B, -1).transpose(1, 2)
        return Rollout(full if self.config.tcr_on_cell else H, y, full)
