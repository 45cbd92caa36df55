"""``OUT/report.html``: one self-contained page for a neuroscientist, built from the saved datasets
only (``results.nc``, and where present ``analysis.nc``, ``predictions.nc``, ``brian2.nc``,
``predictions_brian2.nc``). Figures are drawn from the datasets by the plotting functions and
embedded as base64 PNG; nothing is retrained or re-analysed. ``python -m bioplastic report OUT``
rebuilds it; sections whose dataset is missing say so and name the command that makes it.

The sections (ids, in order) are :data:`SECTIONS`; the figures each promises are :data:`FIGURES`.
What each shows and the verdict rules: docs/report.md.
"""
from __future__ import annotations

import base64
import html
import io
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from ..analysis.geometry import comparable_leads, earliest_gr_event, lead_key, lead_summary
from ..analysis.learning_curves import DEFINITION_CHANGES, outdated, statistics_date
from ..analysis.measures import MIN_DECAY_FRACTION
from ..analysis.predictions import prediction_sentences
from ..analysis.psychometric import slope_is_lower_bound
from ..analysis.statistics import nanmedian
from ..plotting import curves, engines, phase
from ..plotting import field as ffigs
from ..plotting import predictions as pfigs
from ..plotting.figures import channel_names, recurrent_weights
from ..protocol.yaml12 import load_yaml
from ..simulate.run import agreement_line
from ..storage.rebuild import protocol_of
from . import staircase as staircase_report  # a module of this one's helpers: imported as a module (cycle)
from . import verdicts as V
from .bottom_line import bottom_line, caveats
from .text import num, sweep_note

#: (id, title) of every section, in page order
SECTIONS = [
    ("bottom", "The bottom line"),
    ("protocol", "The protocol in brief"),
    ("files", "What this report is built from"),
    ("verdicts", "Claims tested by this run: verdicts"),
    ("learning", "Learning curves"),
    ("speed", "Iterations to criterion"),
    ("accuracy", "Final accuracy"),
    ("gr", "Geometric restructuring and the loss drop"),
    ("phase", "Phase portraits"),
    ("predictions", "Predictions for experimentalists"),
    ("ramping", "Ramping activity"),
    ("timescales", "Timescales"),
    ("brian2", "torch vs brian2"),
    ("resolved", "Resolved protocol"),
]
#: section id -> the figure ids it promises (each an <img id=...> when its data exist)
FIGURES = {
    "learning": ["fig-learning-curves", "fig-loss-overlay"],
    "accuracy": ["fig-psychometric", "fig-example-trials"],
    "speed": ["fig-iterations-to-criterion"],
    "gr": ["fig-gr-alignment", "fig-lead-times"],
    "phase": ["fig-phase-portraits", "fig-spectra"],
    "ramping": ["fig-ramping-examples", "fig-ramp-distributions", "fig-choice-psth"],
    "predictions": ["fig-plasticity-course"],
    "timescales": ["fig-timescale-distributions"],
    "brian2": ["fig-engine-agreement"],
}
#: dataset file -> (what it holds, the command that makes it)
FILES = {
    "results.nc": ("training: curves, learning speed, statistics", "python -m bioplastic run PROTOCOL --out OUT"),
    "analysis.nc": ("fixed points, GR events, lead times", "python -m bioplastic analyze OUT"),
    "predictions.nc": ("predictions for experimentalists (ramping, timescales, attractors, plasticity)",
                       "python -m bioplastic run PROTOCOL --out OUT (the same command again finishes the steps after training)"),
    "brian2.nc": ("torch vs brian2 re-simulation", "python -m bioplastic simulate OUT (or brian2: {enabled: true})"),
    "predictions_brian2.nc": ("the predictions computed on the brian2 re-simulation",
                              "a run with brian2: {enabled: true} in its protocol"),
    "staircase.nc": ("the linear oracle: k-pole optima, every plateau and drop, spectra, GR events (filtered_noise task)",
                     "python -m bioplastic run PROTOCOL --out OUT (the same command again finishes the steps after training)"),
}
#: sections shown only for one task kind: kind -> (id, title, id of the section it follows)
TASK_SECTIONS = {"filtered_noise": ("staircase", "The staircase: theory vs measurement", "learning")}
#: the prediction measures shown in the numbers table (and torch vs brian2)
MEASURES = [("fraction_ramping", "ramping units", "pct"), ("timescale_median_ms", "median autocorrelation timescale", "ms"),
            ("fraction_timescale_long", "units with timescale longer than measurable", "pct"),
            ("attractor_slow_tau_ms", "slowest attractor mode", "ms"), ("n_attractors", "attractors", "num"),
            ("participation_ratio", "participation ratio", "num"), ("accuracy", "held-out accuracy", "pct1"),
            ("accuracy_plasticity_blocked", "accuracy, plasticity blocked", "pct1"),
            ("plasticity_mean_abs", "mean |short-term change|", "num"),
            ("plasticity_timescale_ms", "plasticity timescale", "ms"),
            ("psychometric_slope", "psychometric slope (per unit of signed evidence)", "num"),
            ("psychometric_bias", "psychometric bias (evidence at P(right) = 0.5)", "num"),
            ("psychometric_lapse", "psychometric lapse rate", "pct1")]


class ReportError(Exception):
    """No report can be written (no results.nc)."""


@dataclass
class Run:
    """The datasets of a run (None where missing), what is missing or unreadable, and the folder
    they come from (only named in the text; ``None`` for datasets made in memory)."""

    out: Path | None = None
    results: xr.Dataset | None = None
    analysis: xr.Dataset | None = None
    predictions: xr.Dataset | None = None
    brian2: xr.Dataset | None = None
    predictions_brian2: xr.Dataset | None = None
    staircase: xr.Dataset | None = None
    missing: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- helpers
def esc(x) -> str:
    return html.escape(str(x))


def _png(draw: Callable[[], object]) -> str:
    """Draw a figure (a callable returning Axes or an array of Axes) into a base64 PNG."""
    axes = draw()
    fig = axes.flat[0].figure if hasattr(axes, "flat") else (axes[0].figure if isinstance(axes, (list, tuple)) else axes.figure)
    try:
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
    finally:
        plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


#: the page being rendered: whether figures are drawn, the PNGs already drawn (file name -> bytes),
#: strict mode, and the failures met (set by :func:`render`)
_CONTEXT: dict = {"draw": True, "pngs": {}, "strict": False, "failures": []}


