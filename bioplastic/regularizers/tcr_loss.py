"""Temporal consistency regularization (TCR) as a loss term (SPEC 3)::

    L = L_task + lambda(k) * mean_{b, t in window, n} (h_t - h_{t-1})^2

``h`` is the state the network reports (``Rollout.state_exbxtxn``); differences are taken between
consecutive reported steps (t >= 1), and the window is a per-trial, per-step mask (the whole trial,
or one named period such as ``delay``). Computed per ensemble member.
"""
from __future__ import annotations

import torch


def tcr_term(state_exbxtxn: torch.Tensor, window_exbxt: torch.Tensor) -> torch.Tensor:
    """Mean squared one-step change of the state inside the window, per member: (E,).

    ``window_exbxt`` is 1 where step t (and its difference to t-1) counts. Members whose window is
    empty get 0.
    """
    diff2 = (state_exbxtxn[:, :, 1:] - state_exbxtxn[:, :, :-1]).square().mean(-1)  # (E, B, T-1)
    w = window_exbxt[:, :, 1:].to(diff2.dtype)
    return (diff2 * w).sum((1, 2)) / w.sum((1, 2)).clamp_min(1)
