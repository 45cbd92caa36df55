"""``compare.html``: the recording's measures beside each condition's, drawn from ``compare.nc``
only (:mod:`bioplastic.analysis.compare`), with which conditions the data is consistent with in words."""
from __future__ import annotations

import numpy as np
import xarray as xr

from ..analysis.compare import COMPARED, MEANING, UNIT_LEVEL, consistency_sentences
from ..analysis.psychometric import slope_is_lower_bound
from ..plotting.compare import psychometric_comparison
from .html import CSS, _png, esc


def _fmt(k: str, x: float) -> str:
    if not np.isfinite(x):
        return "n/a"
    if k.startswith("fraction") or k in ("accuracy", "psychometric_lapse"):
        return f"{100 * x:.0f} %"
    if k.endswith("_ms"):
        return f"{x:.0f} ms"
    return f"{x:.3g}"


def _cell(k: str, v, rng=None, bound: bool = False) -> str:
    est, lo, hi = v
    text = ("&ge; " if bound and np.isfinite(est) else "") + esc(_fmt(k, est))
    if np.isfinite(lo) and np.isfinite(hi):
        text += f"<br><span class='ci'>{esc(_fmt(k, lo))} to {esc(_fmt(k, hi))}</span>"
    if rng is not None and np.isfinite(rng).all():
        text += f"<br><span class='ci'>networks {esc(_fmt(k, rng[0]))} to {esc(_fmt(k, rng[1]))}</span>"
    return text


def _slope_bounds(cmp: xr.Dataset, n_sources: int) -> list[bool]:
    """Per source (data, then conditions): whether its psychometric slope is a lower bound (the data's
    fit, or most of the condition's networks' fits, at the slope's bound: choices that switch within
    one evidence step)."""
    out = [int(cmp["data_psychometric_fit_status"]) == 2 if "data_psychometric_fit_status" in cmp else False]
    if "psychometric_fit_status_networks" in cmp:
        out += [slope_is_lower_bound(v) for v in cmp["psychometric_fit_status_networks"].values]
    return (out + [False] * n_sources)[:n_sources]


def grouping_note(cmp: xr.Dataset) -> str:
    """Which label each side's choice-resolved measures group trials by, in words."""
    data, model = str(cmp.attrs.get("data_grouped_by", "none")), str(cmp.attrs.get("model_grouped_by", "target"))
    words = {"target": "the rewarded side (<code>target</code>)", "choice": "the subject's choice (<code>choice</code>)"}
    head = "Choice-resolved measures (build-up, decay, opposite ramps, population ramp) group trials by "
    if data == "none":
        return head + "choice, but the recording has no two-valued <code>target</code> or <code>choice</code>: they are n/a for the data."
    model_words = "the network's own choice" if model == "choice" else "the rewarded side"
    text = f"{head}{words.get(data, esc(data))} in the data and by {model_words} in the model"
    if data == model:
        return text + ": both sides the same way."
    if data == "choice":  # an older predictions.nc, without the networks grouped by their own choices
        return (text + ": error trials are grouped differently. The run's predictions.nc predates the networks grouped by their "
                "own choices: delete it and run <code>python -m bioplastic run RUN/protocol.yaml --out RUN</code> again (it "
                "recomputes what is missing, without retraining), or give the recording a <code>target</code> column.")
    return text + "."


def compare_html(cmp: xr.Dataset) -> str:
    """The page of the module docstring."""
    sources = [str(s) for s in cmp["source"].values]
    measures = [str(m) for m in cmp["measure"].values]
    periods = {"ramp": f"{cmp.attrs.get('data_ramp_period', 'period')} period", "timescale": f"{cmp.attrs.get('data_timescale_period', 'period')} period"}
    head = "".join(f"<th>{esc(s)}</th>" for s in sources)
    rows = []
    for k in measures:
        if k not in cmp:
            continue
        flags = cmp["consistent"].sel(measure=k).values
        bound = _slope_bounds(cmp, len(sources)) if k == "psychometric_slope" else [False] * len(sources)
        cells = [_cell(k, cmp[k].values[0], bound=bound[0])]
        for s in range(1, len(sources)):
            mark = {1: " <span class='holds'>&#10003;</span>", 0: " <span class='fails'>&#10007;</span>"}.get(int(flags[s]), "")
            cells.append(_cell(k, cmp[k].values[s], cmp[f"{k}_network_range"].values[s], bound[s]) + mark)
        judged = "" if k in COMPARED else "<br><span class='ci'>(scale depends on the recording: shown, not judged)</span>"
        over = "units" if k in UNIT_LEVEL else "trials"
        rows.append(f"<tr><td><b>{esc(k)}</b><br><span class='ci'>{esc(MEANING.get(k, '').format(**periods))}; data CI over {over}</span>"
                    f"{judged}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    verdicts = "".join(f"<li>{esc(line)}</li>" for line in consistency_sentences(cmp))
    notes = [
        f"The data: {cmp.attrs.get('data_n_trials')} trials, {cmp.attrs.get('data_n_units')} units, bins of {cmp.attrs.get('data_dt_ms'):g} ms; "
        f"ramps in its {esc(cmp.attrs.get('data_ramp_period'))} period, timescales in its {esc(cmp.attrs.get('data_timescale_period'))} period "
        f"(the model: {esc(cmp.attrs.get('model_ramp_period'))} and {esc(cmp.attrs.get('model_timescale_period'))}).",
        grouping_note(cmp),
        "&ge; before a psychometric slope: the choices switch within one evidence step (in the data, or in most of the "
        "condition's networks), so the fitted slope is at its bound, a lower bound.",
        "Model cells: median over the condition's networks (seeds) with its 95 % bootstrap CI, and the range over the networks. "
        "&#10003;: the data's 95 % CI overlaps that range (a network trained this way could have produced the data's value); "
        "&#10007;: it does not.",
    ]
    try:
        fig = (f"<figure><img src='data:image/png;base64,{_png(lambda: psychometric_comparison(cmp))}' alt='psychometric curves'>"
               "<figcaption><b>Psychometric curves.</b> P(choice right) against the signed evidence: the recording (left; dot area: "
               "trials) and each condition's networks (right; median over seeds), with the fitted psychometric function "
               "P = lapse + (1 - 2 lapse) / (1 + exp(-slope (evidence - bias))). Each on its own evidence axis.</figcaption></figure>")
    except (ValueError, KeyError) as exc:  # a figure that cannot be drawn is named, the page is still written
        fig = f"<p class='unavailable error'>Error: the psychometric figure could not be drawn ({esc(exc)}).</p>"
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>bioplastic compare: data vs "
            f"{esc(cmp.attrs.get('model_protocol_name', 'model'))}</title><style>{CSS}</style></head><body>"
            f"<h1>The recording beside the model ({esc(cmp.attrs.get('model_protocol_name', ''))})</h1>"
            f"<h2>What the data is consistent with</h2><ul>{verdicts}</ul>"
            f"<h2>Every measure, side by side</h2><table><tr><th>measure</th>{head}</tr>{''.join(rows)}</table>"
            f"<ul class='meta'>{''.join(f'<li>{n}</li>' for n in notes)}</ul>"
            f"<h2>Psychometric curve</h2>{fig}</body></html>")