def attempt(what: str, make: Callable[[], str], fallback: Callable[[str], str]) -> str:
    """``make()``; when it raises: in strict mode the error propagates, otherwise the failure is
    recorded (``what``: cause) and ``fallback(cause)`` is shown in its place."""
    try:
        return make()
    except Exception as exc:  # noqa: BLE001 - shown as an error; the run is reported incomplete; strict raises
        if _CONTEXT["strict"]:
            raise
        cause = f"{type(exc).__name__}: {exc}"
        _CONTEXT["failures"].append(f"{what}: {cause}")
        return fallback(cause)


def figure(fig_id: str, title: str, draw: Callable[[], object], caption: str, png: str | None = None,
           sources: tuple[str, ...] = ("results.nc",)) -> str:
    """An embedded figure: the PNG ``png`` when the caller drew it already (``render(pngs=...)``),
    else drawn now from the datasets; nothing when the protocol turns figures off."""
    if not _CONTEXT["draw"]:
        return (f"<p class='cap' id='{fig_id}-off'>Figure &ldquo;{esc(title)}&rdquo; not drawn: the protocol sets "
                "<code>output.figures: false</code>.</p>")
    saved = _CONTEXT["pngs"].get(png)

    def embed() -> str:
        data = base64.b64encode(saved).decode() if saved is not None else _png(draw)
        return (f"<figure><img id='{fig_id}' src='data:image/png;base64,{data}' alt='{esc(title)}'>"
                f"<figcaption><b>{esc(title)}.</b> {caption}</figcaption></figure>")

    return attempt(f"figure {title!r}", embed, lambda cause: (
        f"<p class='unavailable error' id='{fig_id}-failed'>Error: figure &ldquo;{esc(title)}&rdquo; could not be drawn "
        f"({esc(cause)}).</p>"))


def unavailable(fname: str, extra: str = "") -> str:
    what, cmd = FILES.get(fname, ("", ""))
    return (f"<p class='unavailable'>Unavailable (missing {esc(fname)}; run <code>{esc(cmd)}</code>){esc(extra)}.</p>")


def section(sid: str, title: str, body: str) -> str:
    return f"<section id='{sid}'><h2>{esc(title)}</h2>{body}</section>"


def table(head: list[str], rows: list[list[str]], cls: str = "") -> str:
    """Cells are HTML (escape them before)."""
    h = "".join(f"<th>{c}</th>" for c in head) if any(head) else ""
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    thead = f"<thead><tr>{h}</tr></thead>" if h else ""
    return f"<table class='{cls}'>{thead}<tbody>{body}</tbody></table>"


def fmt(x: float, kind: str = "num", signed: bool = False) -> str:
    if x is None or not np.isfinite(x):
        return "n/a"
    s = "+" if signed else ""
    if kind == "pct":
        return num(100 * x, f"{s}.0f") + (" pp" if signed else " %")
    if kind == "pct1":  # one decimal: accuracies that are counts of trials, often under a point apart
        return num(100 * x, f"{s}.1f") + (" pp" if signed else " %")
    if kind == "ms":
        return num(x, f"{s}.0f") + " ms"
    if kind == "it":
        return num(x, f"{s}.0f")
    if kind == "acc":
        return num(x, f"{s}.3f")
    return num(x, f"{s}.3g")


def ci(lo: float, hi: float, kind: str = "num", signed: bool = False) -> str:
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return ""
    return f" <span class='ci'>[{fmt(lo, kind, signed)}, {fmt(hi, kind, signed)}]</span>"


def pval(p: float) -> str:
    return f"{p:.2g}" if np.isfinite(p) else "n/a"


def _sweep_dims(ds: xr.Dataset) -> list[str]:
    return [d for d in ds.attrs.get("sweep_dims", "").split(",") if d and d in ds.dims]


# --------------------------------------------------------------------------------------------- sections
def _protocol_in_brief(run: Run, protocol) -> str:
    ds = run.results
    if protocol is None:
        return "<p class='unavailable'>The protocol could not be read from results.nc.</p>"
    c0 = protocol.conditions[0]
    task, model, tr = c0.task.model_dump(), c0.model.model_dump(), c0.training
    task_words = ", ".join(f"{k} = {v}" for k, v in task.items() if k != "kind" and v is not None and not isinstance(v, (dict, list)))
    model_keys = ("n_units", "g", "tau_ms", "phi", "sigma_h", "rank", "dale")
    model_words = ", ".join(f"{k} = {model[k]}" for k in model_keys if k in model and model[k] is not None)
    crit = ds["iterations_to_criterion"].attrs.get("criterion", getattr(tr, "criterion", float("nan")))
    rows = [["task", f"<b>{esc(c0.task_kind)}</b> ({esc(task_words)})"],
            ["model", f"<b>{esc(c0.model_kind)}</b> ({esc(model_words)})"],
            ["learning rule", f"<b>{esc(tr.rule)}</b>, {esc(tr.optimizer)} lr = {tr.lr:g}, batch {tr.batch_size}"],
            ["budget", f"{ds.sizes['iteration']} iterations per network; criterion: held-out accuracy &ge; {crit:g}"
                       + (" on the trials with evidence (coherence not 0)" if task.get("accuracy_trials") == "evidence" else "")],
            ["seeds", f"{ds.sizes['seed']} per condition (networks paired by seed across conditions); root seed "
                      f"{esc(ds.attrs.get('root_seed'))}"]]
    dims = _sweep_dims(ds)
    if dims:
        rows.append(["sweep", "; ".join(f"{esc(d)} = {', '.join(esc(v) for v in ds[d].values)}" for d in dims)])
    conds = "".join(f"<li><b>{esc(c.name)}</b>: {esc(describe_condition(c, c0))}</li>" for c in protocol.conditions)
    rows.append(["conditions", f"<ul class='conds'>{conds}</ul>"])
    claims = ", ".join(str(n) for n in protocol.config.claims) or "none named"
    rows.append(["claims (science.md §7)", esc(claims)])
    return table(["", ""], rows, "brief")


