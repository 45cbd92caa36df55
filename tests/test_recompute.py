"""``python -m bioplastic recompute OUT``: a finished run's learning statistics computed again from its
stored curves by this version's definitions, and the analysis variables measured against the drop.

Oracle: the run's own datasets as the run wrote them with today's definitions. A run whose
statistics were garbled (as an older bioplastic's definitions would have left them) must get them
back exactly - every value, in results.nc and analysis.nc - with everything else as stored."""
from __future__ import annotations

import shutil
import textwrap

import numpy as np
import pytest

from bioplastic.analysis.learning_curves import DEFINITIONS, METRICS, STAMP
from bioplastic.analysis.phase_space import DROP_RELATIVE
from bioplastic.pipeline import run_protocol
from bioplastic.protocol.load import load_protocol
from bioplastic.storage.results import read_dataset, write_dataset
from tests.conftest import TINY

#: results.nc variables the learning statistics consist of (recompute must rewrite every one)
OTHER_STATISTICS = ("iterations_to_criterion", "final_accuracy", "learned", "loss_smoothed", "curve_metrics_status",
                    "tcr_grad_ratio_search", "abrupt_outputs", "drop_stagger")


def statistics(ds) -> list[str]:
    return [v for v in ds.data_vars if v in METRICS or v in OTHER_STATISTICS or v.startswith(("itc_", "acc_", "output_"))]


def garble(path, names) -> None:
    """Rewrite ``names`` of a stored dataset with wrong values and drop its definitions stamp, as a
    file written before the definitions changed would hold other statistics."""
    ds = read_dataset(path)
    for name in names:
        v = ds[name].values
        ds[name].values = ~v if v.dtype == bool else (np.nan_to_num(v.astype(float), nan=-3.0) + 17).astype(v.dtype)
    ds.attrs.pop(STAMP, None)
    write_dataset(ds, path)


def assert_same_values(a, b) -> None:
    assert sorted(a.variables) == sorted(b.variables)
    for name in a.variables:
        x, y = a[name].values, b[name].values
        assert x.shape == y.shape, name
        same = np.array_equal(x, y, equal_nan=True) if x.dtype.kind in "fc" else np.array_equal(x, y)
        assert same, name
        assert str(a[name].attrs) == str(b[name].attrs), name


@pytest.fixture
def stale_run(complete_run, tmp_path):
    """The complete run with every learning statistic and every drop-relative analysis variable garbled."""
    out = shutil.copytree(complete_run, tmp_path / "run")
    names = statistics(read_dataset(out / "results.nc"))
    assert len(names) >= 30  # the metrics, their per-output forms, the comparisons
    garble(out / "results.nc", names)
    drop_relative = [v for v in DROP_RELATIVE if v in read_dataset(out / "analysis.nc")]
    assert len(drop_relative) == len(DROP_RELATIVE)
    garble(out / "analysis.nc", drop_relative)
    return out


def test_recompute_gives_back_the_statistics_the_run_computed(complete_run, stale_run, cli):
    code, stdout, err = cli("recompute", stale_run)
    assert code == 0 and "Traceback" not in err, err
    assert "brought up to date" in err and f"{DEFINITIONS}: a network has learned" in err
    assert stdout.strip() == str(stale_run / "report.html")
    for name in ("results.nc", "analysis.nc"):
        new, old = read_dataset(stale_run / name), read_dataset(complete_run / name)
        assert_same_values(new, old)
        assert new.attrs[STAMP] == DEFINITIONS
        code_key = f"{STAMP}_code"  # the code that recomputed them (results.nc only)
        assert {k: v for k, v in new.attrs.items() if k != code_key} == old.attrs
        assert (code_key in new.attrs) == (name == "results.nc")
    assert "older definitions" not in (stale_run / "report.html").read_text()


def test_recompute_of_a_current_run_changes_no_value(complete_run, tmp_path, cli):
    out = shutil.copytree(complete_run, tmp_path / "run")
    code, _, err = cli("recompute", out)
    assert code == 0 and "unchanged" in err, err
    for name in ("results.nc", "analysis.nc", "predictions.nc"):
        assert_same_values(read_dataset(out / name), read_dataset(complete_run / name))


