"""Backpropagation through time (SPEC 4): the exact gradient of task loss + lambda * TCR term.

The rate networks' recurrence has a hand-written backward (networks/recurrence.py); the rest of the
graph (readout, TCR term, input projection, low-rank parametrisation) is torch autograd.
"""
from __future__ import annotations

import torch

from ..regularizers.tcr_loss import tcr_term
from ..schema_base import Schema
from .base import RULES, Batch, LearningRule, StepResult


def masked_mse(output_exbxtxo, target_exbxtxo, mask_exbxtxo) -> torch.Tensor:
    """Mean squared error over scored steps, per member: (E,)."""
    err = (output_exbxtxo - target_exbxtxo).square() * mask_exbxtxo
    return err.sum((1, 2, 3)) / mask_exbxtxo.sum((1, 2, 3)).clamp_min(1)


class BPTTConfig(Schema):
    """BPTT has no options."""


@RULES.register("bptt")
class BPTT(LearningRule):
    name = "bptt"
    Config = BPTTConfig

    def step(self, batch: Batch, alive_e: torch.Tensor) -> StepResult:
        net = self.network
        roll = net.run(batch.inputs_exbxtxi, batch.noise_exbxtxn)
        task_loss = masked_mse(roll.output_exbxtxo, batch.targets_exbxtxo, batch.mask_exbxtxo)
        term = tcr_term(roll.state_exbxtxn, batch.window_exbxt)
        loss = task_loss + batch.lambda_e * term
        live = alive_e & torch.isfinite(loss)
        names = list(net.params)
        grads = torch.autograd.grad(torch.where(live, loss, 0).sum(), [net.params[n] for n in names])
        return StepResult(loss, task_loss, term, dict(zip(names, grads)))