def describe_condition(c, first) -> str:
    """A condition in words: its TCR form and parameters, and what differs from the first condition."""
    t = c.tcr
    if t.form == "none":
        words = "no TCR"
    elif t.form == "loss":
        sched = getattr(t.schedule, "kind", "constant")
        what = ("the squared one-step change of the state relative to its variance in the window"
                if t.normalize == "variance" else "the squared one-step change of the state")
        words = (f"TCR as a loss term (penalty on {what}, window: {t.window}), "
                 f"lambda = {t.lambda_:g}" + ("" if sched == "constant" else f", schedule {sched}"))
    else:
        p = t.plasticity
        if p.rule == "tsodyks_markram":
            words = f"Tsodyks-Markram short-term plasticity (U = {p.U:g})"
        else:
            words = (f"TCR as anti-Hebbian short-term synaptic plasticity (eta_F = {p.eta_F:g}, tau_F = {p.tau_F_ms:g} ms)")
        if p.gradient == "exact":
            words += "; trained with the gradient through the fast variables (gradient: exact)"
        if p.kappa > 0:
            words += f"; freeze-in into the long-term weights, kappa = {p.kappa:g}"
        if p.sigma_w > 0:
            words += f"; weight noise sigma_w = {p.sigma_w:g}"
        kind = getattr(p.schedule, "kind", "constant")
        if kind != "constant":
            words += f"; eta_F controlled by the {kind} schedule"
    diffs = []
    if c.training.rule != first.training.rule:
        diffs.append(f"rule {c.training.rule}")
    if c.model_kind != first.model_kind:
        diffs.append(f"model {c.model_kind}")
    else:
        a, b = c.model.model_dump(), first.model.model_dump()
        diffs += [f"{k} = {a[k]}" for k in a if a[k] != b.get(k)]
    return words + (f" ({', '.join(diffs)})" if diffs else "")


def _files(run: Run) -> str:
    rows = []
    for name, (what, _) in FILES.items():
        ok = getattr(run, name[:-3]) is not None
        state = ("<span class='ok'>present</span>" if ok else
                 f"<span class='bad'>unreadable: {esc(run.errors[name])}</span>" if name in run.errors else
                 "<span class='bad'>missing</span>" if name in run.missing else "not part of this protocol")
        rows.append([esc(name), esc(what), state])
    return table(["file", "content", "status"], rows)


STATUS_CLASS = {V.HOLDS: "holds", V.FAILS: "fails", V.INCONCLUSIVE: "inconclusive", V.NOT_TESTED: "untested", V.FAILED: "error"}


def _verdicts(vs: list[V.Verdict]) -> str:
    if not vs:
        return "<p>This protocol names no claim of science.md §7 (<code>claims: [...]</code>), so no verdict is given.</p>"
    out = ["<p>Rules (docs/report.md): a claim <b>holds</b> only when the effect's 95 % CI excludes zero in the "
           "claimed direction and its test gives p &lt; 0.05; it <b>does not hold</b> when the CI excludes zero the "
           "other way (p &lt; 0.05), or the estimate is zero or opposite and the CI excludes the smallest effect of "
           "interest; otherwise it is <b>inconclusive</b>. Seeds are the independent samples.</p>"]
    for v in vs:
        cls = STATUS_CLASS.get(v.status, "inconclusive")
        ev = ""
        if v.evidence:
            rows = [[esc(e.label), f"{fmt(e.estimate)} {esc(e.unit)}", f"[{fmt(e.ci_low)}, {fmt(e.ci_high)}]",
                     f"{esc(e.test)} p = {pval(e.p_value)}", str(e.n),
                     f"<span class='{STATUS_CLASS.get(e.status, '')}'>{esc(e.status)}</span>" + (f"<br><small>{esc(e.note)}</small>" if e.note else "")]
                    for e in v.evidence]
            ev = table(["comparison", "estimate", "95 % CI", "test", "n", "status"], rows, "evidence")
        nums = "".join(f"<li>{esc(n)}</li>" for n in v.numbers)
        notes = "".join(f"<li>{esc(n)}</li>" for n in v.notes)
        out.append(f"<div class='verdict' id='claim-{v.claim}'><h3>Claim {v.claim}: {esc(v.statement)} "
                   f"<span class='badge {cls}'>{esc(v.status)}</span></h3><p>{esc(v.reason)}</p>{ev}"
                   + (f"<ul class='numbers'>{nums}</ul>" if nums else "")
                   + (f"<ul class='notes'>{notes}</ul>" if notes else "") + "</div>")
    summary = table(["claim", "statement", "verdict"],
                    [[f"<a href='#claim-{v.claim}'>{v.claim}</a>", esc(v.statement),
                      f"<span class='badge {STATUS_CLASS.get(v.status, '')}'>{esc(v.status)}</span>"] for v in vs], "summary")
    return summary + "".join(out)


def _speed_table(ds: xr.Dataset) -> str:
    dims = _sweep_dims(ds)
    rows = []
    for where, sub in V._points(ds):
        for j, cond in enumerate(sub["condition"].values):
            c = sub.sel(condition=cond)
            itc = c["iterations_to_criterion"].values
            learned = int(np.isfinite(itc).sum())
            med = (f"{'&ge; ' if learned < itc.size else ''}{fmt(float(c['itc_median']), 'it')}"
                   f"{ci(float(c['itc_ci_low']), float(c['itc_ci_high']), 'it')}" if "itc_median" in c else "n/a")
            diff = ("reference" if j == 0 else
                    f"{fmt(float(c['itc_difference']), 'it', True)}{ci(float(c['itc_difference_ci_low']), float(c['itc_difference_ci_high']), 'it', True)}"
                    if "itc_difference" in c else "n/a")
            p = "" if j == 0 or "itc_p_value" not in c else f"{pval(float(c['itc_p_value']))} ({int(c['itc_n_pairs'])} pairs)"
            onset = c["drop_onset"].values
            per_seed = ", ".join("&ndash;" if not np.isfinite(x) else f"{x:.0f}" for x in itc)
            rows.append(([esc(where)] if dims else []) + [esc(cond), f"{learned}/{itc.size}", med, diff, p,
                         per_seed, fmt(nanmedian(onset) if np.isfinite(onset).any() else np.nan, "it")])
    head = (["sweep point"] if dims else []) + ["condition", "learned", "iterations to criterion: median [95 % CI]",
                                                 "vs reference: median paired difference [95 % CI]", "Wilcoxon p",
                                                 "per seed (&ndash;: not learned)", "median drop onset"]
    return (table(head, rows) + f"<p class='cap'>Unlearned networks count at the budget ({ds.sizes['iteration']} "
            "iterations) in the medians and differences, which are then lower bounds (&ge;). CIs: percentile bootstrap "
            "over seeds (10000 resamples). Reference: the first condition; pairs: same seed.</p>")


