"""Random-feedback local online learning (RFLO; Murray 2019, eLife 8:e43299) for the rate networks.

The model (science.md §2, ``leaky_rate`` and ``low_rank``), with ``W`` the effective recurrent matrix
(``Network.recurrent_weights()``: masks, Dale's signs and the low-rank parametrisation included)::

    h_t = (1 - a) h_{t-1} + a (W r_{t-1} + W_in u_t + b) + noise_t,   r_t = phi(h_t),   h_{-1} = 0
    y_t = W_out r_t + b_out,   L = masked MSE + lambda * TCR term

RFLO is the gradient truncated to the direct path: the dependence of ``r_{t-1}`` on the weights is
ignored (the leak path ``(1 - a) h_{t-1}`` is kept), and ``W_out^T`` on the error's way back to the
units is replaced by a fixed feedback matrix ``B`` (E, unit, output)::

    g_t   = phi'(h_t) * (B e_t),     e_t = dL_task/dy_t                 (learning signal)
    g~_t  = g_t + (1 - a) g~_{t+1}                                      (reverse-time filter)
    G_t   = g~_t + c_t,              c_t = lambda * d TCR / d h_t |_{h_{t-1} fixed}   (local TCR)
    dL/dW = a sum_{b,t} G_t r_{t-1}^T,  dL/dW_in = a sum G_t u_t^T,  dL/db = a sum G_t

The reverse filter is the eligibility trace ``p_t = (1 - a) p_{t-1} + a r_{t-1}`` read backwards
(``sum_t g_t p_t^T = a sum_t g~_t r_{t-1}^T``): one batched matrix product per weight, no per-step
outer products. ``W_out``, ``b_out`` get their exact (local) gradient. Because the readout reads
``phi(h)``, ``phi'(h_t)`` multiplies the learning signal, outside the trace (science.md §4 writes it inside
the trace, the form for models whose state is the rate); see docs/learning_rules.md.

The local TCR signal is *not* filtered: with ``h_{t-1}`` held fixed, ``h_t`` depends on ``W`` only
through ``a W r_{t-1}``, so its W-update is the one-step TCR gradient
``2 lambda a / (N sum w) sum w_t (h_t - h_{t-1}) r_{t-1}^T`` - minus, up to the factor ``a``, the
anti-Hebbian TCR plasticity update of science.md §3.

``variant: online`` updates ``W`` (or ``m, n``), ``W_in`` and ``b`` in place at every step of the
trial by plain SGD with ``online_lr``, using forward eligibility traces; the step then returns zero
update directions for them (the optimizer applies only the readout's gradient), so nothing is
applied twice. As ``online_lr -> 0`` the summed online change equals ``-online_lr`` times the
trial-summed update (tested).

The machinery it shares with e-prop (eprop.py) and node perturbation is in truncated.py.
"""
from __future__ import annotations

import torch

from .base import RULES
from .truncated import TruncatedConfig, TruncatedRule


class RFLOConfig(TruncatedConfig):
    """RFLO options (see docs/learning_rules.md)."""


@RULES.register("rflo")
class RFLO(TruncatedRule):
    """RFLO for ``leaky_rate`` and ``low_rank`` (the W-update is for the effective W, mapped to the
    trained parameters - ``W``, or ``m`` and ``n`` - by the chain rule)."""

    name = "rflo"
    Config = RFLOConfig
    supports = ("leaky_rate", "low_rank")
    readout_name = "W_out"
    reads_rate = True

    @property
    def phi_name(self) -> str:
        return self.network.config.phi

    @property
    def rec_scale(self) -> float:
        return self.network.alpha

    def decay(self) -> float:
        return 1.0 - self.network.alpha

    def drive(self, inputs_exbxtxi, noise_exbxtxn):
        return self.network.drive(inputs_exbxtxi, noise_exbxtxn)

    def input_factors(self, u_exbxi):
        if not self.network.config.train_input:
            return []
        a = self.network.alpha
        return [("W_in", u_exbxi, a), ("b", torch.ones_like(u_exbxi[..., :1]), a)]

    def readout(self, x_exbxtxn):
        return self.network.readout(x_exbxtxn)
