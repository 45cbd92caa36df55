"""Every figure of a run, by file name, as functions of its datasets (the pipeline writes them as
PNGs next to the datasets; the report embeds the same drawings)."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import xarray as xr

from ..storage.rebuild import protocol_of, protocol_task, trained_network
from . import curves, field, phase
from . import predictions as pfigs
from . import staircase as sfigs

PREDICTION_FIGURES = ("ramping_examples.png", "ramp_distributions.png", "timescale_distributions.png", "psychometric.png",
                      "choice_psth.png", "example_trials.png", "plasticity_course.png")
ANALYSIS_FIGURES = ("gr_alignment.png", "phase_portraits.png", "lead_times.png", "spectra.png")
SWEEP_FIGURES = ("sweep.png", "regimes.png")
CURVE_FIGURES = ("learning_curves.png", "iterations_to_criterion.png", "loss_overlay.png")
#: the linear oracle's figures (a filtered-noise run's staircase.nc)
STAIRCASE_FIGURES = ("staircase.png",)


def recurrent_weights(results: xr.Dataset) -> dict[str, np.ndarray]:
    """Per condition, the effective recurrent weights (seeds, N, N) at the last checkpoint, rebuilt
    from the dataset (empty for kinds without one square matrix: the LSTM's W_hh maps N units to its
    4N gates)."""
    protocol = protocol_of(results)
    out = {}
    for cond in protocol.condition_names:
        net, ok = trained_network(results, protocol, cond, plasticity=False)
        try:
            W = net.recurrent_weights().detach().double().numpy()
        except NotImplementedError:
            return {}
        if W.shape[-1] != W.shape[-2]:
            return {}
        out[cond] = np.where(ok[:, None, None], W, np.nan)
    return out


def channel_names(ds: xr.Dataset) -> dict[str, tuple[str, ...]]:
    """``{"input_names": ..., "output_names": ...}``: what the task of the dataset's protocol names its
    input and output channels (figure legends)."""
    task = protocol_task(protocol_of(ds))
    return {"input_names": task.input_names, "output_names": task.output_names}


def figure_names(sweep: bool, analysis: bool, predictions: bool, staircase: bool = False) -> list[str]:
    """The file names :func:`figures` gives for a run with these datasets (in the same order)."""
    return (list(PREDICTION_FIGURES) * predictions + list(ANALYSIS_FIGURES) * analysis
            + list(SWEEP_FIGURES) * sweep + list(CURVE_FIGURES) + list(STAIRCASE_FIGURES) * staircase)


def figures(results: xr.Dataset, analysis: xr.Dataset | None = None,
            predictions: xr.Dataset | None = None, *, staircase: xr.Dataset | None = None) -> dict[str, Callable[[], object]]:
    """File name -> a function drawing that figure (returns its Axes), for the datasets given.
    A sweep gets its sweep and regime figures and the curves of its first point; a filtered-noise
    run with its ``staircase`` dataset (the linear oracle) the staircase figure."""
    draw: dict[str, Callable[[], object]] = {}
    if predictions is not None:
        draw["ramping_examples.png"] = lambda: pfigs.ramping_examples(predictions)
        draw["ramp_distributions.png"] = lambda: pfigs.ramp_distributions(predictions)
        draw["timescale_distributions.png"] = lambda: pfigs.timescale_distributions(predictions)
        draw["psychometric.png"] = lambda: field.psychometric(predictions)
        draw["choice_psth.png"] = lambda: field.choice_psth(predictions)
        draw["example_trials.png"] = lambda: field.example_trials(predictions, **channel_names(predictions))
        draw["plasticity_course.png"] = lambda: field.plasticity_course(predictions)
    if analysis is not None:
        draw["gr_alignment.png"] = lambda: phase.gr_alignment(results, analysis)
        draw["phase_portraits.png"] = lambda: phase.phase_portraits(results, analysis)
        draw["lead_times.png"] = lambda: phase.lead_times(analysis)
        draw["spectra.png"] = lambda: field.spectra(analysis, recurrent_weights(results))
    first = results
    if results.attrs.get("sweep_dims"):
        draw["sweep.png"] = lambda: curves.sweep(results)
        draw["regimes.png"] = lambda: curves.regimes(results)
        first = results.isel({d: 0 for d in results.attrs["sweep_dims"].split(",")})
    draw["learning_curves.png"] = lambda: curves.learning_curves(first)
    draw["iterations_to_criterion.png"] = lambda: curves.iterations_to_criterion(first)
    draw["loss_overlay.png"] = lambda: field.loss_overlay(first)
    if staircase is not None:
        draw["staircase.png"] = lambda: sfigs.staircase(results, staircase)
    return draw