def _accuracy_table(ds: xr.Dataset) -> str:
    dims = _sweep_dims(ds)
    rows = []
    for where, sub in V._points(ds):
        for j, cond in enumerate(sub["condition"].values):
            c = sub.sel(condition=cond)
            med = (f"{fmt(float(c['acc_median']), 'acc')}{ci(float(c['acc_ci_low']), float(c['acc_ci_high']), 'acc')}"
                   if "acc_median" in c else fmt(float(nanmedian(c["final_accuracy"].values)), "acc"))
            diff = ("reference" if j == 0 else
                    f"{fmt(float(c['acc_difference']), 'acc', True)}{ci(float(c['acc_difference_ci_low']), float(c['acc_difference_ci_high']), 'acc', True)}"
                    if "acc_difference" in c else "n/a")
            p = "" if j == 0 or "acc_p_value" not in c else f"{pval(float(c['acc_p_value']))} ({int(c['acc_n_pairs'])} pairs)"
            per_seed = ", ".join(f"{x:.3f}" for x in c["final_accuracy"].values)
            div = int(c["diverged"].sum()) if "diverged" in c else 0
            rows.append(([esc(where)] if dims else []) + [esc(cond), med, diff, p, per_seed, str(div)])
    head = (["sweep point"] if dims else []) + ["condition", "final held-out accuracy: median [95 % CI]",
                                                 "vs reference: median paired difference [95 % CI]", "Wilcoxon p",
                                                 "per seed", "diverged"]
    return table(head, rows) + "<p class='cap'>Held-out accuracy (fraction of correct trials) at the last evaluation.</p>"


def _abrupt_table(ds: xr.Dataset) -> str:
    if any(_sweep_dims(ds)):
        return ""
    rows = []
    for cond in ds["condition"].values:
        c = ds.sel(condition=cond)
        s, a, w = (c[k].values for k in ("search_phase", "abruptness", "drop_width"))
        n = int(np.isfinite(s).sum())
        ab = c["abrupt"].values if "abrupt" in c else np.full(s.shape, np.nan)
        rows.append([esc(cond), f"{int(np.nansum(ab))}/{int(np.isfinite(ab).sum())}", f"{n}/{s.size}",
                     fmt(nanmedian(s) if n else np.nan, "it"), fmt(nanmedian(w) if n else np.nan, "it"),
                     fmt(nanmedian(a) if n else np.nan), _cliff_share(c["cliff_fraction"].values if "cliff_fraction" in c else None)])
    return ("<h3>Search phase and drop</h3>"
            + table(["condition", "abrupt learning (search phase, then a drop at most 1/3 as wide)", "networks with a drop",
                     "median search phase (iterations on the plateau)", "median drop width, 10-90 % (iterations)",
                     "median abruptness (width / search phase; small: abrupt)",
                     "median share of the drop lost in its cliff (one sigmoid step: ~0.9)"], rows)
            + "<p>Definitions: docs/science.md, section 5 (measured on the task loss, from the plateau, "
              "up to criterion + 5 smoothing windows).</p>"
            + (f"<p class='cap'><b>{esc(ds.attrs['curve_metrics_note'])}</b></p>" if ds.attrs.get("curve_metrics_note") else "")
            + _output_table(ds))


def _cliff_share(frac) -> str:
    """The median share of the drop lost in its cliff (``cliff_fraction``; None or no drop: n/a)."""
    if frac is None or not np.isfinite(frac).any():
        return "n/a"
    return f"{nanmedian(frac):.2f}"


def _output_table(ds: xr.Dataset) -> str:
    """Per output, for tasks with several: how many networks each output drops abruptly in, and the
    stagger between the outputs' drops."""
    if "output_abrupt" not in ds:
        return ""
    O = ds.sizes["output"]
    rows = []
    for cond in ds["condition"].values:
        c = ds.sel(condition=cond)
        ab = c["output_abrupt"].values                                    # (seed, output)
        per = ", ".join(f"{int(np.nansum(ab[:, o]))}/{int(np.isfinite(ab[:, o]).sum())}" for o in range(O))
        k = c["abrupt_outputs"].values
        st = c["drop_stagger"].values
        onsets = "; ".join("&ndash;" if not np.isfinite(row).any() else " / ".join("&ndash;" if not np.isfinite(x) else f"{x:.0f}" for x in row)
                           for row in c["output_drop_onset"].values)
        cliffs = c["output_cliff_fraction"].values if "output_cliff_fraction" in c else None
        rows.append([esc(cond), per, f"{int((k == O).sum())}/{int(np.isfinite(k).sum())}",
                     f"{int((k >= 1).sum())}/{int(np.isfinite(k).sum())}",
                     fmt(nanmedian(st), "it") if np.isfinite(st).any() else "n/a", onsets,
                     " / ".join(_cliff_share(None if cliffs is None else cliffs[:, o]) for o in range(O))])
    return ("<h3>Per output</h3>"
            + table(["condition", f"abrupt, output by output (0..{O - 1}; networks)", "every output abrupt", "at least one output abrupt",
                     "median stagger (last minus first output's drop onset)", "drop onsets per seed (output 0 / 1 / ...)",
                     "median share of each output's drop lost in its cliff (0 / 1 / ...)"], rows)
            + "<p class='cap'>Each output's own task loss (on its scored steps) through the same metrics. The outputs of one "
              "network can each drop abruptly at different times, while their average declines slowly. The cliff is the "
              "drop's steepest part (descent rate at or above half its peak): one sigmoid step loses ~0.9 of its drop "
              "there; a cliff followed by a slow tail or a second step, less - such a drop is not abrupt by its 10-90 % "
              "width, though its cliff is sudden.</p>")


