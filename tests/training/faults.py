"""Fault injection for the executor tests: a unit runner that kills its worker process once.

Imported by worker processes (spawned pool workers and Dask workers inherit the test process's
``sys.path``, which holds this folder), so it is a module-level class, pickled by reference.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bioplastic.training.units import train


@dataclass(frozen=True)
class KillOnce:
    """A :data:`~bioplastic.training.units.UnitRunner`: the first unit to start while ``marker`` is
    absent creates it and kills its own process (as a killed worker would) after its first
    checkpoint; every other unit trains normally."""

    marker: str

    def __call__(self, trainer, unit, state, progress, interrupt_at):
        if Path(self.marker).exists():
            return train(trainer, unit, state, progress, interrupt_at)
        Path(self.marker).write_text(unit.id)
        try:
            train(trainer, unit, state, progress, unit.members[0].training.checkpoint_every)
        finally:
            os._exit(17)  # a worker killed mid-unit: only its last checkpoint survives
