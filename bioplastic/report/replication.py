"""A protocol's verdicts replicated across root seeds: ``python -m bioplastic replicate RUN RUN [...]``.

Each run folder is a finished run of the same protocol at a different root seed (``--set seed=...``);
nothing else may differ but the output folder. The verdicts of every claim the protocol tests are
computed from each run's stored datasets, exactly as its report computes them, and set side by side.
**Across root seeds** a verdict stands only where every run gives it; a verdict that differs between
root seeds is :data:`~bioplastic.report.verdicts.INCONCLUSIVE` (a claim untested or failed in one run
keeps that status). The comparisons behind the verdicts are matched by their label: those with the same
decided status (holds / does not hold) in every run are listed as replicated.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..pipeline import read_run
from ..storage.rebuild import protocol_of
from . import verdicts as V

#: protocol sections that may differ between the runs compared (where the files went)
IGNORED = ("seed", "output")


class ReplicationError(ValueError):
    """The folders cannot be compared (missing results, different protocols); the message says why."""


@dataclass
class RunVerdicts:
    folder: Path
    name: str
    seed: int
    protocol: dict
    verdicts: list[V.Verdict]


def _flatten(tree, prefix: str = "") -> dict[str, object]:
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: tree}


def run_verdicts(folder: str | Path) -> RunVerdicts:
    """The verdicts of one finished run, from its stored datasets (as its report computes them)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ReplicationError(f"{folder}: not a folder; expected a finished run's folder holding results.nc")
    run = read_run(folder)
    if run.results is None:
        why = run.errors.get("results.nc", "missing")
        raise ReplicationError(f"{folder}: results.nc {why}; expected a finished run's folder "
                               f"(made by `python -m bioplastic run PROTOCOL --out {folder}`)")
    protocol = protocol_of(run.results, str(folder / "results.nc"))
    data = V.RunData(run.results, run.analysis, run.predictions, V.condition_info(protocol))
    raw = yaml.safe_load(run.results.attrs["protocol"]) or {}
    return RunVerdicts(folder, protocol.name, int(protocol.config.seed), raw,
                       V.verdicts(list(protocol.config.claims), data))


def across(statuses: Sequence[str]) -> str:
    """One verdict over root seeds: the common one where every run gives the same; a claim untested
    (or whose rule failed) in any run keeps that; otherwise inconclusive."""
    statuses = list(statuses)
    for special in (V.FAILED, V.NOT_TESTED):
        if special in statuses:
            return special
    return statuses[0] if len(set(statuses)) == 1 else V.INCONCLUSIVE


def _check_same_protocol(runs: list[RunVerdicts]) -> None:
    first = runs[0]
    flat0 = {k: v for k, v in _flatten(first.protocol).items() if k.split(".")[0] not in IGNORED}
    for r in runs[1:]:
        flat = {k: v for k, v in _flatten(r.protocol).items() if k.split(".")[0] not in IGNORED}
        differ = sorted(k for k in flat0.keys() | flat.keys() if flat0.get(k) != flat.get(k))
        if differ:
            shown = "; ".join(f"{k}: {flat0.get(k)!r} vs {flat.get(k)!r}" for k in differ[:6])
            more = f" (and {len(differ) - 6} more)" if len(differ) > 6 else ""
            raise ReplicationError(f"{first.folder} and {r.folder} are runs of different protocols - they may differ in "
                                   f"their root seed alone; they differ in {shown}{more}")
    seeds = [r.seed for r in runs]
    if len(set(seeds)) < len(seeds):
        dup = sorted({s for s in seeds if seeds.count(s) > 1})
        raise ReplicationError(f"root seeds: expected a different root seed in every run, got {seeds} "
                               f"({', '.join(map(str, dup))} more than once); rerun with --set seed=...")


def replicate(folders: Sequence[str | Path]) -> list[RunVerdicts]:
    """Every run's verdicts, after checking the runs are of one protocol at different root seeds."""
    if len(folders) < 2:
        raise ReplicationError(f"runs: expected at least two run folders of one protocol at different root seeds, "
                               f"got {len(folders)}")
    runs = [run_verdicts(f) for f in folders]
    _check_same_protocol(runs)
    return runs


def _cell(text: str) -> str:
    return text.replace("|", "/").replace("\n", " ")


def markdown(runs: list[RunVerdicts]) -> str:
    """The verdicts side by side (one column per root seed, then across them) and the comparisons
    that replicate, as markdown."""
    head = ["claim", *(f"root seed {r.seed}" for r in runs), "across root seeds"]
    lines = [f"# {runs[0].name}: verdicts at {len(runs)} root seeds", "",
             "Runs: " + ", ".join(f"`{r.folder}` (root seed {r.seed})" for r in runs) + ".",
             "A verdict stands across root seeds only where every run gives it; one that differs is inconclusive.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    by_claim = [{v.claim: v for v in r.verdicts} for r in runs]
    claims = [v.claim for v in runs[0].verdicts]
    for c in claims:
        vs = [b[c] for b in by_claim]
        lines.append("| " + " | ".join([f"{c}", *(_cell(v.reason) for v in vs), f"**{across([v.status for v in vs])}**"]) + " |")
    replicated, flipped = [], []
    for c in claims:
        labels = [{e.label: e for e in b[c].evidence} for b in by_claim]
        for label in labels[0]:
            es = [lab.get(label) for lab in labels]
            if any(e is None for e in es):
                continue
            st = {e.status for e in es}
            if len(st) == 1 and st.pop() in (V.HOLDS, V.FAILS):
                replicated.append(f"- claim {c}, {label}: {es[0].status} at every root seed ("
                                  + "; ".join(f"{e.estimate:+.3g} [{e.ci_low:+.3g}, {e.ci_high:+.3g}]" for e in es) + ")")
            elif V.HOLDS in st and V.FAILS in st:
                flipped.append(f"- claim {c}, {label}: " + " / ".join(e.status for e in es))
    lines += ["", "## Comparisons that replicate", ""] + (replicated or ["- none"])
    if flipped:
        lines += ["", "## Comparisons that reverse between root seeds", ""] + flipped
    for r, b in zip(runs, by_claim):
        lines += ["", f"## Root seed {r.seed}: every comparison", ""]
        for c in claims:
            lines += [f"- claim {c}: {b[c].reason}"] + [f"  - {e.text()}" for e in b[c].evidence]
    return "\n".join(lines) + "\n"