def _gr_table(an: xr.Dataset) -> str:
    rows = []
    key = lead_key(an)
    leads, left = comparable_leads(an, key)
    onset_leads = comparable_leads(an, "lead_time")[0]
    for c, cond in enumerate(an["condition"].values):
        lead = leads[c]
        ok = np.isfinite(lead)
        med, lo, hi = lead_summary(an, c, lead, key)
        row = [esc(cond), f"{int(ok.sum())}/{lead.size}" + (f" ({int(left[c].sum())} left out)" if left[c].any() else ""),
               f"{int((lead[ok] > 0).sum())}/{int(ok.sum())}",
               f"{fmt(med, 'it')}{ci(lo, hi, 'it')}" if ok.any() else "n/a",
               ", ".join("&ndash;" if not np.isfinite(x) else num(x, "+.0f") for x in lead)]
        if key != "lead_time":  # the earlier measure beside it: the lead to the 10 % onset
            omed, olo, ohi = lead_summary(an, c, onset_leads[c], "lead_time")
            row.append(f"{fmt(omed, 'it')}{ci(olo, ohi, 'it')}" if np.isfinite(onset_leads[c]).any() else "n/a")
        rows.append(row)
    rule = an["gr_event"].attrs.get("rule", "") if "gr_event" in an else ""
    what = "departure" if key != "lead_time" else "onset"
    head = ["condition", "networks with a GR event and a drop", "positive lead time",
            f"median lead to the drop {what}, iterations [95 % CI]", "per seed"]
    if key != "lead_time":
        head.append("median lead to the 10 % onset (grows with the drop's width)")
    at_drop = all(f"n_{k}_{w}_drop" in an for k in ("stable", "saddle") for w in ("before", "after"))
    if at_drop:
        head.append("fixed points (zero input) before &rarr; after the drop, median over networks with a drop")
        for row, cond in zip(rows, an["condition"].values):
            a = an.sel(condition=cond)
            names = [f"n_{kind}_{when}_drop" for kind in ("stable", "saddle") for when in ("before", "after")]
            med = {v: nanmedian(a[v].values) for v in names}
            row.append("; ".join(f"{kind} {fmt(med[f'n_{kind}_before_drop'], 'num')} &rarr; "
                                 f"{fmt(med[f'n_{kind}_after_drop'], 'num')}" for kind in ("stable", "saddle")))
    defined = ("drop departure (where the loss leaves the plateau's noise band for good; a wider drop that starts at "
               "the same time does not move it) minus the first GR event" if key != "lead_time" else
               "drop onset minus the first GR event")
    if left.any():
        defined += (f"; networks whose drop starts at or before iteration {earliest_gr_event(an):.0f}, the first checkpoint "
                    "a GR event can be flagged at, have no lead (GR cannot come first there) and are counted as left out")
    return (f"<p>Lead time = {defined} (iterations; &gt; 0: GR first). {esc(rule)}</p>"
            + table(head, rows) + _search_note(an))


def _search_note(an: xr.Dataset) -> str:
    """How the fixed points were sought, and whether their counts are complete (Chao1 above the count)."""
    if "n_fixed_chao1" not in an:
        return ""
    last = an.isel(checkpoint=-1)
    found = ((an["fp_hits"] > 0) & an["fp_is_fixed"]).isel(checkpoint=-1).sel(context="zero").sum("fp").values
    chao = last["n_fixed_chao1"].values
    ok = np.isfinite(chao)
    short = int((chao[ok] > found[ok] + 1e-9).sum())
    unseen = nanmedian(last["fp_unseen_probability"].values)
    return (f"<p class='cap'>Fixed points are sought from {an.attrs.get('n_initial_states', '?')} initial states per network "
            "and checkpoint, drawn from the trajectories of every condition's network of the same seed (so counts compare "
            "between conditions), plus a targeted search for saddles between pairs of stable points. Counts are of the "
            f"points found, lower bounds: at the last checkpoint the Chao1 estimate exceeds the count in {short} of "
            f"{int(ok.sum())} networks; median probability that one more initial state finds a new point "
            f"{fmt(unseen, 'num')}.</p>")


def _prediction_numbers(pred: xr.Dataset) -> str:
    conds = [str(c) for c in pred["condition"].values]
    rows = []
    for m, label, kind in MEASURES:
        if f"{m}_summary" not in pred:
            continue
        summ = pred[f"{m}_summary"].values
        if not np.isfinite(summ[:, 0]).any():
            continue
        eff = pred[f"{m}_effect"].values if f"{m}_effect" in pred else np.full((len(conds), 4), np.nan)
        # a slope at the fit's bound in most networks (choices switch within one evidence step) is a lower bound
        bound = ([slope_is_lower_bound(v) for v in pred["psychometric_fit_status"].values]
                 if m == "psychometric_slope" and "psychometric_fit_status" in pred else [False] * len(conds))
        for j, c in enumerate(conds):
            s = summ[j]
            e = eff[j]
            vs = ("reference" if j == 0 else "n/a: a lower bound" if bound[0] or bound[j]
                  else f"{fmt(e[0], kind, True)}{ci(e[1], e[2], kind, True)}")
            rows.append([esc(label) if j == 0 else "", esc(c), f"{'&ge; ' if bound[j] else ''}{fmt(s[0], kind)}{ci(s[1], s[2], kind)}",
                         vs, "" if j == 0 or vs.startswith("n/a") else pval(e[3])])
    if "lesion_effect" in pred:
        for j, c in enumerate(conds):
            e = pred["lesion_effect"].values[j]  # with minus without plasticity; shown as blocking's change (as the bottom line)
            if np.isfinite(e[0]):
                rows.append(["plasticity blocked after training: change of accuracy (without minus with plasticity)", esc(c),
                             f"{fmt(-e[0], 'pct1', True)}{ci(-e[2], -e[1], 'pct1', True)}", "", pval(e[3])])
    note = ""
    if "psychometric_fit_status" in pred and any(slope_is_lower_bound(v) for v in pred["psychometric_fit_status"].values):
        note = ("<p class='cap'>&ge;: in at least half of the condition's networks the choices switch within one evidence step "
                "(the psychometric fit is at its slope bound), so the median slope is a lower bound and is not compared.</p>")
    return table(["measure", "condition", "median over seeds [95 % CI]", "vs reference [95 % CI]", "p"], rows, "numbers") + note


def _engines_table(p1: xr.Dataset, p2: xr.Dataset) -> str:
    conds = [str(c) for c in p1["condition"].values]
    rows = []
    for m, label, kind in MEASURES:
        if f"{m}_summary" not in p1 or f"{m}_summary" not in p2:
            continue
        a, b = p1[f"{m}_summary"].values, p2[f"{m}_summary"].values
        if not (np.isfinite(a[:, 0]).any() or np.isfinite(b[:, 0]).any()):
            continue
        for j, c in enumerate(conds):
            d = b[j, 0] - a[j, 0]
            rows.append([esc(label) if j == 0 else "", esc(c), f"{fmt(a[j, 0], kind)}{ci(a[j, 1], a[j, 2], kind)}",
                         f"{fmt(b[j, 0], kind)}{ci(b[j, 1], b[j, 2], kind)}", fmt(d, kind, True)])
    return table(["measure", "condition", "torch: median [95 % CI]", "brian2: median [95 % CI]", "brian2 - torch"], rows, "numbers")


