"""Node perturbation (Fiete & Seung 2006, PRL 97:048104; Miconi 2017, eLife 6:e20899) for the rate networks.

Each unit's input drive is perturbed inside the bracket of the leaky update::

    h_t = (1 - a) h_{t-1} + a (W r_{t-1} + W_in u_t + b + xi_t) + noise_t,   xi_t ~ N(0, sigma^2)

and the change of the per-trial loss is correlated with the perturbation. With ``l_b`` the trial's
share of the batch loss (``L = sum_b l_b``: task MSE + lambda * TCR term, both normalised as in the
batch loss) and ``R_b = -l_b``, the update direction (descending it lowers the loss) is::

    dL/dx_{b,t}  ~  -(R_b - Rbar_b) xi_{b,t} / sigma^2                  (x: the bracket input)
    dL/dW   = sum_{b,t} dL/dx_{b,t} r_{b,t-1}^T,  dL/dW_in = sum dL/dx u^T,  dL/db = sum dL/dx

with ``r`` the perturbed run's rates (the activity the synapse saw), and the effective W mapped to
the trained parameters by the chain rule (``low_rank``: ``m``, ``n``). ``W_out``, ``b_out`` get
their exact local gradient (from the unperturbed run with ``baseline: unperturbed``, from the
perturbed run with ``baseline: running``).

Baselines: ``unperturbed`` (Fiete-Seung): ``Rbar_b`` is the reward of the same trial run without
perturbation (the batch is run twice, in one batched recurrence). ``running`` (Miconi): ``Rbar`` is
a running average of ``B * R_b`` (the per-trial reward on the batch-loss scale) per trial type and
member, kept in the rule (``state_dict()`` / ``load_state_dict()`` for resume). The trial type is
the combination of the condition labels named in ``trial_type``, read from ``batch.conditions``
(label -> (E, trial) values); with ``trial_type: []`` one baseline serves every trial.

The perturbation comes from a numpy Generator (PCG64) seeded per member by ``SeedSequence([seed,
hash of the member's batch])``: deterministic, different every iteration (the batches differ),
unchanged by resuming, independent of which other members share the ensemble, and drawn in float64
so float32 and float64 runs see the same perturbation (numpy's float64 normals are ~2x faster than
torch's on CPU). Never the global RNG.
"""
from __future__ import annotations

import hashlib
from typing import Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from ..networks.recurrence import phi
from ..regularizers.tcr_loss import tcr_term
from ..schema_base import Schema
from .base import RULES, Batch, LearningRule, StepResult
from .bptt import masked_mse, output_mse
from .truncated import bcast, chain_to_params, outer_sum, shift_in


class NodePerturbationConfig(Schema):
    """Node perturbation options (see docs/learning_rules.md)."""

    sigma: float = Field(0.1, gt=0, description="std of the perturbation xi added to each unit's input (inside the "
                                                "bracket of the leaky update), per step")
    baseline: Literal["unperturbed", "running"] = Field(
        "unperturbed", description="unperturbed: reward baseline from an unperturbed run of the same trials "
                                   "(Fiete & Seung 2006); running: running average per trial type (Miconi 2017)")
    baseline_decay: float = Field(0.9, ge=0, lt=1, description="running baseline: Rbar <- d Rbar + (1 - d) mean R "
                                                               "over the batch's trials of that type")
    trial_type: tuple[str, ...] = Field((), description="running baseline: condition labels whose values define a "
                                                        "trial type (e.g. [side]); empty: one baseline")
    seed: int = Field(0, ge=0, description="seed of the perturbation streams (combined with a hash of each member's batch)")

    @field_validator("trial_type", mode="before")
    @classmethod
    def _list_to_tuple(cls, value):
        # YAML gives lists; the frozen schema stores a tuple
        return tuple(value) if isinstance(value, list) else value


def batch_key(batch: Batch, e: int) -> int:
    """A 64-bit hash of member e's trials (inputs, targets, mask; as float32 so dtypes agree)."""
    digest = hashlib.sha256()
    for x in (batch.inputs_exbxtxi, batch.targets_exbxtxo, batch.mask_exbxtxo):
        digest.update(x[e].detach().to(torch.float32).cpu().contiguous().numpy().tobytes())
    return int.from_bytes(digest.digest()[:8], "little")


def per_trial_loss(y, target, mask, h, window, lambda_e) -> torch.Tensor:
    """Each trial's share of the batch loss, (E, B): sums over trials to task + lambda * TCR term."""
    task_b = ((y - target).square() * mask).sum((2, 3)) / mask.sum((1, 2, 3)).clamp_min(1)[:, None]
    diff2 = (h[:, :, 1:] - h[:, :, :-1]).square().mean(-1)
    w = window[:, :, 1:].to(diff2.dtype)
    tcr_b = (diff2 * w).sum(2) / w.sum((1, 2)).clamp_min(1)[:, None]
    return task_b + lambda_e[:, None] * tcr_b


