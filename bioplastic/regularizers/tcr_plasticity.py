"""Temporal consistency regularization as short-term synaptic plasticity (science.md §3).

**Anti-Hebbian fast efficacies** (``rule: anti_hebbian``). Every recurrent synapse carries a fast
efficacy ``F[i, j]`` per trial on top of its long-term weight; it starts at 0 in every trial::

    h_t = (1 - a) h_{t-1} + a ((W + F_{t-1}) r_{t-1} + W_in u_t + b) + noise_t,     r_t = phi(h_t)
    F_t = clip((1 - dt / tau_F) F_{t-1} - eta_F (h_t - h_{t-1}) r_{t-1}^T,  -F_max, F_max)   (clip optional)

The update opposes the change of the postsynaptic state, so activity is held where it is. Up to the
factor ``a`` it is minus the one-step gradient of ``1/2 ||h_t - h_{t-1}||^2`` with respect to ``W``
(with ``h_{t-1}`` held fixed, ``dh_t / dW_ij = a r_{t-1, j}``): ``dF = -(eta_F / a) grad`` (tested).

**Tsodyks-Markram facilitation and depression** (``rule: tsodyks_markram``; Mongillo et al. 2008,
rate form), per presynaptic unit j, with the presynaptic rate ``R_j = max_rate_hz * max(r_j, 0)``::

    u_t = clip(u_{t-1} + dt ((U - u_{t-1}) / tau_f + U (1 - u_{t-1}) R_{t-1}), 0, 1),    u_{-1} = U
    x_t = clip(x_{t-1} + dt ((1 - x_{t-1}) / tau_d - u_{t-1} x_{t-1} R_{t-1}), 0, 1),    x_{-1} = 1
    h_t = (1 - a) h_{t-1} + a (W (s_{t-1} * r_{t-1}) + W_in u_t + b) + noise_t,         s = u x / U

(``s = 1`` at rest, so an idle synapse has its long-term weight.)

**Gradients.** The plasticity is not trained: under BPTT the fast variables (``F``, or ``u`` and
``x``) enter the graph as constants - the gradient flows through ``h -> (W + F) r -> h`` with ``F``
held at its simulated values, but not into ``F``'s own dependence on the states. The hand-written
backward pass recomputes ``F`` segment by segment from checkpoints instead of storing it at every
step, so memory grows with ``sqrt(T)`` copies of ``F`` (E x B x N x N each), not ``T``.

**Freeze-in** (``kappa > 0``): after every iteration ``W <- W + kappa * mean_trials F_end``.
**Weight noise** (``sigma_w > 0``): ``W <- W + sigma_w xi / sqrt(N)``, ``xi ~ N(0, 1)`` from the
``weight_noise`` stream. Both are :meth:`ShortTermPlasticity.after_update`, which the training loop
calls after every weight update with the trial-end efficacies of that iteration's simulation (the
learning rule returns them in its ``StepResult.plasticity``). ``eta_F(k) = eta_F * s(k)`` follows a
schedule (the family of the TCR loss strength, including the adaptive controllers), run by the loop.

Which model kinds carry the plasticity, and which can take freeze-in and weight noise, their network
classes say (``supports_plasticity``, ``supports_freeze_in``; networks/base.py).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import Field, model_validator

from ..networks import Network, kinds_supporting
from ..networks.recurrence import _phi_step, phi, phi_prime
from ..schema_base import Schema
from ..seeds import torch_generator
from .schedules import ConstantConfig, ScheduleConfig

#: model kinds whose recurrent synapses carry the plasticity (derived from the network classes, for messages)
PLASTIC_KINDS = kinds_supporting("supports_plasticity")
#: model kinds whose recurrent weight is a trained matrix that freeze-in can write into (derived, for messages)
FREEZE_IN_KINDS = kinds_supporting("supports_freeze_in")


class PlasticityConfig(Schema):
    """TCR as short-term synaptic plasticity (used when ``tcr.form`` is ``plasticity``)."""

    rule: Literal["anti_hebbian", "tsodyks_markram"] = Field(
        "anti_hebbian", description="anti_hebbian: the differential anti-Hebbian fast efficacy F (the TCR form of science.md §3); "
                                    "tsodyks_markram: per-presynaptic facilitation and depression (Mongillo et al. 2008)")
    tau_F_ms: float = Field(500.0, gt=0, description="anti_hebbian: decay time constant of F (ms)")
    eta_F: float = Field(0.01, ge=0, description="anti_hebbian: base learning rate eta_F of the fast efficacies (eta_F(k) = eta_F * schedule); the per-step feedback gain is about alpha * eta_F * |r|^2, keep it below 1")
    F_max: float | None = Field(None, gt=0, description="anti_hebbian: clip |F| <= F_max (same units as W); null: no clip (the decay already bounds |F| by eta_F max|dh| max|r| tau_F / dt), which allows a faster factorised simulation")
    kappa: float = Field(0.0, ge=0, description="freeze-in: W <- W + kappa * mean over trials of F at trial end, every iteration (0: pure short-term plasticity)")
    sigma_w: float = Field(0.0, ge=0, description="weight noise: W <- W + sigma_w * xi / sqrt(N) every iteration (xi standard normal)")
    schedule: ScheduleConfig = Field(default_factory=ConstantConfig,
                                     description="eta_F(k) = eta_F * s(k): constant, warmup, linear_decay, cosine_decay, step, adaptive or activity_floor")
    gradient: Literal["detached", "exact"] = Field(
        "detached", description="what BPTT's gradient sees of the fast variables (F; u and x): detached: constants at their "
                                "simulated values (the fast hand-written path); exact: also their dependence on the states, "
                                "through a plain autograd loop, one network at a time (memory grows with E B T N^2; ~1.5x slower). "
                                "bptt only (docs/tcr_plasticity.md, \"Where the detached gradient fails\")")
    U: float = Field(0.2, gt=0, le=1, description="tsodyks_markram: baseline release probability U")
    tau_facilitation_ms: float = Field(1500.0, gt=0, description="tsodyks_markram: facilitation time constant tau_f (ms)")
    tau_depression_ms: float = Field(200.0, gt=0, description="tsodyks_markram: depression (recovery) time constant tau_d (ms)")
    max_rate_hz: float = Field(50.0, gt=0, description="tsodyks_markram: presynaptic rate (Hz) at r = 1; R = max_rate_hz * max(r, 0)")

    @model_validator(mode="after")
    def _tm_fields(self):
        if self.rule == "tsodyks_markram" and (self.kappa > 0 or self.sigma_w > 0):
            raise ValueError("kappa (freeze-in) and sigma_w act on the anti_hebbian efficacies F; "
                             "tsodyks_markram has no F: set them to 0 or use rule: anti_hebbian")
        return self


class ShortTermPlasticity:
    """The plasticity of an ensemble's recurrent synapses: parameters and the current ``eta_F`` per member.

    ``eta_e`` (E,) is set by the training loop every iteration (schedule); outside training it is
    the base ``eta_F``. :meth:`run` simulates the recurrence and returns the plasticity's signatures;
    :meth:`after_update` applies freeze-in and weight noise to the long-term weights.
    """

    def __init__(self, config: PlasticityConfig, dt_ms: float, n_members: int, dtype: torch.dtype):
        self.config = config
        self.dt_ms = float(dt_ms)
        self.dtype = dtype
        self.eta_e = torch.full((n_members,), float(config.eta_F), dtype=dtype)
        #: return each trial's end efficacies ``F_end_exbxnxn`` (costs one E B N^2 T product when unclipped)
        self.record_F_end = True
        #: also return ``F_abs_exbxt``, the mean |F_t| over synapses at every step (forms F at every step)
        self.record_F_abs = False

    @classmethod
    def from_tcr(cls, tcr, network: Network) -> ShortTermPlasticity | None:
        """The plasticity ``tcr`` (a TCRConfig, or any object with ``form`` and ``plasticity``) gives
        ``network``'s recurrent synapses: None unless ``tcr.form == "plasticity"``."""
        if tcr.form != "plasticity":
            return None
        return cls(tcr.plasticity, network.dt_ms, network.n_members, network.dtype)

    def record_for_training(self) -> None:
        """Record in training only what :meth:`after_update` needs: the trial-end efficacies (one
        product per batch) only for freeze-in (``kappa > 0``)."""
        self.record_F_end = self.config.kappa > 0

    @property
    def rule(self) -> str:
        return self.config.rule

    def run(self, decay_exn, Wc_exnxn, drive_exbxtxn, h0_exbxn, phi_name: str, c: float):
        """The recurrence with plasticity; ``Wc = c W`` (c = alpha). Returns (h, r, info) where info
        holds detached signatures: ``F_end_exbxnxn`` (anti_hebbian, each trial's efficacies at its
        end, when ``record_F_end``) and ``F_abs_exbxt`` (mean |F_t| per step, when ``record_F_abs``), or ``efficacy_exbxtxn`` and ``pre_exbxtxn`` (tsodyks_markram:
        s and s * r per step)."""
        E = drive_exbxtxn.shape[0]
        if self.config.gradient == "exact" and torch.is_grad_enabled() and any(
                t.requires_grad for t in (decay_exn, Wc_exnxn, drive_exbxtxn, h0_exbxn)):
            # (with no gradient to take - evaluation, analysis - the fast path simulates the same recurrence)
            return self._run_exact(decay_exn, Wc_exnxn, drive_exbxtxn, h0_exbxn, phi_name, c)
        size = self.members_per_pass(drive_exbxtxn)
        if size >= E:
            info: dict[str, torch.Tensor] = {}
            h, r = _PlasticRecurrence.apply(decay_exn, Wc_exnxn, drive_exbxtxn, h0_exbxn, phi_name, c, self, info)
            return h, r, info
        hs, rs, infos = [], [], []
        for e0 in range(0, E, size):
            part = slice(e0, e0 + size)
            info = {}
            h, r = _PlasticRecurrence.apply(decay_exn[part], Wc_exnxn[part], drive_exbxtxn[part], h0_exbxn[part],
                                            phi_name, c, _Members(self, part), info)
            hs.append(h), rs.append(r), infos.append(info)
        return _joined(hs, rs, infos)

    def _run_exact(self, decay_exn, Wc_exnxn, drive_exbxtxn, h0_exbxn, phi_name: str, c: float):
        """:meth:`run` with ``gradient: exact``: the autograd loop with the fast variables in the graph,
        one member at a time (so that a member's numbers do not depend on its ensemble mates)."""
        hs, rs, infos = [], [], []
        for e in range(drive_exbxtxn.shape[0]):
            part = slice(e, e + 1)
            h, r, info = plastic_loop(decay_exn[part], Wc_exnxn[part], drive_exbxtxn[part], h0_exbxn[part], phi_name, c,
                                      _Members(self, part), detach=False, record_F_abs=self.record_F_abs)
            if self.config.rule == "anti_hebbian" and not self.record_F_end:
                info.pop("F_end_exbxnxn")
            hs.append(h), rs.append(r), infos.append(info)
        return _joined(hs, rs, infos)

    #: bytes of per-trial history (anti_hebbian: rates and state steps) one pass may hold; more members
    #: than fit are simulated one group after another, which keeps the history of each step's products
    #: in cache (measured: an ensemble of 8 at N 100, B 64, T 100 ran ~1.8x faster per network)
    PASS_BYTES = 8 * 2 ** 20

    def members_per_pass(self, drive_exbxtxn: torch.Tensor) -> int:
        """How many members one simulation pass takes (all of them for tsodyks_markram, whose
        per-step work has no history)."""
        E, B, T, N = drive_exbxtxn.shape
        if self.config.rule == "tsodyks_markram":
            return E
        per_member = 2 * B * (T + 1) * N * drive_exbxtxn.element_size()
        return min(E, max(1, self.PASS_BYTES // per_member))

    @torch.no_grad()
    def after_update(self, network: Network, info: dict[str, torch.Tensor] | None, alive_e: torch.Tensor, *,
                     root_seed: int, seed_indices: Sequence[int], iteration: int) -> torch.Tensor:
        """After the weight update of ``iteration`` (science.md §3): freeze-in, then weight noise, in
        place on ``network.params["W"]``, for the members with ``alive_e``. ``info`` holds the
        signatures of the iteration's simulation (``StepResult.plasticity``); member e's noise comes
        from the stream ``("weight_noise", seed_indices[e], iteration)`` of ``root_seed``.

        Returns the mean |F_end| per member (E,). Both act only when ``info`` holds the trial-end
        efficacies (recorded in training when ``kappa > 0``, :meth:`record_for_training`); otherwise
        nothing changes and the result is NaN."""
        E = len(seed_indices)
        if info is None or "F_end_exbxnxn" not in info:
            return torch.full((E,), float("nan"), dtype=self.dtype, device=network.device)
        F_end = info["F_end_exbxnxn"]
        self.freeze_in(network, F_end, alive_e)
        self.weight_noise(network, alive_e, root_seed=root_seed, seed_indices=seed_indices, iteration=iteration)
        return F_end.abs().mean((1, 2, 3))

    @torch.no_grad()
    def freeze_in(self, network: Network, F_end_exbxnxn: torch.Tensor, alive_e: torch.Tensor) -> None:
        """``W <- W + kappa * mean_trials F_end`` for the members alive (nothing when ``kappa = 0``)."""
        if self.config.kappa > 0:
            alive = alive_e.reshape(-1, 1, 1)
            network.params["W"].add_(torch.where(alive, self.config.kappa * F_end_exbxnxn.mean(1), 0))

    @torch.no_grad()
    def weight_noise(self, network: Network, alive_e: torch.Tensor, *, root_seed: int, seed_indices: Sequence[int],
                     iteration: int) -> None:
        """``W <- W + sigma_w xi / sqrt(N)`` for the members alive (nothing when ``sigma_w = 0``)."""
        if self.config.sigma_w > 0:
            N = network.n_units
            xi = torch.stack([torch.randn((N, N), generator=torch_generator(root_seed, "weight_noise", s, iteration),
                                          dtype=self.dtype, device="cpu") for s in seed_indices])
            xi = xi.to(network.params["W"].device)  # drawn on the CPU: the same noise on every device
            alive = alive_e.reshape(-1, 1, 1)
            network.params["W"].add_(torch.where(alive, (self.config.sigma_w / N ** 0.5) * xi, 0))


class _Members:
    """The plasticity of a group of members (``part`` of the ensemble), as the simulation reads it."""

    def __init__(self, stp: ShortTermPlasticity, part: slice):
        self.config, self.dt_ms = stp.config, stp.dt_ms
        self.eta_e = stp.eta_e[part]
        self.record_F_end, self.record_F_abs = stp.record_F_end, stp.record_F_abs


def _joined(hs, rs, infos):
    """(h, r, info) of groups of members simulated one after another, joined along the ensemble axis."""
    return torch.cat(hs), torch.cat(rs), {k: torch.cat([i[k] for i in infos]) for k in infos[0]}


def attach_plasticity(net: Network, tcr) -> ShortTermPlasticity | None:
    """Give ``net`` the short-term plasticity of the TCR settings ``tcr`` (a TCRConfig, or any object
    with ``form`` and ``plasticity``; none unless ``tcr.form == "plasticity"``) and return it."""
    net.plasticity = ShortTermPlasticity.from_tcr(tcr, net)
    return net.plasticity


# -- the recurrence with fast variables ---------------------------------------------------------
def _segment_length(T: int) -> int:
    return max(1, int(math.ceil(math.sqrt(T))))


class _PlasticRecurrence(torch.autograd.Function):
    """``h_t = d h_{t-1} + Wc (s_{t-1} r_{t-1}) + c F_{t-1} r_{t-1} + drive_t``; the fast variables
    (``F``; ``s = u x / U``) are constants for the gradient (see the module docstring).

    Backward, with delta_t = dL/dh_t:
    ``delta_t = g_t + d delta_{t+1} + phi'(h_t) (s_t (Wc^T delta_{t+1}) + c F_t^T delta_{t+1})``,
    ``dWc = sum_t delta_t (s_{t-1} r_{t-1})^T``.

    Three paths. **Unclipped anti-Hebbian** (``F_max`` null, the default): ``F`` is never formed;
    with ``rho = 1 - dt / tau_F`` and ``dh_s = h_s - h_{s-1}``,
    ``F_{t-1} r_{t-1} = -eta sum_{s<t} rho^(t-1-s) dh_s (r_{s-1} . r_{t-1})`` and
    ``F_{t-1}^T delta = -eta sum_{s<t} rho^(t-1-s) (dh_s . delta) r_{s-1}``: two small batched matrix
    products per step (O(T^2 N) per trial instead of O(T N^2)). **Clipped** (``F_max`` set): ``F``
    is stepped explicitly (E B N^2 per step) and recomputed per segment from sqrt(T) checkpoints in
    the backward pass. **Tsodyks-Markram**: per-presynaptic efficacies ``s`` (E, B, T, N).
    """

    @staticmethod
    def forward(ctx, decay_exn, Wc_exnxn, drive_exbxtxn, h0_exbxn, phi_name, c, stp, info):
        E, B, T, N = drive_exbxtxn.shape
        cfg = stp.config
        mode = "tm" if cfg.rule == "tsodyks_markram" else ("dense" if cfg.F_max is not None else "factored")
        Wt = Wc_exnxn.transpose(1, 2).contiguous()
        d = decay_exn.unsqueeze(1)
        hs = drive_exbxtxn.clone(memory_format=torch.contiguous_format)
        R = drive_exbxtxn.new_empty((E, B, T + 1, N))  # R[:, :, t] = r_{t-1}
        _phi_step(phi_name, h0_exbxn, R[:, :, 0])
        Rv = R.view(E * B, T + 1, N)
        saved, F_ckpt, K = [], [], _segment_length(T)
        if mode != "tm":
            rho = 1.0 - stp.dt_ms / cfg.tau_F_ms
            eta = stp.eta_e.to(hs.dtype)[:, None, None]  # (E, 1, 1)
            rev = rho ** torch.arange(T - 1, -1, -1, dtype=torch.float64, device=hs.device).to(hs.dtype)  # rho^(T-1) .. rho^0
            DH = drive_exbxtxn.new_empty((E, B, T, N))  # dh_t = h_t - h_{t-1}
            DHv = DH.view(E * B, T, N)
            ceta = (-c * eta).expand(E, B, 1).reshape(E * B, 1, 1)
            scale = ceta * rev  # (E B, 1, T): -c eta rho^(t-1-s), the weight of step s's increment at step t
            F_abs = drive_exbxtxn.new_empty((E, B, T)) if stp.record_F_abs else None
            if mode == "dense":
                F = drive_exbxtxn.new_zeros((E * B, N, N))
        else:
            U, dt = cfg.U, stp.dt_ms
            u = hs.new_full((E, B, N), U)
            x = hs.new_ones((E, B, N))
            # During the run S holds U s = u x (the 1 / U moves into the step weights) and P = U s r
            S = drive_exbxtxn.new_empty((E, B, T + 1, N))  # S[:, :, t] = U s_{t-1}
            S[:, :, 0] = U
            P = drive_exbxtxn.new_empty((E, B, T + 1, N))  # P[:, :, t] = U s_{t-1} r_{t-1}, the synapses' input
            Wt = Wt / U
            rate = dt * cfg.max_rate_hz / 1000.0
            # u_t = u (1 - dt/tau_f - U R) + (dt U/tau_f + U R) and x_t = x (1 - dt/tau_d - u R) + dt/tau_d
            # (the update of the module docstring, rearranged into few in-place operations per step)
            keep_u, rest_u = hs.new_tensor(1.0 - dt / cfg.tau_facilitation_ms), dt * U / cfg.tau_facilitation_ms
            keep_x, rest_x = hs.new_tensor(1.0 - dt / cfg.tau_depression_ms), hs.new_tensor(dt / cfg.tau_depression_ms)
            q, g = hs.new_empty((E, B, N)), hs.new_empty((E, B, N))
        h_prev = h0_exbxn
        for t in range(T):
            r_prev = R[:, :, t]
            ht = hs[:, :, t]
            ht.addcmul_(d, h_prev)
            if mode == "tm":
                ht.baddbmm_(torch.mul(r_prev, S[:, :, t], out=P[:, :, t]), Wt)
            else:
                ht.baddbmm_(r_prev, Wt)
                if mode == "dense":
                    if t % K == 0:
                        F_ckpt.append(F.clone())
                    ht.add_(torch.bmm(F, r_prev.reshape(E * B, N, 1)).view(E, B, N), alpha=c)
                elif t > 0:  # row-vector products: batched BLAS reads the history without copies
                    # (torch's in-place baddbmm_ loops over the E B trials one product at a time)
                    coef = torch.bmm(Rv[:, t:t + 1], Rv[:, :t].transpose(1, 2)).mul_(scale[..., T - t:])
                    ht.add_(torch.bmm(coef, DHv[:, :t]).view(E, B, N))
            _phi_step(phi_name, ht, R[:, :, t + 1])
            if mode != "tm":
                dh = torch.sub(ht, h_prev, out=DH[:, :, t])
                if mode == "dense":
                    F.baddbmm_(dh.mul(-eta).view(E * B, N, 1), r_prev.reshape(E * B, 1, N), beta=rho).clamp_(-cfg.F_max, cfg.F_max)
                    if stp.record_F_abs:
                        F_abs[:, :, t] = F.abs().mean((1, 2)).view(E, B)
            else:
                torch.clamp(r_prev, min=0, out=q).mul_(U * rate)  # U R_{t-1} dt
                torch.addcmul(keep_x, u, q, value=-1 / U, out=g)  # with u_{t-1}
                torch.addcmul(rest_x, x, g, out=x).clamp_(0, 1)
                torch.sub(keep_u, q, out=g)
                torch.addcmul(q.add_(rest_u), u, g, out=u).clamp_(0, 1)
                torch.mul(u, x, out=S[:, :, t + 1])
            h_prev = ht
        if mode == "tm":
            torch.mul(R[:, :, T], S[:, :, T], out=P[:, :, T])
            S.div_(U)  # s
            P.div_(U)  # s r
            info["efficacy_exbxtxn"] = S[:, :, 1:].clone()
            info["pre_exbxtxn"] = P[:, :, 1:].clone()
            saved = [S, P]
        else:
            if stp.record_F_end:
                if mode == "dense":
                    info["F_end_exbxnxn"] = F.view(E, B, N, N).clone()
                else:  # F_{T-1} = -eta sum_s rho^(T-1-s) dh_s r_{s-1}^T
                    Fe = torch.bmm((DHv * rev.view(1, T, 1)).transpose(1, 2), Rv[:, :T])
                    info["F_end_exbxnxn"] = Fe.view(E, B, N, N).mul_(-eta[..., None])
            if stp.record_F_abs:
                if mode == "factored":  # F is not formed during the run: step it here, for the record only
                    Fr = drive_exbxtxn.new_zeros((E * B, N, N))
                    for t in range(T):
                        Fr.baddbmm_(DH[:, :, t].mul(-eta).view(E * B, N, 1), R[:, :, t].reshape(E * B, 1, N), beta=rho)
                        F_abs[:, :, t] = Fr.abs().mean((1, 2)).view(E, B)
                info["F_abs_exbxt"] = F_abs
            saved = [DH]
            ctx.scale, ctx.rho, ctx.eta, ctx.F_max = scale, rho, eta, cfg.F_max
        ctx.save_for_backward(decay_exn, Wc_exnxn, h0_exbxn, hs, R, *saved)
        ctx.set_materialize_grads(False)  # an unused output's gradient comes as None, not a tensor of zeros
        ctx.phi_name, ctx.c, ctx.mode, ctx.K, ctx.F_ckpt = phi_name, c, mode, K, F_ckpt
        return hs, R[:, :, 1:]

    @staticmethod
    def _segment(ctx, DH, R, t0: int, t1: int) -> list[torch.Tensor]:
        """Dense path: F_{t-1} (the efficacy used in step t) for t = t0 .. t1, from the checkpoint at t0."""
        E, B, _, N = DH.shape
        F = ctx.F_ckpt[t0 // ctx.K].clone()
        out = [F.clone()]
        for t in range(t0, t1):
            F.baddbmm_(DH[:, :, t].mul(-ctx.eta).view(E * B, N, 1), R[:, :, t].reshape(E * B, 1, N),
                       beta=ctx.rho).clamp_(-ctx.F_max, ctx.F_max)
            out.append(F.clone())
        return out

    @staticmethod
    def backward(ctx, grad_h, grad_r):
        decay, Wc, h0, hs, R, *rest = ctx.saved_tensors
        E, B, T, N = hs.shape
        name, c, K, mode = ctx.phi_name, ctx.c, ctx.K, ctx.mode
        S, P = (rest[0], rest[1]) if mode == "tm" else (None, R)
        DH = rest[0] if mode != "tm" else None
        d = decay.unsqueeze(1)
        D = hs.new_zeros((E, B, T + 1, N))
        if grad_h is not None:
            D[:, :, :T] = grad_h
        dphi = phi_prime(name, hs, R[:, :, 1:])  # phi'(h_t) for every t at once
        if grad_r is not None:
            D[:, :, :T].addcmul_(grad_r, dphi)
        if mode == "factored":
            DHv, Rv = DH.view(E * B, T, N), R.view(E * B, T + 1, N)
        Fs: dict[int, torch.Tensor] = {}
        m = None  # dL/d r_t through step t + 1
        for t in range(T - 1, -1, -1):
            if mode == "dense" and t not in Fs:
                t0 = (t // K) * K
                Fs = {t0 + i: F for i, F in enumerate(_PlasticRecurrence._segment(ctx, DH, R, t0, t))}
            delta = D[:, :, t]
            if m is not None:
                delta.addcmul_(d, D[:, :, t + 1]).addcmul_(dphi[:, :, t], m)
            # dL/d r_{t-1} through step t: s_{t-1} (Wc^T delta_t) + c F_{t-1}^T delta_t
            m = torch.bmm(delta, Wc)
            if mode == "tm":
                m.mul_(S[:, :, t])
            elif mode == "dense":
                m.add_(torch.bmm(delta.reshape(E * B, 1, N), Fs[t]).view(E, B, N), alpha=c)
            elif t > 0:
                coef = torch.bmm(delta.reshape(E * B, 1, N), DHv[:, :t].transpose(1, 2)).mul_(ctx.scale[..., T - t:])
                m.add_(torch.bmm(coef, Rv[:, :t]).view(E, B, N))
        dh0 = None
        if ctx.needs_input_grad[3]:
            dh0 = torch.addcmul(d * D[:, :, 0], phi_prime(name, h0, R[:, :, 0]), m)
        ddecay = None
        if ctx.needs_input_grad[0]:
            h_prev = torch.cat([h0.unsqueeze(2), hs[:, :, :-1]], 2)
            ddecay = (D[:, :, :T] * h_prev).sum(dim=(1, 2))
        dWc = None
        if ctx.needs_input_grad[1]:
            dWc = torch.bmm(D.view(E, B * (T + 1), N).transpose(1, 2), P.view(E, B * (T + 1), N))
        return ddecay, dWc, D[:, :, :T], dh0, None, None, None, None


def plastic_recurrence_reference(decay_exn, Wc_exnxn, drive_exbxtxn, h0_exbxn, phi_name: str, c: float,
                                 stp: ShortTermPlasticity):
    """The same recurrence as a plain autograd loop with the fast variables detached (the oracle for
    tests). Returns (h, r, F_end or efficacy)."""
    h, r, info = plastic_loop(decay_exn, Wc_exnxn, drive_exbxtxn, h0_exbxn, phi_name, c, stp, detach=True)
    return h, r, info["F_end_exbxnxn" if stp.config.rule == "anti_hebbian" else "efficacy_exbxtxn"]


def plastic_loop(decay_exn, Wc_exnxn, drive_exbxtxn, h0_exbxn, phi_name: str, c: float, stp, *, detach: bool,
                 record_F_abs: bool = False):
    """The plastic recurrence as a plain autograd loop (module docstring). ``detach``: the fast variables
    are constants for the gradient (as :class:`_PlasticRecurrence`); otherwise the gradient also flows
    through their dependence on the states (``gradient: exact``). Returns (h, r, info) with the detached
    signatures of :meth:`ShortTermPlasticity.run`: ``F_end_exbxnxn`` (and ``F_abs_exbxt`` when
    ``record_F_abs``), or ``efficacy_exbxtxn`` and ``pre_exbxtxn``."""
    cfg = stp.config
    E, B, T, N = drive_exbxtxn.shape
    h, hs = h0_exbxn, []
    r = phi(phi_name, h)
    eta = stp.eta_e.to(h.dtype)[:, None, None, None]
    F = drive_exbxtxn.new_zeros((E, B, N, N))
    u = drive_exbxtxn.new_full((E, B, N), cfg.U)
    x = torch.ones_like(u)
    s, effs, F_abs = torch.ones_like(u), [], []
    fixed = (lambda v: v.detach()) if detach else (lambda v: v)
    for t in range(T):
        if cfg.rule == "anti_hebbian":
            rec = torch.einsum("enm,ebm->ebn", Wc_exnxn, r) + c * torch.einsum("ebnm,ebm->ebn", F, r)
        else:
            rec = torch.einsum("enm,ebm->ebn", Wc_exnxn, s * r)
        h_new = decay_exn.unsqueeze(1) * h + rec + drive_exbxtxn[:, :, t]
        if cfg.rule == "anti_hebbian":
            dF = -eta * fixed(h_new - h)[..., :, None] * fixed(r)[..., None, :]
            F = (1 - stp.dt_ms / cfg.tau_F_ms) * F + dF
            if cfg.F_max is not None:
                F = F.clamp(-cfg.F_max, cfg.F_max)
            if record_F_abs:
                F_abs.append(F.detach().abs().mean((2, 3)))
        else:
            R = fixed(r).clamp(min=0) * stp.dt_ms * cfg.max_rate_hz / 1000
            dt = stp.dt_ms
            u, x = ((u + dt * (cfg.U - u) / cfg.tau_facilitation_ms + cfg.U * (1 - u) * R).clamp(0, 1),
                    (x + dt * (1 - x) / cfg.tau_depression_ms - u * x * R).clamp(0, 1))
            s = u * x / cfg.U
            effs.append(s)
        h = h_new
        r = phi(phi_name, h)
        hs.append(h)
    hs = torch.stack(hs, 2)
    rs = phi(phi_name, hs)
    if cfg.rule == "anti_hebbian":
        info = {"F_end_exbxnxn": F.detach()}
        if record_F_abs:
            info["F_abs_exbxt"] = torch.stack(F_abs, 2)
    else:
        eff = torch.stack(effs, 2)
        info = {"efficacy_exbxtxn": eff.detach(), "pre_exbxtxn": (eff * rs).detach()}
    return hs, rs, info
