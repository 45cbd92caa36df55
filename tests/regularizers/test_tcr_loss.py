"""TCR as a loss term: the raw and the variance-normalised form (regularizers/tcr_loss.py).

- BPTT's gradient of task loss + lambda * term (both forms, and a mixed ensemble) equals the gradient
  of a plain float64 autograd loop of the leaky-rate equations written out by hand;
- the normalised term is invariant to rescaling the state, the raw one scales with its square;
- the TCR / task gradient-norm ratio equals its oracle, and measuring it changes no training number;
- protocols that ask for the normalised form with a rule that does not support it are refused.
"""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from pydantic import ValidationError

from bioplastic import load_protocol
from bioplastic.analysis.learning_curves import add_tcr_grad_ratio_search
from bioplastic.learning import Batch
from bioplastic.protocol.errors import ProtocolError
from bioplastic.protocol.schema import TCRConfig
from bioplastic.regularizers.tcr_loss import EPS, tcr_term, tcr_term_reference
from bioplastic.storage.results import VARIABLES
from bioplastic.training.loop import EnsembleTrainer
from bioplastic.training.units import groups

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "learning"))
from test_rules import F64, ORACLE, alive, make_batch, make_net, make_rule  # noqa: E402


def with_normalize(batch: Batch, normalize, measure=False) -> Batch:
    return Batch(batch.inputs_exbxtxi, batch.targets_exbxtxo, batch.mask_exbxtxo, batch.window_exbxt,
                 batch.noise_exbxtxn, batch.lambda_e, None, normalize, measure)


def oracle_losses(net, batch, normalize):
    """Task loss and TCR term per member from a hand-written float64 loop of the leaky-rate network:
    h_t = (1 - a) h_{t-1} + a (W tanh(h_{t-1}) + W_in u_t + b) + sigma_h sqrt(a) xi_t (h_{-1} = 0),
    y_t = W_out tanh(h_t) + b_out."""
    p, a, sigma = net.params, net.alpha, net.config.sigma_h
    u, xi = batch.inputs_exbxtxi, batch.noise_exbxtxn
    E, B, T, _ = u.shape
    h = torch.zeros(E, B, net.n_units, dtype=F64)
    hs = []
    for t in range(T):
        inp = torch.einsum("ebj,eij->ebi", torch.tanh(h), p["W"]) + torch.einsum("ebi,eni->ebn", u[:, :, t], p["W_in"])
        h = (1 - a) * h + a * (inp + p["b"][:, None]) + sigma * a ** 0.5 * xi[:, :, t]
        hs.append(h)
    H = torch.stack(hs, 2)                                                     # (E, B, T, N)
    y = torch.einsum("ebtn,eon->ebto", torch.tanh(H), p["W_out"]) + p["b_out"][:, None, None]
    m = batch.mask_exbxtxo
    task = ((y - batch.targets_exbxtxo).square() * m).sum((1, 2, 3)) / m.sum((1, 2, 3))
    w = batch.window_exbxt
    terms = []
    for e in range(E):
        d2 = (H[e, :, 1:] - H[e, :, :-1]).square().mean(-1)                   # (B, T-1)
        num = (d2 * w[e, :, 1:]).sum() / w[e, :, 1:].sum()
        if normalize[e] == "variance":
            hbar = (H[e] * w[e, :, :, None]).sum(1, keepdim=True) / w[e].sum(1)[:, None, None]
            var = ((H[e] - hbar).square().mean(-1) * w[e]).sum() / w[e].sum()
            num = num / (var + EPS)
        terms.append(num)
    return task, torch.stack(terms)


NORMALIZE = [("none", "none"), ("variance", "variance"), ("none", "variance")]


@pytest.mark.parametrize("normalize", NORMALIZE, ids=["raw", "variance", "mixed"])
def test_bptt_gradient_equals_a_hand_written_autograd_loop(normalize):
    net = make_net("leaky_rate", {"phi": "tanh", "sigma_h": 0.3}, N=6)
    batch = with_normalize(make_batch(N=6, lam=(0.4, 1.3)), normalize)
    res = make_rule("bptt", net).step(batch, alive(2))
    task, term = oracle_losses(net, batch, normalize)
    torch.testing.assert_close(res.task_loss_e, task, **ORACLE)
    torch.testing.assert_close(res.term_e, term, **ORACLE)
    expected = torch.autograd.grad((task + batch.lambda_e * term).sum(), list(net.params.values()))
    for (name, _), g in zip(net.params.items(), expected):
        assert g.abs().max() > 0, name
        torch.testing.assert_close(res.grads[name], g, **ORACLE, msg=lambda m, name=name: f"{name}: {m}")


