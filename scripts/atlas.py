"""The regime atlas of docs/abrupt_atlas.md, every task x network kind of the paper, in one command.

    python scripts/atlas.py run OUT [--cells CELL ...] [--workers 1]
    python scripts/atlas.py figures OUT [--docs docs/atlas]
    python scripts/atlas.py table OUT

``run`` runs each cell's atlas protocol (baseline networks over the factors that set the search
phase) into OUT/<cell>; a cell whose folder is finished is skipped, an interrupted one resumes
(``python -m bioplastic run`` does both). ``table`` prints, per cell and sweep point, how many
networks drop abruptly (and, on the flip-flop, how many of their outputs do), how many have a drop at
all (a measured search phase), how many learned, and the median search phase. ``figures`` draws each
finished cell's regimes figure to ``<docs>/<cell>.png`` (as the run's ``regimes.png``) and
``<docs>/summary.png``: per task and kind, the fraction of abrupt networks at the cell's best point.
Both compute the statistics by this version's definitions from the stored curves
(``recomputed_results``), so a cell run before a change of the definitions is read with today's.

Cells run at their protocols' defaults, which are small (4-10 seeds); docs/abrupt_atlas.md gives the
full-scale commands. Measured cost: docs/abrupt_atlas.md, "The whole atlas in one command".
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

TASKS = ("evidence_accumulation", "delayed_addition", "flipflop")
KINDS = ("leaky", "plrnn", "lstm", "low_rank")

# (task, kind) -> (protocol, extra --set overrides)
CELLS: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {
    ("evidence_accumulation", "leaky"): ("abrupt_atlas.yaml", ()),
    ("evidence_accumulation", "plrnn"): ("abrupt_atlas_plrnn.yaml", ()),
    ("evidence_accumulation", "lstm"): ("abrupt_atlas_lstm.yaml", ()),
    ("evidence_accumulation", "low_rank"): ("abrupt_atlas_low_rank_adam.yaml", ()),
    ("delayed_addition", "leaky"): ("abrupt_atlas_delayed_addition.yaml", ()),
    ("delayed_addition", "plrnn"): ("abrupt_atlas_delayed_addition_plrnn.yaml", ()),
    # the LSTM's regime is the shipped comparison; its atlas is the baseline over the sequence's
    # length, the factor that sets its plateau (docs/abrupt_atlas.md, "Delayed addition, LSTM")
    ("delayed_addition", "lstm"): ("abrupt_delayed_addition.yaml", (
        "conditions={baseline: {}}", "claims=[1]", "seeds=5", "training.ensemble_size=5",
        "training.iterations=4000", "sweep={grid: {task.stimulus_ms: [400, 600, 800, 1000]}}")),
    ("delayed_addition", "low_rank"): ("abrupt_atlas_delayed_addition.yaml", (
        "model.spec=low_rank", "model.n_units=100", "model.g=0.7", "training.iterations=600",
        "sweep={grid: {training.lr: [0.1]}}")),
    ("flipflop", "leaky"): ("abrupt_atlas_flipflop.yaml", ()),
    ("flipflop", "plrnn"): ("abrupt_atlas_flipflop_plrnn.yaml", ()),
    ("flipflop", "lstm"): ("abrupt_atlas_flipflop_lstm.yaml", ()),
    ("flipflop", "low_rank"): ("abrupt_atlas_flipflop.yaml", (
        "model.spec=low_rank", "model.n_units=100", "model.g=0.7", "training.iterations=600",
        "sweep={grid: {training.lr: [0.1]}}")),
}
ROOT = Path(__file__).resolve().parent.parent


def cell_name(task: str, kind: str) -> str:
    return f"{task}__{kind}"


def _selected(names: list[str] | None) -> list[tuple[str, str]]:
    cells = list(CELLS)
    if not names:
        return cells
    known = {cell_name(*c): c for c in cells}
    bad = [n for n in names if n not in known]
    if bad:
        sys.exit(f"--cells: unknown {bad}; expected some of {sorted(known)}")
    return [known[n] for n in names]


def command(task: str, kind: str, out: Path, workers: int) -> list[str]:
    protocol, sets = CELLS[(task, kind)]
    cmd = [sys.executable, "-m", "bioplastic", "run", str(ROOT / "protocols" / protocol),
           "--out", str(out / cell_name(task, kind)), "--workers", str(workers), "--quiet"]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def _finished(folder: Path) -> bool:
    return (folder / "report.html").is_file() and (folder / "results.nc").is_file()


def cmd_run(a) -> int:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    failed = []
    for task, kind in _selected(a.cells):
        folder = a.out / cell_name(task, kind)
        if _finished(folder):
            print(f"{folder}: finished, skipped", flush=True)
            continue
        cmd = command(task, kind, a.out, a.workers)
        print("$ " + " ".join(cmd), flush=True)
        if subprocess.run(cmd, env=env).returncode != 0:
            failed.append(cell_name(task, kind))
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
        return 1
    return 0


def _recomputed(folder: Path):
    """The cell's results with today's learning statistics; what a recompute cannot redo is printed."""
    from bioplastic.pipeline import recomputed_results
    from bioplastic.storage.rebuild import protocol_of
    from bioplastic.storage.results import read_dataset

    ds = read_dataset(folder / "results.nc")
    notes: list[str] = []
    ds = recomputed_results(ds, protocol_of(ds, str(folder / "results.nc")), notes)
    for note in notes:
        print(f"{folder.name}: {note}", file=sys.stderr)
    return ds


def _point_rows(folder: Path, ds=None):
    """(point label, abrupt, with a drop, learned, n, median search phase, abrupt outputs "k/m"
    where the task has several) per sweep point of a
    finished cell, by this version's definitions."""
    from bioplastic.storage.results import sweep_points

    ds = _recomputed(folder) if ds is None else ds
    rows = []
    for idx, label in sweep_points(ds):
        sub = ds.isel(idx).sel(condition="baseline")
        ab = sub["abrupt"].values
        sp = sub["search_phase"].values
        left = np.isfinite(sp)  # a drop after a plateau was found
        bits = ""
        if "output_abrupt" in sub and sub.sizes.get("output", 1) > 1:
            ob = sub["output_abrupt"].values
            bits = f"{int(np.nansum(ob))}/{ob.size}"
        rows.append((label or "-", int(np.nansum(ab)), int(left.sum()), int(sub["learned"].values.sum()), ab.size,
                     float(np.median(sp[left])) if left.any() else float("nan"), bits))
    return rows


