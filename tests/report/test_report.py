"""report.html: every promised section and figure on a tiny complete run (analysis, predictions,
brian2), and the incomplete-run behaviour of ``python -m bioplastic report``."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from bioplastic.cli import main
from bioplastic.pipeline import RunError, write_report
from bioplastic.report.html import FIGURES, SECTIONS

# complete_run (tests/conftest.py, session-scoped, strict=True): the tiny protocol with every dataset
# (plasticity, analysis, predictions, brian2 with numpy, figures). It is shared: tests that change a
# run folder work on a copy.


def sections_of(page: str) -> dict[str, str]:
    found = dict(re.findall(r"<section id='([^']+)'>(.*?)</section>", page, flags=re.S))
    return found


def test_complete_run_has_every_section_and_figure(complete_run: Path):
    page = (complete_run / "report.html").read_text()
    found = sections_of(page)
    assert list(found) == [sid for sid, _ in SECTIONS]
    for sid, figs in FIGURES.items():
        for fig in figs:
            assert re.search(rf"<img id='{fig}' src='data:image/png;base64,[A-Za-z0-9+/=]{{100,}}'", found[sid]), (sid, fig)
    assert "Unavailable" not in page and "could not be drawn" not in page and "could not be computed" not in page
    assert "could not be formed" not in page and "error:" not in page.lower()
    assert "src='http" not in page and 'src="http' not in page  # self-contained
    # the verdicts of the claims the protocol names, each with a status
    for n in (1, 2, 3, 7, 9, 10):
        assert f"id='claim-{n}'" in found["verdicts"]
    # attractor formation: evidence accumulation needs 2 stable points; the analysis records when they appear
    with xr.open_dataset(complete_run / "analysis.nc", engine="h5netcdf") as an:
        assert an["attractor_formation"].attrs["needed"] == 2
        formed = an["attractor_formation"].values
        n_stable = an["n_stable"].values
        for ci, si in np.ndindex(formed.shape):
            first = np.flatnonzero(n_stable[ci, si] >= 2)
            expect = an["checkpoint"].values[first[0]] if len(first) else np.nan
            np.testing.assert_equal(formed[ci, si], expect)
    assert re.search(r"Claim 10:.*(holds|does not hold|inconclusive)", found["verdicts"])
    assert re.search(r"Claim 9:.*not tested by this run \(missing: a freeze-in condition", found["verdicts"])
    # the predictions in words, and torch vs brian2 side by side
    assert "of units ramp during the" in found["predictions"]
    assert "torch: median" in found["brian2"] and "brian2: median" in found["brian2"]
    assert "tcr_plasticity" in found["protocol"] and "anti-Hebbian" in found["protocol"]


def test_report_command_rebuilds_without_recomputing(complete_run: Path, tmp_path: Path, capsys):
    complete_run = shutil.copytree(complete_run, tmp_path / "copy")  # the report is rewritten: not in the shared run
    stamps = {p.name: p.stat().st_mtime_ns for p in complete_run.glob("*.nc")}
    assert main(["report", str(complete_run)]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in complete_run.glob("*.nc")} == stamps
    assert capsys.readouterr().out.strip().endswith("report.html")


def test_incomplete_run_builds_what_it_can(complete_run: Path, tmp_path: Path, capsys):
    out = tmp_path / "partial"
    out.mkdir()
    for name in ("results.nc", "protocol.yaml", "predictions.nc"):
        shutil.copy(complete_run / name, out / name)
    assert main(["report", str(out)]) == 0
    err = capsys.readouterr().err
    for missing in ("analysis.nc", "brian2.nc", "predictions_brian2.nc"):
        assert f"{missing} missing" in err
    assert "Traceback" not in err
    found = sections_of((out / "report.html").read_text())
    assert list(found) == [sid for sid, _ in SECTIONS]
    assert "Unavailable (missing analysis.nc; run <code>python -m bioplastic analyze OUT</code>)" in found["gr"]
    assert "Unavailable (missing analysis.nc" in found["phase"]
    assert "Unavailable (missing brian2.nc" in found["brian2"]
    assert "fig-learning-curves" in found["learning"] and "fig-ramping-examples" in found["ramping"]
    assert re.search(r"Claim 2:.*not tested by this run \(missing: analysis.nc", found["verdicts"], flags=re.S)


def test_no_results_writes_nothing_and_exits_2(tmp_path: Path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "results.nc is missing" in err and "Traceback" not in err
    assert not (tmp_path / "report.html").exists()
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    with pytest.raises(RunError, match="results.nc is missing"):
        write_report(tmp_path)


def test_damaged_dataset_is_listed_not_fatal(complete_run: Path, tmp_path: Path, capsys):
    out = tmp_path / "damaged"
    out.mkdir()
    shutil.copy(complete_run / "results.nc", out / "results.nc")
    (out / "analysis.nc").write_bytes(b"not a netCDF file")
    assert main(["report", str(out)]) == 0
    assert "analysis.nc unreadable" in capsys.readouterr().err
    assert "unreadable" in sections_of((out / "report.html").read_text())["files"]


def test_user_strings_are_escaped_in_the_report(write_protocol, tmp_path):
    """A sweep over a free-text field puts it into the report: escaped, never a live tag."""
    from bioplastic.pipeline import run_protocol
    from bioplastic.protocol.load import load_protocol

    evil = "<script>alert(1)</script>"
    text = write_protocol().read_text().replace("output:\n  figures: false", "output:\n  figures: true")
    text += f"sweep:\n  grid:\n    description: ['{evil}', 'plain']\n"
    _, out = run_protocol(load_protocol(write_protocol(text, "evil.yaml")), tmp_path / "evil")
    page = (out / "report.html").read_text()
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)" in page


def test_a_failing_section_is_an_error_and_the_run_is_incomplete(complete_run: Path, tmp_path: Path, monkeypatch, capsys):
    """A bug in a figure is not swallowed: strict mode raises it; otherwise the page shows the error
    with its cause, every other section is written, and ``report`` exits 1 (incomplete)."""
    from bioplastic.pipeline import IncompleteRun
    from bioplastic.plotting import phase

    out = tmp_path / "copy"
    shutil.copytree(complete_run, out)
    (out / "report.html").unlink()

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the lead-time figure")

    monkeypatch.setattr(phase, "lead_times", broken)
    with pytest.raises(RuntimeError, match="a bug in the lead-time figure"):
        write_report(out, strict=True)
    with pytest.raises(IncompleteRun) as info:
        write_report(out)
    assert any("a bug in the lead-time figure" in f for f in info.value.failures)
    page = (out / "report.html").read_text()
    assert "RuntimeError: a bug in the lead-time figure" in sections_of(page)["gr"]
    assert "fig-gr-alignment" in page and "fig-learning-curves" in page
    assert main(["report", str(out)]) == 1
    err = capsys.readouterr().err
    assert "incomplete" in err and "a bug in the lead-time figure" in err


def test_figures_of_networks_that_all_diverged_draw_without_error(complete_run: Path):
    """``--set training.lr=1e300``: every loss, ramp slope and short-term change is NaN. The figures
    say so instead of failing (the loss overlay's log axis had nothing to show: "Please report
    this as a bug") or warning (all-NaN percentiles, empty legends; warnings are errors here)."""
    import numpy as np

    from bioplastic.plotting import field as ffigs
    from bioplastic.plotting import predictions as pfigs
    from bioplastic.plotting.curves import png_bytes
    from bioplastic.storage.results import read_dataset

    results, pred = read_dataset(complete_run / "results.nc"), read_dataset(complete_run / "predictions.nc")
    results["loss_smoothed"][:] = np.nan
    for name in ("ramp_slope", "plasticity_course"):
        pred[name][:] = np.nan
    ax = ffigs.loss_overlay(results)
    assert "every network diverged" in " ".join(t.get_text() for t in ax.texts)
    png_bytes(ax.figure)
    half = results.copy(deep=True)
    half["loss_smoothed"].loc[{"condition": "baseline"}] = 1.0
    ax = ffigs.loss_overlay(half)
    assert [t.get_text() for t in ax.get_legend().get_texts()][1:] == [
        "tcr_loss (median of 2, every seed diverged)", "tcr_plasticity (median of 2, every seed diverged)"]
    png_bytes(ax.figure)
    left, _ = pfigs.ramp_distributions(pred)
    assert "no finite ramp slope" in " ".join(t.get_text() for t in left.texts)
    png_bytes(left.figure)
    ax = ffigs.plasticity_course(pred)
    assert "diverged" in " ".join(t.get_text() for t in ax.texts)
    png_bytes(ax.figure)
