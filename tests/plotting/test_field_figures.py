"""What the figures show, read from their artists (lines, colours, labels, ticks, legends), not pixels:
inputs named and coloured by channel, one legend per row outside the data, every condition's Jacobian
spectrum visible, integer ticks on counts and shared axes, censored timescales said to be censored,
ramps of the period only, timeline labels inside their panel."""
from __future__ import annotations

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr

from bioplastic.plotting import curves, field, phase
from bioplastic.plotting import predictions as pfigs
from bioplastic.plotting.figures import channel_names, figures


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _rgb(c):
    return mcolors.to_hex(c)


def test_example_trials_name_and_colour_the_inputs_by_channel_with_one_legend_per_row(api_run):
    protocol, ds = api_run
    pred = ds["predictions"]
    names = channel_names(pred)
    assert names == {"input_names": ("left pulses", "right pulses", "go cue"), "output_names": ("choice (+1 right, -1 left)",)}
    axes = figures(ds["results"], None, pred)["example_trials.png"]()
    cond_colors = {_rgb(field.condition_color(pred, c)) for c in pred["condition"].values}
    for ax in axes[0]:
        lines = ax.get_lines()
        assert [ln.get_label() for ln in lines] == list(names["input_names"])
        assert [_rgb(ln.get_color()) for ln in lines] == [_rgb(c) for c in field.INPUT_COLORS[:3]]
        assert not {_rgb(ln.get_color()) for ln in lines} & cond_colors  # colour means condition elsewhere
    legends = [ax.get_legend() for ax in axes.flat if ax.get_legend() is not None]
    assert len(legends) == 2 and all(ax.get_legend() is not None for ax in axes[:, -1])
    fig = axes.flat[0].figure
    fig.canvas.draw()
    for ax in axes[:, -1]:  # outside the panels, to their right
        assert ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1
    labels = [t.get_text() for t in axes[1, -1].get_legend().get_texts()]
    assert labels == ["target (scored steps)"] + [str(c) for c in pred["condition"].values]  # each once
    assert axes[1, -1].get_legend().get_title().get_text() == "output: choice (+1 right, -1 left)"


def test_example_trials_with_several_outputs_name_each_by_line_style(api_run):
    pred = api_run[1]["predictions"]
    two = xr.Dataset({k: xr.concat([pred[k], pred[k]], "output").transpose(*pred[k].dims)
                      for k in ("example_output", "example_target", "example_mask")}, attrs=pred.attrs)
    two["example_input"] = pred["example_input"]
    axes = field.example_trials(two, output_names=["fixation", "choice 1"])
    labels = [t.get_text() for t in axes[1, -1].get_legend().get_texts()]
    assert labels == ["target (scored steps)"] + [str(c) for c in pred["condition"].values] + ["fixation", "choice 1"]
    assert [ax.get_legend() is None for ax in axes[:, 0]] == [True, True]


def test_the_jacobian_spectrum_of_every_condition_has_its_own_panel(api_run):
    _, ds = api_run
    an = ds["analysis"]
    conds = [str(c) for c in an["condition"].values]
    axes = field.spectra(an, {})
    assert len(axes) == 1 + len(conds)
    last = an.isel(checkpoint=-1).sel(context="zero")
    for ax, cond in zip(axes[1:], conds):
        assert ax.get_title().startswith(f"{cond}: Jacobian at")
        a = last.sel(condition=cond)
        stable = ((a["fp_kind"] == 0) & a["fp_is_fixed"] & a["fp_valid"]).values
        n = int(np.isfinite(a["fp_eig_real"].values[stable]).sum())
        data = [ln for ln in ax.get_lines() if ln.get_linestyle() == "None"]  # the markers (the circle is dashed)
        assert sum(len(ln.get_xdata()) for ln in data) == n
        assert {_rgb(ln.get_color()) for ln in data} <= {_rgb(field.condition_color(an, cond))}
    assert len({ax.get_xlim() for ax in axes[1:]}) == 1 and len({ax.get_ylim() for ax in axes[1:]}) == 1


def test_gr_alignment_shares_each_rows_axis_and_counts_have_integer_ticks(api_run):
    _, ds = api_run
    axes = phase.gr_alignment(ds["results"], ds["analysis"])
    for row in axes:
        for ax in row[1:]:
            assert row[0].get_shared_y_axes().joined(row[0], ax)
    axes.flat[0].figure.canvas.draw()
    for ax in axes[2]:
        ticks = [t for t in ax.get_yticks() if ax.get_ylim()[0] <= t <= ax.get_ylim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)


def _flat_and_decaying(pred: xr.Dataset, level: float) -> xr.Dataset:
    """Every unit's autocorrelation set to a flat ``level`` (or, level None, an exponential decay)."""
    lag = pred["lag"].values
    ac = pred["autocorrelation"].copy()
    shape = np.exp(-lag / 200.0) if level is None else np.full(lag.shape, level)
    ac.values[...] = shape
    tau = pred["timescale_ms"].copy()
    tau.values[...] = 300.0
    return pred.assign(autocorrelation=ac, timescale_ms=tau, timescale_amplitude=tau * 0 + 1.0, timescale_offset=tau * 0)