# --------------------------------------------------------------------------------------------- the page
def _not_for_sweeps(protocol, out: Path | None) -> str:
    """What the sections of the phase-space analysis and the predictions say for a sweep."""
    note = sweep_note(protocol, out) if protocol is not None else None
    note = note or ("sweep: the phase-space analysis and the predictions are not computed for sweeps; to get them, run "
                    "the protocol at one point without its sweep (--set sweep=null --set FIELD=VALUE)")
    text = note.removeprefix("sweep: ")
    return f"<p class='unavailable'>{esc(text[0].upper() + text[1:])}.</p>"


def statistics_notes(ds: xr.Dataset, analysis: xr.Dataset | None, out: Path | None) -> list[str]:
    """Warnings for a run whose learning statistics predate this version's definitions
    (``learning_curves.DEFINITION_CHANGES``), or whose analysis.nc measured its leads against other
    statistics than results.nc holds; each says how to bring them up to date without training."""
    command = f"python -m bioplastic recompute {shlex.quote(str(out)) if out is not None else 'OUT'}"
    notes = []
    changes = outdated(ds)
    if changes:
        recorded = statistics_date(ds)
        notes.append("This run's learning statistics were computed with older definitions ("
                     + (f"those of {recorded}" if recorded else f"none recorded: made before those of {min(DEFINITION_CHANGES)}")
                     + "); changed since: "
                     + "; ".join(changes) + f". `{command}` computes them again from the stored curves (no training).")
    if analysis is not None and not changes and statistics_date(analysis) != statistics_date(ds):
        notes.append("analysis.nc measured its leads against other learning statistics than results.nc holds "
                     f"({statistics_date(analysis) or 'none recorded'} against {statistics_date(ds) or 'none recorded'}); "
                     f"`{command}` measures them again.")
    return notes


def render(run: Run, pngs: dict[str, bytes] | None = None, strict: bool = False) -> tuple[str, list[str]]:
    """The report page of a run's datasets: ``(html, failures)``. ``pngs``: figures already drawn
    (file name, e.g. ``learning_curves.png`` -> PNG bytes) are embedded instead of redrawn.
    A section that fails (a bug or unexpected data) raises with ``strict`` (tests); otherwise it is
    shown as an error on the page and listed in ``failures`` (the caller reports the run incomplete)."""
    ds = run.results
    if ds is None:
        raise ReportError("no results dataset: nothing to report" + (
            f" (results.nc unreadable: {run.errors['results.nc']})" if "results.nc" in run.errors else ""))
    _CONTEXT.update(pngs=dict(pngs or {}), strict=strict, failures=[], draw=True)
    try:
        page = _render(run)
    finally:
        failures = list(_CONTEXT["failures"])
        _CONTEXT.update(pngs={}, strict=False, failures=[])
    return page, failures


