"""Optimizers for ensembles: per-member learning rates and per-member gradient clipping.

Every operation is elementwise within a member, so a member's trajectory does not depend on the
others (tested: ensemble training equals training each network alone).
"""
from __future__ import annotations

import numpy as np
import torch


def _bcast(v_e: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v_e.reshape((-1,) + (1,) * (like.dim() - 1))


def grad_norms(grads: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-member L2 norm of the gradient over all parameters: (E,), summed in the gradients' dtype
    (:func:`without_overflow` for members whose sum of squares overflows)."""
    return without_overflow(torch.sqrt(sum(g.flatten(1).square().sum(1) for g in grads.values())), grads.values())


def without_overflow(norms_e: torch.Tensor, tensors) -> torch.Tensor:
    """``norms_e`` (E,), per-member L2 norms over ``tensors`` (leading ensemble axis; None: skipped)
    summed in their dtype, with the members whose sum of squares overflowed (float32: norms above
    ~1.8e19) while their entries are finite computed again as ``m sqrt(sum (g / m)^2)``, ``m`` the
    member's largest entry: inf only where the norm itself exceeds the dtype's range. The other members'
    norms are returned as given, bit for bit."""
    over = torch.isinf(norms_e)
    # computed for every member and selected (no branch on the values: no host sync on a GPU, and
    # the meta device, which has no values, runs it too)
    flat = [t.detach().flatten(1) for t in tensors if t is not None]
    m = torch.stack([t.abs().amax(1) for t in flat]).amax(0)
    redo = over & torch.isfinite(m) & (m > 0)
    m = torch.where(redo, m, torch.ones_like(m))[:, None]
    scaled = m[:, 0] * torch.sqrt(sum((t / m).square().sum(1) for t in flat))
    return torch.where(redo, scaled, norms_e)


def clip_per_member(grads: dict[str, torch.Tensor], max_norm_e: torch.Tensor) -> torch.Tensor:
    """Scale each member's gradient to at most ``max_norm_e`` (inf: no clipping). Returns the norms."""
    norms = grad_norms(grads)
    scale = torch.clamp(max_norm_e / (norms + 1e-12), max=1.0)
    for g in grads.values():
        g.mul_(_bcast(scale, g))
    return norms


class EnsembleOptimizer:
    """Adam or SGD (with momentum) over a dict of ensemble parameters, lr per member."""

    def __init__(self, params: dict[str, torch.Tensor], kind: str, lr_e, betas=(0.9, 0.999), momentum=0.0,
                 eps: float = 1e-8):
        self.params, self.kind = params, kind
        first = next(iter(params.values()))
        # (made on the CPU, as the numbers always were, then moved to the parameters' device)
        self.lr_e = torch.as_tensor(np.asarray(lr_e, float), dtype=first.dtype, device="cpu").to(first.device)
        self.betas, self.momentum, self.eps = betas, momentum, eps
        self.step_count = 0
        self.state = {f"{n}.{s}": torch.zeros_like(p) for n, p in params.items()
                      for s in (("m", "v") if kind == "adam" else ("m",))}

    @torch.no_grad()
    def step(self, grads: dict[str, torch.Tensor]) -> None:
        self.step_count += 1
        k = self.step_count
        for name, p in self.params.items():
            g = grads[name]
            lr = _bcast(self.lr_e, p)
            m = self.state[f"{name}.m"]
            if self.kind == "adam":
                b1, b2 = self.betas
                v = self.state[f"{name}.v"]
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = (v / (1 - b2 ** k)).sqrt_().add_(self.eps)
                p.sub_(lr * (m / (1 - b1 ** k)) / denom)
            else:
                m.mul_(self.momentum).add_(g)
                p.sub_(lr * m)

    def reset_members(self, dead_e: torch.Tensor) -> None:
        """Zero the optimizer state of some members (used when a member diverged)."""
        for s in self.state.values():
            s[dead_e] = 0

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, **{k: v.clone() for k, v in self.state.items()}}

    def load_state_dict(self, d: dict) -> None:
        self.step_count = int(d["step_count"])
        for k in self.state:
            self.state[k].copy_(d[k])
