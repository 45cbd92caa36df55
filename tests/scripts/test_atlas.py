"""scripts/atlas.py: the regime atlas, every task x network kind, run, tabulated and drawn."""

import matplotlib.image as mpimg
import numpy as np
import pytest
from conftest import TINY, load_script

from bioplastic.pipeline import recomputed_results
from bioplastic.protocol.load import load_protocol
from bioplastic.storage.results import read_dataset

atlas = load_script("atlas")
KIND = {"leaky": "leaky_rate", "plrnn": "plrnn", "lstm": "lstm", "low_rank": "low_rank"}


def test_every_task_and_kind_has_a_cell_whose_protocol_is_that_task_and_kind_over_a_sweep():
    assert set(atlas.CELLS) == {(t, k) for t in atlas.TASKS for k in atlas.KINDS}
    for (task, kind), (name, sets) in atlas.CELLS.items():
        protocol = load_protocol(atlas.ROOT / "protocols" / name, list(sets))
        cond = protocol.conditions[0]
        assert (cond.task_kind, cond.model_kind) == (task, KIND[kind]), name
        assert protocol.sweep is not None and protocol.condition_names == ["baseline"], name  # regimes.png needs a sweep


@pytest.fixture
def tiny_cell(tmp_path, monkeypatch):
    """The atlas reduced to one cell: the tiny protocol over two learning rates."""
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    monkeypatch.setattr(atlas, "CELLS", {("evidence_accumulation", "leaky"): (str(path), (
        "conditions={baseline: {}}", "output.figures=true", "training.iterations=30",
        "sweep={grid: {training.lr: [0.01, 0.1]}}"))})
    return tmp_path / "atlas"


def test_run_table_and_figures_on_a_cell(tiny_cell, tmp_path, capsys):
    assert atlas.main(["run", str(tiny_cell)]) == 0
    folder = tiny_cell / "evidence_accumulation__leaky"
    assert (folder / "regimes.png").is_file()
    capsys.readouterr()
    assert atlas.main(["run", str(tiny_cell)]) == 0  # finished: skipped, nothing trained again
    assert "finished, skipped" in capsys.readouterr().out
    assert atlas.main(["table", str(tiny_cell)]) == 0
    rows = [r.split(" | ") for r in capsys.readouterr().out.splitlines() if r.startswith("| evidence_accumulation")]
    ds = recomputed_results(read_dataset(folder / "results.nc"), load_protocol(folder / "protocol.yaml"))
    for row, lr in zip(rows, (0.01, 0.1), strict=True):
        assert row[2] == f"lr={lr}"
        point = ds.sel({"training.lr": lr, "condition": "baseline"})
        sp = point["search_phase"].values
        assert row[3] == f"{int(point['abrupt'].sum())}/2" and row[4] == "-"
        assert row[5] == f"{int(np.isfinite(sp).sum())}/2" and row[6] == f"{int(point['learned'].sum())}/2"
    docs = tmp_path / "docs"
    assert atlas.main(["figures", str(tiny_cell), "--docs", str(docs)]) == 0
    assert mpimg.imread(docs / "evidence_accumulation__leaky.png").shape[0] > 100
    assert mpimg.imread(docs / "summary.png").shape[1] > 1000  # the 3 x 4 grid at 120 dpi


def test_a_failing_cell_fails_the_command_and_empty_folders_are_refused(tiny_cell, monkeypatch, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        atlas.main(["table", str(tmp_path / "empty")])
    assert "no finished cell" in str(exc.value.code)
    with pytest.raises(SystemExit) as exc:
        atlas.main(["figures", str(tmp_path / "empty"), "--docs", str(tmp_path / "docs")])
    assert "no finished cell" in str(exc.value.code) and not (tmp_path / "docs").exists()
    (name, sets), = atlas.CELLS.values()
    monkeypatch.setattr(atlas, "CELLS", {("evidence_accumulation", "leaky"): (name, (*sets, "training.lr=-1"))})
    assert atlas.main(["run", str(tiny_cell)]) == 1
    assert "failed: ['evidence_accumulation__leaky']" in capsys.readouterr().err


def test_an_unknown_cell_is_named(tiny_cell):
    with pytest.raises(SystemExit) as exc:
        atlas.main(["table", str(tiny_cell), "--cells", "evidence__leaky"])
    assert "unknown ['evidence__leaky']" in str(exc.value.code)