def _fraction(counts: str) -> float:
    """0.25 for "3/12"; 0 for ""."""
    if not counts:
        return 0.0
    k, n = counts.split("/")
    return int(k) / int(n)


def _any_finished(a) -> None:
    if not any(_finished(a.out / cell_name(*c)) for c in _selected(a.cells)):
        sys.exit(f"{a.out}: no finished cell (expected run folders such as {a.out / cell_name(*next(iter(CELLS)))} "
                 f"with results.nc and report.html; make them with: python scripts/atlas.py run {a.out})")


def cmd_table(a) -> int:
    _any_finished(a)
    print("| task | kind | point | abrupt | abrupt outputs | with a drop | learned | search phase, median |")
    print("|---|---|---|---|---|---|---|---|")
    for task, kind in _selected(a.cells):
        folder = a.out / cell_name(task, kind)
        if not _finished(folder):
            print(f"| {task} | {kind} | (not run) | | | | | |")
            continue
        for label, ab, left, learned, n, sp, bits in _point_rows(folder):
            print(f"| {task} | {kind} | {label} | {ab}/{n} | {bits or '-'} | {left}/{n} | {learned}/{n} | "
                  f"{'-' if not np.isfinite(sp) else f'{sp:.0f}'} |")
    return 0


def cmd_figures(a) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bioplastic.plotting import curves

    _any_finished(a)
    a.docs.mkdir(parents=True, exist_ok=True)
    best = np.full((len(TASKS), len(KINDS)), np.nan)
    text = [["not run"] * len(KINDS) for _ in TASKS]
    for task, kind in _selected(a.cells):
        folder = a.out / cell_name(task, kind)
        if not _finished(folder):
            continue
        ds = _recomputed(folder)
        axes = curves.regimes(ds)
        axes[0].figure.suptitle(f"{task.replace('_', ' ')}, {kind}", fontsize=9)
        axes[0].figure.tight_layout()
        axes[0].figure.savefig(a.docs / f"{cell_name(task, kind)}.png", dpi=110)
        plt.close(axes[0].figure)
        rows = _point_rows(folder, ds)
        label, ab, _, learned, n, _, bits = max(rows, key=lambda r: (r[1] / r[4], _fraction(r[6]), r[3] / r[4]))
        i, j = TASKS.index(task), KINDS.index(kind)
        best[i, j] = ab / n
        text[i][j] = f"{ab}/{n} abrupt" + (f" (bits {bits})" if bits else "") + f"\n{learned}/{n} learned\n{label}"
    fig, ax = plt.subplots(figsize=(10, 4.6))
    cmap = plt.get_cmap("Greens").with_extremes(bad="0.88")  # grey: cells not run
    im = ax.imshow(np.ma.masked_invalid(best), vmin=0, vmax=1, cmap=cmap)
    for i in range(len(TASKS)):
        for j in range(len(KINDS)):
            ax.text(j, i, text[i][j], ha="center", va="center", fontsize=7,
                    color="white" if np.nan_to_num(best[i, j]) > 0.6 else "black")
    ax.set_xticks(range(len(KINDS)), ["leaky rate", "PLRNN", "LSTM", "rank-1 (low_rank)"])
    ax.set_yticks(range(len(TASKS)), ["evidence\naccumulation", "delayed\naddition", "3-bit\nflip-flop"])
    ax.set_title("Abrupt learning at each cell's best point (baselines; atlas defaults)", fontsize=10)
    fig.colorbar(im, ax=ax, label="fraction of networks abrupt (bar: 0.8)")
    fig.tight_layout()
    fig.savefig(a.docs / "summary.png", dpi=120)
    print(f"wrote {a.docs}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    for name in ("run", "figures", "table"):
        p = sub.add_parser(name)
        p.add_argument("out", type=Path, help="folder holding one run folder per cell")
        p.add_argument("--cells", nargs="+", default=None,
                       help=f"cells to act on (default: all): {', '.join(cell_name(*c) for c in CELLS)}")
        if name == "run":
            p.add_argument("--workers", type=int, default=1, help="worker processes per cell (default 1)")
        if name == "figures":
            p.add_argument("--docs", type=Path, default=ROOT / "docs" / "atlas", help="where the PNGs go")
    a = ap.parse_args(argv)
    return {"run": cmd_run, "figures": cmd_figures, "table": cmd_table}[a.what](a)


if __name__ == "__main__":
    sys.exit(main())
