"""TCR as short-term plasticity: the fused recurrence against a plain autograd loop, and the
plasticity update against the one-step TCR gradient (science.md §3)."""
import pytest
import torch

from bioplastic.regularizers.tcr_plasticity import PlasticityConfig, ShortTermPlasticity, plastic_recurrence_reference

E, B, T, N = 2, 3, 11, 5


def _inputs(seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    decay = torch.full((E, N), 0.8, dtype=dtype)
    Wc = (0.2 * 1.5 / N ** 0.5 * torch.randn(E, N, N, generator=g, dtype=dtype)).requires_grad_(True)
    drive = (0.3 * torch.randn(E, B, T, N, generator=g, dtype=dtype)).requires_grad_(True)
    h0 = torch.zeros(E, B, N, dtype=dtype)
    return decay, Wc, drive, h0


@pytest.mark.parametrize("rule,phi_name,F_max", [("anti_hebbian", "tanh", 0.05), ("anti_hebbian", "relu", 0.05),
                                                 ("anti_hebbian", "tanh", None), ("anti_hebbian", "softplus", None),
                                                 ("tsodyks_markram", "tanh", None)])
def test_forward_and_gradient_match_autograd_loop(rule, phi_name, F_max):
    """Both anti-Hebbian paths (explicit F with an active clip; factorised, unclipped) and Tsodyks-Markram."""
    cfg = PlasticityConfig(rule=rule, eta_F=2.0, tau_F_ms=100.0, F_max=F_max)
    stp = ShortTermPlasticity(cfg, 20.0, E, torch.float64)
    stp.eta_e = torch.tensor([2.0, 0.7], dtype=torch.float64)
    decay, Wc, drive, h0 = _inputs()
    h, r, info = stp.run(decay, Wc, drive, h0, phi_name, 0.2)
    h_ref, r_ref, extra = plastic_recurrence_reference(decay, Wc, drive, h0, phi_name, 0.2, stp)
    torch.testing.assert_close(h, h_ref, rtol=1e-10, atol=1e-12)
    if rule == "anti_hebbian":
        torch.testing.assert_close(info["F_end_exbxnxn"], extra, rtol=1e-10, atol=1e-12)
        if F_max is not None:
            assert (info["F_end_exbxnxn"].abs() == F_max).any(), "the clip should be active in this test"
    else:
        torch.testing.assert_close(info["efficacy_exbxtxn"], extra, rtol=1e-10, atol=1e-12)
        assert (extra - 1).abs().max() > 1e-3, "the synapses should facilitate or depress"
    w = torch.randn(h.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    v = torch.randn(h.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    g = torch.autograd.grad((h * w).sum() + (r * v).sum(), [Wc, drive])
    g_ref = torch.autograd.grad((h_ref * w).sum() + (r_ref * v).sum(), [Wc, drive])
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("F_max", [None, 0.05])
def test_members_simulated_in_groups_match_the_oracle_and_one_pass(monkeypatch, F_max):
    """An ensemble larger than one pass's history budget is simulated a group of members at a time:
    the same states, efficacies and gradients as the oracle, and bit for bit as one pass."""
    test = test_forward_and_gradient_match_autograd_loop
    monkeypatch.setattr(ShortTermPlasticity, "PASS_BYTES", 1)  # one member per pass
    stp = ShortTermPlasticity(PlasticityConfig(F_max=F_max), 20.0, E, torch.float64)
    assert stp.members_per_pass(_inputs()[2]) == 1
    test("anti_hebbian", "tanh", F_max)
    decay, Wc, drive, h0 = _inputs()
    stp.eta_e = torch.tensor([2.0, 0.7], dtype=torch.float64)
    grouped = stp.run(decay, Wc, drive, h0, "tanh", 0.2)
    monkeypatch.setattr(ShortTermPlasticity, "PASS_BYTES", 2 ** 40)
    assert stp.members_per_pass(drive) == E
    whole = stp.run(decay, Wc, drive, h0, "tanh", 0.2)
    for a, b in zip(grouped[:2], whole[:2]):
        assert torch.equal(a, b)
    assert torch.equal(grouped[2]["F_end_exbxnxn"], whole[2]["F_end_exbxnxn"])


def test_gradient_segments_cover_long_trials():
    """T much longer than the checkpoint segment: recomputed F must match at every step."""
    global T
    old, T = T, 40
    try:
        test_forward_and_gradient_match_autograd_loop("anti_hebbian", "tanh", 0.05)
        test_forward_and_gradient_match_autograd_loop("anti_hebbian", "tanh", None)
    finally:
        T = old


def test_update_is_minus_one_step_tcr_gradient_over_alpha():
    """dF = -(eta / a) d(1/2 ||h_t - h_{t-1}||^2)/dW with h_{t-1} held fixed (a single step from F = 0)."""
    a, eta = 0.2, 0.9
    cfg = PlasticityConfig(eta_F=eta, tau_F_ms=1e9)
    stp = ShortTermPlasticity(cfg, 20.0, E, torch.float64)
    decay, Wc, drive, _ = _inputs(1)
    h0 = torch.randn(E, B, N, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    h, r, info = stp.run(decay, Wc, drive[:, :, :1].detach(), h0, "tanh", a)
    # the one-step gradient with respect to W (Wc = a W), h_{t-1} = h0 fixed, per trial
    W = (Wc.detach() / a).requires_grad_(True)
    grads = []
    for b in range(B):
        h1 = decay * h0[:, b] + a * torch.einsum("enm,em->en", W, torch.tanh(h0[:, b])) + drive[:, b, 0].detach()
        (gW,) = torch.autograd.grad(0.5 * (h1 - h0[:, b]).square().sum(), W)
        grads.append(gW)
    expected = -(eta / a) * torch.stack(grads, 1)
    torch.testing.assert_close(info["F_end_exbxnxn"], expected, rtol=1e-10, atol=1e-12)


def test_plasticity_opposes_change():
    """With the anti-Hebbian efficacies, the state moves less from step to step (the TCR effect)."""
    decay, Wc, drive, h0 = _inputs(2)
    drive = drive.detach()
    cfg = PlasticityConfig(eta_F=0.5, tau_F_ms=1000.0)  # gain a eta |r|^2 < 1
    stp = ShortTermPlasticity(cfg, 20.0, E, torch.float64)
    Wc = Wc.detach() * 8  # strong recurrence: large spontaneous changes
    h_on, _, _ = stp.run(decay, Wc, drive, h0, "tanh", 0.2)
    stp.eta_e.zero_()
    h_off, _, _ = stp.run(decay, Wc, drive, h0, "tanh", 0.2)
    change = lambda h: (h[:, :, 1:] - h[:, :, :-1]).square().mean()  # noqa: E731
    assert change(h_on) < change(h_off)


def test_bad_parameters_are_refused():
    from pydantic import ValidationError
    for bad in ({"tau_F_ms": -1.0}, {"eta_F": -0.1}, {"F_max": 0.0}, {"U": 0.0},
                {"rule": "tsodyks_markram", "kappa": 0.1}):
        with pytest.raises(ValidationError):
            PlasticityConfig(**bad)


@pytest.mark.parametrize("F_max", [None, 0.05])
def test_recorded_efficacy_course_equals_cut_rollouts(F_max):
    """F_abs_exbxt[t] = mean |F| at the end of the same trials cut after step t."""
    cfg = PlasticityConfig(eta_F=2.0, tau_F_ms=100.0, F_max=F_max)
    stp = ShortTermPlasticity(cfg, 20.0, E, torch.float64)
    stp.record_F_abs = True
    decay, Wc, drive, h0 = _inputs(6)
    _, _, info = stp.run(decay, Wc.detach(), drive.detach(), h0, "tanh", 0.2)
    for t in (0, 4, T - 1):
        _, _, cut = stp.run(decay, Wc.detach(), drive.detach()[:, :, :t + 1], h0, "tanh", 0.2)
        torch.testing.assert_close(info["F_abs_exbxt"][:, :, t], cut["F_end_exbxnxn"].abs().mean((2, 3)),
                                   rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("rule,F_max", [("anti_hebbian", None), ("anti_hebbian", 0.05), ("tsodyks_markram", None)])
def test_the_exact_gradient_is_the_finite_difference_of_the_simulated_loss(rule, F_max):
    """``gradient: exact``: the same states and signatures as the fast path, and the gradient of the
    plastic network's loss itself (central differences, float64) - which the detached one is not."""
    cfg = PlasticityConfig(rule=rule, eta_F=2.0, tau_F_ms=100.0, F_max=F_max, gradient="exact")
    exact = ShortTermPlasticity(cfg, 20.0, E, torch.float64)
    fast = ShortTermPlasticity(cfg.model_copy(update={"gradient": "detached"}), 20.0, E, torch.float64)
    for stp in (exact, fast):
        stp.eta_e = torch.tensor([2.0, 0.7], dtype=torch.float64)
        stp.record_F_abs = rule == "anti_hebbian"
    decay, Wc, drive, h0 = _inputs()
    h, r, info = exact.run(decay, Wc, drive, h0, "tanh", 0.2)
    h_fast, _, info_fast = fast.run(decay, Wc, drive, h0, "tanh", 0.2)
    torch.testing.assert_close(h, h_fast, rtol=1e-10, atol=1e-12)
    assert set(info) == set(info_fast)
    for k in info:
        torch.testing.assert_close(info[k], info_fast[k], rtol=1e-10, atol=1e-12)
    w = torch.randn(h.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)

    def loss(stp, Wc_, drive_):
        h_, r_, _ = stp.run(decay, Wc_, drive_, h0, "tanh", 0.2)
        return (h_ * w).sum() + (r_ ** 2).sum()

    with torch.no_grad():  # no gradient to take: the fast path, bit for bit
        for a, b in zip(exact.run(decay, Wc, drive, h0, "tanh", 0.2)[:2], fast.run(decay, Wc, drive, h0, "tanh", 0.2)[:2]):
            assert torch.equal(a, b)
    g_exact = torch.autograd.grad(loss(exact, Wc, drive), [Wc, drive])
    g_fast = torch.autograd.grad(loss(fast, Wc, drive), [Wc, drive])
    eps = 1e-6
    with torch.no_grad():
        for which, (arr, grad_e, grad_f) in enumerate(zip((Wc, drive), g_exact, g_fast)):
            for idx in [(0, 1, 2), (1, 4, 0)] if which == 0 else [(0, 1, 3, 2), (1, 2, 0, 4)]:
                plus, minus = arr.detach().clone(), arr.detach().clone()
                plus[idx] += eps
                minus[idx] -= eps
                args = [(plus, drive), (minus, drive)] if which == 0 else [(Wc, plus), (Wc, minus)]
                fd = (loss(exact, *args[0]) - loss(exact, *args[1])) / (2 * eps)
                assert float(grad_e[idx]) == pytest.approx(float(fd), rel=1e-5, abs=1e-8)
            assert not torch.allclose(grad_e, grad_f, rtol=1e-3), "the fast variables should matter in this test"
