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
    """The raw form in plain autograd operations (the oracle of :class:`_Term`)."""
    diff2 = (state_exbxtxn[:, :, 1:] - state_exbxtxn[:, :, :-1]).square().mean(-1)  # (E, B, T-1)
    w = window_exbxt[:, :, 1:].to(diff2.dtype)
    return (diff2 * w).sum((1, 2)) / w.sum((1, 2)).clamp_min(1)


def _variance(state_exbxtxn: torch.Tensor, window_exbxt: torch.Tensor) -> torch.Tensor:
    """The variance form in plain autograd operations (the oracle of :class:`_Term`)."""
    w = window_exbxt.to(state_exbxtxn.dtype)                                        # (E, B, T)
    hbar = (state_exbxtxn * w[..., None]).sum(2, keepdim=True) / w.sum(2).clamp_min(1)[..., None, None]
    dev2 = (state_exbxtxn - hbar).square().mean(-1)                                 # (E, B, T)
    var = (dev2 * w).sum((1, 2)) / w.sum((1, 2)).clamp_min(1)
    return _raw(state_exbxtxn, window_exbxt) / (var + EPS)


def tcr_term_reference(state_exbxtxn: torch.Tensor, window_exbxt: torch.Tensor,
                       normalize: Normalize | Sequence[Normalize] = "none") -> torch.Tensor:
    """:func:`tcr_term` in plain autograd operations (the oracle for tests)."""
    modes = _modes(normalize, state_exbxtxn.shape[0])
    use = torch.tensor([m == "variance" for m in modes], device=state_exbxtxn.device)
    return torch.where(use, _variance(state_exbxtxn, window_exbxt), _raw(state_exbxtxn, window_exbxt))


class _Term(torch.autograd.Function):
    """Both forms per member in a few whole-tensor passes, with a hand-written gradient. With
    ``d_t = h_t - h_{t-1}``, ``W1 = max(sum_{b, t>=1} w, 1)``, ``W0 = max(sum_{b, t} w, 1)``::

        raw = sum_{b, t>=1} w_bt |d_bt|^2 / (N W1),   var = sum_{b, t} w_bt |h_bt - hbar_b|^2 / (N W0)
        d raw / d h_t = 2 (w_t d_t - w_{t+1} d_{t+1}) / (N W1)
        d var / d h_t = 2 w_t (h_t - hbar) / (N W0)     (hbar's own dependence drops out: sum_t w_t (h_t - hbar) = 0)

    and ``term = raw`` (none) or ``raw / (var + EPS)`` (variance), per member. Autograd through the
    plain form records ~25 passes over the (E, B, T, N) states; this takes ~8."""

    # Computed on time-major views, (E, T, B, N) and (E, T, B): the recurrences store their states
    # time-major, so for them every pass here runs over contiguous memory (on the (E, B, T, N) view,
    # the weighted mean over time alone took as long as the rest of the term).
    @staticmethod
    def forward(ctx, h, w, use_var, any_var: bool):
        h, w = h.transpose(1, 2), w.transpose(1, 2)
        E, T, B, N = h.shape
        w1 = w[:, 1:]
        d = torch.diff(h, dim=1)                                                      # (E, T-1, B, N)
        W1 = w1.sum((1, 2)).clamp_min(1)
        raw = (torch.linalg.vecdot(d, d) * w1).sum((1, 2)) / (N * W1)
        dev = var = W0 = None
        term = raw
        if any_var:
            hbar = (h * w.unsqueeze(-1)).sum(1) / w.sum(1).clamp_min(1)[..., None]      # (E, B, N)
            dev = h - hbar.unsqueeze(1)
            W0 = w.sum((1, 2)).clamp_min(1)
            var = (torch.linalg.vecdot(dev, dev) * w).sum((1, 2)) / (N * W0)
            term = torch.where(use_var, raw / (var + EPS), raw)
        ctx.save_for_backward(d, w, use_var, raw, W1, *(() if dev is None else (dev, var, W0)))
        return term

    @staticmethod
    def backward(ctx, g_e):
        d, w, use_var, raw, W1, *rest = ctx.saved_tensors
        E, T1, B, N = d.shape
        a = g_e
        if rest:
            dev, var, W0 = rest
            a = torch.where(use_var, g_e / (var + EPS), g_e)
        gd = d * (w[:, 1:] * (2 * a / (N * W1))[:, None, None]).unsqueeze(-1)        # dL/d d_t
        grad = d.new_empty((E, T1 + 1, B, N))
        if T1 == 0:
            grad.zero_()
        else:
            grad[:, 0] = -gd[:, 0]
            grad[:, -1] = gd[:, -1]
            torch.sub(gd[:, :-1], gd[:, 1:], out=grad[:, 1:-1])
        if rest:
            b = torch.where(use_var, -g_e * raw / (var + EPS) ** 2 * 2 / (N * W0), 0)
            grad.addcmul_(dev, (w * b[:, None, None]).unsqueeze(-1))
        return grad.transpose(1, 2), None, None, None


def _modes(normalize, E: int) -> list[str]:
    modes = [normalize] * E if isinstance(normalize, str) else list(normalize)
    if len(modes) != E or any(m not in NORMALIZATIONS for m in modes):
        raise ValueError(f"normalize: expected one of {', '.join(NORMALIZATIONS)} or one per member ({E}); got {normalize!r}")
    return modes


def tcr_term(state_exbxtxn: torch.Tensor, window_exbxt: torch.Tensor,
             normalize: Normalize | Sequence[Normalize] = "none") -> torch.Tensor:
    """The TCR term per member: (E,).

    ``window_exbxt`` is 1 where step t (and its difference to t-1) counts. ``normalize``: ``none``
    (mean squared one-step change) or ``variance`` (that divided by the state's variance within the
    window), for all members or one entry per member. Members whose window is empty get 0.
    """
    modes = _modes(normalize, state_exbxtxn.shape[0])
    use = torch.tensor([m == "variance" for m in modes], device=state_exbxtxn.device)
    return _Term.apply(state_exbxtxn, window_exbxt.to(state_exbxtxn.dtype), use, "variance" in modes)
