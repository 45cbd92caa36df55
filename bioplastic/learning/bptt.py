"""Backpropagation through time (science.md §4): the exact gradient of task loss + lambda * TCR term
(either form of the term, ``tcr.normalize``: regularizers/tcr_loss.py).

When the batch asks for it (at the evaluation iterations), the step also measures the ratio of the
TCR to the task gradient norm, ``||grad(lambda * term)|| / ||grad(task loss)||``, on the same graph.

The rate networks' recurrence (networks/recurrence.py) and the LSTM layer (networks/lstm.py) have
hand-written backward passes; the rest of the graph (readout, TCR term, input projection, low-rank
parametrisation) is torch autograd.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ..regularizers.tcr_loss import tcr_term
from ..schema_base import Schema
from ..training.optim import without_overflow
from .base import RULES, Batch, LearningRule, StepResult


def masked_mse(output_exbxtxo, target_exbxtxo, mask_exbxtxo) -> torch.Tensor:
    """Mean squared error over scored steps, per member: (E,)."""
    err = (output_exbxtxo - target_exbxtxo).square() * mask_exbxtxo
    return err.sum((1, 2, 3)) / mask_exbxtxo.sum((1, 2, 3)).clamp_min(1)


@torch.no_grad()
def output_mse(output_exbxtxo, target_exbxtxo, mask_exbxtxo) -> torch.Tensor | None:
    """Mean squared error over each output's own scored steps, per member and output: (E, O); None
    for a single output (it is the task loss). Recorded only: no gradient flows through it."""
    if output_exbxtxo.shape[-1] < 2:
        return None
    err = (output_exbxtxo.detach() - target_exbxtxo).square() * mask_exbxtxo
    return err.sum((1, 2)) / mask_exbxtxo.sum((1, 2)).clamp_min(1)


class BPTTConfig(Schema):
    """BPTT has no options."""


@RULES.register("bptt")
class BPTT(LearningRule):
    name = "bptt"
    Config = BPTTConfig
    tcr_normalizations = ("none", "variance")

    def step(self, batch: Batch, alive_e: torch.Tensor) -> StepResult:
        net = self.network
        roll = net.run(batch.inputs_exbxtxi, batch.noise_exbxtxn)
        task_loss = masked_mse(roll.output_exbxtxo, batch.targets_exbxtxo, batch.mask_exbxtxo)
        if batch.tcr_trains:
            term = tcr_term(roll.state_exbxtxn, batch.window_exbxt, batch.tcr_normalize)
        else:  # recorded, but no member trains on it: no backward pass through it (same gradients)
            with torch.no_grad():
                term = tcr_term(roll.state_exbxtxn, batch.window_exbxt, batch.tcr_normalize)
        loss = task_loss + batch.lambda_e * term
        live = alive_e & torch.isfinite(loss)
        names = list(net.params)
        params = [net.params[n] for n in names]
        measure = batch.measure_tcr_grad_ratio
        # a parameter the loss does not use (W_in and b with train_input false) gets a zero gradient
        grads = torch.autograd.grad(torch.where(live, loss, 0).sum(), params, retain_graph=measure, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
        ratio = None
        if measure:
            measured = live & (batch.lambda_e > 0)
            ratio = (tcr_grad_ratio(grads, batch.lambda_e * term, measured, params) if term.requires_grad
                     else torch.full_like(task_loss.detach(), float("nan")))
        return StepResult(loss, task_loss, term, dict(zip(names, grads)), ratio, roll.plasticity,
                          output_mse(roll.output_exbxtxo, batch.targets_exbxtxo, batch.mask_exbxtxo))


def member_norms(grads, like: torch.Tensor) -> torch.Tensor:
    """Per-member norm over all parameters of gradients with the leading ensemble axis (None: zero),
    without float overflow (:func:`~bioplastic.training.optim.without_overflow`)."""
    sq = torch.zeros_like(like)
    for g in grads:
        if g is not None:
            sq = sq + g.detach().flatten(1).square().sum(1)
    return without_overflow(sq.sqrt(), grads)


def tcr_grad_ratio(grads: Sequence[torch.Tensor], weighted_term_e: torch.Tensor, measured_e: torch.Tensor,
                   params: list[torch.Tensor]) -> torch.Tensor:
    """``||grad(lambda * term)|| / ||grad(task loss)||`` per member over all parameters, from the
    graph of the step's forward pass and the step's gradients ``grads`` of task loss + lambda * term
    (one extra backward pass, for the term; the task gradient is their difference; the update is not
    touched). NaN where ``measured_e`` is False. The difference costs precision where the term's
    gradient dominates: in float32 the ratio's relative error is ~6e-8 times the ratio (measured:
    5e-6 at a ratio of 100, 3e-4 at 1e4), against ~3e-7 for two separate passes."""
    g_tcr = torch.autograd.grad(torch.where(measured_e, weighted_term_e, 0).sum(), params, allow_unused=True)
    g_task = [g if t is None else g - t for g, t in zip(grads, g_tcr)]
    like = weighted_term_e.detach()
    ratio = member_norms(g_tcr, like) / member_norms(g_task, like)
    return torch.where(measured_e, ratio, float("nan"))
