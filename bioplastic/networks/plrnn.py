"""Piecewise-linear RNN (PLRNN, Durstewitz lab; science.md §2)::

    z_t = A z_{t-1} + W relu(z_{t-1}) + h + C s_t + sigma_h xi_t,      y_t = B z_t

``A`` is diagonal (stored as a vector), ``W`` off-diagonal (the diagonal is masked out). Within each
region of fixed ReLU sign pattern the map is linear, so its fixed points are exactly computable.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field

from ..schema_base import Schema
from .base import NETWORKS, Network, RateMap, Rollout
from .recurrence import batched_affine, recurrence


class PLRNNConfig(Schema):
    kind: Literal["plrnn"] = "plrnn"
    n_units: int = Field(50, gt=0, description="latent dimension N")
    a_init: float = Field(0.9, gt=0, lt=1, description="initial diagonal auto-regression A_ii")
    g: float = Field(0.5, ge=0, description="initial W off-diagonal ~ N(0, g^2/N)")
    sigma_h: float = Field(0.0, ge=0, description="std of the latent noise xi")
    input_scale: float = Field(1.0, ge=0, description="C ~ N(0, input_scale^2 / n_inputs)")
    output_scale: float = Field(1.0, ge=0, description="B ~ N(0, output_scale^2 / N); small values start from a near-zero output")


@NETWORKS.register("plrnn")
class PLRNN(Network):
    kind = "plrnn"
    Config = PLRNNConfig
    buffer_dims = {"offdiag": ("unit", "unit_pre")}
    param_dims = {"A": ("unit",), "W": ("unit", "unit_pre"), "h": ("unit",), "C": ("unit", "input"),
                  "B": ("output", "unit")}
    init_fields = frozenset({"a_init", "g", "input_scale", "output_scale"})

    def init_member(self, rng):
        c, N, I, O = self.config, self.n_units, self.n_inputs, self.n_outputs
        return {
            "A": np.full(N, c.a_init),
            "W": rng.normal(0.0, c.g / np.sqrt(N), (N, N)) * (1 - np.eye(N)),
            "h": np.zeros(N),
            "C": rng.normal(0.0, c.input_scale / np.sqrt(I), (N, I)),
            "B": rng.normal(0.0, c.output_scale / np.sqrt(N), (O, N)),
            "offdiag": 1 - np.eye(N),
        }

    def recurrent_weights(self) -> torch.Tensor:
        return self.params["W"] * self.buffers["offdiag"]

    def one_step(self, x_exkxs, u_exi):
        p = self.params
        drive = torch.einsum("ei,eni->en", u_exi, p["C"]) + p["h"]
        rec = torch.einsum("ekm,enm->ekn", torch.relu(x_exkxs), self.recurrent_weights())
        return p["A"][:, None, :] * x_exkxs + rec + drive[:, None, :]

    def rate_map(self, u_exi):
        """``d = A``, ``weights = W`` (off-diagonal), ``offset = h + C u``, ``phi = relu``."""
        p = self.params
        c = torch.einsum("ei,eni->en", u_exi, p["C"]) + p["h"]
        return RateMap(p["A"].clone(), self.recurrent_weights(), c, "relu")

    def rates(self, rollout):
        return torch.clamp(rollout.state_exbxtxn.detach(), min=0)

    def run(self, inputs_exbxtxi, noise_exbxtxn=None):
        E, B = inputs_exbxtxi.shape[:2]
        p = self.params
        drive = batched_affine(inputs_exbxtxi, p["C"], p["h"], time_major_out=True)  # stored as the recurrence reads it
        if noise_exbxtxn is not None and self.config.sigma_h > 0:
            drive = drive.add_(noise_exbxtxn, alpha=self.config.sigma_h)
        z0 = torch.zeros(E, B, self.n_units, dtype=self.dtype, device=drive.device)
        z, _ = recurrence(p["A"], self.recurrent_weights(), drive, z0, "relu")
        return Rollout(z, batched_affine(z, p["B"]))
