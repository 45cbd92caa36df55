"""The machinery the truncated-gradient rules share (RFLO, rflo.py; e-prop, eprop.py; parts used by
node perturbation, node_perturbation.py).

:class:`TruncatedRule` is the gradient truncated to the direct path for any diagonal-decay
recurrence ``h_t = d * h_{t-1} + c W phi(h_{t-1}) + drive_t`` (the derivation is in rflo.py's
docstring): the learning signal through a feedback matrix, its reverse-time filter (the eligibility
trace read backwards), the local one-step TCR signal, and the online variant with forward traces.
The helpers map update directions of intermediate tensors to the parameters (:func:`chain_to_params`),
sum outer products over trials and time (:func:`outer_sum`) and draw each member's random feedback
from its own stream (:func:`random_feedback`).
"""
from __future__ import annotations

import hashlib
from abc import abstractmethod
from collections.abc import Sequence
from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from ..networks import Network
from ..networks.recurrence import phi, phi_prime, recurrence
from ..regularizers.tcr_loss import tcr_term
from ..schema_base import Schema
from .base import Batch, LearningRule, StepResult
from .bptt import masked_mse, output_mse

#: a member key: an int, or a tuple of ints (e.g. (root seed, seed index))
MemberKey = int | Sequence[int]


def member_key(network: Network, e: int) -> int:
    """A 64-bit key of member ``e``'s current parameters.

    Hashed after casting to float32, so float32 and float64 runs of the same member get the same
    key. Called at construction, when the parameters are the member's initial ones: these depend
    only on (root seed, seed index, model), never on which other members share the ensemble.
    """
    digest = hashlib.sha256()
    for name in sorted(network.params):
        digest.update(name.encode())
        digest.update(network.params[name][e].detach().to(torch.float32).cpu().contiguous().numpy().tobytes())
    return int.from_bytes(digest.digest()[:8], "little")


def seed_sequence(seed: int, key: MemberKey) -> np.random.SeedSequence:
    key = (key,) if isinstance(key, (int, np.integer)) else tuple(key)
    return np.random.SeedSequence([int(seed), *map(int, key)])


def random_feedback(network: Network, seed: int, member_keys: Sequence[MemberKey] | None = None) -> torch.Tensor:
    """Fixed random feedback ``B ~ N(0, 1/N)``: (E, unit, output), member e's from its own stream.

    The stream of member e is ``SeedSequence([seed, *member_keys[e]])``; without ``member_keys`` the
    key is :func:`member_key` (a hash of the member's initial parameters).
    """
    E, N, O = network.n_members, network.n_units, network.n_outputs
    keys = list(member_keys) if member_keys is not None else [member_key(network, e) for e in range(E)]
    if len(keys) != E:
        raise ValueError(f"member_keys: expected one key per ensemble member ({E}), got {len(keys)}")
    mats = [np.random.Generator(np.random.PCG64(seed_sequence(seed, k))).normal(0.0, 1.0 / np.sqrt(N), (N, O))
            for k in keys]
    return torch.as_tensor(np.stack(mats), dtype=network.dtype).to(network.device)


def tcr_local_signal(state_exbxtxn: torch.Tensor, window_exbxt: torch.Tensor, lambda_e: torch.Tensor) -> torch.Tensor:
    """The local one-step TCR gradient ``d(lambda * tcr_term)/dh_t`` with ``h_{t-1}`` held fixed:

    ``2 lambda w_t (h_t - h_{t-1}) / (N sum_{b,t'>=1} w)`` for t >= 1, 0 at t = 0. (E, B, T, N).
    """
    N = state_exbxtxn.shape[-1]
    w = window_exbxt[:, :, 1:].to(state_exbxtxn.dtype)
    scale_e = 2 * lambda_e.to(state_exbxtxn.dtype) / (N * w.sum((1, 2)).clamp_min(1))
    out = torch.zeros_like(state_exbxtxn)
    out[:, :, 1:] = (scale_e[:, None, None] * w)[..., None] * (state_exbxtxn[:, :, 1:] - state_exbxtxn[:, :, :-1])
    return out


