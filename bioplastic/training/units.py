"""Work units: the pieces a run is cut into, and running one of them anywhere.

A unit is a group of compatible networks (same task, model and training shape; see
:meth:`~bioplastic.protocol.load.Condition.group_key`), at most ``training.ensemble_size`` of them,
trained together as one ensemble. Compatible networks of different sweep points share units (a sweep
of gains, learning rates or TCR strengths packs into full ensembles); a network's numbers do not
depend on its ensemble-mates. The plan depends on the protocol only, never on the executor, so every
executor produces the same numbers. A unit runs
from the resolved protocol text and its id alone (a few hundred bytes to ship to a worker); it
resumes from ``OUT/state/<id>.pt`` and, when done, writes ``OUT/units/<id>.pt`` atomically.

Both files carry a checksum (:func:`~bioplastic.storage.io.atomic_torch_save`). A damaged resume
state is deleted with a :class:`~bioplastic.storage.io.DamagedFileWarning` and its unit starts
again from iteration 0: training is counter-based, so the numbers equal an uninterrupted run's. A
damaged result file is found by :func:`verified_results`, deleted, and its unit trained again.

This module is the seam between protocols and training: :class:`Member` makes the trainer's plain
:class:`~bioplastic.training.loop.MemberSpec` from a protocol's condition.
"""
from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..protocol.load import Condition, Protocol, protocol_from_text
from ..storage.io import DamagedFileError, DamagedFileWarning, atomic_torch_save, safe_torch_load
from .init_from import check_unchanged
from .loop import EnsembleTrainer, GroupResult, MemberSpec

STATE_DIR, UNITS_DIR = "state", "units"


@dataclass(frozen=True)
class Member(MemberSpec):
    """A network of a protocol: the plain spec the trainer reads, made from ``condition`` (kept for
    the protocol side; use :meth:`of`)."""

    condition: Any = None

    @classmethod
    def of(cls, condition: Condition, seed_index: int, point: int = 0) -> Member:
        """Seed ``seed_index`` of ``condition`` (of sweep point ``point``)."""
        return cls(name=condition.name, seed_index=int(seed_index), task_kind=condition.task_kind,
                   task=condition.task.model_dump(), model_kind=condition.model_kind, model=condition.model.model_dump(),
                   training=condition.training, tcr=condition.tcr, point=int(point), condition=condition)


@dataclass(frozen=True)
class Unit:
    id: str
    members: tuple[Member, ...]

    @property
    def cost(self) -> float:
        """Relative cost, for starting the longest units first (numbers never depend on the order):
        network-iterations, with TCR plasticity counted ~2.5 times (benchmarks/rules.py)."""
        return self.work * (2.5 if self.members[0].tcr.form == "plasticity" else 1.0)

    @property
    def points(self) -> set[int]:
        """The sweep points this unit's networks belong to."""
        return {m.point for m in self.members}

    @property
    def work(self) -> int:
        """Network-iterations this unit trains (for progress)."""
        return len(self.members) * self.members[0].training.iterations


def groups(protocol: Protocol) -> list[list[Member]]:
    """Members (point x condition x seed) grouped by compatibility, across sweep points; groups in
    order of first appearance, members in point, condition, seed order."""
    out: dict[str, list[Member]] = {}
    for i, point in enumerate(protocol.points):
        for c in point.protocol.conditions:
            # stop_when_learned stops an ensemble when all its networks have learned: points stay apart,
            # so that when a point's training ends never depends on another point's networks
            key = c.group_key() + (f"|point {i}" if c.training.stop_when_learned else "")
            out.setdefault(key, []).extend(Member.of(c, s, i) for s in range(point.protocol.config.seeds))
    return list(out.values())


def plan_units(protocol: Protocol) -> list[Unit]:
    """Every unit of the run, in a fixed order: group, chunk (members split evenly into chunks of at
    most ``training.ensemble_size``). Unit ids: ``p000-g<group>-u<chunk>`` without a sweep,
    ``sweep-g<group>-u<chunk>`` with one."""
    units = []
    prefix = "p000" if len(protocol.points) == 1 else "sweep"
    for j, members in enumerate(groups(protocol)):
        size = members[0].training.ensemble_size
        for c, idx in enumerate(np.array_split(np.arange(len(members)), math.ceil(len(members) / size))):
            units.append(Unit(f"{prefix}-g{j}-u{c}", tuple(members[k] for k in idx)))
    return units


def longest_first(units: list[Unit]) -> list[Unit]:
    """The units in the order a pool should start them: by :attr:`Unit.cost`, largest first (plan
    order among equals), so that no worker is left with a long unit while the others idle."""
    return sorted(units, key=lambda u: -u.cost)


def result_path(out: Path, unit_id: str) -> Path:
    return Path(out) / UNITS_DIR / f"{unit_id}.pt"


def state_path(out: Path, unit_id: str) -> Path:
    return Path(out) / STATE_DIR / f"{unit_id}.pt"


def _discard(path: Path, why: str, consequence: str) -> bool:
    path.unlink(missing_ok=True)
    warnings.warn(f"{why}; deleted it: {consequence}", DamagedFileWarning, stacklevel=4)
    return True


