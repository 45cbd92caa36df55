"""Running a protocol: plan work units, train them with an executor (resumably), merge their
results into one dataset, write it with figures. ``run_protocol`` is what ``bioplastic run`` calls.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import xarray as xr

from ..analysis.statistics import nanmedian
from ..protocol.load import Protocol
from ..report.html import build_report
from ..storage.io import atomic_write_text
from ..storage.results import build_dataset, combine_points, read_dataset, sweep_points, write_dataset
from .executors import Executor, InProcessExecutor
from .units import STATE_DIR, UNITS_DIR, groups, load_result, plan_units, result_path

__all__ = ["RunError", "groups", "run_protocol", "output_dir", "summary", "sweep_note", "total_work"]


class RunError(Exception):
    """The run cannot start (e.g. the output folder holds a different protocol)."""


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


def write_figures(ds: xr.Dataset, out: Path, analysis: xr.Dataset | None = None,
                  predictions: xr.Dataset | None = None) -> list[Path]:
    from ..plotting import curves, phase
    from ..plotting import predictions as pfigs

    paths = []
    if predictions is not None:
        for name, draw in (("ramping_examples.png", pfigs.ramping_examples),
                           ("ramp_distributions.png", pfigs.ramp_distributions),
                           ("timescale_distributions.png", pfigs.timescale_distributions)):
            curves.save(draw(predictions), out / name)
            paths.append(out / name)
    if analysis is not None:
        for name, draw in (("gr_alignment.png", lambda: phase.gr_alignment(ds, analysis)),
                           ("phase_portraits.png", lambda: phase.phase_portraits(ds, analysis)),
                           ("lead_times.png", lambda: phase.lead_times(analysis))):
            curves.save(draw(), out / name)
            paths.append(out / name)
    if "sweep_dims" in ds.attrs and ds.attrs["sweep_dims"]:
        paths.append(out / "sweep.png")
        curves.save(curves.sweep(ds), paths[-1])
        paths.append(out / "regimes.png")
        curves.save(curves.regimes(ds), paths[-1])
        first = {d: 0 for d in ds.attrs["sweep_dims"].split(",")}
        ds = ds.isel(first)
    paths += [out / "learning_curves.png", out / "iterations_to_criterion.png"]
    curves.save(curves.learning_curves(ds), paths[-2])
    curves.save(curves.iterations_to_criterion(ds), paths[-1])
    return paths


def assemble(protocol: Protocol, out: Path) -> xr.Dataset:
    """Merge the finished units' results into the run's dataset (deterministic: plan order)."""
    units = plan_units(protocol)
    per_point = [build_dataset(point.protocol, [load_result(u, result_path(out, u.id)) for u in units if u.point == i])
                 for i, point in enumerate(protocol.points)]
    return combine_points(protocol, per_point)


def sweep_note(protocol: Protocol, out: str | Path | None = None) -> str | None:
    """For a sweep (any number of points, one included): one line saying that the phase-space
    analysis and the predictions are not computed, and the command that computes them at one point
    (the protocol without its sweep, the point's values set with --set). None for a single protocol."""
    if protocol.sweep is None:
        return None
    import json
    import shlex

    point = protocol.points[0].coords
    sets = " ".join(f"--set {shlex.quote(f'{k}={v if isinstance(v, str) else json.dumps(v)}')}" for k, v in point.items())
    source = protocol.source if protocol.source and not protocol.source.startswith("<") else "PROTOCOL"
    if source.endswith("results.nc"):  # read back from a run folder: the run's copy of the protocol
        source = str(Path(source).with_name("protocol.yaml"))
    where = shlex.quote(f"{out}_point") if out is not None else "OUT_POINT"
    needs = "" if protocol.config.analysis is not None else " (add an analysis: section for the phase-space analysis)"
    return ("sweep: the phase-space analysis and the predictions are not computed for sweeps; to get them, run the "
            f"protocol at one point without its sweep, e.g. python -m bioplastic run {shlex.quote(str(source))} "
            f"--set sweep=null {sets} --out {where}{needs}")


def after_training(protocol: Protocol) -> list[str]:
    """The files :func:`finish` writes for this protocol (besides figures and the report)."""
    files = []
    if protocol.sweep is None:
        files += ["analysis.nc"] * (protocol.config.analysis is not None) + ["predictions.nc"]
        files += ["brian2.nc", "predictions_brian2.nc"] * protocol.config.brian2.enabled
    return files


def run_protocol(protocol: Protocol, out: str | Path | None = None, *, executor: Executor | None = None,
                 progress: Callable[[int, dict], None] | None = None,
                 interrupt_at: int | None = None,
                 analysis_progress: Callable[[int, dict], None] | None = None) -> tuple[xr.Dataset, Path]:
    """Train every network of the protocol (units already done are skipped; interrupted units resume
    from their last checkpoint); write ``OUT/results.nc`` and figures. Returns the dataset and folder."""
    out = output_dir(protocol, out)
    if prepare_output(protocol, out):
        ds = read_dataset(out / "results.nc")
        if protocol.sweep is None and not all((out / f).exists() for f in after_training(protocol)):
            finish(ds, protocol, out, analysis_progress)  # training finished, what follows was interrupted
        return ds, out
    units = plan_units(protocol)
    todo = [u for u in units if not result_path(out, u.id).exists()]
    if progress and len(todo) < len(units):
        progress(sum(u.work for u in units if u not in todo), {})
    if executor is None or interrupt_at is not None:
        executor = InProcessExecutor(interrupt_at)
    executor.run(protocol.text, todo, out, progress)
    ds = assemble(protocol, out)
    write_dataset(ds, out / "results.nc")
    shutil.rmtree(out / STATE_DIR, ignore_errors=True)
    shutil.rmtree(out / UNITS_DIR, ignore_errors=True)
    finish(ds, protocol, out, analysis_progress)
    return ds, out


def finish(ds: xr.Dataset, protocol: Protocol, out: Path, analysis_progress=None) -> xr.Dataset | None:
    """After training: the phase-space analysis and the brian2 re-simulation (if the protocol asks
    for them), the predictions, figures, the report. Each step's file is written atomically; a finished
    step is not redone. A sweep gets neither the analysis nor the predictions (:func:`sweep_note`)."""
    analysis = None
    if protocol.config.analysis is not None and protocol.sweep is None:
        from ..analysis.phase_space import analyze_run

        analysis = analyze_run(out, protocol.config.analysis, analysis_progress)
    b2 = protocol.config.brian2
    if b2.enabled and not (out / "brian2.nc").is_file():
        from ..simulate.run import simulate_run

        simulate_run(out, trials=b2.trials, codegen=b2.codegen, dt_ms=b2.dt_ms)
    predictions = None
    if protocol.sweep is None:
        from ..analysis.predictions import Brian2Engine, compute_predictions

        predictions = compute_predictions(out)
        if b2.enabled and not (out / "predictions_brian2.nc").is_file():
            from ..simulate.run import CACHE_DIR

            compute_predictions(out, engine=Brian2Engine(b2.codegen, out / CACHE_DIR, b2.dt_ms,
                                                         seed=protocol.config.seed))
    if protocol.config.output.figures:
        write_figures(ds, out, analysis, predictions)
    build_report(ds, out, analysis)
    return analysis


def total_work(protocol: Protocol) -> int:
    return sum(u.work for u in plan_units(protocol))


def summary(ds: xr.Dataset) -> str:
    """A short text table: per condition (and sweep point), learned networks and iterations to criterion."""
    sweep_dims = [d for d in ds.attrs.get("sweep_dims", "").split(",") if d]
    lines = []
    points = sweep_points(ds) if sweep_dims else [({}, "")]
    lw = 2 + max(len("point"), *(len(label) for _, label in points)) if sweep_dims else 0
    head = f"{'point':<{lw}}" if sweep_dims else ""
    ref = str(ds["condition"].values[0])
    w = max(18, 2 + max(len(str(c)) for c in ds["condition"].values))
    lines.append(f"{head}{'condition':<{w}}{'learned':>9}{'abrupt':>8}{'iters to criterion: median [95% CI]':>38}"
                 f"{f'vs {ref}: diff [95% CI], p':>34}   final acc (vs {ref}: diff, p)")
    for point, label in points:
        sub = ds.isel(point)
        for j, cond in enumerate(sub["condition"].values):
            c = sub.sel(condition=cond)
            itc = c["iterations_to_criterion"].values
            ok = np.isfinite(itc)
            censored = "" if ok.all() else ">="  # unlearned networks count at the budget
            med = (f"{censored}{float(c['itc_median']):.0f} [{float(c['itc_ci_low']):.0f}, {float(c['itc_ci_high']):.0f}]"
                   if "itc_median" in c and np.isfinite(float(c["itc_median"])) else "-")
            cmp = "" if j == 0 else (
                f"{float(c['itc_difference']):+.0f} [{float(c['itc_difference_ci_low']):+.0f}, "
                f"{float(c['itc_difference_ci_high']):+.0f}], p={float(c['itc_p_value']):.2g}"
                if "itc_difference" in c and np.isfinite(float(c["itc_difference"])) else "-")
            acc = f"{nanmedian(c['final_accuracy'].values):.3f}"
            if j > 0 and "acc_difference" in c and np.isfinite(float(c["acc_difference"])):
                acc += f" ({float(c['acc_difference']):+.3f}, p={float(c['acc_p_value']):.2g})"
            ab = c["abrupt"].values if "abrupt" in c else np.full(itc.shape, np.nan)
            abrupt = f"{int(np.nansum(ab))}/{int(np.isfinite(ab).sum())}"
            lines.append(f"{label:<{lw}}" * bool(sweep_dims)
                         + f"{str(cond):<{w}}{f'{ok.sum()}/{len(itc)}':>9}{abrupt:>8}{med:>38}{cmp:>34}   {acc}")
    if "itc_p_value" in ds:
        lines.append(f"(unlearned networks count at the budget, {ds.sizes['iteration']} iterations; "
                     f"p: Wilcoxon signed-rank, paired by seed)")
    n_div = int(ds["diverged"].sum())
    if n_div:
        lines.append(f"{n_div} network(s) diverged (see the 'diverged' variable)")
    return "\n".join(lines)
