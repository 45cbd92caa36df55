"""Training oracles: ensemble = networks trained alone; resume = uninterrupted; same seed = same numbers."""
import numpy as np
import pytest
import torch
import xarray as xr

from bioplastic import load_protocol, run_protocol, train
from bioplastic.seeds import torch_generator
from bioplastic.storage.results import read_dataset
from bioplastic.training.loop import EnsembleTrainer, Interrupted
from bioplastic.training.optim import EnsembleOptimizer, clip_per_member
from bioplastic.training.units import groups

TOL = dict(rtol=1e-10, atol=1e-12)


def _train(members, seed=7):
    return EnsembleTrainer(members, seed).run()


def test_ensemble_training_equals_training_each_network_alone(write_protocol):
    protocol = load_protocol(write_protocol())
    (members,) = groups(protocol)  # baseline and tcr_loss share one ensemble
    assert len(members) == 4
    together = _train(members)
    for e, m in enumerate(members):
        alone = _train([m])
        for k in together.history:
            np.testing.assert_allclose(together.history[k][e], alone.history[k][0], **TOL, err_msg=k)
        for k in together.weights:
            np.testing.assert_allclose(together.weights[k][e], alone.weights[k][0], **TOL, err_msg=k)
        np.testing.assert_allclose(together.eval_history["accuracy"][e], alone.eval_history["accuracy"][0])


def test_variance_tcr_and_its_gradient_ratio_do_not_depend_on_ensemble_mates(write_protocol):
    """The scale-free TCR form and the measured TCR / task gradient ratio, in an ensemble with raw-TCR
    and baseline members, equal each network trained alone."""
    from conftest import TINY

    text = TINY.replace("    tcr: {form: loss, lambda: 0.5}",
                        "    tcr: {form: loss, lambda: 0.5}\n  tcr_var:\n    tcr: {form: loss, normalize: variance, lambda: 0.5}")
    (members,) = groups(load_protocol(write_protocol(text, "var.yaml")))
    assert {m.condition.name for m in members} == {"baseline", "tcr_loss", "tcr_var"}
    together = _train(members)
    for e, m in enumerate(members):
        alone = _train([m])
        for k in ("loss", "tcr_loss"):
            np.testing.assert_allclose(together.history[k][e], alone.history[k][0], **TOL, err_msg=k)
        np.testing.assert_allclose(together.eval_history["tcr_grad_ratio"][e], alone.eval_history["tcr_grad_ratio"][0],
                                   **TOL, err_msg="tcr_grad_ratio")
        np.testing.assert_allclose(together.weights["W"][e], alone.weights["W"][0], **TOL)
        measured = np.isfinite(together.eval_history["tcr_grad_ratio"][e]).any()
        assert measured == (m.condition.name != "baseline")


def test_conditions_differ_only_by_treatment(write_protocol):
    """Paired design: seed s starts from the same weights in every condition; TCR changes the path."""
    protocol = load_protocol(write_protocol())
    res = _train(groups(protocol)[0])
    names = [f"{m.condition.name}/{m.seed_index}" for m in res.members]
    b0, t0 = names.index("baseline/0"), names.index("tcr_loss/0")
    np.testing.assert_array_equal(res.weights["W"][b0, 0], res.weights["W"][t0, 0])
    assert np.abs(res.weights["W"][b0, -1] - res.weights["W"][t0, -1]).max() > 1e-6
    assert np.all(res.history["lambda_tcr"][b0] == 0) and np.all(res.history["lambda_tcr"][t0] == 0.5)


def test_same_seed_same_numbers_and_other_seed_other_numbers(write_protocol):
    p = load_protocol(write_protocol())
    a, b = _train(groups(p)[0]), _train(groups(p)[0])
    np.testing.assert_array_equal(a.history["loss"], b.history["loss"])
    c = _train(groups(p)[0], seed=8)
    assert not np.allclose(a.history["loss"], c.history["loss"])


