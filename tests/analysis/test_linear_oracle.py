"""The linear oracle's measurements: the effective recurrence, the bulk and its outliers, GR events,
the matching of a plateau to the optimum it sits at; and a tiny filtered-noise run through the
pipeline (staircase.nc, its figure and the report's section)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from bioplastic import load_protocol
from bioplastic.analysis.linear_oracle import (
    COMPARISONS,
    OUTLIER_FACTOR,
    VARIABLES,
    effective_recurrence,
    gr_events,
    leading_eigenvalues,
    match_optimum,
    network_staircase,
    plateau_eigenvalues,
    time_on_levels,
)
from bioplastic.analysis.pole_fit import optimal_approximations
from bioplastic.analysis.staircase import Drop, Plateau, Staircase
from bioplastic.networks import build_network
from bioplastic.pipeline import read_run, run_protocol
from bioplastic.tasks import build_task


def test_effective_recurrence_of_a_linear_leaky_network():
    for tau in (20.0, 50.0):
        net = build_network("leaky_rate", {"n_units": 5, "phi": "linear", "tau_ms": tau}, n_inputs=1, n_outputs=1,
                            dt_ms=20.0, rngs=[np.random.default_rng(0), np.random.default_rng(1)], dtype=torch.float64)
        J, centre = effective_recurrence(net)
        a = net.alpha
        W = net.recurrent_weights().detach().numpy()
        np.testing.assert_allclose(J, (1 - a) * np.eye(5)[None] + a * W, atol=1e-15)
        np.testing.assert_allclose(centre, [1 - a, 1 - a])


def test_outliers_of_a_random_bulk_and_a_low_rank_part():
    """Random matrices (the circular law's bulk) have no outlier; a rank-one or rank-two part of
    strength beyond the bulk adds exactly that many; the bulk radius is the circular law's."""
    rng = np.random.default_rng(0)
    N, sigma = 32, 1e-3
    bulk = rng.normal(0, sigma, (200, N, N))
    eig, radius, n_out = leading_eigenvalues(bulk, np.zeros(200), 4, n_excluded=4)
    assert n_out.max() == 0
    assert np.median(radius) == pytest.approx(sigma * np.sqrt(N), rel=0.1)
    u, v = rng.normal(size=(2, N)) / np.sqrt(N)
    one = bulk[:20] + 0.3 * np.outer(u, u) / (u @ u)
    two = one + 0.1 * np.outer(v, v) / (v @ v)
    for J, n in ((one, 1), (two, 2)):
        eig, radius, n_out = leading_eigenvalues(J, np.zeros(20), 4, n_excluded=4)
        assert (n_out == n).all()
    np.testing.assert_allclose(np.sort(np.abs(eig[:, :2]), 1)[:, ::-1], np.tile([0.3, 0.1], (20, 1)), atol=0.01)
    # a low-rank part of the bulk's own radius adds no outlier
    edge = bulk[:5] + 0.5 * OUTLIER_FACTOR * sigma * np.sqrt(N) * np.outer(u, u) / (u @ u)
    assert leading_eigenvalues(edge, np.zeros(5), 4, 4)[2].max() == 0


def test_gr_events_are_the_checkpoints_from_which_outliers_stay():
    ck = np.arange(0, 500, 50)
    n = np.array([0, 1, 0, 1, 1, 1, 2, 1, 2, 2])
    np.testing.assert_array_equal(gr_events(n, ck, 3), [150, 400, np.nan])
    np.testing.assert_array_equal(gr_events(np.full(10, 2), ck, 2), [0, 0])


def test_plateaus_are_matched_to_the_optimum_their_eigenvalues_point_to():
    """Two single-pole optima with close errors (0.548 at 0.978, 0.603 at 0.151): the level alone
    cannot tell them apart, the network's leading eigenvalue does."""
    task = build_task("filtered_noise", {"poles": [0.95, 0.5], "residues": [0.3, -0.8]})
    optima = optimal_approximations(task.impulse_response(), task.lag_weights(), 2)
    V = optima[0][0].error
    assert match_optimum(0.58, {1: np.array([0.16 + 0j])}, optima, V)[:2] == (1, 1)
    assert match_optimum(0.58, {1: np.array([0.97 + 0j])}, optima, V)[:2] == (1, 0)
    k, i, dist = match_optimum(0.01, {1: np.array([0.9 + 0j]), 2: np.array([0.94 + 0j, 0.52 + 0j])}, optima, V)
    assert (k, i) == (2, 0) and dist == pytest.approx(0.02, abs=1e-3)
    assert match_optimum(0.85, {1: np.array([0.0 + 0j])}, optima, V)[:2] == (0, 0)
    # the eigenvalues on a plateau: the same order at every checkpoint, the median of each
    lam = np.array([[0.5 + 0.2j, 0.5 - 0.2j, 0.01], [0.6 - 0.1j, 0.6 + 0.1j, 0.02], [0.55 + 0.3j, 0.55 - 0.3j, 0.0]])
    np.testing.assert_allclose(plateau_eigenvalues(lam, 2), [0.55 + 0.2j, 0.55 - 0.2j])


def test_time_on_levels():
    err = np.array([[0.86, np.nan], [0.34, 0.75], [0.0, np.nan]])
    plateaus = [dict(level=0.85, length=300, k=0, optimum=0), dict(level=0.33, length=4000, k=1, optimum=0)]
    drops = [dict(after=0.33), dict(after=0.01)]
    t = time_on_levels(plateaus, drops, err, exact=1e-9)
    assert t[0, 0] == 300 and t[1, 0] == 4000 and t[1, 1] == 0  # went below the local optimum without sitting there
    assert np.isnan(t[2, 0]) and np.isnan(t[0, 1])  # the exact fit: the rest of training; no optimum (0, 1)
    assert np.isnan(time_on_levels(plateaus[:1], [], err)[1, 0])  # never reached


def test_plateaus_at_the_same_optimum_are_one_step():
    """The noise floor near an exact fit sinks in steps (0.005 -> 0.0026): one plateau at the 2-pole
    optimum, no third drop; drops are paired with the GR event of the pole count after them."""
    task = build_task("filtered_noise", {"burn_in_steps": 40, "trial_steps": 81})
    optima = optimal_approximations(task.impulse_response(), task.lag_weights(), 2)
    err = np.array([[optima[0][0].error, np.nan], [optima[1][0].error, optima[1][1].error], [optima[2][0].error, np.nan]])
    ck = np.arange(0, 6001, 50)
    eig = np.zeros((len(ck), 8), complex)
    eig[ck >= 300, 0], eig[ck >= 4300, 1] = 0.36, 0.6
    eig[ck >= 4300, 0] = 0.95
    n_out = (ck >= 350).astype(int) + (ck >= 1900)
    stair = Staircase([Plateau(0.855, 0, 306), Plateau(0.338, 456, 3810), Plateau(0.005, 4480, 500), Plateau(0.0026, 5100, 900)],
                      [Drop(306, 456, 380, 0.855, 0.338), Drop(4266, 4480, 4350, 0.338, 0.005), Drop(4980, 5100, 5040, 0.005, 0.0026)])
    plateaus, drops = network_staircase(stair, eig, n_out, ck, optima, err, err[0, 0])
    assert [(p["k"], p["optimum"]) for p in plateaus] == [(0, 0), (1, 0), (2, 0)] and len(drops) == 2
    assert plateaus[2]["length"] == 6000 - 4480 and plateaus[2]["predicted"] == 0 and np.isnan(plateaus[2]["ratio"])
    assert plateaus[1]["ratio"] == pytest.approx(0.338 / err[1, 0])
    assert [d["poles_after"] for d in drops] == [1, 2] and [d["lead"] for d in drops] == [306 - 350, 4266 - 1900]


TINY = {"name": "tiny_staircase", "seed": 3, "seeds": 2,
        "task": {"kind": "filtered_noise", "poles": [0.9, 0.3], "residues": [0.3, -0.9], "burn_in_steps": 20,
                 "trial_steps": 41},
        "model": {"kind": "leaky_rate", "phi": "linear", "n_units": 8, "tau_ms": 20, "g": 0.003, "input_scale": 0.001,
                  "output_scale": 0.003},
        "training": {"optimizer": "sgd", "lr": 0.05, "iterations": 300, "batch_size": 16, "clip_grad_norm": None,
                     "checkpoint_every": 50, "eval_every": 25, "eval_trials": 32, "loss_smoothing": 20},
        "conditions": {"baseline": {}, "tcr_loss": {"tcr": {"form": "loss", "lambda": 0.1, "normalize": "variance"}}}}


def test_a_filtered_noise_run_writes_the_oracle_and_its_report_section(tmp_path: Path):
    protocol = load_protocol(TINY)
    _, out = run_protocol(protocol, tmp_path / "run", strict=True)
    run = read_run(out)
    st = run.staircase
    assert st is not None and (out / "staircase.png").is_file()
    assert st.sizes["checkpoint"] == run.results.sizes["checkpoint"] and st.sizes["eig"] == 8
    for name in st.data_vars:
        assert st[name].attrs.get("long_name"), name
    task = build_task("filtered_noise", {k: v for k, v in TINY["task"].items() if k != "kind"})
    assert st["kpole_error"].values[0, 0] == pytest.approx((task.lag_weights() * task.impulse_response() ** 2).sum())
    # the first plateau of the baseline networks is at the target's variance, matched to k = 0
    np.testing.assert_allclose(st["plateau_level"].sel(condition="baseline").values[:, 0], st["kpole_error"].values[0, 0],
                               rtol=0.1)
    assert (st["plateau_k"].sel(condition="baseline").values[:, 0] == 0).all()
    page = (out / "report.html").read_text()
    section = re.search(r"<section id='staircase'>(.*?)</section>", page, flags=re.S).group(1)
    assert "<img id='fig-staircase'" in section and "predicted plateau level" in section
    assert page.index("id='learning'") < page.index("id='staircase'") < page.index("id='speed'")
    assert "staircase.nc" in page


def test_no_staircase_section_for_other_tasks(complete_run: Path):
    page = (complete_run / "report.html").read_text()
    assert "id='staircase'" not in page and not (complete_run / "staircase.nc").exists()


def test_every_variable_is_documented():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "linear_oracle.md").read_text()
    missing = [name for name in list(VARIABLES) + list(COMPARISONS) if f"`{name}`" not in doc]
    assert not missing, f"document in docs/linear_oracle.md: {missing}"
