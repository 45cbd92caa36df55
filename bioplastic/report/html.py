"""``OUT/report.html``: one self-contained page (figures embedded) built from the saved dataset
and figures only; ``python -m bioplastic report OUT`` rebuilds it without recomputing anything."""
from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np
import xarray as xr

from ..storage.io import atomic_write_text

FIGURES = [
    ("sweep.png", "Iterations to criterion across the sweep",
     "Median (line) and individual networks (dots) per condition; open triangles: not learned within the budget."),
    ("learning_curves.png", "Learning curves",
     "Training loss (faint: raw, bold: smoothed) and held-out accuracy of every network; dots mark the drop onset, "
     "dotted lines the iteration at which the criterion was reached."),
    ("iterations_to_criterion.png", "Iterations to criterion", "One dot per network; bar: median."),
    ("gr_alignment.png", "Geometric restructuring and the loss drop",
     "Smoothed loss with GR events (triangles) and drop onsets (dots); below, the number of stable (solid) and "
     "saddle (dashed) fixed points with zero input at each checkpoint, every network drawn."),
    ("phase_portraits.png", "Phase portraits",
     "Seed 0 of each condition before, near and after its drop onset: trajectories (grey) and fixed points "
     "in the PCA frame of the final checkpoint."),
    ("lead_times.png", "Lead time of GR before the drop", "Drop onset minus the first GR event, one dot per network."),
]


def _table(ds: xr.Dataset) -> str:
    sweep_dims = [d for d in ds.attrs.get("sweep_dims", "").split(",") if d]
    head = "".join(f"<th>{html.escape(d)}</th>" for d in sweep_dims)
    rows = []
    index = list(np.ndindex(*[ds.sizes[d] for d in sweep_dims])) or [()]
    for idx in index:
        sub = ds.isel(dict(zip(sweep_dims, idx)))
        labels = "".join(f"<td>{html.escape(str(sub[d].item()))}</td>" for d in sweep_dims)
        for cond in sub["condition"].values:
            itc = sub["iterations_to_criterion"].sel(condition=cond).values
            ok = np.isfinite(itc)
            med = f"{np.median(itc[ok]):.0f}" if ok.all() else (f"&ge; {ds.sizes['iteration']} (not all learned)" if ok.any() else "not learned")
            spread = f"{itc[ok].min():.0f}-{itc[ok].max():.0f}" if ok.any() else "-"
            acc = np.nanmedian(sub["final_accuracy"].sel(condition=cond).values)
            onset = np.nanmedian(sub["drop_onset"].sel(condition=cond).values) if np.isfinite(sub["drop_onset"].sel(condition=cond).values).any() else np.nan
            rows.append(f"<tr>{labels}<td>{html.escape(str(cond))}</td><td>{ok.sum()}/{len(itc)}</td><td>{med}</td>"
                        f"<td>{spread}</td><td>{acc:.3f}</td><td>{onset:.0f}</td></tr>")
    return (f"<table><tr>{head}<th>condition</th><th>learned</th><th>median iterations to criterion</th>"
            f"<th>range</th><th>final held-out accuracy (median)</th><th>median drop onset</th></tr>" + "".join(rows) + "</table>")


def _gr_section(analysis: xr.Dataset | None) -> str:
    if analysis is None:
        return ""
    rows = []
    for cond in analysis["condition"].values:
        lead = analysis["lead_time"].sel(condition=cond).values
        ok = np.isfinite(lead)
        pos = int((lead[ok] > 0).sum())
        med = "-"
        if ok.any() and "lead_time_ci" in analysis:
            lo, hi = analysis["lead_time_ci"].sel(condition=cond).values
            med = f"{float(analysis['lead_time_median'].sel(condition=cond)):.0f} [{lo:.0f}, {hi:.0f}]"
        rows.append(f"<tr><td>{html.escape(str(cond))}</td><td>{ok.sum()}/{len(lead)}</td><td>{pos}/{ok.sum()}</td><td>{med}</td></tr>")
    return ("<h2>Does GR precede the drop?</h2><p>Lead time = drop onset minus the first GR event "
            f"({html.escape(analysis['gr_event'].attrs.get('rule', ''))}).</p><table><tr><th>condition</th>"
            "<th>networks with a GR event and a drop</th><th>positive lead time</th><th>median lead, iterations [95 % bootstrap CI]</th></tr>"
            + "".join(rows) + "</table>")


def build_report(ds: xr.Dataset, out: Path, analysis: xr.Dataset | None = None) -> Path:
    """Write ``out/report.html`` from the dataset's contents and the PNGs already in ``out``."""
    out = Path(out)
    name = ds.attrs.get("protocol_name", "run")
    figs = []
    for fname, title, caption in FIGURES:
        path = out / fname
        if path.exists():
            data = base64.b64encode(path.read_bytes()).decode()
            figs.append(f"<h2>{title}</h2><img src='data:image/png;base64,{data}' alt='{title}'>"
                        f"<p class='cap'>{caption}</p>")
    crit = ds["iterations_to_criterion"].attrs.get("criterion", float("nan"))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>bioplastic: {html.escape(name)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}}img{{max-width:100%}}
table{{border-collapse:collapse}}td,th{{border:1px solid #bbb;padding:4px 8px;text-align:right}}
.cap{{color:#555;font-size:90%}}pre{{background:#f4f4f4;padding:1em;overflow:auto;font-size:85%}}</style></head><body>
<h1>bioplastic run: {html.escape(name)}</h1>
<p>{html.escape(_description(ds))}</p>
<p>{ds.sizes['condition']} condition(s) x {ds.sizes['seed']} seed(s), {ds.sizes['iteration']} iterations each;
criterion: held-out accuracy &ge; {crit:g}. Root seed {ds.attrs.get('root_seed')}, git {html.escape(str(ds.attrs.get('git_commit')))},
created {html.escape(str(ds.attrs.get('created')))}.</p>
<h2>Learning speed</h2>{_table(ds)}
{_gr_section(analysis)}
{''.join(figs)}
<h2>Protocol (resolved)</h2><pre>{html.escape(ds.attrs.get('protocol', ''))}</pre>
</body></html>"""
    atomic_write_text(out / "report.html", page)
    return out / "report.html"


def _description(ds: xr.Dataset) -> str:
    from ..protocol.yaml12 import load_yaml

    try:
        return str(load_yaml(ds.attrs.get("protocol", "")).get("description", ""))
    except Exception:  # a report is still useful without the description
        return ""