def test_interrupted_run_resumes_to_identical_results(write_protocol, tmp_path, tiny_run):
    protocol = load_protocol(write_protocol())
    straight = read_dataset(tiny_run / "results.nc")  # TINY run straight through (tests/conftest.py)
    assert straight.attrs["protocol"] == protocol.text
    with pytest.raises(Interrupted):
        run_protocol(protocol, tmp_path / "resumed", interrupt_at=6)  # last checkpoint: iteration 4
    assert list((tmp_path / "resumed" / "state").glob("p000-g0-u*.pt"))
    assert not (tmp_path / "resumed" / "results.nc").exists()
    resumed, _ = run_protocol(protocol, tmp_path / "resumed")
    xr.testing.assert_identical(straight, resumed)  # attributes too: no time stamp or timing differs
    assert (tmp_path / "resumed" / "results.nc").read_bytes() == (tiny_run / "results.nc").read_bytes()  # the content hash too
    assert not (tmp_path / "resumed" / "state").exists()


def test_a_diverging_network_is_marked_and_the_others_go_on(write_protocol):
    protocol = load_protocol(write_protocol())
    members = groups(protocol)[0]
    clean = _train(members)
    trainer = EnsembleTrainer(members, 7)
    with torch.no_grad():
        trainer.net.params["W"][1] = float("nan")
    res = trainer.run()
    assert res.diverged_at[1] == 0 and np.isnan(res.diverged_at[[0, 2, 3]]).all()
    assert np.isnan(res.history["loss"][1]).all()
    keep = [0, 2, 3]
    np.testing.assert_allclose(res.history["loss"][keep], clean.history["loss"][keep], **TOL)
    from bioplastic.analysis.learning_curves import add_curve_metrics
    from bioplastic.pipeline import results_dataset

    ds = results_dataset(protocol, [res])
    add_curve_metrics(ds, protocol.config.training.criterion, protocol.config.training.loss_smoothing)
    diverged = ds["diverged"].values
    assert diverged.sum() == 1
    assert np.isnan(ds["final_accuracy"].values[diverged]).all()  # no pre-divergence value
    assert np.isfinite(ds["final_accuracy"].values[~diverged]).all()


def test_ensemble_adam_equals_torch_adam_per_member():
    g = torch.Generator().manual_seed(1)
    p = {"w": torch.randn(3, 4, 5, generator=g, dtype=torch.float64)}
    lrs = [1e-2, 3e-3, 1e-1]
    opt = EnsembleOptimizer(p, "adam", lrs)
    refs = [torch.nn.Parameter(p["w"][e].clone()) for e in range(3)]
    topts = [torch.optim.Adam([r], lr=lr) for r, lr in zip(refs, lrs)]
    for _ in range(5):
        grads = {"w": torch.randn(3, 4, 5, generator=g, dtype=torch.float64)}
        for e in range(3):
            refs[e].grad = grads["w"][e].clone()
            topts[e].step()
        opt.step(grads)
    for e in range(3):
        torch.testing.assert_close(p["w"][e], refs[e].detach(), rtol=1e-12, atol=1e-12)


