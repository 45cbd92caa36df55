"""Leaky firing-rate network (science.md §2)::

    h_{t+1} = (1 - alpha) h_t + alpha (W phi(h_t) + W_in u_t + b) + sigma_h sqrt(alpha) xi_t
    y_t     = W_out phi(h_t) + b_out,        alpha = dt / tau,   W ~ N(0, g^2 / N)

``g > 1`` is the chaotic (strongly connected) regime. Optional Dale's law (``frac_excitatory``
of the presynaptic units excitatory, the others inhibitory, through ``|W| * sign``) and a fixed
random connectivity mask (``connection_prob``).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field

from ..schema_base import Schema
from .base import NETWORKS, Network, RateMap, Rollout
from .recurrence import batched_affine, phi, recurrence


class LeakyRateConfig(Schema):
    kind: Literal["leaky_rate"] = "leaky_rate"
    n_units: int = Field(100, gt=0, description="number of recurrent units N")
    g: float = Field(1.5, ge=0, description="gain of the random recurrent weights, W ~ N(0, g^2/N); g > 1 is chaotic")
    tau_ms: float = Field(100.0, gt=0, description="membrane time constant tau (ms); alpha = dt / tau")
    phi: Literal["tanh", "relu", "softplus", "linear"] = Field(
        "tanh", description="rate nonlinearity r = phi(h); linear: r = h, a linear network (with tau_ms equal to the "
                            "task's dt_ms, the discrete linear RNN h_t = W h_{t-1} + W_in u_t + b; science.md §8)")
    sigma_h: float = Field(0.0, ge=0, description="std of the private noise on h (scaled by sqrt(alpha))")
    input_scale: float = Field(1.0, ge=0, description="W_in ~ N(0, input_scale^2 / n_inputs)")
    output_scale: float = Field(1.0, ge=0, description="W_out ~ N(0, output_scale^2 / N); small values start from a near-zero output")
    connection_prob: float = Field(1.0, gt=0, le=1, description="probability of each recurrent synapse (fixed mask)")
    frac_excitatory: float | None = Field(None, gt=0, lt=1, description="Dale's law: fraction of excitatory units (null = off)")
    train_input: bool = Field(True, description="train W_in and b (otherwise fixed)")


@NETWORKS.register("leaky_rate")
class LeakyRate(Network):
    kind = "leaky_rate"
    Config = LeakyRateConfig
    buffer_dims = {"mask": ("unit", "unit_pre"), "sign": ("unit", "unit_pre")}
    param_dims = {"W": ("unit", "unit_pre"), "W_in": ("unit", "input"), "b": ("unit",),
                  "W_out": ("output", "unit"), "b_out": ("output",)}
    supports_plasticity = True
    supports_freeze_in = True
    supports_brian2 = True
    init_fields = frozenset({"g", "input_scale", "output_scale", "connection_prob"})

    @property
    def alpha(self) -> float:
        return self.dt_ms / float(self.config.tau_ms)

    def init_member(self, rng):
        c, N, I, O = self.config, self.n_units, self.n_inputs, self.n_outputs
        m = {
            "W": rng.normal(0.0, c.g / np.sqrt(N * c.connection_prob), (N, N)),
            "W_in": rng.normal(0.0, c.input_scale / np.sqrt(I), (N, I)),
            "b": np.zeros(N),
            "W_out": rng.normal(0.0, c.output_scale / np.sqrt(N), (O, N)),
            "b_out": np.zeros(O),
            "mask": (rng.random((N, N)) < c.connection_prob).astype(float) if c.connection_prob < 1 else np.ones((N, N)),
        }
        if c.frac_excitatory is not None:
            n_exc = int(round(c.frac_excitatory * N))
            m["sign"] = np.where(np.arange(N) < n_exc, 1.0, -1.0)[None, :].repeat(N, 0)
        return m

    def recurrent_weights(self) -> torch.Tensor:
        W = self.params["W"]
        if "sign" in self.buffers:
            W = W.abs() * self.buffers["sign"]
        return W * self.buffers["mask"]

    def drive(self, inputs_exbxtxi, noise_exbxtxn):
        a = self.alpha
        W_in, b = self.params["W_in"], self.params["b"]
        if not self.config.train_input:
            W_in, b = W_in.detach(), b.detach()
        # a (W_in u + b) as one batched product over every trial and step, stored time-major as the
        # recurrence reads it (one pass over the output)
        d = batched_affine(inputs_exbxtxi, W_in, b, beta=a, alpha=a, time_major_out=True)
        if noise_exbxtxn is not None and self.config.sigma_h > 0:
            d = d.add_(noise_exbxtxn, alpha=self.config.sigma_h * a ** 0.5)
        return d

    def readout(self, r_exbxtxn):
        return batched_affine(r_exbxtxn, self.params["W_out"], self.params["b_out"])

    def one_step(self, x_exkxs, u_exi):
        a = self.alpha
        p = self.params
        drive = a * (torch.einsum("ei,eni->en", u_exi, p["W_in"]) + p["b"])
        rec = torch.einsum("ekm,enm->ekn", phi(self.config.phi, x_exkxs), a * self.recurrent_weights())
        return (1 - a) * x_exkxs + rec + drive[:, None, :]

    def rate_map(self, u_exi):
        """``d = 1 - alpha``, ``weights = alpha W``, ``offset = alpha (W_in u + b)``."""
        a, p = self.alpha, self.params
        d = torch.full((self.n_members, self.full_state_dim()), 1.0 - a, dtype=self.dtype, device=p["W_in"].device)
        c = a * (torch.einsum("ei,eni->en", u_exi, p["W_in"]) + p["b"])
        return RateMap(d, a * self.recurrent_weights(), c, self.config.phi)

    def rates(self, rollout):
        return phi(self.config.phi, rollout.state_exbxtxn.detach())

    def recur(self, Wc_exnxn, drive_exbxtxn):
        """States from a drive, with ``Wc = alpha W`` given (rules pass a detached one):
        ``(h, r, plasticity signatures or None)``; the short-term plasticity acts when attached."""
        E, B, _, N = drive_exbxtxn.shape
        decay = torch.full((E, N), 1.0 - self.alpha, dtype=self.dtype, device=drive_exbxtxn.device)
        h0 = torch.zeros(E, B, N, dtype=self.dtype, device=drive_exbxtxn.device)
        if self.plasticity is not None:
            return self.plasticity.run(decay, Wc_exnxn, drive_exbxtxn, h0, self.config.phi, self.alpha)
        h, r = recurrence(decay, Wc_exnxn, drive_exbxtxn, h0, self.config.phi)
        return h, r, None

    def run(self, inputs_exbxtxi, noise_exbxtxn=None):
        h, r, info = self.recur(self.alpha * self.recurrent_weights(), self.drive(inputs_exbxtxi, noise_exbxtxn))
        return Rollout(h, self.readout(r), plasticity=info)
