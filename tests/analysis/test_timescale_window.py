"""Timescales are measured in an input-free period or not at all, and when most units are longer
than measurable that fraction is the headline (the median of the fitted ones is biased low)."""
from __future__ import annotations

import numpy as np
import xarray as xr

from bioplastic import build_task
from bioplastic.analysis.predictions import LONG_HEADLINE, input_free_period, prediction_sentences
from bioplastic.seeds import numpy_rng
from bioplastic.tasks import Trials


def test_the_delay_of_evidence_accumulation_is_input_free():
    task = build_task("evidence_accumulation", {})
    w = input_free_period(task.sample(numpy_rng(0, "eval_data", 0), 32))
    assert w is not None and w.name == "delay"


def test_a_period_with_input_is_not_used_and_none_is_said_when_there_is_none():
    B, T = 6, 30
    u = np.zeros((B, T, 1), np.float32)
    periods = {"delay": np.tile([10, 20], (B, 1)), "fixation": np.tile([0, 10], (B, 1))}
    u[2, 15, 0] = 1.0  # one pulse inside the delay of one trial: the delay is not input-free
    trials = Trials(u, np.zeros((B, T, 1), np.float32), np.ones((B, T, 1), np.float32), periods)
    assert input_free_period(trials).name == "fixation"
    u[0, 3, 0] = 1.0
    assert input_free_period(trials) is None
    # a flip-flop has pulses anywhere: no input-free period
    ff = build_task("flipflop", {})
    assert input_free_period(ff.sample(numpy_rng(0, "eval_data", 0), 16)) is None


def predictions(long_fraction: float, period: str = "delay") -> xr.Dataset:
    conds = ["baseline", "tcr"]
    est = lambda v: (("condition", "summary_statistic"), np.array([[v, v - 0.05, v + 0.05]] * 2))  # noqa: E731
    eff = (("condition", "statistic"), np.array([[np.nan] * 4, [0.0, -0.1, 0.1, 1.0]]))
    ds = xr.Dataset({"timescale_median_ms_summary": est(300.0), "timescale_median_ms_effect": eff,
                     "fraction_timescale_long_summary": est(long_fraction), "fraction_timescale_long_effect": eff,
                     "timescale_median_ms": (("condition", "seed"), np.full((2, 3), 300.0)),
                     "fraction_timescale_long": (("condition", "seed"), np.full((2, 3), long_fraction))},
                    coords={"condition": conds})
    ds.attrs.update(timescale_period=period, timescale_window_ms=500.0, ramp_period="delay")
    return ds


def test_the_long_fraction_is_the_headline_when_it_dominates():
    text = " ".join(prediction_sentences(predictions(LONG_HEADLINE + 0.2)))
    assert "longer than measurable in a window of at least 500 ms" in text and "biased low" in text
    assert "Median single-unit autocorrelation timescale" not in text
    text = " ".join(prediction_sentences(predictions(0.1)))
    assert "Median single-unit autocorrelation timescale during the delay: 300 ms" in text


def test_a_task_without_an_input_free_period_says_so():
    text = " ".join(prediction_sentences(predictions(0.1, period="none")))
    assert "not measured: the task has no input-free period" in text
    assert "Median single-unit" not in text
