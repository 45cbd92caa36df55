"""The learning-rule interface: a rule turns one batch into an update direction per parameter.

The training loop composes the pieces: it draws the batch and the noise, asks the rule for
``StepResult`` (per-member losses and a gradient-like update for every parameter), then clips it per
network and hands it to the optimizer (Adam or SGD). Rules never touch the optimizer; they may read
the network, the TCR strengths and the window, and must keep members independent.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from ..networks import Network
from ..registry import Registry
from ..schema_base import Schema

RULES: Registry[type[LearningRule]] = Registry("learning rule")


@dataclass
class Batch:
    """One training batch for all members (shapes with the leading ensemble axis E).

    inputs_exbxtxi, targets_exbxtxo, mask_exbxtxo: the trials; window_exbxt: the TCR window;
    noise_exbxtxn: standard-normal private noise or None; lambda_e: TCR loss strength per member;
    conditions: the trials' condition labels, name -> (E, B) array (difficulty, side, ...);
    tcr_normalize: the form of the TCR term (``tcr.normalize``), one for all members or one per member;
    measure_tcr_grad_ratio: ask the rule for ||grad(lambda * term)|| / ||grad(task loss)|| per member
    (a measurement on this batch: it must not change the update);
    tcr_trains: False when every lambda is 0 (the loop knows it without reading tensors): the rule
    may then record the TCR term without taking it into the gradient (the same update).
    """

    inputs_exbxtxi: torch.Tensor
    targets_exbxtxo: torch.Tensor
    mask_exbxtxo: torch.Tensor
    window_exbxt: torch.Tensor
    noise_exbxtxn: torch.Tensor | None
    lambda_e: torch.Tensor
    conditions: dict[str, np.ndarray] | None = None
    tcr_normalize: str | tuple[str, ...] = "none"
    measure_tcr_grad_ratio: bool = False
    tcr_trains: bool = True


@dataclass
class StepResult:
    """loss_e = task_loss_e + lambda_e * term_e (each (E,)); task_loss_exo: the task loss per output
    (bptt.output_mse; None for one output); grads: parameter name -> update direction
    with the parameter's shape (descending it lowers the loss); tcr_grad_ratio_e: (E,) when the batch
    asked for it and the rule measures it (NaN for members without the TCR term), else None;
    plasticity: the detached signatures of the short-term plasticity from the step's simulation of
    the batch (e.g. the trial-end efficacies ``F_end_exbxnxn``, which freeze-in uses; see
    regularizers/tcr_plasticity.py) when the network has it, else None."""

    loss_e: torch.Tensor
    task_loss_e: torch.Tensor
    term_e: torch.Tensor
    grads: dict[str, torch.Tensor]
    tcr_grad_ratio_e: torch.Tensor | None = None
    plasticity: dict[str, torch.Tensor] | None = None
    #: (E, O) task loss of each output on its own scored steps (None: a single output)
    task_loss_exo: torch.Tensor | None = None


class LearningRule(ABC):
    name: ClassVar[str]
    #: rule options (``training.rule_options`` in a protocol)
    Config: ClassVar[type[Schema]]
    #: model kinds the rule supports (None: all)
    supports: ClassVar[tuple[str, ...] | None] = None
    #: forms of the TCR loss term (``tcr.normalize``) the rule supports
    tcr_normalizations: ClassVar[tuple[str, ...]] = ("none",)

    def __init__(self, config: Schema, network: Network):
        self.config, self.network = config, network

    def state_dict(self) -> dict[str, torch.Tensor]:
        """State the rule carries across iterations (saved with every checkpoint); none by default."""
        return {}

    def load_state_dict(self, d: dict[str, torch.Tensor]) -> None:  # noqa: B027 - optional hook, no state by default
        """Restore :meth:`state_dict` when an interrupted run resumes."""

    @abstractmethod
    def step(self, batch: Batch, alive_e: torch.Tensor) -> StepResult:
        """Losses and update directions for one batch; members with ``alive_e`` False get zeros.
        A network with short-term plasticity: the signatures of the simulation the update comes
        from go into ``StepResult.plasticity``."""