def discard_if_unusable(path: Path, unit: Unit, consequence: str) -> bool:
    """Delete ``path`` (a resume state or result file of ``unit``) when it exists and is damaged
    (:class:`DamagedFileError`) or holds other networks than the unit's - written by an earlier
    version whose work plan grouped the networks differently - warning with a
    :class:`DamagedFileWarning` that names the file, what is wrong and ``consequence``. Reads the
    file once. Returns True when it was deleted."""
    path = Path(path)
    try:
        held = list(safe_torch_load(path)["members"])
    except FileNotFoundError:
        return False
    except DamagedFileError as exc:
        return _discard(path, str(exc), consequence)
    expected = [m.label for m in unit.members]
    if held == expected:
        return False
    return _discard(path, f"{path} holds networks {held}, not this work unit's {expected} (an earlier work plan)",
                    consequence)


def verified_results(protocol: Protocol, out: Path) -> list[str]:
    """Check the finished units' result files of a run folder (``OUT/units/*.pt``): delete each
    damaged one, or one that holds other networks than its unit (an earlier work plan), with a
    :class:`DamagedFileWarning`, so that its unit is trained again. Returns the ids of the deleted
    ones, in plan order (empty when all are sound)."""
    return [u.id for u in plan_units(protocol)
            if discard_if_unusable(result_path(out, u.id), u, f"work unit {u.id} is trained again (same numbers)")]


def save_result(result: GroupResult, path: Path) -> None:
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    atomic_torch_save({
        "members": [m.label for m in result.members],
        "history": {k: t(v) for k, v in result.history.items()},
        "eval_iterations": t(result.eval_iterations),
        "eval_history": {k: t(v) for k, v in result.eval_history.items()},
        "checkpoint_iterations": t(result.checkpoint_iterations),
        "weights": {k: t(v) for k, v in result.weights.items()},
        "param_dims": {k: list(v) for k, v in result.param_dims.items()},
        "diverged_at": t(result.diverged_at),
        "final_iteration": int(result.final_iteration),
        "buffers": {k: t(v) for k, v in result.buffers.items()},
        "buffer_dims": {k: list(v) for k, v in result.buffer_dims.items()},
        "seconds": float(result.seconds),
        "device": str(result.device),
    }, path)


def load_result(unit: Unit, path: Path) -> GroupResult:
    d = safe_torch_load(path)
    names = [m.label for m in unit.members]
    if d["members"] != names:
        raise ValueError(f"{path} holds networks {d['members']}, expected {names}")
    n = lambda x: x.numpy()  # noqa: E731
    return GroupResult(list(unit.members), {k: n(v) for k, v in d["history"].items()}, n(d["eval_iterations"]),
                       {k: n(v) for k, v in d["eval_history"].items()}, n(d["checkpoint_iterations"]),
                       {k: n(v) for k, v in d["weights"].items()}, {k: tuple(v) for k, v in d["param_dims"].items()},
                       n(d["diverged_at"]), int(d["final_iteration"]),
                       buffers={k: n(v) for k, v in d["buffers"].items()},
                       buffer_dims={k: tuple(v) for k, v in d["buffer_dims"].items()},
                       seconds=float(d.get("seconds", float("nan"))), device=str(d.get("device", "cpu")))


#: how a unit's trainer is run: ``(trainer, unit, state_path, progress, interrupt_at) -> GroupResult``;
#: executors take a replacement (a module-level function, so that worker processes can import it)
UnitRunner = Callable[[EnsembleTrainer, "Unit", Path, "Callable[[int, dict], None] | None", "int | None"], GroupResult]


def train(trainer: EnsembleTrainer, unit: Unit, state: Path, progress: Callable[[int, dict], None] | None,
          interrupt_at: int | None) -> GroupResult:
    """The default :data:`UnitRunner`: train, resuming from ``state`` if it exists."""
    return trainer.run(state, progress, interrupt_at)


def run_unit(protocol_text: str, unit_id: str, out: str, progress: Callable[[int, dict], None] | None = None,
             threads: int | None = None, interrupt_at: int | None = None, runner: UnitRunner = train) -> str:
    """Train one unit (resuming if its state exists) and write its result. Returns the unit id.

    The unit trains on its ``training.device``, resolved in the process that runs it (the protocol
    text carries the setting to every worker; ``auto`` takes that machine's GPU when it has one,
    ``cuda`` raises :class:`~bioplastic.device.DeviceError` where torch sees none)."""
    if threads:
        torch.set_num_threads(threads)
    protocol = protocol_from_text(protocol_text)
    unit = next((u for u in plan_units(protocol) if u.id == unit_id), None)
    if unit is None:
        raise ValueError(f"no work unit {unit_id!r} in this protocol")
    out_path = Path(out)
    state = state_path(out_path, unit_id)
    discard_if_unusable(state, unit, f"work unit {unit_id} restarts from iteration 0 (same numbers as an uninterrupted run)")
    check_unchanged(out_path, unit.members)  # training.init's sources, as recorded when the run started
    trainer = EnsembleTrainer(list(unit.members), protocol.config.seed)
    t0 = time.perf_counter()
    result = runner(trainer, unit, state, progress, interrupt_at)
    result.seconds = time.perf_counter() - t0  # this process's part (a resumed unit: since the resume)
    save_result(result, result_path(out_path, unit_id))
    state.unlink(missing_ok=True)
    return unit_id


class ThrottledProgress:
    """Collects progress counts and forwards them at most every ``every_s`` seconds (for queues)."""

    def __init__(self, send: Callable[[int, dict], None], every_s: float = 0.5):
        self.send, self.every_s, self.pending, self.last = send, every_s, 0, time.monotonic()
        self.info: dict = {}

    def __call__(self, n: int, info: dict) -> None:
        self.pending += n
        self.info = info or self.info
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.flush()
            self.last = now

    def flush(self) -> None:
        if self.pending:
            self.send(self.pending, self.info)
            self.pending = 0