def reverse_filter(g_exbxtxn: torch.Tensor, decay: float | torch.Tensor) -> torch.Tensor:
    """``g~_t = g_t + d * g~_{t+1}`` (backwards in time); ``decay`` a number or per unit (E, N)."""
    out = g_exbxtxn.permute(2, 0, 1, 3).contiguous()  # (T, E, B, N): each step one contiguous block
    if isinstance(decay, torch.Tensor):
        d = decay.unsqueeze(1)
        for t in range(out.shape[0] - 2, -1, -1):
            out[t].addcmul_(d, out[t + 1])
    else:
        for t in range(out.shape[0] - 2, -1, -1):
            out[t].add_(out[t + 1], alpha=float(decay))
    return out.permute(1, 2, 0, 3)


def outer_sum(post_exbxtxn: torch.Tensor, pre_exbxtxm: torch.Tensor) -> torch.Tensor:
    """``sum_{b,t} post_t pre_t^T``: (E, N, M), one batched matrix product."""
    E, N, M = post_exbxtxn.shape[0], post_exbxtxn.shape[-1], pre_exbxtxm.shape[-1]
    return torch.bmm(post_exbxtxn.reshape(E, -1, N).transpose(1, 2), pre_exbxtxm.reshape(E, -1, M))


def shift_in(first_exbxn: torch.Tensor, seq_exbxtxn: torch.Tensor) -> torch.Tensor:
    """The sequence delayed by one step: ``[first, x_0, ..., x_{T-2}]`` (the ``t-1`` values)."""
    return torch.cat([first_exbxn.unsqueeze(2), seq_exbxtxn[:, :, :-1]], 2)


def chain_to_params(network: Network, pairs: list[tuple[torch.Tensor, torch.Tensor]],
                    zeros: bool = True) -> dict[str, torch.Tensor]:
    """Map gradients of intermediate tensors (built from ``network.params`` with a graph) to the
    parameters by the chain rule: ``[(tensor, dL/dtensor), ...] -> {name: dL/dparam}``. Parameters
    none of them depend on get zeros (``zeros=True``) or are left out."""
    names = list(network.params)
    pairs = [(t, g) for t, g in pairs if t.requires_grad]
    grads = torch.autograd.grad([t for t, _ in pairs], [network.params[n] for n in names],
                                [g for _, g in pairs], allow_unused=True) if pairs else [None] * len(names)
    out = {n: g for n, g in zip(names, grads) if g is not None}
    if zeros:
        out = {n: out[n] if n in out else torch.zeros_like(network.params[n]) for n in names}
    return out