def test_a_flat_autocorrelation_is_called_censored_not_a_timescale(api_run):
    pred = api_run[1]["predictions"]
    left, right = pfigs.timescale_distributions(_flat_and_decaying(pred, 0.97))
    labels = [t.get_text() for t in right.get_legend().get_texts()]
    assert labels and all("tau > window (censored: >= 0.97 up to" in s and "tau =" not in s for s in labels)
    plt.close("all")
    left, right = pfigs.timescale_distributions(_flat_and_decaying(pred, None))
    labels = [t.get_text() for t in right.get_legend().get_texts()]
    assert labels and all(s.endswith("tau = 300 ms") for s in labels)


def test_a_relaxation_after_the_stimulus_is_not_a_ramp():
    t = np.arange(60) * 20.0
    relax = -0.5 * (1 - np.exp(-t / 100.0))            # all of its change in the first 200 ms
    ramp = 0.3 * t / 1000.0                             # steady
    wiggle = np.where(t < 100, 0.05 * t / 100, 0.05) + 0.2 * (t / 1200.0)  # a small dip, then a ramp
    assert pfigs.steady_ramp(np.stack([relax, ramp, wiggle, np.zeros_like(t)])).tolist() == [False, True, True, False]


def test_ramping_examples_draw_build_up_units_on_their_preferred_choice_only(api_run):
    pred = api_run[1]["predictions"]
    cond = str(pred["condition"].values[0])
    # make one unit of seed 0 a steep relaxation and another a steady build-up, both classed build-up
    sub = pred.copy(deep=True)
    T = sub.sizes["period_time"]
    t = sub["period_time"].values
    idx = dict(condition=0, seed=0)
    cls = sub["ramp_class"].values
    cls[idx["condition"], idx["seed"]] = 0
    cls[0, 0, :2] = 1
    sub["ramp_slope_preferred"].values[0, 0, :2] = [-2.0, 0.5]
    sub["ramp_preferred_choice"].values[0, 0, :2] = sub["choice"].values[0]
    sub["ramp_slope"].values[0, 0, :2] = [-2.0, 0.5]
    ps = sub["psth_by_choice"].values
    ps[0, 0, 0, 0] = -(1 - np.exp(-np.arange(T) / 3.0))
    ps[0, 0, 1, 0] = np.linspace(0, 0.5, T)
    (ax, *_) = pfigs.ramping_examples(sub)
    shown = [ln.get_label() for ln in ax.get_lines() if not ln.get_label().startswith("_") and "not ramping" not in ln.get_label()]
    assert shown == [f"unit 1 (choice {sub['choice'].values[0]:+g}): +0.50 /s"], shown
    np.testing.assert_array_equal(ax.get_lines()[0].get_ydata(), ps[0, 0, 1, 0])
    assert ax.get_legend().get_title().get_text().startswith(f"{cond}, seed 0:")
    assert np.allclose(t, ax.get_lines()[0].get_xdata())


def test_timeline_labels_stay_inside_their_panel(api_run):
    res = api_run[1]["results"].copy()
    res["abrupt"] = xr.zeros_like(res["abrupt"])
    res["search_phase"] = xr.full_like(res["search_phase"], 100.0)
    axes = curves.learning_curves(res)
    fig = axes.flat[0].figure
    fig.canvas.draw()
    for ax in axes[2]:
        texts = [t for t in ax.texts if t.get_text() == "drop not abrupt"]
        assert len(texts) == res.sizes["seed"]
        box = ax.get_window_extent()
        for t in texts:
            ext = t.get_window_extent()
            assert box.x0 <= ext.x0 and ext.x1 <= box.x1


def test_the_psychometric_legend_says_when_the_slope_is_a_lower_bound():
    from bioplastic.analysis.psychometric import psychometric_function

    x = np.array([-3.0, -1.0, 1.0, 3.0])
    curve = psychometric_function(x, 1.2, 0.1, 0.02)
    pred = xr.Dataset({"p_right": (("condition", "seed", "evidence_level"), np.stack([[curve] * 3, [(x > 0) * 1.0] * 3])),
                       "psychometric_slope": (("condition", "seed"), [[1.2, 1.1, 1.3], [20.0, 20.0, 20.0]]),
                       "psychometric_bias": (("condition", "seed"), [[0.1, 0.1, 0.1], [0.0, 0.0, 0.0]]),
                       "psychometric_lapse": (("condition", "seed"), [[0.02] * 3, [0.0] * 3]),
                       "psychometric_fit_status": (("condition", "seed"), [[0, 0, 0], [2, 2, 0]])},
                      coords={"condition": ["graded", "switch"], "evidence_level": x})
    ax = field.psychometric(pred)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("graded (slope 1.2,") and ">=" not in labels[0]
    assert labels[1].startswith("switch (slope >= 20,")