def test_raw_form_is_unchanged_and_normalised_form_is_scale_free():
    g = torch.Generator().manual_seed(1)
    h = torch.randn(3, 4, 9, 5, generator=g, dtype=F64)
    w = (torch.rand(3, 4, 9, generator=g, dtype=F64) < 0.7).to(F64)
    w[2] = 0  # an empty window: the term is 0 in both forms
    # the raw form, the formula it always was (to float64 rounding: the fused term sums in another order)
    d2 = (h[:, :, 1:] - h[:, :, :-1]).square().mean(-1)
    raw = (d2 * w[:, :, 1:]).sum((1, 2)) / w[:, :, 1:].sum((1, 2)).clamp_min(1)
    torch.testing.assert_close(tcr_term(h, w), raw, rtol=1e-14, atol=0)
    assert torch.equal(tcr_term(h, w, "none"), tcr_term(h, w))
    var = tcr_term(h, w, "variance")
    assert var[2] == 0 and raw[2] == 0 and var[:2].min() > 0
    for c in (0.1, 3.0, 100.0):
        torch.testing.assert_close(tcr_term(c * h, w, "variance"), var, rtol=1e-5, atol=0)
        torch.testing.assert_close(tcr_term(c * h, w), c ** 2 * raw, rtol=1e-12, atol=0)
    # per member
    torch.testing.assert_close(tcr_term(h, w, ("variance", "none", "variance")),
                               torch.stack([var[0], tcr_term(h, w)[1], var[2]]), rtol=0, atol=0)
    with pytest.raises(ValueError, match="normalize"):
        tcr_term(h, w, "std")
    with pytest.raises(ValueError, match="one per member"):
        tcr_term(h, w, ("none", "variance"))


@pytest.mark.parametrize("normalize", NORMALIZE[:2], ids=["raw", "variance"])
def test_gradient_ratio_equals_its_oracle_and_leaves_the_update_alone(normalize):
    net = make_net("leaky_rate", {"phi": "tanh", "sigma_h": 0.3}, members=(0, 1, 2), N=6)
    batch = make_batch(E=3, N=6, lam=(0.0, 0.7, 2.0))
    plain = make_rule("bptt", net).step(with_normalize(batch, normalize[0]), alive(3))
    measured = make_rule("bptt", net).step(with_normalize(batch, normalize[0], measure=True), alive(3))
    assert plain.tcr_grad_ratio_e is None
    for name, g in plain.grads.items():
        assert torch.equal(measured.grads[name], g), name
    task, term = oracle_losses(net, batch, [normalize[0]] * 3)
    params = list(net.params.values())
    norm = lambda loss: torch.stack([  # noqa: E731
        sum(g[e].square().sum() for g in torch.autograd.grad(loss[e], params, retain_graph=True, allow_unused=True)
            if g is not None).sqrt() for e in range(3)])
    expected = norm(batch.lambda_e * term) / norm(task)
    ratio = measured.tcr_grad_ratio_e
    assert torch.isnan(ratio[0])  # lambda = 0: not measured
    torch.testing.assert_close(ratio[1:], expected[1:], **ORACLE)
    # a dead member gets NaN
    dead = make_rule("bptt", net).step(with_normalize(batch, normalize[0], measure=True), torch.tensor([True, False, True]))
    assert torch.isnan(dead.tcr_grad_ratio_e[1]) and torch.isfinite(dead.tcr_grad_ratio_e[2])