def test_gradient_clipping_is_per_network():
    grads = {"a": torch.tensor([[3.0, 0.0], [0.3, 0.0]]), "b": torch.tensor([[4.0], [0.4]])}
    norms = clip_per_member(grads, torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(norms, torch.tensor([5.0, 0.5]))
    torch.testing.assert_close(grads["a"], torch.tensor([[0.6, 0.0], [0.3, 0.0]]))  # only member 0 scaled
    torch.testing.assert_close(grads["b"], torch.tensor([[0.8], [0.4]]))


def test_a_float32_norm_that_overflows_clips_the_gradient_down_not_to_zero():
    """Finite float32 entries whose sum of squares overflows (norm above ~1.8e19): the norm is summed
    in float64 for that member, so clipping leaves a gradient of the clipping norm, not zeros (the
    stalled updates of 6 TCR-plasticity networks, docs/tcr_plasticity.md); the other member's norm and
    clipping are the float32 ones."""
    big = torch.tensor([[3e19, 4e19], [0.3, 0.4]], dtype=torch.float32)
    wide = {"a": torch.tensor([[3e160, 4e160]], dtype=torch.float64)}  # float64 overflows at ~1.3e154
    assert clip_per_member(wide, torch.tensor([1.0], dtype=torch.float64)).item() == pytest.approx(5e160)
    torch.testing.assert_close(wide["a"], torch.tensor([[0.6, 0.8]], dtype=torch.float64))
    grads = {"a": big.clone(), "b": torch.tensor([[0.0], [0.0]], dtype=torch.float32)}
    assert torch.isinf(big[0].square().sum())  # what the float32 sum gives
    norms = clip_per_member(grads, torch.tensor([1.0, 1.0]))
    assert norms[0].item() == pytest.approx(5e19, rel=1e-6) and norms[1].item() == pytest.approx(0.5, rel=1e-6)
    torch.testing.assert_close(grads["a"][0], torch.tensor([0.6, 0.8]))
    assert torch.equal(grads["a"][1], big[1])  # under the clipping norm: untouched
    # a norm beyond float32's range itself stays inf (the trainer counts that member as diverged)
    huge = {"a": torch.full((1, 4), 3e38, dtype=torch.float32)}
    assert torch.isinf(clip_per_member(huge, torch.tensor([1.0]))).all()


def test_a_gradient_norm_beyond_the_dtype_marks_the_network_diverged_and_one_that_overflows_is_clipped(write_protocol, monkeypatch):
    """In the trainer (float64 here): member 1's gradient scaled by 1e160 (its sum of squares overflows,
    its norm does not) keeps training, clipped; member 2's gradient of 1e308 everywhere has a norm beyond
    float64's range: diverged; members 0 and 3 train bit for bit as without either."""
    from bioplastic.learning.bptt import BPTT

    protocol = load_protocol(write_protocol())
    members = groups(protocol)[0]
    clean = _train(members)
    step = BPTT.step

    def huge(self, batch, alive_e):
        res = step(self, batch, alive_e)
        for g in res.grads.values():
            g[1] *= 1e160
            g[2] = 1e308
        return res

    monkeypatch.setattr(BPTT, "step", huge)
    res = EnsembleTrainer(members, 7).run()
    assert res.diverged_at[2] == 0 and np.isnan(res.diverged_at[[0, 1, 3]]).all()  # at its first step
    assert np.isfinite(res.history["grad_norm"][1]).all() and (res.history["grad_norm"][1] > 1e150).all()
    assert np.ptp(res.history["loss"][1]) > 0  # it moves: its clipped steps are not zero
    for m in (0, 3):
        np.testing.assert_array_equal(res.history["loss"][m], clean.history["loss"][m])


def test_members_in_other_groups_when_the_model_differs(write_protocol):
    text = write_protocol().read_text().replace("    tcr: {form: loss, lambda: 0.5}", "    model: {tau_ms: 50}")
    protocol = load_protocol(write_protocol(text, "q.yaml"))
    assert [len(g) for g in groups(protocol)] == [2, 2]


def test_members_share_a_group_when_only_initial_draw_settings_differ(write_protocol):
    """g, input_scale, output_scale and connection_prob only draw the initial weights (init_fields)."""
    text = write_protocol().read_text().replace("    tcr: {form: loss, lambda: 0.5}",
                                                "    model: {g: 0.5, output_scale: 0.1, connection_prob: 0.5}")
    protocol = load_protocol(write_protocol(text, "q.yaml"))
    assert [len(g) for g in groups(protocol)] == [4]


@pytest.mark.parametrize("overrides", [["training.rule=rflo"],
                                       ["training.rule=node_perturbation", "training.rule_options.baseline=running",
                                        "training.rule_options.trial_type=[side]"]])
def test_local_rules_resume_to_identical_results(write_protocol, tmp_path, overrides):
    """The rule's own state (random feedback, running reward baselines) travels with the resume state."""
    protocol = load_protocol(write_protocol(), overrides)
    straight = train(protocol)  # run_protocol's numbers (bioplastic.train), without a second run folder and report
    with pytest.raises(Interrupted):
        run_protocol(protocol, tmp_path / "resumed", interrupt_at=6)
    resumed, _ = run_protocol(protocol, tmp_path / "resumed")
    xr.testing.assert_identical(straight.drop_attrs(), resumed.drop_attrs())


PLASTIC = {"tcr_loss": "    tcr: {form: plasticity, plasticity: {eta_F: 0.05, tau_F_ms: 200}}",
           "freeze": "    tcr: {form: plasticity, plasticity: {eta_F: 0.05, kappa: 0.5, sigma_w: 0.01, "
                     "schedule: {kind: activity_floor, target: 0.5}}}",
           "tm": "    tcr: {form: plasticity, plasticity: {rule: tsodyks_markram}}"}


def _plastic_protocol(write_protocol, which):
    text = write_protocol().read_text().replace("    tcr: {form: loss, lambda: 0.5}", PLASTIC[which])
    return load_protocol(write_protocol(text, f"{which}.yaml"))


@pytest.mark.parametrize("which", ["tcr_loss", "tm"])
def test_plastic_ensemble_equals_each_network_alone(write_protocol, which):
    protocol = _plastic_protocol(write_protocol, which)
    plastic = [g for g in groups(protocol) if g[0].condition.tcr.form == "plasticity"][0]
    together = _train(plastic)
    assert np.all(together.history["eta_F"] == (0.05 if which != "tm" else 0.01))
    for e, m in enumerate(plastic):
        alone = _train([m])
        for k in together.weights:
            np.testing.assert_allclose(together.weights[k][e], alone.weights[k][0], **TOL, err_msg=k)


def test_freeze_in_adds_kappa_times_the_mean_trial_end_efficacy(write_protocol):
    """One iteration: W(kappa) - W(kappa = 0) = kappa * mean_trials F_end (+ the weight noise)."""
    protocol = _plastic_protocol(write_protocol, "freeze")
    (members,) = [g for g in groups(protocol) if g[0].condition.tcr.form == "plasticity"]
    with_freeze = EnsembleTrainer(members, 7)
    text = write_protocol().read_text().replace("    tcr: {form: loss, lambda: 0.5}", PLASTIC["freeze"]
                                                .replace("kappa: 0.5", "kappa: 0").replace("sigma_w: 0.01", "sigma_w: 0"))
    (plain_members,) = [g for g in groups(load_protocol(write_protocol(text, "plain.yaml")))
                        if g[0].condition.tcr.form == "plasticity"]
    plain = EnsembleTrainer(plain_members, 7)
    step = with_freeze.train_step(0)
    plain.train_step(0)
    F_mean = step.plasticity["F_end_exbxnxn"].mean(1)
    assert F_mean.abs().max() > 1e-4
    xi = torch.stack([torch.randn((12, 12), generator=torch_generator(7, "weight_noise", s, 0), dtype=torch.float64)
                      for s in (0, 1)])
    expected = plain.net.params["W"] + 0.5 * F_mean + 0.01 / 12 ** 0.5 * xi
    torch.testing.assert_close(with_freeze.net.params["W"].detach(), expected.detach(), **TOL)
    np.testing.assert_allclose(with_freeze.history["stp_size"][:, 0],
                               step.plasticity["F_end_exbxnxn"].abs().mean((1, 2, 3)).numpy(), **TOL)


def test_plastic_training_with_freeze_in_and_weight_noise_equals_a_hand_written_loop(write_protocol):
    """The trainer (fused plastic recurrence, rule step, optimizer, then the plasticity's freeze-in
    and weight noise) against an independent route: the plain autograd recurrence with detached
    fast efficacies (plastic_recurrence_reference), SGD by hand, W += kappa mean_b F_end + sigma_w xi / sqrt(N)."""
    from bioplastic.learning.bptt import masked_mse
    from bioplastic.networks import build_network
    from bioplastic.regularizers.tcr_plasticity import ShortTermPlasticity, plastic_recurrence_reference
    from bioplastic.seeds import numpy_rng
    from bioplastic.tasks import build_task
    from bioplastic.training.loop import MemberSpec

    plastic = {"eta_F": 0.05, "tau_F_ms": 200, "kappa": 0.5, "sigma_w": 0.01}
    protocol = load_protocol(write_protocol(), ["training.optimizer=sgd", "training.lr=0.05", "training.clip_grad_norm=null",
                                                "training.iterations=3", "training.checkpoint_every=1",
                                                f"conditions={{p: {{tcr: {{form: plasticity, plasticity: {plastic}}}}}}}"])
    (members,) = groups(protocol)
    c = members[0].condition
    # the trainer takes plain specs: drop the protocol's condition
    specs = [MemberSpec(m.name, m.seed_index, m.task_kind, m.task, m.model_kind, m.model, m.training, m.tcr)
             for m in members]
    result = _train(specs, seed=7)
    assert np.isfinite(result.history["stp_size"]).all()

    task = build_task(c.task_kind, c.task.model_dump())
    seeds = [m.seed_index for m in members]
    net = build_network(c.model_kind, c.model.model_dump(), n_inputs=task.n_inputs, n_outputs=task.n_outputs,
                        dt_ms=task.dt_ms, rngs=[numpy_rng(7, "init", s) for s in seeds], dtype=torch.float64)
    stp = ShortTermPlasticity(c.tcr.plasticity, net.dt_ms, net.n_members, torch.float64)
    N, a = net.n_units, net.alpha
    for k in range(3):
        trials = [task.sample(numpy_rng(7, "train_data", s, k), c.training.batch_size) for s in seeds]
        u, y, mask = (torch.from_numpy(np.stack([getattr(t, key) for t in trials])).to(torch.float64)
                      for key in ("inputs_bxtxi", "targets_bxtxo", "mask_bxtxo"))
        E, B = u.shape[:2]
        h, r, F_end = plastic_recurrence_reference(torch.full((E, N), 1 - a, dtype=torch.float64),
                                                   a * net.recurrent_weights(), net.drive(u, None),
                                                   torch.zeros(E, B, N, dtype=torch.float64), c.model.phi, a, stp)
        loss = masked_mse(net.readout(r), y, mask).sum()
        grads = torch.autograd.grad(loss, list(net.params.values()))
        with torch.no_grad():
            for p, g in zip(net.params.values(), grads):
                p.sub_(0.05 * g)
            xi = torch.stack([torch.randn((N, N), generator=torch_generator(7, "weight_noise", s, k), dtype=torch.float64)
                              for s in seeds])
            net.params["W"].add_(0.5 * F_end.mean(1) + 0.01 / N ** 0.5 * xi)
        np.testing.assert_allclose(result.history["stp_size"][:, k], F_end.abs().mean((1, 2, 3)).numpy(), rtol=1e-9)
        for name, p in net.params.items():
            np.testing.assert_allclose(result.weights[name][:, k + 1], p.detach().numpy(), rtol=1e-9, atol=1e-12,
                                       err_msg=f"{name} after iteration {k}")


def test_plastic_run_with_freeze_in_and_controller_resumes_to_identical_results(write_protocol, tmp_path):
    protocol = _plastic_protocol(write_protocol, "freeze")
    straight = train(protocol)  # run_protocol's numbers (bioplastic.train), without a second run folder and report
    with pytest.raises(Interrupted):
        run_protocol(protocol, tmp_path / "resumed", interrupt_at=6)
    resumed, _ = run_protocol(protocol, tmp_path / "resumed")
    xr.testing.assert_identical(straight.drop_attrs(), resumed.drop_attrs())
    eta = straight["eta_F"].sel(condition="tcr_loss").values
    assert np.all(eta[:, 0] == 0.05) and np.all(eta[:, -1] < 0.05)  # the controller lowered eta_F


def test_stop_when_learned_leaves_the_curve_metrics_unchanged(write_protocol, tmp_path):
    """Stopping waits six smoothing windows past each network's criterion, so the learning-curve
    metrics (which look five windows past it) are those of the full run."""
    from conftest import TINY

    text = TINY.replace("  dtype: float64", "  dtype: float64\n  criterion: 0.01\n  loss_smoothing: 1\n"
                        "  checkpoint_every: 2").replace("  checkpoint_every: 4\n", "")
    full = train(load_protocol(write_protocol(text, "full.yaml")))  # run_protocol's numbers, without a run folder and report
    stop_text = text.replace("  criterion: 0.01", "  criterion: 0.01\n  stop_when_learned: true")
    stopped, _ = run_protocol(load_protocol(write_protocol(stop_text, "stop.yaml")), tmp_path / "stop")
    assert (full["iterations_to_criterion"] == 0).all()
    assert (stopped["final_iteration"] == 6).all()  # the first checkpoint >= 0 + (5 + 1) * 1, not 2
    from bioplastic.analysis.learning_curves import METRICS

    for m in METRICS:
        xr.testing.assert_allclose(full[m], stopped[m])
