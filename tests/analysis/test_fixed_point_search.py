"""The fixed-point search compares across conditions: a shared pool of initial states, an explicit
search for saddles, and how complete the search was."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bioplastic import analyze, build_network, load_protocol, train
from bioplastic.analysis.fixed_points import SADDLE, STABLE, coverage_estimates, find_fixed_points, merge_fixed_points, segment_starts


def test_coverage_estimates_match_their_formulas():
    hits = np.array([[3, 1, 1, 2, 0, -1]])
    fixed = np.array([[True, True, True, True, True, False]])
    c = coverage_estimates(hits, fixed, np.array([7]))
    assert c["singletons"][0] == 2 and c["doubletons"][0] == 1
    assert c["unseen_probability"][0] == pytest.approx(2 / 7)
    assert c["chao1"][0] == pytest.approx(4 + 2 * 1 / (2 * 2))  # 4 found by the pool, f1 = 2, f2 = 1


def four_attractor_network():
    """h' = (1 - a) h + a W tanh(h) with W = 2 I: per unit 0 and +-1.915 are fixed, so the plane has
    4 stable points (+-, +-), 4 saddles between them and an unstable point at 0."""
    net = build_network("leaky_rate", {"n_units": 2}, n_inputs=1, n_outputs=1, dt_ms=10.0,
                        rngs=[np.random.default_rng(0)], dtype=torch.float64)
    with torch.no_grad():
        net.params["W"][:] = 2 * torch.eye(2)
        net.params["W_in"].zero_()
        net.params["b"].zero_()
    return net


def test_saddles_are_found_between_stable_points():
    net = four_attractor_network()
    star = 1.9150080481545
    corners = np.array([[s1 * star, s2 * star] for s1 in (1, -1) for s2 in (1, -1)])
    x0 = (corners[np.arange(16) % 4] + 0.05 * np.random.default_rng(1).standard_normal((16, 2)))[None]
    first = find_fixed_points(net, np.zeros((1, 1)), x0)
    kinds = first.kind_exp[0][first.valid_exp[0] & first.is_fixed_exp[0]]
    assert (kinds == STABLE).sum() == 4 and (kinds == SADDLE).sum() == 0  # a pool near the attractors misses them
    assert first.hits_exp[0][first.valid_exp[0]].sum() == 16
    seg = segment_starts(first)
    merged = merge_fixed_points(first, find_fixed_points(net, np.zeros((1, 1)), seg, tol_q=first.tol_q_e,
                                                          slow_q=first.slow_q_e))
    fixed = merged.valid_exp[0] & merged.is_fixed_exp[0]
    assert (merged.kind_exp[0][fixed] == STABLE).sum() == 4
    assert (merged.kind_exp[0][fixed] == SADDLE).sum() == 4
    saddles = merged.x_expxs[0][fixed & (merged.kind_exp[0] == SADDLE)]
    np.testing.assert_allclose(np.sort(np.abs(saddles), axis=1), [[0, star]] * 4, atol=1e-8)
    # the targeted search's points carry no hits: coverage counts the pool's searches only
    assert merged.hits_exp[0][fixed & (merged.kind_exp[0] == SADDLE)].tolist() == [0] * 4
    assert merged.hits_exp[0][fixed & (merged.kind_exp[0] == STABLE)].sum() == 16


def test_counts_at_the_first_checkpoint_do_not_depend_on_the_condition():
    """At checkpoint 0 every condition has the same weights: with the shared pool the fixed points
    are the same, even where a condition's short-term plasticity changes its trajectories."""
    protocol = load_protocol({
        "name": "pool", "seed": 2, "seeds": 3,
        "task": {"kind": "evidence_accumulation", "stimulus_ms": 200, "delay_min_ms": 40, "delay_max_ms": 100,
                 "response_ms": 60},
        "model": {"kind": "leaky_rate", "n_units": 16, "g": 1.6},
        "training": {"iterations": 4, "batch_size": 4, "checkpoint_every": 2, "eval_every": 2, "eval_trials": 8},
        "conditions": {"baseline": {}, "plastic": {"tcr": {"form": "plasticity", "plasticity": {"eta_F": 0.5}}}},
        "analysis": {"initial_states": 16, "trials": 4},
    })
    results = train(protocol)
    an = analyze(results, protocol)
    first = an.isel(checkpoint=0)
    for v in ("n_stable", "n_saddle", "n_fixed"):
        np.testing.assert_array_equal(first[v].sel(condition="baseline"), first[v].sel(condition="plastic"), err_msg=v)
    np.testing.assert_array_equal(first["fp_x"].sel(condition="baseline"), first["fp_x"].sel(condition="plastic"))
    assert an.attrs["n_initial_states"] == 16
    hits = an["fp_hits"].where(an["fp_hits"] >= 0).sum(("context", "fp"))
    assert float(hits.max()) <= 16
    by_pool = ((an["fp_hits"] > 0) & an["fp_is_fixed"]).sel(context="zero").sum("fp")
    chao1 = an["n_fixed_chao1"]
    assert bool((chao1.isnull() | (chao1 >= by_pool)).all()) and bool((chao1 >= 1).any())


def test_a_seeds_fixed_points_do_not_depend_on_how_many_seeds_the_run_has():
    """Seeds 0 and 1 get the same fixed points in a run of 2 seeds and in a run of 3: their training
    is the same (tests/test_determinism.py) and a seed's initial states never depend on later seeds."""
    def run(seeds):
        protocol = load_protocol({
            "name": "seeds", "seed": 4, "seeds": seeds,
            "task": {"kind": "evidence_accumulation", "stimulus_ms": 200, "delay_min_ms": 40, "delay_max_ms": 100,
                     "response_ms": 60},
            "model": {"kind": "leaky_rate", "n_units": 12, "g": 1.6},
            "training": {"iterations": 4, "batch_size": 4, "checkpoint_every": 2, "eval_every": 2, "eval_trials": 8},
            "conditions": {"baseline": {}},
            "analysis": {"initial_states": 8, "trials": 4},
        })
        return analyze(train(protocol), protocol).isel(seed=[0, 1])

    two, three = run(2), run(3)
    for v in ("n_stable", "n_saddle", "n_fixed"):
        np.testing.assert_array_equal(two[v], three[v], err_msg=v)
    P = two.sizes["fp"]  # points are padded to the most any seed has: a third seed may pad more
    assert not three["fp_valid"].isel(fp=slice(P, None)).any()
    np.testing.assert_array_equal(two["fp_hits"], three["fp_hits"].isel(fp=slice(0, P)))
    np.testing.assert_allclose(two["fp_x"], three["fp_x"].isel(fp=slice(0, P)), rtol=1e-9, atol=1e-12)
