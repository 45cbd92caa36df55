"""Per-output learning curves: each output's task loss and held-out accuracy, recorded in training."""
import numpy as np
import torch

from bioplastic.learning.bptt import masked_mse, output_mse
from bioplastic.tasks import build_task


def test_output_losses_are_each_outputs_masked_mse():
    g = torch.Generator().manual_seed(0)
    y, t = torch.randn(2, 5, 7, 3, generator=g), torch.randn(2, 5, 7, 3, generator=g)
    m = (torch.rand(2, 5, 7, 3, generator=g) > 0.4).double()
    per = output_mse(y, t, m)
    for o in range(3):  # each output alone is a one-output masked MSE
        np.testing.assert_allclose(per[:, o], masked_mse(y[..., o:o + 1], t[..., o:o + 1], m[..., o:o + 1]))
    # with one mask for every output, their mean is the task loss
    same = m[..., :1].expand_as(m)
    np.testing.assert_allclose(output_mse(y, t, same).mean(1), masked_mse(y, t, same), rtol=1e-12)
    assert output_mse(y[..., :1], t[..., :1], m[..., :1]) is None  # one output: the task loss itself


def test_flipflop_output_accuracy_scores_each_bit_alone():
    task = build_task("flipflop", {"n_bits": 3, "trial_ms": 400, "pulse_prob": 0.05})
    trials = task.sample(np.random.default_rng(1), 20)
    out = trials.targets_bxtxo.astype(float).copy()
    out[..., 1] *= -1                                   # bit 1 always wrong, bits 0 and 2 right
    np.testing.assert_array_equal(task.output_accuracy(out, trials), [1.0, 0.0, 1.0])
    mask = trials.mask_bxtxo > 0
    weights = mask.sum((0, 1)) / mask.sum()             # the pooled accuracy weights bits by scored steps
    hit = (np.sign(out) == trials.targets_bxtxo) & mask
    assert np.isclose(hit.sum() / mask.sum(), (task.output_accuracy(out, trials) * weights).sum())


def test_a_flipflop_run_records_per_output_curves_and_their_metrics():
    import textwrap

    from bioplastic.pipeline import train
    from bioplastic.protocol.load import protocol_from_text

    protocol = protocol_from_text(textwrap.dedent("""
        name: ff
        seed: 3
        seeds: 2
        task: {kind: flipflop, n_bits: 3, dt_ms: 20, trial_ms: 200, pulse_prob: 0.1}
        model: {kind: leaky_rate, n_units: 8, g: 0.7}
        training: {lr: 5e-2, iterations: 12, batch_size: 4, checkpoint_every: 12, eval_every: 4, eval_trials: 8, dtype: float64, loss_smoothing: 3}
        conditions: {baseline: {}, tcr_loss: {tcr: {form: loss, lambda: 0.5}}}
        """))
    ds = train(protocol)
    assert ds["task_loss_output"].dims == ("condition", "seed", "iteration", "output")
    assert ds["accuracy_output"].dims == ("condition", "seed", "evaluation", "output")
    assert ds.sizes["output"] == 3 and np.isfinite(ds["task_loss_output"]).all()
    # each bit's loss is on its own scored steps; the task loss pools them, weighted by their counts:
    # it lies between the smallest and the largest bit's loss
    lo, hi = ds["task_loss_output"].min("output"), ds["task_loss_output"].max("output")
    assert bool(((ds["task_loss"] >= lo - 1e-12) & (ds["task_loss"] <= hi + 1e-12)).all())
    for m in ("output_drop_onset", "output_abrupt", "output_iterations_to_criterion"):
        assert ds[m].dims == ("condition", "seed", "output")
    assert ds["drop_stagger"].dims == ("condition", "seed") and ds["abrupt_outputs"].dims == ("condition", "seed")
    for v in ("task_loss_output", "output_abrupt", "drop_stagger"):
        assert ds[v].attrs["long_name"] and "units" in ds[v].attrs
