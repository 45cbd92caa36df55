"""Low-rank rate network (science.md §2): the leaky rate dynamics with ``W = m n^T / N + g chi``.

``m, n`` (N x R) are trained; ``chi ~ N(0, 1/N)`` is a fixed random part scaled by ``g``
(``g = 0``: purely low-rank). Initial ``m, n ~ N(0, rank_scale^2)``.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from .base import NETWORKS
from .leaky_rate import LeakyRate, LeakyRateConfig


class LowRankConfig(LeakyRateConfig):
    kind: Literal["low_rank"] = "low_rank"  # type: ignore[assignment]
    rank: int = Field(1, gt=0, description="rank R of the trained structured part m n^T / N")
    rank_scale: float = Field(1.0, gt=0, description="std of the initial entries of m and n")
    g: float = Field(0.8, ge=0, description="gain of the fixed random part g chi, chi ~ N(0, 1/N)")


@NETWORKS.register("low_rank")
class LowRank(LeakyRate):
    kind = "low_rank"
    Config = LowRankConfig
    buffer_dims = {"mask": ("unit", "unit_pre"), "sign": ("unit", "unit_pre"), "chi": ("unit", "unit_pre")}
    param_dims = {"m": ("unit", "rank"), "n": ("unit", "rank"), "W_in": ("unit", "input"), "b": ("unit",),
                  "W_out": ("output", "unit"), "b_out": ("output",)}
    supports_freeze_in = False  # W = m n^T / N + g chi has no full trained matrix to write into
    init_fields = LeakyRate.init_fields | {"rank_scale"}  # (g scales the fixed part chi when it is drawn)

    def init_member(self, rng):
        c, N = self.config, self.n_units
        base = super().init_member(rng)
        base["chi"] = base.pop("W")  # the fixed random part g chi, drawn with the leaky init
        base["m"] = rng.normal(0.0, c.rank_scale, (N, c.rank))
        base["n"] = rng.normal(0.0, c.rank_scale, (N, c.rank))
        return base

    def recurrent_weights(self) -> torch.Tensor:
        m, n = self.params["m"], self.params["n"]
        W = torch.bmm(m, n.transpose(1, 2)) / self.n_units + self.buffers["chi"]
        if "sign" in self.buffers:
            W = W.abs() * self.buffers["sign"]
        return W * self.buffers["mask"]