def _render(run: Run) -> str:
    ds = run.results
    protocol = attempt("the protocol stored in results.nc", lambda: protocol_of(ds), lambda cause: None)
    _CONTEXT["draw"] = protocol is None or bool(protocol.config.output.figures)
    dims = _sweep_dims(ds)
    first = ds.isel({d: 0 for d in dims}) if dims else ds
    name = ds.attrs.get("protocol_name", "run")
    an, pred, b2, pb2 = run.analysis, run.predictions, run.brian2, run.predictions_brian2
    body: dict[str, str] = {}
    swept = bool(dims) or bool(ds.attrs.get("sweep_dims")) or (protocol is not None and protocol.sweep is not None)
    not_for_sweeps = _not_for_sweeps(protocol, run.out) if swept else ""

    claims = list(protocol.config.claims) if protocol is not None else []
    info = V.condition_info(protocol) if protocol is not None else {}
    data = V.RunData(ds, an, pred, info)
    verdicts = V.verdicts(claims, data, strict=_CONTEXT["strict"])
    lines = attempt("the bottom line", lambda: bottom_line(first, an, pred, conditions=info, verdicts=verdicts),
                    lambda cause: [f"(error: {cause})"])
    notes = [re.sub(r"`([^`]+)`", r"<code>\1</code>", esc(c)) for c in statistics_notes(ds, an, run.out)]
    warn = "".join(f"<p class='unavailable'>{c}</p>" for c in notes + [esc(c) for c in caveats(first)])
    body["bottom"] = warn + (("<p>What these simulations predict, each with its number and what would test it (seeds "
                              "are the independent samples; details below).</p><ol class='bottom'>"
                              + "".join(f"<li>{esc(s)}</li>" for s in lines) + "</ol>") if lines else (
                      "<p class='unavailable'>No prediction can be stated from this run (no abrupt learning, no "
                      "significant effect, or no analysis and predictions).</p>"))
    body["protocol"] = (f"<p>{esc(_description(ds))}</p>" + _protocol_in_brief(run, protocol))
    body["files"] = _files(run) + (f"<p class='unavailable'>Missing: {esc(', '.join(run.missing))}. The sections that "
                                   "need them say so.</p>" if run.missing else "")
    body["verdicts"] = _verdicts(verdicts)

    sweep_note = (f"<p class='cap'>Figures show the first sweep point ({esc(', '.join(f'{d} = {first[d].item()}' for d in dims))}); "
                  "the tables give every point.</p>" if dims else "")
    body["learning"] = sweep_note + figure(
        "fig-learning-curves", "Learning curves", lambda: curves.learning_curves(first),
        "Per condition (columns), every seed (shades of the condition's colour): task loss (top, log axis; faint: raw, bold: smoothed; grey band: the "
        "search phase on the plateau; black: the drop, 10-90 %), held-out accuracy (middle; dashed: the criterion), and "
        "a timeline per seed (bottom: grey search phase, coloured drop, | criterion reached; networks without abrupt "
        "learning are labelled why).",
        "learning_curves.png") + figure(
        "fig-loss-overlay", "All conditions on one panel", lambda: ffigs.loss_overlay(first),
        "Median smoothed task loss over seeds (line) and the interquartile range (band) of every condition; colours "
        "are the conditions' in every figure.", "loss_overlay.png")
    speed = _speed_table(ds)
    if dims:
        speed += figure("fig-sweep", "Iterations to criterion across the sweep", lambda: curves.sweep(ds),
                        "Median (line) and individual networks (dots) per condition; open triangles: not learned.", "sweep.png")
    body["speed"] = speed + figure(
        "fig-iterations-to-criterion", "Iterations to criterion", lambda: curves.iterations_to_criterion(first),
        "One dot per network (open triangles at the budget: not learned); bar: median over seeds, vertical line: its "
        "bootstrap 95 % CI; p: Wilcoxon signed-rank test against the first condition, paired by seed.",
        "iterations_to_criterion.png") + _abrupt_table(ds)
    body["accuracy"] = _accuracy_table(ds)
    if pred is not None:
        body["accuracy"] += figure(
            "fig-psychometric", "Psychometric curve", lambda: ffigs.psychometric(pred),
            "The fraction of held-out trials on which the trained networks chose right, against the trial's signed evidence "
            "(e.g. right minus left pulses; signed coherence): median over seeds (dots) and each seed (faint), with the "
            "psychometric function P = lapse + (1 - 2 lapse) / (1 + exp(-slope (evidence - bias))) at the median of the "
            "networks' maximum-likelihood fits (line; parameters in the legend; 'slope >=' where most networks' choices "
            "switch within one evidence step, so that the slope is a lower bound). Tasks without a signed evidence label "
            "show accuracy against evidence strength.", "psychometric.png", ("predictions.nc",)) + figure(
            "fig-example-trials", "Example trials", lambda: ffigs.example_trials(pred, **channel_names(pred)),
            "Two held-out trials: inputs (top; one colour per input channel, named in the legend), target on the scored "
            "steps (thick grey) and each condition's output, seed 0 (bottom; the condition's colour).", "example_trials.png", ("predictions.nc",))

    if an is not None:
        body["gr"] = _gr_table(an) + figure(
            "fig-gr-alignment", "Geometric restructuring and the loss drop", lambda: phase.gr_alignment(ds, an),
            "Top: smoothed task loss with each network's first GR event (large triangle; later events small) and drop onset "
            "(dot), one shade of the condition's colour per seed. Middle: the trajectory change between consecutive checkpoints (1 - CKA, log scale; "
            "dotted: the event floor). Bottom: the number of stable (solid) and saddle (dashed) fixed points with zero "
            "input at each checkpoint.", "gr_alignment.png",
            ("results.nc", "analysis.nc")) + figure(
            "fig-lead-times", "Lead time of GR before the drop", lambda: phase.lead_times(an),
            "Drop onset minus the first GR event (iterations), one dot per network; above 0: GR comes first.", "lead_times.png",
            ("analysis.nc",))
        body["phase"] = figure(
            "fig-phase-portraits", "Phase portraits", lambda: phase.phase_portraits(ds, an),
            esc(phase.portrait_caption(an)), "phase_portraits.png", ("results.nc", "analysis.nc")) + figure(
            "fig-spectra", "Spectra", lambda: ffigs.spectra(an, recurrent_weights(ds)),
            "Eigenvalues of the recurrent weights (left) and of the one-step map's Jacobian at the attractors (one panel "
            "per condition, on shared axes zoomed to where they lie), last checkpoint, every seed; a mode near the unit "
            "circle (dashed) is slow. For a condition with short-term plasticity its panel shows the state's Jacobian with the plastic variables at rest (F = 0, or u = U, "
            "x = 1); the joint system's leading eigenvalues are joint_eig_* in analysis.nc.", "spectra.png",
            ("results.nc", "analysis.nc"))
    elif swept:
        body["gr"] = body["phase"] = not_for_sweeps
    else:
        body["gr"] = unavailable("analysis.nc")
        body["phase"] = unavailable("analysis.nc")

    if pred is not None:
        sentences = attempt("the prediction sentences", lambda: prediction_sentences(pred),
                            lambda cause: [f"(error: the sentences could not be formed: {cause})"])
        lesion = ("" if pred.attrs.get("analysis_available", 1) else
                  "<p class='unavailable'>analysis.nc was missing when the predictions were computed: attractor measures are n/a.</p>")
        body["predictions"] = (
            f"<p>What a recording of the trained networks (final checkpoint, {esc(pred.attrs.get('n_trials', '?'))} "
            f"held-out trials, engine: {esc(pred.attrs.get('engine', 'torch'))}) would show. Seeds are the independent "
            "samples; CIs are percentile bootstrap over seeds; effects are against the first condition.</p>"
            + table(["", "prediction in words, with its numbers"],
                    [[str(k + 1), esc(s)] for k, s in enumerate(sentences)], "sentences")
            + "<h3>The numbers</h3>" + _prediction_numbers(pred) + lesion + figure(
                "fig-plasticity-course", "Fast efficacies over the trial", lambda: ffigs.plasticity_course(pred),
                "Mean |short-term change| of the recurrent synapses (anti-Hebbian F, or Tsodyks-Markram efficacy minus 1) "
                "over trials and synapses, from the stimulus offset, every seed of each condition with plasticity.",
                "plasticity_course.png", ("predictions.nc",)))
        body["ramping"] = figure(
            "fig-ramping-examples", "Ramping examples", lambda: pfigs.ramping_examples(pred),
            f"Rate from the onset of the {esc(pred.attrs.get('ramp_period', 'period'))}, averaged over the trials of each "
            "unit's preferred choice, of the units that build up steadily through it with the largest slopes (legend: "
            "preferred choice, slope in rate units per second; relaxations right after the stimulus are not ramps and are "
            "not shown), and of the flattest non-ramping unit (dashed, all trials).",
            "ramping_examples.png", ("predictions.nc",)) + figure(
            "fig-ramp-distributions", "Ramp slopes", lambda: pfigs.ramp_distributions(pred),
            "Left: ramp slopes of all units of all seeds. Right: fraction of significantly ramping units per network "
            "(cluster-robust t-test, Benjamini-Hochberg FDR 5 %), median and 95 % CI.", "ramp_distributions.png", ("predictions.nc",)) + figure(
            "fig-choice-psth", "Activity sorted by choice", lambda: ffigs.choice_psth(pred),
            f"Per condition (rows), trial-averaged rates from the onset of the {esc(pred.attrs.get('ramp_period', 'period'))} "
            "by choice (line style) of three example units of seed 0 (build-up units first; the title says how each is "
            "classified) and the population projected on the choice axis (right; bold: seed 0, faint: the other seeds). "
            f"Only steps where at least {esc(pred.attrs.get('min_trials_at_time', 10))} trials remain.",
            "choice_psth.png", ("predictions.nc",))
        body["timescales"] = figure(
            "fig-timescale-distributions", "Single-unit autocorrelation timescales", lambda: pfigs.timescale_distributions(pred),
            f"Left: fitted timescales during the {esc(pred.attrs.get('timescale_period', 'period'))} (log axis). Units whose "
            f"autocorrelation falls by less than {100 * MIN_DECAY_FRACTION:.0f} % of its first-lag value within the window are censored - the window bounds their timescale "
            "from below only - and are not drawn; the legend counts the fitted and the censored units of all seeds. Right: "
            "one fitted unit per condition (the one nearest the condition's median), autocorrelation across trials (dots) "
            "and the fit A (exp(-lag/tau) + B) (line).", "timescale_distributions.png", ("predictions.nc",))
    elif swept:
        body["predictions"] = body["ramping"] = body["timescales"] = not_for_sweeps
    else:
        body["predictions"] = body["ramping"] = body["timescales"] = unavailable("predictions.nc")

    if b2 is not None:
        line = attempt("the torch vs brian2 agreement", lambda: agreement_line(b2),
                       lambda cause: f"(error: the agreement could not be computed: {cause})")
        engines_tab = (_engines_table(pred, pb2) if pred is not None and pb2 is not None
                       else unavailable("predictions_brian2.nc" if pb2 is None else "predictions.nc",
                                        " (prediction measures torch vs brian2)"))
        body["brian2"] = (f"<p>{esc(line)}.</p>" + figure(
            "fig-engine-agreement", "torch vs brian2", lambda: engines.agreement(b2),
            "Left: per network, max |torch - brian2| / max |brian2| of the hidden state, the readout and the short-term "
            "plasticity (log axis; exact agreement drawn at 1e-17); dashed: the 1e-6 target of the same-step cross-check. "
            "Right: one unit's hidden state in one trial, torch (line) and brian2 (dots).")
            + "<h3>Prediction measures on both engines</h3>" + engines_tab)
    else:
        body["brian2"] = (unavailable("brian2.nc") if "brian2.nc" in run.missing else
                          "<p>Not part of this run (the protocol's <code>brian2: {enabled: false}</code>; "
                          "<code>python -m bioplastic simulate OUT</code> adds it).</p>")
    body["resolved"] = f"<details><summary>show the resolved protocol (YAML)</summary><pre>{esc(ds.attrs.get('protocol', ''))}</pre></details>"

    shown = _with_task_sections(protocol, run, body)
    toc = "".join(f"<li><a href='#{sid}'>{esc(t)}</a></li>" for sid, t in shown)
    sections = "".join(section(sid, title, body[sid]) for sid, title in shown)
    crit = ds["iterations_to_criterion"].attrs.get("criterion", float("nan"))
    folder = f",\nfolder <code>{esc(run.out)}</code>" if run.out is not None else ""
    created = f", created {esc(ds.attrs['created'])}" if "created" in ds.attrs else ""  # (runs of earlier versions)
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>bioplastic: {esc(name)}</title>
<style>{CSS}</style></head><body>
<h1>bioplastic run: {esc(name)}</h1>
<p class="meta">{ds.sizes['condition']} condition(s) &times; {ds.sizes['seed']} seed(s), {ds.sizes['iteration']} iterations each;
criterion: held-out accuracy &ge; {crit:g}. git {esc(ds.attrs.get('git_commit'))}{created}{folder}.</p>
<nav><ol>{toc}</ol></nav>
{sections}
</body></html>"""


CSS = """body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1150px;margin:1.5em auto;padding:0 1em;
line-height:1.45;color:#222}h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
h3{font-size:1.05em}img{max-width:100%}figure{margin:1em 0}figcaption,.cap{color:#555;font-size:90%}
table{border-collapse:collapse;margin:.6em 0;font-size:92%}td,th{border:1px solid #ccc;padding:3px 7px;vertical-align:top}
th{background:#f2f2f2;text-align:left}.brief td:first-child{font-weight:600;white-space:nowrap}
.ci{color:#666;font-size:92%}.meta{color:#555}nav ol{columns:2;font-size:92%}ul.conds{margin:0;padding-left:1.2em}
.badge{display:inline-block;padding:1px 8px;border-radius:9px;font-size:85%;font-weight:600;color:#fff;vertical-align:middle}
.badge.holds,.badge.fails,.badge.inconclusive,.badge.untested{color:#fff}.badge.holds{background:#2e7d32}
.badge.fails{background:#c62828}.badge.inconclusive{background:#9e7700}.badge.untested{background:#777}span.holds{color:#2e7d32;font-weight:600}span.fails{color:#c62828;font-weight:600}
span.inconclusive{color:#9e7700;font-weight:600}.badge.error{background:#6a1b9a}span.error{color:#6a1b9a;font-weight:600}span.untested{color:#777}.verdict{border-left:4px solid #ddd;
padding:.2em .9em;margin:1em 0}.unavailable{background:#fff4e5;border:1px solid #f0c36d;padding:.5em .8em}
.ok{color:#2e7d32}.bad{color:#c62828;font-weight:600}pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:85%}
ul.notes{color:#555;font-size:92%}table.sentences td:first-child{color:#777}ol.bottom li{margin:.35em 0}"""


def _with_task_sections(protocol, run: Run, body: dict[str, str]) -> list[tuple[str, str]]:
    """:data:`SECTIONS`, with the section of the run's task kind (:data:`TASK_SECTIONS`) after the
    one it follows; its body is made here (report/staircase.py)."""
    kind = protocol.conditions[0].task_kind if protocol is not None else None
    if kind not in TASK_SECTIONS:
        return list(SECTIONS)
    sid, title, after = TASK_SECTIONS[kind]
    body[sid] = attempt("the staircase section", lambda: staircase_report.staircase_section(run),
                        lambda cause: f"<p class='unavailable error'>Error: the section could not be made ({esc(cause)}).</p>")
    at = [s for s, _ in SECTIONS].index(after) + 1
    return list(SECTIONS[:at]) + [(sid, title)] + list(SECTIONS[at:])


def _description(ds: xr.Dataset) -> str:
    return str(load_yaml(ds.attrs.get("protocol", "")).get("description", "") or "")
