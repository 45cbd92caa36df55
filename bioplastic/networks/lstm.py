"""LSTM (science.md §2): the standard cell, batched over ensemble members. TCR acts on ``h``
(``tcr_on_cell: true`` appends ``c`` to the TCR state). Gates in the order i, f, g, o.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field

from ..schema_base import Schema
from .base import NETWORKS, Network, Rollout


class LSTMConfig(Schema):
    kind: Literal["lstm"] = "lstm"
    n_units: int = Field(64, gt=0, description="hidden units N (state is (h, c), 2N numbers)")
    forget_bias: float = Field(1.0, description="initial bias of the forget gate")
    tcr_on_cell: bool = Field(False, description="TCR acts on (h, c) instead of h alone")
    sigma_h: float = Field(0.0, ge=0, description="std of noise added to the cell input each step")


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
        """One LSTM step; ``x_t`` (E, B, 4N) is the precomputed input drive."""
        gates = torch.baddbmm(x_t, h, self.params["W_hh"].transpose(1, 2))
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c

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
        x = torch.einsum("ebti,egi->ebtg", inputs_exbxtxi, p["W_ih"]) + p["b"][:, None, None, :]
        if noise_exbxtxn is not None and self.config.sigma_h > 0:
            x = x.clone()
            x[..., 2 * N:3 * N] += self.config.sigma_h * noise_exbxtxn
        h = torch.zeros(E, B, N, dtype=self.dtype, device=x.device)
        c = torch.zeros_like(h)
        hs, cs = [], []
        for t in range(T):
            h, c = self.step(h, c, x[:, :, t])
            hs.append(h)
            cs.append(c)
        H = torch.stack(hs, 2)
        y = torch.einsum("ebtn,eon->ebto", H, p["W_out"]) + p["b_out"][:, None, None, :]
        full = torch.cat([H, torch.stack(cs, 2)], -1)
        return Rollout(full if self.config.tcr_on_cell else H, y, full)
