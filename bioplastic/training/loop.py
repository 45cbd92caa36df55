"""The training loop for one ensemble: E networks (conditions x seeds) trained in one computation.

Per iteration k every member s draws its own batch from the counter-based stream
``(train_data, seed_index, k)``, so a member's numbers do not depend on which other members share
its ensemble, nor on whether the run was interrupted and resumed. Every ``checkpoint_every``
iterations the weights are snapshotted and the full training state is written atomically to a
resume file; an interrupted run restarts from the last one and finishes with the same numbers.

On a GPU (``training.device``; device.py) the parameters, buffers, optimizer state, batches
and noise live on the device, but every random number is drawn on the CPU as it always is and then
moved there; resume states and results are CPU tensors and numpy arrays, wherever it trained.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..analysis.learning_curves import iterations_to_criterion, settled
from ..device import device_label, device_scope, resolve_device, to_cpu
from ..learning import RULES, Batch, LearningRule, StepResult
from ..learning.bptt import masked_mse
from ..networks import Network, build_network
from ..regularizers.schedules import Schedule, build_schedule
from ..regularizers.tcr_plasticity import ShortTermPlasticity, attach_plasticity
from ..seeds import numpy_rng, torch_generator
from ..storage.io import atomic_torch_save, safe_torch_load
from ..tasks import Task, Trials, build_task
from ..tasks.base import window_bxt
from .allocator import keep_freed_memory
from .init_from import apply_init
from .optim import EnsembleOptimizer, clip_per_member

#: per-iteration records, each (E, iterations)
HISTORY = ("loss", "task_loss", "tcr_loss", "lambda_tcr", "grad_norm", "eta_F", "stp_size")
#: per-evaluation records, each (E, evaluations); tcr_grad_ratio is measured on the training batch of
#: the evaluated iteration (NaN at the last evaluation, after the last batch)
EVAL_HISTORY = ("accuracy", "eval_loss", "tcr_grad_ratio")
#: per-output records of tasks with several outputs: task loss per iteration, (E, iterations, output),
#: and held-out accuracy per evaluation, (E, evaluations, output) (NaN where the task scores its
#: outputs only together)
OUTPUT_HISTORY = "task_loss_output"
OUTPUT_EVAL_HISTORY = "accuracy_output"


@dataclass(frozen=True)
class MemberSpec:
    """One network to train, in plain configs (the training layer knows no protocol objects;
    training/units.py makes these from a protocol's conditions).

    name: the network's condition; members of one name and point share their TCR schedules, and the
          network is called ``name/seed_index`` (``name/seed_index@point`` beyond point 0) in resume
          states and results
    seed_index: s; the network's random streams (initial weights, data, noise) are keyed by (root seed, s),
          so seed s starts from the same weights in every condition (paired design)
    task_kind, task: the task's kind and settings (tasks.build_task)
    model_kind, model: the network's kind and settings (networks.build_network)
    training: the training settings: a ``TrainingConfig`` (protocol/schema.py) or any object with its
          attributes (rule, rule_options, optimizer, lr, adam_betas, momentum, iterations, batch_size,
          clip_grad_norm, checkpoint_every, eval_every, eval_trials, criterion, stop_when_learned,
          loss_smoothing, dtype; and device, which defaults to cpu where it is missing)
    tcr: the TCR settings: a ``TCRConfig`` or any object with its attributes (form, lambda_, normalize,
          window, schedule, plasticity - a regularizers.tcr_plasticity.PlasticityConfig)

    point: the sweep point the network belongs to (0 without a sweep); compatible networks of
          different points train in one ensemble

    Members trained in one ensemble must share the task, the model (all but the model class's
    ``init_fields``, which each member draws its initial weights with), the training settings (all
    but ``lr`` and ``clip_grad_norm``) and the plasticity settings (all but ``eta_F`` and its schedule).
    """

    name: str
    seed_index: int
    task_kind: str
    task: Mapping[str, Any]
    model_kind: str
    model: Mapping[str, Any]
    training: Any
    tcr: Any

    point: int = 0

    @property
    def label(self) -> str:
        """``name/seed_index``, and ``@point`` beyond point 0."""
        return f"{self.name}/{self.seed_index}" + (f"@{self.point}" if self.point else "")


def schedule_points(every: int, total: int) -> np.ndarray:
    """Iterations 0, every, 2 every, ..., and ``total``."""
    return np.unique(np.r_[np.arange(0, total + 1, every), total])


@dataclass
class GroupResult:
    members: list[MemberSpec]
    history: dict[str, np.ndarray]          # (E, iterations)
    eval_iterations: np.ndarray             # (evaluations,)
    eval_history: dict[str, np.ndarray]     # (E, evaluations)
    checkpoint_iterations: np.ndarray       # (checkpoints,)
    weights: dict[str, np.ndarray]          # (E, checkpoints, ...)
    param_dims: dict[str, tuple[str, ...]]
    diverged_at: np.ndarray                 # (E,) iteration of divergence, NaN if none
    final_iteration: int
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    buffers: dict[str, np.ndarray] = field(default_factory=dict)      # (E, ...): fixed, drawn at init
    buffer_dims: dict[str, tuple[str, ...]] = field(default_factory=dict)
    seconds: float = float("nan")                                    # wall time of the (last) training run
    device: str = "cpu"                                              # where it trained (device.device_label)

    def of_point(self, point: int) -> GroupResult:
        """The members of sweep point ``point`` only (an ensemble may hold several points)."""
        idx = np.array([e for e, m in enumerate(self.members) if getattr(m, "point", 0) == point], dtype=int)
        take = lambda d: {k: v[idx] for k, v in d.items()}  # noqa: E731
        return replace(self, members=[self.members[e] for e in idx], history=take(self.history),
                       eval_history=take(self.eval_history), weights=take(self.weights),
                       diverged_at=self.diverged_at[idx], extra=take(self.extra), buffers=take(self.buffers))


class Interrupted(Exception):
    """Training stopped on request (tests use it to simulate Ctrl-C at a given iteration)."""


def _stack_trials(trials: list[Trials], dtype, device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    as_t = lambda key: torch.from_numpy(np.stack([getattr(t, key) for t in trials])).to(dtype).to(device)  # noqa: E731
    return as_t("inputs_bxtxi"), as_t("targets_bxtxo"), as_t("mask_bxtxo")


def window_mask(trials: Trials, window: str, n_steps: int) -> np.ndarray:
    """(trial, time) mask of a TCR window: 'trial' = every step, else a named period."""
    if window == "trial":
        return np.ones((trials.n_trials, n_steps), np.float32)
    return window_bxt(trials.periods[window][:, 0], trials.periods[window][:, 1], n_steps).astype(np.float32)


class EnsembleTrainer:
    """Trains the members of one group (all share task, model kind/size and training shape).

    ``device``: where to train (a ``training.device`` value or a torch device); default: the
    members' ``training.device`` (``cpu`` when their training settings have none).
    :class:`~bioplastic.device.DeviceError` when it names a device torch cannot see."""

    def __init__(self, members: list[MemberSpec], root_seed: int, device: str | torch.device | None = None):
        #: the networks asked for; a single one trains beside an identical twin (discarded at the end),
        #: because torch computes a batch of one by other kernels (einsum and bmm squeeze it) whose
        #: last bits differ: with the twin, a network's numbers never depend on its ensemble-mates
        self.n_real = len(members)
        members = list(members) * 2 if len(members) == 1 else list(members)
        self.members, self.root = members, int(root_seed)
        c0 = members[0]
        self.tr = c0.training
        self.dtype = torch.float64 if self.tr.dtype == "float64" else torch.float32
        self.device = resolve_device(getattr(self.tr, "device", "cpu") if device is None else device)
        self.device_label = device_label(self.device)
        self.task: Task = build_task(c0.task_kind, dict(c0.task))
        self.seed_idx = [m.seed_index for m in members]
        keep_freed_memory()
        # the members share the model (see MemberSpec) but for the settings of the initial draw
        own = [dict(m.model) for m in members]
        self.net: Network = build_network(
            c0.model_kind, dict(c0.model), n_inputs=self.task.n_inputs, n_outputs=self.task.n_outputs,
            dt_ms=self.task.dt_ms, rngs=[numpy_rng(self.root, "init", s) for s in self.seed_idx], dtype=self.dtype,
            member_params=own if any(m != own[0] for m in own) else None)
        apply_init(self.net, members)  # training.init: start from a finished run's networks
        with device_scope(self.device):
            self._build(members)

    def _build(self, members: list[MemberSpec]) -> None:
        """Everything after the network's initial weights (drawn on the CPU), on the device."""
        c0, E = members[0], len(members)
        self.net.to(self.device)
        self.rule: LearningRule = RULES.get(self.tr.rule)(RULES.get(self.tr.rule).Config(**self.tr.rule_options), self.net)
        self.opt = EnsembleOptimizer(self.net.params, self.tr.optimizer, [c.training.lr for c in members],
                                     betas=self.tr.adam_betas, momentum=self.tr.momentum)
        self.clip_e = self._t(torch.tensor([c.training.clip_grad_norm or float("inf") for c in members], dtype=self.dtype,
                                           device="cpu"))
        # one schedule per condition and point, over its members: lambda(k) of the TCR loss, and
        # eta_F(k) of the TCR plasticity (conditions with plasticity train in their own ensembles)
        self.plasticity: ShortTermPlasticity | None = attach_plasticity(self.net, c0.tcr)
        if self.plasticity is not None:
            self.plasticity.record_for_training()
            self.net.to(self.device)  # (the plasticity's state)
        self.schedules: list[tuple[np.ndarray, Schedule]] = []
        self.eta_schedules: list[tuple[np.ndarray, Schedule]] = []
        for key in dict.fromkeys((c.point, c.name) for c in members):
            idx = np.array([i for i, c in enumerate(members) if (c.point, c.name) == key])
            c = members[idx[0]]
            lam = c.tcr.lambda_ if c.tcr.form == "loss" else 0.0
            self.schedules.append((idx, build_schedule(c.tcr.schedule, np.full(len(idx), lam))))
            if self.plasticity is not None:
                p = c.tcr.plasticity
                self.eta_schedules.append((idx, build_schedule(p.schedule, np.full(len(idx), p.eta_F))))
        if self.plasticity is not None:  # each member's own eta_F until the first step's schedule value
            eta0 = np.zeros(E)
            for idx, _ in self.eta_schedules:
                eta0[idx] = members[idx[0]].tcr.plasticity.eta_F
            self.plasticity.eta_e = self._t(torch.as_tensor(eta0, dtype=self.dtype, device="cpu"))
        self.windows = [c.tcr.window for c in members]
        self.normalize = tuple(c.tcr.normalize for c in members)
        bad = sorted(set(self.normalize) - set(self.rule.tcr_normalizations))
        if bad:
            raise ValueError(f"tcr.normalize: the rule {self.tr.rule} supports {', '.join(self.rule.tcr_normalizations)}; got {', '.join(bad)}")
        self.eval_iterations = schedule_points(self.tr.eval_every, self.tr.iterations)
        self.eval_index = {int(k): j for j, k in enumerate(self.eval_iterations)}
        self.checkpoint_iterations = schedule_points(self.tr.checkpoint_every, self.tr.iterations)
        self.history = {k: np.full((E, self.tr.iterations), np.nan) for k in HISTORY}
        self.eval_history = {k: np.full((E, len(self.eval_iterations)), np.nan) for k in EVAL_HISTORY}
        O = self.task.n_outputs
        if O > 1:
            self.history[OUTPUT_HISTORY] = np.full((E, self.tr.iterations, O), np.nan)
            self.eval_history[OUTPUT_EVAL_HISTORY] = np.full((E, len(self.eval_iterations), O), np.nan)
        self.weights = {k: np.full((E, len(self.checkpoint_iterations)) + tuple(v.shape[1:]), np.nan)
                        for k, v in self.net.params.items()}
        self.diverged_at = np.full(E, np.nan)
        self.learned = np.zeros(E, bool)
        self.k = 0
        self.eval_trials = [self.task.sample(numpy_rng(self.root, "eval_data", s), self.tr.eval_trials)
                            for s in self.seed_idx]
        #: training.stop_when_learned decided to stop at iteration k (saved in the resume state, so a
        #: run killed between that checkpoint's state and its result file does not train further)
        self.stopped_early = False

    # -- pieces of an iteration ---------------------------------------------------------------
    @property
    def alive(self) -> np.ndarray:
        return np.isnan(self.diverged_at)

    def _t(self, x: torch.Tensor) -> torch.Tensor:
        """A tensor made on the CPU (as every number the loop feeds in is), on the training device."""
        return x.to(self.device)

    def lambdas(self, k: int, schedules=None) -> np.ndarray:
        lam = np.zeros(len(self.members))
        for idx, sched in (self.schedules if schedules is None else schedules):
            lam[idx] = sched.value(k)
        return lam

    def noise(self, stream: str, k: int | None, n_trials: int) -> torch.Tensor | None:
        if not self.net.needs_noise:
            return None
        key = (lambda s: (s,)) if k is None else (lambda s: (s, k))  # noqa: E731
        shape = (n_trials, self.task.n_steps, self.net.n_units)
        return self._t(torch.stack([torch.randn(shape, generator=torch_generator(self.root, stream, *key(s)), dtype=self.dtype,
                                                device="cpu") for s in self.seed_idx]))

    def batch(self, k: int):
        trials = [self.task.sample(numpy_rng(self.root, "train_data", s, k), self.tr.batch_size) for s in self.seed_idx]
        u, y, m = _stack_trials(trials, self.dtype, self.device)
        win = torch.from_numpy(np.stack([window_mask(t, w, self.task.n_steps) for t, w in zip(trials, self.windows)]))
        labels = {k: np.stack([t.conditions[k] for t in trials]) for k in trials[0].conditions}
        return u, y, m, self._t(win.to(self.dtype)), labels

    def train_step(self, k: int) -> StepResult:
        """Iteration k: the rule's step, the optimizer's update, then the plasticity's own changes of
        the weights (freeze-in, weight noise); returns the rule's step result."""
        with device_scope(self.device):
            return self._train_step(k)

    def _train_step(self, k: int) -> StepResult:
        u, y, m, win, labels = self.batch(k)
        lam_np = self.lambdas(k)
        lam = self._t(torch.as_tensor(lam_np, dtype=self.dtype, device="cpu"))
        eta = self._t(torch.as_tensor(self.lambdas(k, self.eta_schedules), dtype=self.dtype, device="cpu"))
        if self.plasticity is not None:
            self.plasticity.eta_e = eta
        j_eval = self.eval_index.get(k)  # an evaluated iteration: measure the TCR / task gradient ratio on this batch
        trains = bool((lam_np > 0).any())
        measure = j_eval is not None and trains
        batch = Batch(u, y, m, win, self.noise("train_noise", k, self.tr.batch_size), lam, labels, self.normalize,
                      measure, trains)
        alive_t = self._t(torch.as_tensor(self.alive, device="cpu"))
        res = self.rule.step(batch, alive_t)
        loss, task_loss, term, grads = res.loss_e, res.task_loss_e, res.term_e, res.grads
        names = list(self.net.params)
        finite = alive_t & torch.isfinite(loss)
        for g in grads.values():
            finite &= torch.isfinite(g.flatten(1)).all(1)
        norms = clip_per_member(grads, self.clip_e)
        finite &= torch.isfinite(norms)  # a gradient beyond the dtype's range cannot be clipped: diverged
        for name in names:
            grads[name] = torch.where(finite.reshape((-1,) + (1,) * (grads[name].dim() - 1)), grads[name], 0)
        self.opt.step(grads)
        if self.plasticity is None:
            stp_size = torch.full((len(self.members),), float("nan"), dtype=self.dtype, device="cpu")
        else:
            stp_size = self.plasticity.after_update(self.net, res.plasticity, alive_t,
                                                    root_seed=self.root, seed_indices=self.seed_idx, iteration=k)
        with torch.no_grad():  # a member whose parameters left the finite range diverged too
            for p in self.net.params.values():
                finite &= torch.isfinite(p.flatten(1)).all(1)
        newly = self.alive & ~finite.cpu().numpy()
        if newly.any():
            self.diverge(np.flatnonzero(newly), k)
        rec = {"loss": loss, "task_loss": task_loss, "tcr_loss": term, "lambda_tcr": lam, "grad_norm": norms,
               "eta_F": eta, "stp_size": stp_size}
        alive_np = self.alive
        for key, v in rec.items():
            self.history[key][:, k] = np.where(alive_np, v.detach().double().cpu().numpy(), np.nan)
        if OUTPUT_HISTORY in self.history and res.task_loss_exo is not None:
            self.history[OUTPUT_HISTORY][:, k] = np.where(alive_np[:, None], res.task_loss_exo.double().cpu().numpy(), np.nan)
        if measure and res.tcr_grad_ratio_e is not None:
            self.eval_history["tcr_grad_ratio"][:, j_eval] = np.where(alive_np, res.tcr_grad_ratio_e.double().cpu().numpy(), np.nan)
        task_np, term_np = task_loss.detach().cpu().numpy(), term.detach().cpu().numpy()
        for idx, sched in self.schedules + self.eta_schedules:
            sched.observe(k, task_np[idx], term_np[idx], self.learned[idx])
        return res

    def diverge(self, idx: np.ndarray, k: int) -> None:
        """Mark members diverged at iteration k: parameters and optimizer state zeroed, frozen."""
        self.diverged_at[idx] = k
        dead = self._t(torch.as_tensor(np.isin(np.arange(len(self.members)), idx), device="cpu"))
        with torch.no_grad():
            for p in self.net.params.values():
                p[dead] = 0
        self.opt.reset_members(dead)

    @torch.no_grad()
    def evaluate(self, j: int) -> None:
        with device_scope(self.device):
            self._evaluate(j)

    def _evaluate(self, j: int) -> None:
        u, y, m = _stack_trials(self.eval_trials, self.dtype, self.device)
        roll = self.net.run(u, self.noise("eval_data", None, self.tr.eval_trials))
        out = roll.output_exbxtxo.double().cpu().numpy()
        acc = np.array([self.task.accuracy(out[e], t) for e, t in enumerate(self.eval_trials)])
        alive = self.alive
        self.eval_history["accuracy"][:, j] = np.where(alive, acc, np.nan)
        self.eval_history["eval_loss"][:, j] = np.where(alive, masked_mse(roll.output_exbxtxo, y, m).double().cpu().numpy(), np.nan)
        if OUTPUT_EVAL_HISTORY in self.eval_history:
            per = [self.task.output_accuracy(out[e], t) for e, t in enumerate(self.eval_trials)]
            if per[0] is not None:
                self.eval_history[OUTPUT_EVAL_HISTORY][:, j] = np.where(alive[:, None], np.stack(per), np.nan)
        self.learned |= alive & (acc >= self.tr.criterion)

    def snapshot(self, j: int) -> None:
        for k, p in self.net.params.items():
            self.weights[k][:, j] = p.detach().double().cpu().numpy()

    def all_settled(self) -> bool:
        """Every network diverged, or learned at least HORIZON_WINDOWS + 1 smoothing windows ago: the
        learning-curve metrics (which look HORIZON_WINDOWS windows past the criterion, through a
        centered window) are then final, so stopping here does not change them."""
        learned_at = np.array([iterations_to_criterion(acc, self.eval_iterations, self.tr.criterion)
                               for acc in self.eval_history["accuracy"]])
        return bool((settled(self.k, learned_at, self.tr.loss_smoothing) | ~self.alive).all())

    # -- resume state -------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The full training state, as CPU tensors wherever it trains (a resume state written on a
        GPU machine loads anywhere)."""
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
        return {
            "k": self.k,
            "members": [m.label for m in self.members],
            "params": {k: v.detach().cpu().clone() for k, v in self.net.params.items()},
            "opt": to_cpu(self.opt.state_dict()),
            "history": {k: t(v) for k, v in self.history.items()},
            "eval_history": {k: t(v) for k, v in self.eval_history.items()},
            "weights": {k: t(v) for k, v in self.weights.items()},
            "diverged_at": t(self.diverged_at),
            "learned": t(self.learned),
            "schedules": [{k: t(v) for k, v in s.state_dict().items()} for _, s in self.schedules + self.eta_schedules],
            "rule": to_cpu(self.rule.state_dict()),
            "stopped_early": bool(self.stopped_early),
        }

    def load_state_dict(self, d: dict) -> None:
        names = [m.label for m in self.members]
        if d["members"] != names:
            raise ValueError(f"resume state holds networks {d['members']}, expected {names}")
        self.k = int(d["k"])
        with torch.no_grad():
            for k, v in self.net.params.items():
                v.copy_(d["params"][k])
        self.opt.load_state_dict(d["opt"])
        for src, dst in ((d["history"], self.history), (d["eval_history"], self.eval_history), (d["weights"], self.weights)):
            for k in dst:
                if k in src:  # (a resume state from before a record was added keeps NaN there)
                    dst[k] = src[k].numpy().copy()
        self.diverged_at = d["diverged_at"].numpy().copy()
        self.learned = d["learned"].numpy().copy()
        for (_, s), sd in zip(self.schedules + self.eta_schedules, d["schedules"]):
            s.load_state_dict({k: v.numpy() for k, v in sd.items()})
        self.rule.load_state_dict(d.get("rule", {}))
        if "stopped_early" in d:
            self.stopped_early = bool(d["stopped_early"])
        else:  # a resume state from before the decision was saved: decide again (same inputs, same answer)
            at_checkpoint = self.k in {int(k) for k in self.checkpoint_iterations}
            self.stopped_early = bool(self.tr.stop_when_learned and self.k > 0 and at_checkpoint and self.all_settled())

    # -- the loop -----------------------------------------------------------------------------
    def run(self, state_path: Path | None = None, progress: Callable[[int, dict], None] | None = None,
            interrupt_at: int | None = None) -> GroupResult:
        with device_scope(self.device):
            return self._run(state_path, progress, interrupt_at)

    def _run(self, state_path, progress, interrupt_at) -> GroupResult:
        if state_path is not None and state_path.exists():
            self.load_state_dict(safe_torch_load(state_path))
        if self.k == 0:
            self.evaluate(0)
            self.snapshot(0)
        elif progress:
            progress(self.k * self.n_real, {})
        eval_at = {int(k): j for j, k in enumerate(self.eval_iterations)}
        ckpt_at = {int(k): j for j, k in enumerate(self.checkpoint_iterations)}
        while self.k < self.tr.iterations and not self.stopped_early:
            if interrupt_at is not None and self.k >= interrupt_at:
                raise Interrupted(f"stopped at iteration {self.k}")
            self.train_step(self.k)
            self.k += 1
            if self.k in eval_at:
                self.evaluate(eval_at[self.k])
            if progress:
                progress(self.n_real, {"loss": float(np.nanmedian(self.history["loss"][:, self.k - 1]))
                                             if self.alive.any() else float("nan")})
            if self.k in ckpt_at:
                self.snapshot(ckpt_at[self.k])
                # decided before the state is saved, and saved with it: a resumed trainer stops at once
                self.stopped_early = bool(self.tr.stop_when_learned and self.all_settled())
                if state_path is not None:
                    atomic_torch_save(self.state_dict(), state_path)
        n = self.n_real
        return GroupResult(self.members[:n], {k: v[:n] for k, v in self.history.items()}, self.eval_iterations,
                           {k: v[:n] for k, v in self.eval_history.items()}, self.checkpoint_iterations,
                           {k: v[:n] for k, v in self.weights.items()}, dict(self.net.param_dims), self.diverged_at[:n],
                           self.k, buffers={k: v[:n].double().cpu().numpy() for k, v in self.net.buffers.items()},
                           buffer_dims={k: self.net.buffer_dims[k] for k in self.net.buffers}, device=self.device_label)
