"""Running a protocol: group conditions into ensembles, train (resumably), write the dataset
and figures. ``run_protocol`` is what ``python -m bioplastic run`` calls.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import xarray as xr

from ..protocol.load import Protocol
from ..storage.io import atomic_write_text
from ..storage.results import build_dataset, read_dataset, write_dataset
from .loop import EnsembleTrainer, GroupResult, Member

STATE_DIR = "state"


class RunError(Exception):
    """The run cannot start (e.g. the output folder holds a different protocol)."""


def groups(protocol: Protocol) -> list[list[Member]]:
    """Members (condition x seed) grouped into ensembles that train in one computation."""
    out: dict[str, list[Member]] = {}
    for c in protocol.conditions:
        out.setdefault(c.group_key(), []).extend(Member(c, s) for s in range(protocol.config.seeds))
    return list(out.values())


def output_dir(protocol: Protocol, out: str | Path | None) -> Path:
    return Path(out) if out is not None else Path(protocol.config.output.dir.replace("{name}", protocol.name))


def prepare_output(protocol: Protocol, out: Path) -> bool:
    """Create ``out`` (or check it holds this protocol). Returns True when the run is already complete."""
    saved = out / "protocol.yaml"
    if saved.exists():
        if saved.read_text() != protocol.text:
            raise RunError(f"{out} holds a run of a different protocol (its protocol.yaml differs); "
                           f"choose another folder with --out, or delete {out} to start over")
        return (out / "results.nc").exists()
    if out.exists() and any(out.iterdir()):
        raise RunError(f"{out} exists and is not a bioplastic run folder; choose another folder with --out")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(saved, protocol.text)
    return False


def write_figures(ds: xr.Dataset, out: Path) -> list[Path]:
    from ..plotting import curves

    paths = [out / "learning_curves.png", out / "iterations_to_criterion.png"]
    curves.save(curves.learning_curves(ds), paths[0])
    curves.save(curves.iterations_to_criterion(ds), paths[1])
    return paths


def run_protocol(protocol: Protocol, out: str | Path | None = None, *,
                 progress: Callable[[int, dict], None] | None = None,
                 interrupt_at: int | None = None) -> tuple[xr.Dataset, Path]:
    """Train every network of the protocol, resuming from ``OUT/state`` if present; write
    ``OUT/results.nc`` and figures. Returns the dataset and the output folder."""
    out = output_dir(protocol, out)
    if prepare_output(protocol, out):
        return read_dataset(out / "results.nc"), out
    results: list[GroupResult] = []
    for i, members in enumerate(groups(protocol)):
        trainer = EnsembleTrainer(members, protocol.config.seed)
        results.append(trainer.run(out / STATE_DIR / f"group-{i}.pt", progress, interrupt_at))
    ds = build_dataset(protocol, results)
    write_dataset(ds, out / "results.nc")
    if protocol.config.output.figures:
        write_figures(ds, out)
    shutil.rmtree(out / STATE_DIR, ignore_errors=True)
    return ds, out


def total_work(protocol: Protocol) -> int:
    return len(protocol.conditions) * protocol.config.seeds * protocol.conditions[0].training.iterations


def summary(ds: xr.Dataset) -> str:
    """A short text table: per condition, learned networks and iterations to criterion."""
    lines = [f"{'condition':<18}{'learned':>9}{'iters to criterion (median [min, max])':>42}{'final acc':>11}"]
    for cond in ds["condition"].values:
        itc = ds["iterations_to_criterion"].sel(condition=cond).values
        ok = np.isfinite(itc)
        rng = f"{np.median(itc[ok]):.0f} [{itc[ok].min():.0f}, {itc[ok].max():.0f}]" if ok.any() else "-"
        acc = np.nanmedian(ds["final_accuracy"].sel(condition=cond).values)
        lines.append(f"{str(cond):<18}{f'{ok.sum()}/{len(itc)}':>9}{rng:>42}{acc:>11.3f}")
    n_div = int(ds["diverged"].sum())
    if n_div:
        lines.append(f"{n_div} network(s) diverged (see the 'diverged' variable)")
    return "\n".join(lines)
