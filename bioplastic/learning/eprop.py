"""e-prop (Bellec et al. 2020, Nat. Commun. 11:3625) for the PLRNN (science.md §2 and 4)::

    z_t = A z_{t-1} + W relu(z_{t-1}) + h + C s_t + noise_t,   y_t = B z_t,   z_{-1} = 0

The same truncation as RFLO (rflo.py): the dependence of ``relu(z_{t-1})`` on the weights is ignored,
the diagonal path ``A z_{t-1}`` is kept, and ``B^T`` on the error's way back is replaced by a fixed
feedback matrix (random, or symmetric ``B^T``). The eligibility traces decay through the diagonal
``A``, per post unit; the trial-summed update reads them backwards with a per-unit filter::

    g_t  = F e_t,                    e_t = dL_task/dy_t      (the readout reads z: no phi')
    g~_t = g_t + A * g~_{t+1}
    G_t  = g~_t + c_t                (c_t: the local one-step TCR gradient, unfiltered)
    dL/dW = offdiag * sum G_t relu(z_{t-1})^T,   dL/dA = sum G_t * z_{t-1},
    dL/dh = sum G_t,   dL/dC = sum G_t s_t^T,    dL/dB exact.

The online variant keeps per-synapse traces ``eps_ij <- A_i eps_ij + relu(z_{t-1})_j`` (the decay
depends on the post unit) and updates W, A, h, C in place at every step (see rflo.py).
"""
from __future__ import annotations

import torch

from .base import RULES
from .truncated import TruncatedConfig, TruncatedRule


class EPropConfig(TruncatedConfig):
    """e-prop options (see docs/learning_rules.md)."""


@RULES.register("eprop")
class EProp(TruncatedRule):
    name = "eprop"
    Config = EPropConfig
    supports = ("plrnn",)
    readout_name = "B"
    reads_rate = False
    decay_name = "A"

    @property
    def phi_name(self) -> str:
        return "relu"

    @property
    def rec_scale(self) -> float:
        return 1.0

    def decay(self) -> torch.Tensor:
        return self.network.params["A"]

    def drive(self, inputs_exbxtxi, noise_exbxtxn):
        # as in PLRNN.run
        p, net = self.network.params, self.network
        d = torch.einsum("ebti,eni->ebtn", inputs_exbxtxi, p["C"]) + p["h"][:, None, None, :]
        if noise_exbxtxn is not None and net.config.sigma_h > 0:
            d = d + net.config.sigma_h * noise_exbxtxn
        return d

    def input_factors(self, u_exbxi):
        return [("C", u_exbxi, 1.0), ("h", torch.ones_like(u_exbxi[..., :1]), 1.0)]

    def readout(self, x_exbxtxn):
        return torch.einsum("ebtn,eon->ebto", x_exbxtxn, self.network.params["B"])