def train_sweep(tmp_path, sweep: str):
    """TINY with ``sweep`` (YAML text of the sweep section), trained: (results dataset, run folder)."""
    (tmp_path / "sweep.yaml").write_text(textwrap.dedent(TINY) + textwrap.dedent(sweep))
    return run_protocol(load_protocol(tmp_path / "sweep.yaml"), tmp_path / "sweep")


def assert_recomputes_to_itself(tmp_path, ds, out, cli) -> None:
    """The run's statistics garbled, then recomputed: exactly what the run wrote."""
    reference = tmp_path / "reference.nc"
    shutil.copy(out / "results.nc", reference)
    garble(out / "results.nc", statistics(ds))
    code, _, err = cli("recompute", out)
    assert code == 0, err
    assert_same_values(read_dataset(out / "results.nc"), read_dataset(reference))


def test_a_sweep_is_recomputed_point_by_point_with_each_points_settings(tmp_path, cli):
    """Each point's own criterion (swept) and smoothing: a recompute that used one point's settings
    for all, or mixed the points up, would not give back the run's statistics."""
    # grid values out of order: the dataset stores a grid of several fields with each field's values sorted
    ds, out = train_sweep(tmp_path, "sweep: {grid: {training.criterion: [0.9, 0.5], model.g: [1.5, 0.8]}}\n")
    learned = ds["learned"].values
    assert learned.any() and not learned.all()  # the criterion matters here
    assert ds["training.criterion"].values.tolist() == [0.5, 0.9] and learned[0].sum() > learned[1].sum()
    assert_recomputes_to_itself(tmp_path, ds, out, cli)


def test_a_sweep_over_the_curves_axes_with_a_zip(tmp_path, cli):
    """Points with their own budgets and evaluation schedules share the union of the axes in
    results.nc (NaN-padded); each point's statistics must come from its own axes (censoring at its own
    budget, the sustained criterion over its own evaluations). A zip's coordinates survive the rewrite."""
    ds, out = train_sweep(tmp_path, """
        sweep:
          grid: {training.eval_every: [3, 1]}
          zip: {training.iterations: [18, 12], training.criterion: [0.5, 0.6]}
        """)
    assert ds.sizes["iteration"] == 18 and ds["learned"].values.any()
    assert_recomputes_to_itself(tmp_path, ds, out, cli)


def test_a_sweep_of_a_task_with_several_outputs(tmp_path, cli):
    """The per-output metrics of a flip-flop sweep: results.nc stores a sweep's per-output accuracy
    with its axes in another order (output before evaluation) than one point's; read by position it
    gave each bit another bit's criterion."""
    task = "task:\n  kind: flipflop\n  n_bits: 3\n  trial_ms: 200\n  pulse_prob: 0.1\n"
    text = textwrap.dedent(TINY)
    text = text[:text.index("task:")] + task + text[text.index("model:"):]
    (tmp_path / "sweep.yaml").write_text(text.replace("iterations: 12", "iterations: 30")
                                         + "sweep: {grid: {model.g: [1.5, 0.8]}}\n")
    ds, out = run_protocol(load_protocol(tmp_path / "sweep.yaml"), tmp_path / "sweep")
    stored = read_dataset(out / "results.nc")
    assert stored["accuracy_output"].dims[-2:] == ("output", "evaluation")  # what the test is about
    assert np.isfinite(ds["output_iterations_to_criterion"].values).any()  # some bits learned: the criterion matters
    assert_recomputes_to_itself(tmp_path, ds, out, cli)


def test_an_interrupted_recompute_is_finished_by_running_it_again(complete_run, stale_run, cli):
    """Killed after results.nc was written and before analysis.nc: the next run says the analysis was
    behind and brings it up to date."""
    from bioplastic.pipeline import recomputed_results
    from bioplastic.storage.rebuild import protocol_of

    ds = read_dataset(stale_run / "results.nc")
    write_dataset(recomputed_results(ds, protocol_of(ds)), stale_run / "results.nc")
    code, _, err = cli("recompute", stale_run)
    assert code == 0 and "analysis.nc (results.nc was up to date): its leads had been measured" in err, err
    assert "unchanged" not in err
    assert_same_values(read_dataset(stale_run / "analysis.nc"), read_dataset(complete_run / "analysis.nc"))


