"""``python -m bioplastic replicate``: a protocol's verdicts at several root seeds side by side."""
from __future__ import annotations

from pathlib import Path

import pytest

from bioplastic.pipeline import read_run
from bioplastic.report import verdicts as V
from bioplastic.report.replication import ReplicationError, RunVerdicts, across, markdown, replicate
from bioplastic.storage.rebuild import protocol_of
from tests.conftest import TINY, train_into

PROTOCOL = TINY.replace("name: tiny\n", "name: tiny\nclaims: [1, 3]\n")


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    """The same tiny protocol at root seeds 7 and 8."""
    a = train_into(tmp_path_factory.mktemp("seed7"), PROTOCOL)
    b = train_into(tmp_path_factory.mktemp("seed8"), PROTOCOL.replace("seed: 7\n", "seed: 8\n"))
    return a, b


def test_across_root_seeds_rule():
    assert across([V.HOLDS, V.HOLDS]) == V.HOLDS
    assert across([V.FAILS, V.FAILS, V.FAILS]) == V.FAILS
    assert across([V.HOLDS, V.FAILS]) == V.INCONCLUSIVE
    assert across([V.HOLDS, V.INCONCLUSIVE]) == V.INCONCLUSIVE
    assert across([V.HOLDS, V.NOT_TESTED]) == V.NOT_TESTED
    assert across([V.FAILED, V.HOLDS]) == V.FAILED


def _own_verdicts(folder):
    run = read_run(folder)
    protocol = protocol_of(run.results)
    return V.verdicts(protocol.config.claims, V.RunData(run.results, run.analysis, run.predictions,
                                                        V.condition_info(protocol)), strict=True)


def test_table_holds_each_runs_own_verdicts(two_seeds, cli):
    a, b = two_seeds
    runs = replicate([a, b])
    assert [r.seed for r in runs] == [7, 8]
    text = markdown(runs)
    own_a, own_b = _own_verdicts(a), _own_verdicts(b)
    assert [v.claim for v in own_a] == [1, 3]
    rows = [line for line in text.splitlines() if line.startswith("| 1 |") or line.startswith("| 3 |")]
    assert len(rows) == 2
    for row, va, vb in zip(rows, own_a, own_b):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == va.reason.replace("|", "/") and cells[2] == vb.reason.replace("|", "/")
        assert cells[3] == f"**{across([va.status, vb.status])}**"
    code, out, err = cli("replicate", a, b, "--out", a.parent / "replication.md")
    assert code == 0 and out == text
    assert (a.parent / "replication.md").read_text() == text


def test_refuses_what_is_not_a_replication(two_seeds, tmp_path, cli):
    a, b = two_seeds
    with pytest.raises(ReplicationError, match="different root seed in every run"):
        replicate([a, a])
    with pytest.raises(ReplicationError, match="at least two run folders"):
        replicate([a])
    (tmp_path / "lr").mkdir()
    other = train_into(tmp_path / "lr", PROTOCOL.replace("lr: 1e-2", "lr: 2e-2").replace("seed: 7\n", "seed: 9\n"))
    with pytest.raises(ReplicationError, match=r"training\.lr: 0\.01 vs 0\.02"):
        replicate([a, other])
    code, out, err = cli("replicate", a, tmp_path / "nowhere")
    assert code == 2 and "not a folder" in err and out == ""
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = cli("replicate", a, empty)
    assert code == 2 and "results.nc missing" in err


def _run(seed: int, *statuses: str) -> RunVerdicts:
    ev = [V.Evidence(f"comparison {k}", -10.0 - k, -20.0, -1.0, 0.01, 10, status=st) for k, st in enumerate(statuses)]
    return RunVerdicts(Path(f"run{seed}"), "p", seed, {}, [V.Verdict(3, V.combine_any(statuses), "reason", ev)])


def test_comparisons_that_replicate_or_reverse_are_listed():
    a = _run(1, V.HOLDS, V.FAILS, V.HOLDS, V.INCONCLUSIVE)
    b = _run(2, V.HOLDS, V.FAILS, V.FAILS, V.HOLDS)
    text = markdown([a, b])
    replicated = text.split("## Comparisons that replicate")[1].split("##")[0]
    assert "comparison 0: holds at every root seed" in replicated
    assert "comparison 1: does not hold at every root seed" in replicated
    assert "comparison 2" not in replicated and "comparison 3" not in replicated  # differ; or undecided at one
    reversed_ = text.split("## Comparisons that reverse between root seeds")[1].split("##")[0]
    assert "comparison 2: holds / does not hold" in reversed_ and "comparison 3" not in reversed_