def bcast(v_e: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v_e.reshape((-1,) + (1,) * (like.dim() - 1))


class _Trace:
    """Eligibility trace ``eps[e, b, i, j] <- d_i eps[e, b, i, j] + x[e, b, j]`` of the synapses
    onto N post units from M presynaptic factors. Stored per presynaptic factor, (E, B, M), when the
    decay is one number (leaky rate: the trace does not depend on the post unit), else (E, B, N, M)."""

    def __init__(self, E: int, B: int, N: int, M: int, per_unit: bool, dtype: torch.dtype,
                 device: torch.device | None = None):
        self.per_unit = per_unit
        self.eps = torch.zeros((E, B, N, M) if per_unit else (E, B, M), dtype=dtype, device=device)

    def update(self, decay: float | torch.Tensor, x_exbxm: torch.Tensor) -> None:
        if self.per_unit:
            self.eps.mul_(decay[:, None, :, None]).add_(x_exbxm.unsqueeze(2))
        else:
            self.eps.mul_(float(decay)).add_(x_exbxm)

    def contract(self, g_exbxn: torch.Tensor) -> torch.Tensor:
        """``sum_b g_i eps_ij``: (E, N, M)."""
        if self.per_unit:
            return torch.einsum("ebn,ebnm->enm", g_exbxn, self.eps)
        return torch.bmm(g_exbxn.transpose(1, 2), self.eps)


class TruncatedConfig(Schema):
    """Options shared by rflo and eprop."""

    feedback: Literal["random", "symmetric"] = Field(
        "random", description="feedback of the output error to the units: random (a fixed B ~ N(0, 1/N) per member) "
                              "or symmetric (the current readout weights transposed; symmetric e-prop)")
    feedback_seed: int = Field(0, ge=0, description="seed of the random feedback, combined with a per-member key "
                                                   "(see docs/learning_rules.md)")
    variant: Literal["trial", "online"] = Field(
        "trial", description="trial: one update per batch from the trial-summed eligibility (reverse-time filter + "
                             "one matrix product); online: recurrent and input weights change at every step by SGD")
    online_lr: float = Field(0.01, gt=0, description="online variant only: SGD learning rate of the in-trial updates "
                                                     "(plain SGD on the batch-mean loss; tune it per model)")


class TruncatedRule(LearningRule):
    """Gradient truncated to the direct path for ``h_t = d * h_{t-1} + c W phi(h_{t-1}) + drive_t``.

    Subclasses say what ``d``, ``c``, the drive and the readout are. Keyword ``member_keys`` (one int
    or tuple of ints per member, e.g. (root seed, seed index)) fixes the random feedback streams;
    without it they are keyed by a hash of each member's initial parameters.
    """

    Config: ClassVar[type[Schema]] = TruncatedConfig
    #: name of the readout weight (output, unit) whose transpose is the symmetric feedback
    readout_name: ClassVar[str]
    #: True: y reads phi(h) (phi' enters the learning signal); False: y reads h
    reads_rate: ClassVar[bool]
    #: name of the trained per-unit decay parameter, if the decay is one (updated in place online)
    decay_name: ClassVar[str] = ""

    def __init__(self, config: Schema, network: Network, *, member_keys: Sequence[MemberKey] | None = None):
        super().__init__(config, network)
        self.feedback_exnxo = (random_feedback(network, config.feedback_seed, member_keys)
                               if config.feedback == "random" else None)

    # -- the model -----------------------------------------------------------------------------
    @property
    @abstractmethod
    def phi_name(self) -> str: ...

    @property
    @abstractmethod
    def rec_scale(self) -> float:
        """c: the recurrent term is c W phi(h_{t-1})."""

    @abstractmethod
    def decay(self) -> float | torch.Tensor:
        """d: a number (not trained) or the (E, N) parameter (with its graph)."""

    @abstractmethod
    def drive(self, inputs_exbxtxi: torch.Tensor, noise_exbxtxn: torch.Tensor | None) -> torch.Tensor:
        """The external drive (E, B, T, N), with its graph to the input parameters."""

    @abstractmethod
    def input_factors(self, u_exbxi: torch.Tensor) -> list[tuple[str, torch.Tensor, float]]:
        """Online variant: for each trained input parameter P (unit, M) with ``drive_i = s sum_j P_ij x_j``,
        (name, x (E, B, M), s). A bias is P (unit,) with x = 1 (M = 1)."""

    @abstractmethod
    def readout(self, x_exbxtxn: torch.Tensor) -> torch.Tensor: ...

    def feedback(self) -> torch.Tensor:
        """B: (E, unit, output)."""
        if self.feedback_exnxo is not None:
            return self.feedback_exnxo
        return self.network.params[self.readout_name].detach().transpose(1, 2)

    # -- resume state --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        """The fixed random feedback (so a resumed run need not re-derive it)."""
        return {} if self.feedback_exnxo is None else {"feedback": self.feedback_exnxo.clone()}

    def load_state_dict(self, d: dict[str, torch.Tensor]) -> None:
        """Restore the feedback; an empty dict (a state saved without it) keeps the re-derived one."""
        if self.feedback_exnxo is not None and "feedback" in d:
            self.feedback_exnxo = d["feedback"].to(self.network.device, self.network.dtype).clone()

    # -- the rule ------------------------------------------------------------------------------
    def step(self, batch: Batch, alive_e: torch.Tensor) -> StepResult:
        if self.config.variant == "online":
            return self.online_step(batch, alive_e)
        return self.trial_step(batch, alive_e)

    def learning_signal(self, e_exbxtxo: torch.Tensor, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """``g = [phi'(h) *] (B e)``: the output error sent back to the units by the feedback."""
        g = torch.einsum("ebto,eno->ebtn", e_exbxtxo, self.feedback())
        return g * phi_prime(self.phi_name, h, r) if self.reads_rate else g

    def trial_step(self, batch: Batch, alive_e: torch.Tensor) -> StepResult:
        net = self.network
        u, noise = batch.inputs_exbxtxi, batch.noise_exbxtxn
        E, B = u.shape[:2]
        with torch.enable_grad():
            decay, W, drive = self.decay(), net.recurrent_weights(), self.drive(u, noise)
        d = decay.detach() if isinstance(decay, torch.Tensor) else decay
        c = self.rec_scale
        h0 = torch.zeros(E, B, net.n_units, dtype=net.dtype, device=u.device)
        pre = info = None
        with torch.no_grad():
            if getattr(net, "plasticity", None) is not None:  # rate networks with TCR short-term plasticity
                h, r, info = net.recur(c * W.detach(), drive.detach())
                pre = info.get("pre_exbxtxn")  # s * r under Tsodyks-Markram STP (the synapses' presynaptic factor)
            else:
                d_exn = d if isinstance(d, torch.Tensor) else torch.full((E, net.n_units), d, dtype=net.dtype, device=u.device)
                h, r = recurrence(d_exn, c * W.detach(), drive.detach(), h0, self.phi_name)
        with torch.enable_grad():
            y = self.readout(r if self.reads_rate else h)
            task = masked_mse(y, batch.targets_exbxtxo, batch.mask_exbxtxo)
            term = tcr_term(h, batch.window_exbxt)
            loss = task.detach() + batch.lambda_e * term
            live = alive_e & torch.isfinite(loss)
            (e,) = torch.autograd.grad(torch.where(live, task, 0).sum(), [y], retain_graph=True)
        # G = dL/d drive_t along the direct path: filtered task signal + unfiltered local TCR signal
        G = reverse_filter(self.learning_signal(e, h, r), d)
        G = G + tcr_local_signal(h, batch.window_exbxt, torch.where(live, batch.lambda_e, 0))
        pairs = [(W, c * outer_sum(G, shift_in(phi(self.phi_name, h0), r if pre is None else pre))), (drive, G), (y, e)]
        if isinstance(decay, torch.Tensor):
            pairs.append((decay, (G * shift_in(h0, h)).sum((1, 2))))
        with torch.enable_grad():
            grads = chain_to_params(net, pairs)
        grads = {k: torch.where(bcast(live, g), g, 0) for k, g in grads.items()}
        return StepResult(loss, task.detach(), term.detach(), grads, plasticity=info,
                          task_loss_exo=output_mse(y, batch.targets_exbxtxo, batch.mask_exbxtxo))

    def online_step(self, batch: Batch, alive_e: torch.Tensor) -> StepResult:
        """Run the trial step by step, updating the recurrent and input parameters (and a trained
        decay) in place after every step; return the loss of that trajectory, the readout's exact
        gradient, and zeros for the parameters updated in place."""
        net, cfg = self.network, self.config
        u, noise = batch.inputs_exbxtxi, batch.noise_exbxtxn
        E, B, T, _ = u.shape
        N, c, lr = net.n_units, self.rec_scale, float(cfg.online_lr)
        dt = net.dtype
        alive = alive_e.to(dt)
        mask, target = batch.mask_exbxtxo, batch.targets_exbxtxo
        n_scored_e = mask.sum((1, 2, 3)).clamp_min(1)
        w = batch.window_exbxt.to(dt)
        tcr_scale_e = 2 * batch.lambda_e * alive / (N * w[:, :, 1:].sum((1, 2)).clamp_min(1))
        per_unit = isinstance(self.decay(), torch.Tensor)
        with torch.no_grad():
            factors0 = self.input_factors(u[:, :, 0])
        rec_trace = _Trace(E, B, N, N, per_unit, dt, u.device)
        in_traces = {name: _Trace(E, B, N, x.shape[-1], per_unit, dt, u.device) for name, x, _ in factors0}
        decay_trace = torch.zeros(E, B, N, dtype=dt, device=u.device)
        h = torch.zeros(E, B, N, dtype=dt, device=u.device)
        r_prev = phi(self.phi_name, h)
        hs, rs = [], []
        for t in range(T):
            with torch.no_grad():
                decay = self.decay()
                d = decay.detach() if isinstance(decay, torch.Tensor) else decay
                W = net.recurrent_weights()
                drive_t = self.drive(u[:, :, t:t + 1], None if noise is None else noise[:, :, t:t + 1])[:, :, 0]
                h_prev = h
                h = (d.unsqueeze(1) if per_unit else d) * h_prev + c * torch.bmm(r_prev, W.transpose(1, 2)) + drive_t
                r = phi(self.phi_name, h)
                # forward eligibility traces (eps_t = d eps_{t-1} + d h_t / d P directly)
                rec_trace.update(d, c * r_prev)
                factors = self.input_factors(u[:, :, t])
                for name, x, s in factors:
                    in_traces[name].update(d, s * x)
                if per_unit:
                    decay_trace.mul_(d.unsqueeze(1)).add_(h_prev)
                # learning signal at step t (readout through the feedback) and local TCR signal
                y_t = self.readout((r if self.reads_rate else h)[:, :, None])
                e_t = 2 * mask[:, :, t:t + 1] * (y_t - target[:, :, t:t + 1]) / bcast(n_scored_e, y_t) * bcast(alive, y_t)
                g = self.learning_signal(e_t, h[:, :, None], r[:, :, None])[:, :, 0]
                tc = (tcr_scale_e[:, None] * w[:, :, t])[..., None] * (h - h_prev) if t > 0 else torch.zeros_like(h)
                dW = rec_trace.contract(g) + c * torch.bmm(tc.transpose(1, 2), r_prev)
            with torch.enable_grad():
                upd = chain_to_params(net, [(net.recurrent_weights(), dW)], zeros=False)
            with torch.no_grad():
                for name, dP in upd.items():
                    net.params[name].sub_(lr * dP)
                for name, x, s in factors:
                    dP = in_traces[name].contract(g) + s * torch.bmm(tc.transpose(1, 2), x)
                    net.params[name].sub_(lr * dP.reshape(net.params[name].shape))
                if per_unit:
                    name = self.decay_name
                    net.params[name].sub_(lr * (g * decay_trace + tc * h_prev).sum(1))
            hs.append(h)
            rs.append(r)
            r_prev = r
        h_all, r_all = torch.stack(hs, 2), torch.stack(rs, 2)
        with torch.enable_grad():
            y = self.readout(r_all if self.reads_rate else h_all)
            task = masked_mse(y, target, mask)
            term = tcr_term(h_all, batch.window_exbxt)
            loss = task.detach() + batch.lambda_e * term
            live = alive_e & torch.isfinite(loss)
            (e,) = torch.autograd.grad(torch.where(live, task, 0).sum(), [y], retain_graph=True)
            readout_grads = chain_to_params(net, [(y, e)], zeros=False)
        # the parameters changed in place get zero update directions: the optimizer must not apply them again
        grads = {n: torch.zeros_like(p) for n, p in net.params.items()}
        grads.update({n: torch.where(bcast(live, g), g, 0) for n, g in readout_grads.items()})
        return StepResult(loss, task.detach(), term.detach(), grads, task_loss_exo=output_mse(y, target, mask))