def test_a_damaged_analysis_is_refused_not_deleted(complete_run, tmp_path, cli):
    out = shutil.copytree(complete_run, tmp_path / "run")
    data = bytearray((out / "analysis.nc").read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = bytes(64)
    (out / "analysis.nc").write_bytes(bytes(data))
    before = (out / "results.nc").read_bytes()
    code, _, err = cli("recompute", out)
    assert code == 2 and "analysis.nc" in err and f"bioplastic analyze {out}" in err, err
    assert (out / "analysis.nc").read_bytes() == bytes(data) and (out / "results.nc").read_bytes() == before


def test_networks_stopped_before_todays_criterion_are_noted(tmp_path, cli):
    """A run stopped by stop_when_learned under a criterion that counted its networks as learned
    earlier: the recompute cannot train them on, and says how many."""
    text = textwrap.dedent(TINY).replace("  iterations: 12", "  iterations: 60\n  stop_when_learned: true\n  criterion: 0.5\n"
                                         "  loss_smoothing: 1")
    (tmp_path / "p.yaml").write_text(text)
    ds, out = run_protocol(load_protocol(tmp_path / "p.yaml"), tmp_path / "run")
    stopped = int(ds["final_iteration"].max())
    assert stopped < 60 and ds["learned"].values.all()
    code, _, err = cli("recompute", out)
    assert code == 0 and "note:" not in err, err  # stopped as today's definitions stop
    # as if an older criterion had counted the networks as learned sooner: by today's they learn at the last evaluation
    acc = ds["accuracy"].values.copy()
    acc[..., :-1] = 0.0
    ds["accuracy"] = ds["accuracy"].dims, acc
    ds.attrs.pop(STAMP)
    write_dataset(ds, out / "results.nc")
    code, _, err = cli("recompute", out)
    n = ds["learned"].size
    assert code == 0 and f"note: {n} of {n} networks were stopped (stop_when_learned) before today's definitions" in err, err


def test_bad_folders_are_refused_and_nothing_is_written(tmp_path, complete_run, cli):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = cli("recompute", empty)
    assert code == 2 and "results.nc is missing" in err and not list(empty.iterdir())
    code, _, err = cli("recompute", tmp_path / "absent")
    assert code == 2 and "does not exist" in err
    code, _, err = cli("recompute", complete_run / "results.nc")
    assert code == 2 and f"is a file; expected a run folder holding results.nc (here: {complete_run})" in err
    # an analysis.nc of an older layout: refused before results.nc is touched
    out = shutil.copytree(complete_run, tmp_path / "run")
    analysis = read_dataset(out / "analysis.nc").drop_vars("n_fixed_chao1")
    write_dataset(analysis, out / "analysis.nc")
    before = (out / "results.nc").read_bytes()
    code, _, err = cli("recompute", out)
    assert code == 2 and "lacks n_fixed_chao1" in err and f"bioplastic analyze {out}" in err
    assert (out / "results.nc").read_bytes() == before


def _report_after(folder, name, cli) -> str:
    """The report of ``folder`` after the definitions stamp was removed from its dataset ``name``."""
    ds = read_dataset(folder / name)
    ds.attrs.pop(STAMP)
    write_dataset(ds, folder / name)
    code, _, _ = cli("report", folder)
    assert code == 0
    return (folder / "report.html").read_text()


def test_the_report_says_when_the_statistics_predate_the_definitions(complete_run, tmp_path, cli):
    out = shutil.copytree(complete_run, tmp_path / "run")
    page = _report_after(out, "results.nc", cli)
    assert "computed with older definitions (none recorded: made before those of 2026-12-07)" in page
    assert f"<code>python -m bioplastic recompute {out}</code>" in page and "analysis.nc measured" not in page


def test_the_report_says_when_the_analysis_measured_other_statistics(complete_run, tmp_path, cli):
    out = shutil.copytree(complete_run, tmp_path / "run")
    page = _report_after(out, "analysis.nc", cli)
    assert "analysis.nc measured its leads against other learning statistics" in page
    assert "computed with older definitions" not in page