@RULES.register("node_perturbation")
class NodePerturbation(LearningRule):
    name = "node_perturbation"
    Config = NodePerturbationConfig
    supports = ("leaky_rate", "low_rank")

    def __init__(self, config: Schema, network):
        super().__init__(config, network)
        dt = torch.float64
        n_labels = len(config.trial_type)
        #: running baseline state: known trial types (K, labels), per member Rbar and visit counts (E, K)
        self.type_keys = torch.zeros(1 if n_labels == 0 else 0, n_labels, dtype=dt, device=network.device)
        self.baseline_exk = torch.zeros(network.n_members, self.type_keys.shape[0], dtype=dt, device=network.device)
        self.count_exk = torch.zeros_like(self.baseline_exk)

    # -- resume state --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"type_keys": self.type_keys.clone(), "baseline": self.baseline_exk.clone(), "count": self.count_exk.clone()}

    def load_state_dict(self, d: dict[str, torch.Tensor]) -> None:
        if not d:  # a state saved without the rule's: start the running baseline afresh
            return
        device = self.network.device
        self.type_keys = d["type_keys"].to(device, torch.float64).clone()
        self.baseline_exk = d["baseline"].to(device, torch.float64).clone()
        self.count_exk = d["count"].to(device, torch.float64).clone()

    # -- the rule ------------------------------------------------------------------------------
    def perturbation(self, batch: Batch) -> torch.Tensor:
        """xi: (E, B, T, N), N(0, sigma^2), member e's from its own seeded generator."""
        E, B, T = batch.inputs_exbxtxi.shape[:3]
        xs = [np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.config.seed, batch_key(batch, e)])))
              .standard_normal((B, T, self.network.n_units)) for e in range(E)]
        return (self.config.sigma * torch.from_numpy(np.stack(xs))).to(self.network.dtype).to(batch.inputs_exbxtxi.device)

    def step(self, batch: Batch, alive_e: torch.Tensor) -> StepResult:
        return self.estimate(batch, alive_e, self.perturbation(batch))

    def run(self, batch: Batch, xi_exbxtxn: torch.Tensor | None):
        """Run the trials with the bracket input perturbed by ``xi`` (None: unperturbed), differentiable
        in ``xi`` (for tests). Returns (per-trial loss (E, B), h, r, y)."""
        net = self.network
        E, B = batch.inputs_exbxtxi.shape[:2]
        drive = net.drive(batch.inputs_exbxtxi, batch.noise_exbxtxn)
        if xi_exbxtxn is not None:
            drive = drive + net.alpha * xi_exbxtxn
        h, r, _ = net.recur(net.alpha * net.recurrent_weights(), drive)
        y = net.readout(r)
        return per_trial_loss(y, batch.targets_exbxtxo, batch.mask_exbxtxo, h, batch.window_exbxt, batch.lambda_e), h, r, y

    def estimate(self, batch: Batch, alive_e: torch.Tensor, xi_exbxtxn: torch.Tensor) -> StepResult:
        """The node-perturbation update for a given perturbation ``xi`` (E, B, T, N); with
        ``baseline: running`` it also advances the running baseline."""
        net, cfg = self.network, self.config
        u, noise = batch.inputs_exbxtxi, batch.noise_exbxtxn
        E, B = u.shape[:2]
        a = net.alpha
        with torch.enable_grad():
            W, drive = net.recurrent_weights(), net.drive(u, noise)
        unperturbed = cfg.baseline == "unperturbed"
        # one batched recurrence: [unperturbed trials | perturbed trials] along the trial axis
        drives = [drive.detach(), drive.detach() + a * xi_exbxtxn] if unperturbed else [drive.detach() + a * xi_exbxtxn]
        both = torch.cat(drives, 1)
        h0 = torch.zeros(E, both.shape[1], net.n_units, dtype=net.dtype, device=u.device)
        with torch.no_grad():  # (with short-term plasticity, when the network has it)
            h_all, r_all, info = net.recur(a * W.detach(), both)
        # the presynaptic factor of the recurrent synapses: r, or s * r under Tsodyks-Markram STP
        pre_p = (info or {}).get("pre_exbxtxn", r_all)[:, -B:]
        h_p, r_p = h_all[:, -B:], r_all[:, -B:]   # the perturbed run
        h_s, r_s = h_all[:, :B], r_all[:, :B]     # the run the reported loss and readout gradient use
        lam = batch.lambda_e
        with torch.enable_grad():
            y_s = net.readout(r_s)
            task = masked_mse(y_s, batch.targets_exbxtxo, batch.mask_exbxtxo)
            term = tcr_term(h_s, batch.window_exbxt)
            loss = task.detach() + lam * term
            live = alive_e & torch.isfinite(loss)
            (e,) = torch.autograd.grad(torch.where(live, task, 0).sum(), [y_s], retain_graph=True)
        with torch.no_grad():
            y_p = net.readout(r_p)
            l_p = per_trial_loss(y_p, batch.targets_exbxtxo, batch.mask_exbxtxo, h_p, batch.window_exbxt, lam)
            if unperturbed:
                y0 = y_s.detach()
                dl = l_p - per_trial_loss(y0, batch.targets_exbxtxo, batch.mask_exbxtxo, h_s, batch.window_exbxt, lam)
            else:
                R = -B * l_p  # reward on the batch-loss scale
                dl = -(R - self.running_baseline(batch, R, live)) / B
            dl = torch.where(bcast(live, dl), dl, 0)
            G_x = dl[:, :, None, None] * xi_exbxtxn / cfg.sigma ** 2  # estimate of dL/dx
            G_drive = G_x / a
            dW = outer_sum(G_x, shift_in(phi(net.config.phi, h0[:, :B]), pre_p))
        with torch.enable_grad():
            grads = chain_to_params(net, [(W, dW), (drive, G_drive), (y_s, e)])
        grads = {k: torch.where(bcast(live, g), g, 0) for k, g in grads.items()}
        # (with plasticity: the signatures of both runs, unperturbed and perturbed trials)
        return StepResult(loss, task.detach(), term.detach(), grads, plasticity=info,
                          task_loss_exo=output_mse(y_s, batch.targets_exbxtxo, batch.mask_exbxtxo))

    def trial_types(self, batch: Batch) -> torch.Tensor:
        """Index (E, B) of each trial's type in ``type_keys``, adding types not seen before."""
        names = self.config.trial_type
        E, B = batch.inputs_exbxtxi.shape[:2]
        if not names:
            return torch.zeros(E, B, dtype=torch.long, device=batch.inputs_exbxtxi.device)
        conds = getattr(batch, "conditions", None)
        missing = [n for n in names if conds is None or n not in conds]
        if missing:
            have = sorted(conds) if conds else []
            raise ValueError(f"node_perturbation: rule_options.trial_type names the condition labels {list(names)}, but "
                             f"the batch carries {have or 'no condition labels'} (missing {missing}); use labels the "
                             f"task provides, or trial_type: [] for one running baseline")
        vals = torch.stack([torch.as_tensor(np.asarray(conds[n]), dtype=torch.float64).reshape(E, B) for n in names], -1)
        vals = vals.to(self.type_keys.device)
        rows = vals.reshape(E * B, -1)
        new = torch.unique(rows, dim=0)
        if self.type_keys.shape[0]:
            known = (new[:, None, :] == self.type_keys[None]).all(-1).any(1)
            new = new[~known]
        if new.shape[0]:
            self.type_keys = torch.cat([self.type_keys, new])
            pad = torch.zeros(E, new.shape[0], dtype=torch.float64, device=new.device)
            self.baseline_exk = torch.cat([self.baseline_exk, pad], 1)
            self.count_exk = torch.cat([self.count_exk, pad.clone()], 1)
        return (rows[:, None, :] == self.type_keys[None]).all(-1).to(torch.long).argmax(1).reshape(E, B)

    def running_baseline(self, batch: Batch, R_exb: torch.Tensor, live_e: torch.Tensor) -> torch.Tensor:
        """Rbar per trial (E, B) from the state before this batch (a type seen for the first time:
        the batch's mean reward of that type), then advance the state of the live members."""
        idx = self.trial_types(batch)
        K = self.type_keys.shape[0]
        R = torch.where(bcast(live_e, R_exb), R_exb, 0).to(torch.float64)
        n = torch.zeros(R.shape[0], K, dtype=torch.float64, device=R.device).scatter_add_(1, idx, torch.ones_like(R))
        mean = torch.zeros_like(n).scatter_add_(1, idx, R) / n.clamp_min(1)
        seen = self.count_exk > 0
        before = torch.where(seen, self.baseline_exk, mean)
        d = self.config.baseline_decay
        after = torch.where(n > 0, torch.where(seen, d * before + (1 - d) * mean, mean), self.baseline_exk)
        upd = live_e[:, None] & (n > 0)
        self.baseline_exk = torch.where(upd, after, self.baseline_exk)
        self.count_exk = self.count_exk + torch.where(upd, n, 0)
        return before.gather(1, idx).to(R_exb.dtype)