@pytest.mark.parametrize("normalize", ["none", "variance"])
def test_the_loop_records_the_ratio_at_evaluations_without_changing_training(write_protocol, normalize):
    protocol = load_protocol(write_protocol(), [f"tcr.normalize={normalize}"])
    (members,) = groups(protocol)
    runs = []
    for measure in (True, False):
        trainer = EnsembleTrainer(members, protocol.config.seed)
        if not measure:
            trainer.eval_index = {}
        runs.append(trainer.run())
    measured, plain = runs
    for key in measured.history:
        np.testing.assert_array_equal(measured.history[key], plain.history[key], err_msg=key)
    for key in measured.weights:
        np.testing.assert_array_equal(measured.weights[key], plain.weights[key], err_msg=key)
    ratio = measured.eval_history["tcr_grad_ratio"]
    assert np.isnan(plain.eval_history["tcr_grad_ratio"]).all()
    tcr = np.array([m.condition.name == "tcr_loss" for m in members])
    assert np.isnan(ratio[~tcr]).all()                      # baseline: lambda = 0
    assert np.isnan(ratio[:, -1]).all()                     # the last evaluation has no batch after it
    assert np.isfinite(ratio[tcr, :-1]).all() and (ratio[tcr, :-1] > 0).all()
    assert measured.eval_iterations[-1] == protocol.config.training.iterations


def test_rules_without_the_ratio_record_nan(write_protocol):
    protocol = load_protocol(write_protocol(), ["training.rule=rflo", "training.iterations=4"])
    (members,) = groups(protocol)
    result = EnsembleTrainer(members, protocol.config.seed).run()
    assert np.isnan(result.eval_history["tcr_grad_ratio"]).all()


def test_search_phase_summary_is_the_median_before_the_drop_onset():
    ratio = np.array([[[1.0, 2.0, 9.0, 100.0, np.nan]], [[np.nan, np.nan, np.nan, np.nan, np.nan]],
                      [[1.0, 3.0, 5.0, 7.0, np.nan]]])                        # (condition, seed, evaluation)
    ds = xr.Dataset({"tcr_grad_ratio": (("condition", "seed", "evaluation"), ratio),
                     "drop_onset": (("condition", "seed"), np.array([[7.0], [7.0], [np.nan]]))},
                    coords={"evaluation": [0, 3, 6, 9, 12]})
    add_tcr_grad_ratio_search(ds)
    np.testing.assert_array_equal(ds["tcr_grad_ratio_search"].values, [[2.0], [np.nan], [np.nan]])
    assert VARIABLES["tcr_grad_ratio"][0] == "1" and VARIABLES["tcr_grad_ratio_search"][0] == "1"


@pytest.mark.parametrize("overrides, message", [
    (["training.rule=rflo", "tcr.normalize=variance"],
     "tcr.normalize: expected none with training.rule rflo (variance needs bptt); got 'variance'"),
    (["training.rule=node_perturbation", "conditions.tcr_loss.tcr.normalize=variance"],
     "conditions.tcr_loss.tcr.normalize: expected none with training.rule node_perturbation"),
    (["tcr.normalize=std"], "tcr.normalize"),
])
def test_protocols_refuse_unsupported_normalisation(write_protocol, overrides, message):
    with pytest.raises(ProtocolError, match=message.replace(".", r"\.").replace("(", r"\(").replace(")", r"\)")):
        load_protocol(write_protocol(), overrides)


def test_normalize_is_validated_by_the_schema():
    assert TCRConfig().normalize == "none"
    assert TCRConfig(normalize="variance").normalize == "variance"
    with pytest.raises(ValidationError, match="normalize"):
        TCRConfig(normalize="std")


@pytest.mark.parametrize("normalize", ["none", "variance", ("variance", "none", "variance")])
@pytest.mark.parametrize("T", [1, 2, 7])
def test_fused_term_and_its_gradient_equal_the_autograd_form(normalize, T):
    """tcr_term (hand-written gradient) against tcr_term_reference (plain autograd), with partial,
    empty and all-zero windows, for every form; and torch's gradcheck on the fused one."""
    g = torch.Generator().manual_seed(5)
    E, B, N = 3, 4, 5
    h = (torch.randn(E, B, T, N, generator=g, dtype=torch.float64) + 0.7).requires_grad_()
    w = (torch.rand(E, B, T, generator=g, dtype=torch.float64) > 0.4).double()
    w[1, 0] = 0  # a trial whose window is empty
    w[2] = 0 if T == 1 else w[2]  # (a member with no window at all when T = 1)
    fused, ref = tcr_term(h, w, normalize), tcr_term_reference(h, w, normalize)
    torch.testing.assert_close(fused, ref, rtol=1e-12, atol=1e-14)
    v = torch.randn(E, generator=g, dtype=torch.float64)
    (a,) = torch.autograd.grad((fused * v).sum(), h)
    (b,) = torch.autograd.grad((ref * v).sum(), h)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(lambda x: tcr_term(x, w, normalize), (h,))
