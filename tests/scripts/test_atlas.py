"""scripts/atlas.py: the regime atlas, every task x network kind, run, tabulated and drawn."""

import matplotlib.image as mpimg
import pytest
from conftest import TINY, load_script

from bioplastic.protocol.load import load_protocol

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
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| evidence_accumulation")]
    assert [r.split(" | ")[2] for r in rows] == ["lr=0.01", "lr=0.1"]
    assert all(r.split(" | ")[3].endswith("/2") for r in rows)  # abrupt k of the 2 seeds
    docs = tmp_path / "docs"
    assert atlas.main(["figures", str(tiny_cell), "--docs", str(docs)]) == 0
    assert (docs / "evidence_accumulation__leaky.png").read_bytes() == (folder / "regimes.png").read_bytes()
    assert mpimg.imread(docs / "summary.png").shape[1] > 1000  # the 3 x 4 grid at 120 dpi


def test_an_unknown_cell_is_named(tiny_cell, capsys):
    with pytest.raises(SystemExit) as exc:
        atlas.main(["table", str(tiny_cell), "--cells", "evidence__leaky"])
    assert "unknown ['evidence__leaky']" in str(exc.value.code)
