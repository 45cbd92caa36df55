"""The run in a few lines of text: the summary table printed at the end of a run, the GR line, and
the note that says how to get the analyses of one point of a sweep."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import xarray as xr

from ..analysis.geometry import comparable_leads, lead_key, lead_summary
from ..analysis.statistics import nanmedian, num  # noqa: F401 - num: the report's formatting, here as before
from ..protocol.load import Protocol
from ..storage.results import sweep_points

#: parts of condition names written in capitals when the report names a condition in prose
ACRONYMS = {"tcr": "TCR", "rflo": "RFLO", "bptt": "BPTT", "lstm": "LSTM", "gr": "GR", "eprop": "e-prop", "stp": "STP",
            "plrnn": "PLRNN", "sgd": "SGD"}


def condition_label(name: str) -> str:
    """A condition's name as prose writes it: ``tcr_loss`` -> ``TCR loss``, ``rflo_tcr_plasticity`` ->
    ``RFLO TCR plasticity`` (underscores become spaces; known abbreviations are capitalised)."""
    return " ".join(ACRONYMS.get(w.lower(), w) for w in str(name).replace("-", "_").split("_") if w)


def sweep_note(protocol: Protocol, out: str | Path | None = None) -> str | None:
    """For a sweep (any number of points, one included): one line saying that the phase-space
    analysis and the predictions are not computed, and the command that computes them at one point
    (the protocol without its sweep, the point's values set with --set). None for a single protocol."""
    if protocol.sweep is None:
        return None

    point = protocol.points[0].coords
    sets = " ".join(f"--set {shlex.quote(f'{k}={v if isinstance(v, str) else json.dumps(v)}')}" for k, v in point.items())
    source = protocol.source if protocol.source and not protocol.source.startswith("<") else "PROTOCOL"
    if source.endswith("results.nc"):  # read back from a run folder: the run's copy of the protocol
        source = str(Path(source).with_name("protocol.yaml"))
    where = shlex.quote(f"{out}_point") if out is not None else "OUT_POINT"
    needs = "" if protocol.config.analysis is not None else " (add an analysis: section for the phase-space analysis)"
    return ("sweep: the phase-space analysis and the predictions are not computed for sweeps; to get them, run the "
            f"protocol at one point without its sweep, e.g. python -m bioplastic run {shlex.quote(str(source))} "
            f"--set sweep=null {sets} --out {where}{needs}")


def gr_line(analysis) -> str:
    lines = []
    key = lead_key(analysis)
    what = "departure" if key != "lead_time" else "onset"
    leads, left = comparable_leads(analysis, key)
    for c, cond in enumerate(analysis["condition"].values):
        lead = leads[c]
        ok = np.isfinite(lead)
        med, lo, hi = lead_summary(analysis, c, lead, key)
        ci = f"{num(med, '+.1f')} iterations (95 % CI {num(lo, '+.1f')} to {num(hi, '+.1f')})" if ok.any() else "n/a"
        lines.append(f"GR before the drop {what}, {cond}: lead > 0 in {(lead[ok] > 0).sum()}/{ok.sum()} networks with "
                     f"both a GR event and a drop ({lead.size} analysed"
                     + (f"; {int(left[c].sum())} left out: the drop starts before a GR event can be flagged" if left[c].any() else "")
                     + f"); median lead {ci}")
    return "\n".join(lines)


def summary(ds: xr.Dataset) -> str:
    """A short text table: per condition (and sweep point), learned networks and iterations to criterion."""
    sweep_dims = [d for d in ds.attrs.get("sweep_dims", "").split(",") if d]
    lines = []
    points = sweep_points(ds) if sweep_dims else [({}, "")]
    lw = 2 + max(len("point"), *(len(label) for _, label in points)) if sweep_dims else 0
    head = f"{'point':<{lw}}" if sweep_dims else ""
    ref = str(ds["condition"].values[0])
    w = max(18, 2 + max(len(str(c)) for c in ds["condition"].values))
    lines.append(f"{head}{'condition':<{w}}{'learned':>9}{'abrupt':>8}{'iters to criterion: median [95% CI]':>38}"
                 f"{f'vs {ref}: diff [95% CI], p':>34}   final acc (vs {ref}: diff, p)")
    for point, label in points:
        sub = ds.isel(point)
        for j, cond in enumerate(sub["condition"].values):
            c = sub.sel(condition=cond)
            itc = c["iterations_to_criterion"].values
            ok = np.isfinite(itc)
            censored = "" if ok.all() else ">="  # unlearned networks count at the budget
            med = (f"{censored}{float(c['itc_median']):.0f} [{float(c['itc_ci_low']):.0f}, {float(c['itc_ci_high']):.0f}]"
                   if "itc_median" in c and np.isfinite(float(c["itc_median"])) else "-")
            cmp = "" if j == 0 else (
                f"{float(c['itc_difference']):+.0f} [{float(c['itc_difference_ci_low']):+.0f}, "
                f"{float(c['itc_difference_ci_high']):+.0f}], p={float(c['itc_p_value']):.2g}"
                if "itc_difference" in c and np.isfinite(float(c["itc_difference"])) else "-")
            acc = f"{nanmedian(c['final_accuracy'].values):.3f}"
            if j > 0 and "acc_difference" in c and np.isfinite(float(c["acc_difference"])):
                acc += f" ({float(c['acc_difference']):+.3f}, p={float(c['acc_p_value']):.2g})"
            ab = c["abrupt"].values if "abrupt" in c else np.full(itc.shape, np.nan)
            abrupt = f"{int(np.nansum(ab))}/{int(np.isfinite(ab).sum())}"
            lines.append(f"{label:<{lw}}" * bool(sweep_dims)
                         + f"{str(cond):<{w}}{f'{ok.sum()}/{len(itc)}':>9}{abrupt:>8}{med:>38}{cmp:>34}   {acc}")
    if "itc_p_value" in ds:
        lines.append(f"(unlearned networks count at the budget, {ds.sizes['iteration']} iterations; "
                     f"p: Wilcoxon signed-rank, paired by seed)")
    n_div = int(ds["diverged"].sum())
    if n_div:
        lines.append(f"{n_div} network(s) diverged (see the 'diverged' variable)")
    return "\n".join(lines)
