"""Temporal consistency regularization (TCR) as a loss term (science.md §3)::

    L = L_task + lambda(k) * term

``h`` is the state the network reports (``Rollout.state_exbxtxn``); differences are taken between
consecutive reported steps (t >= 1), and the window is a per-trial, per-step mask (the whole trial,
or one named period such as ``delay``). Computed per ensemble member. Two forms of the term
(``tcr.normalize``; docs/tcr_loss.md):

``none`` (raw)::

    term = mean_{b, t in window, n} (h_t - h_{t-1})^2

``variance`` (scale-free: the one-step change relative to the state's own variance in the window)::

    term = mean_{b, t in window, n} (h_t - h_{t-1})^2 / (mean_{b, t in window, n} (h_t - hbar_{b,n})^2 + EPS)

with ``hbar_{b,n}`` the mean of ``h`` over the window's steps of trial b, unit n. The numerator's
steps are those with t >= 1 in the window (as in the raw form), the denominator's all steps in the
window. Rescaling ``h`` by a constant leaves the variance form unchanged (up to ``EPS``); its
gradient flows through numerator and denominator.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

#: the forms of the TCR loss term (``tcr.normalize``)
NORMALIZATIONS = ("none", "variance")
#: added to the within-window variance of the state in the ``variance`` form (state units squared)
EPS = 1e-8

Normalize = Literal["none", "variance"]


def _raw(state_exbxtxn: torch.Tensor, window_exbxt: torch.Tensor) -> torch.Tensor:
    diff2 = (state_exbxtxn[:, :, 1:] - state_exbxtxn[:, :, :-1]).square().mean(-1)  # (E, B, T-1)
    w = window_exbxt[:, :, 1:].to(diff2.dtype)
    return (diff2 * w).sum((1, 2)) / w.sum((1, 2)).clamp_min(1)


def _variance(state_exbxtxn: torch.Tensor, window_exbxt: torch.Tensor) -> torch.Tensor:
    w = window_exbxt.to(state_exbxtxn.dtype)                                        # (E, B, T)
    hbar = (state_exbxtxn * w[..., None]).sum(2, keepdim=True) / w.sum(2).clamp_min(1)[..., None, None]
    dev2 = (state_exbxtxn - hbar).square().mean(-1)                                 # (E, B, T)
    var = (dev2 * w).sum((1, 2)) / w.sum((1, 2)).clamp_min(1)
    return _raw(state_exbxtxn, window_exbxt) / (var + EPS)


def tcr_term(state_exbxtxn: torch.Tensor, window_exbxt: torch.Tensor,
             normalize: Normalize | Sequence[Normalize] = "none") -> torch.Tensor:
    """The TCR term per member: (E,).

    ``window_exbxt`` is 1 where step t (and its difference to t-1) counts. ``normalize``: ``none``
    (mean squared one-step change) or ``variance`` (that divided by the state's variance within the
    window), for all members or one entry per member. Members whose window is empty get 0.
    """
    E = state_exbxtxn.shape[0]
    modes = [normalize] * E if isinstance(normalize, str) else list(normalize)
    if len(modes) != E or any(m not in NORMALIZATIONS for m in modes):
        raise ValueError(f"normalize: expected one of {', '.join(NORMALIZATIONS)} or one per member ({E}); got {normalize!r}")
    if all(m == "none" for m in modes):
        return _raw(state_exbxtxn, window_exbxt)
    scaled = _variance(state_exbxtxn, window_exbxt)
    if all(m == "variance" for m in modes):
        return scaled
    use = torch.tensor([m == "variance" for m in modes], device=state_exbxtxn.device)
    return torch.where(use, scaled, _raw(state_exbxtxn, window_exbxt))
