"""Documentation of every protocol field, generated from the schemas (``bioplastic schema``)."""
from __future__ import annotations

import re

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from ..networks import NETWORKS
from ..regularizers import schedules as sch
from ..regularizers.tcr_plasticity import PlasticityConfig
from ..tasks import TASKS
from .limits import MAX_CONDITIONS, MAX_FILE_BYTES, MAX_NETWORKS, MAX_SEEDS, MAX_SWEEP_POINTS, MEMORY_ENV
from .schema import AnalysisConfig, Brian2Config, InitConfig, OutputConfig, ProtocolConfig, SweepConfig, TCRConfig, TrainingConfig
from .yaml12 import MAX_YAML_VALUES


def _type_name(tp) -> str:
    text = str(tp).replace("typing.", "")
    if isinstance(tp, type):
        text = tp.__name__
    text = re.sub(r"\b(?:[a-z_][a-z0-9_]*\.)+(?=[A-Za-z_])", "", text)  # module paths: bioplastic.x.ConstantConfig -> ConstantConfig
    return text.replace("NoneType", "null")


def _cell(text: str) -> str:
    """A Markdown table cell: a '|' (a union type, |F|) would end the cell."""
    return text.replace("|", "\\|")


def _rows(cls: type[BaseModel], prefix: str) -> list[tuple[str, str, str, str]]:
    rows = []
    for name, f in cls.model_fields.items():
        key = f.alias or name
        if f.default is PydanticUndefined and f.default_factory is None:
            default = "(required)"
        elif f.default_factory is not None:
            default = "(section)" if isinstance(f.default_factory, type) else repr(f.default_factory())
        else:
            default = repr(f.default)
        rows.append((f"{prefix}{key}", _type_name(f.annotation), default, f.description or ""))
    return rows


def sections() -> list[tuple[str, list[tuple[str, str, str, str]]]]:
    out = [("protocol (top level)", _rows(ProtocolConfig, "")),
           ("training", _rows(TrainingConfig, "training.")),
           ("training.init (start from a finished run's networks; null by default)",
            _rows(InitConfig, "training.init.")),
           ("tcr", _rows(TCRConfig, "tcr.")),
           ("tcr.plasticity (used when tcr.form is plasticity; docs/tcr_plasticity.md)",
            _rows(PlasticityConfig, "tcr.plasticity.")),
           ("output", _rows(OutputConfig, "output.")),
           ("analysis", _rows(AnalysisConfig, "analysis.")),
           ("brian2 (docs/brian2.md)", _rows(Brian2Config, "brian2.")),
           ("sweep", _rows(SweepConfig, "sweep."))]
    for cls in (sch.ConstantConfig, sch.WarmupConfig, sch.LinearDecayConfig, sch.CosineDecayConfig, sch.StepConfig,
                sch.AdaptiveConfig, sch.ActivityFloorConfig):
        out.append((f"tcr.schedule and tcr.plasticity.schedule (kind: {cls.model_fields['kind'].default})",
                    _rows(cls, "tcr.schedule.")))
    for name in TASKS.names():
        out.append((f"task (kind: {name})", _rows(TASKS.get(name).Config, "task.")))
    for name in NETWORKS.names():
        out.append((f"model (kind: {name})", _rows(NETWORKS.get(name).Config, "model.")))
    return out


def limits_text() -> list[str]:
    """The limits every protocol is checked against when it is validated (Markdown lines)."""
    return ["## Limits", "",
            "Checked when a protocol is validated (`validate` and `run`), before anything is expanded, trained or written; "
            "a protocol beyond them is refused (exit status 2) with a message naming the field:", "",
            "- every number must be finite: `.inf` and `.nan` are refused in every float field;",
            "- a key may appear only once in a mapping (YAML would otherwise keep the last one silently);",
            f"- YAML aliases (`*name`) may not expand the document beyond {MAX_YAML_VALUES:,} values, nor refer to "
            f"themselves; a protocol or model spec file is at most {MAX_FILE_BYTES:,} bytes;",
            f"- `seeds` at most {MAX_SEEDS:,}; at most {MAX_CONDITIONS:,} conditions; a sweep at most "
            f"{MAX_SWEEP_POINTS:,} points (the product of the grid lengths times the zip length, counted before any "
            f"point is made); at most {MAX_NETWORKS:,} networks in a run (seeds x conditions x sweep points);",
            "- field bounds: `training.iterations` at most 10^8; `training.batch_size`, "
            "`training.eval_trials`, `analysis.initial_states`, `analysis.trials` and `brian2.trials` at most 10^6;",
            "- memory: the largest arrays of a run are estimated at validation (an order of magnitude, a lower bound of "
            "the peak of one work unit): activations kept for backpropagation (ensemble x batch x steps x state), the "
            "training and held-out trials, the weights saved at every checkpoint and the learning curves of all "
            "networks (results.nc), eligibility traces and fast synaptic efficacies where used, and the fixed-point "
            "search's Jacobians (seeds x contexts x initial states x state x state) and stored fixed points. A run "
            "whose estimate exceeds the memory this machine has available (`MemAvailable` in /proc/meminfo) is "
            "refused, naming the field that drives it (e.g. `task.dt_ms`, `model.n_units`, `training.batch_size`), "
            f"the estimate and the available memory. Set `{MEMORY_ENV}` (e.g. `{MEMORY_ENV}=256G`) to check against "
            "another amount, e.g. when validating for a larger machine. With several worker processes, each holds "
            "its own work unit;",
            "- `--out` on the command line must be a folder (existing or creatable) that this user can write, not a "
            "file, not under a file, not a dangling symbolic link, and not in /proc, /sys or /dev; `output.dir` in a "
            "protocol must lie under the working directory.", ""]


def schema_text(markdown: bool = False) -> str:
    lines = []
    if markdown:
        lines += ["# Protocol reference", "",
                  "Generated by `python -m bioplastic schema --markdown` from the schemas in `bioplastic/protocol/schema.py`, "
                  "the task configs (`bioplastic/tasks/`) and the model configs (`bioplastic/networks/`). "
                  "Unknown keys are refused. Scalars follow YAML 1.2: `1e-3` is a number, `yes` is a string "
                  "(use `true`/`false`), `010` is ten.", ""] + limits_text()
    for title, rows in sections():
        if markdown:
            lines += [f"## {title}", "", "| field | type | default | meaning |", "|---|---|---|---|"]
            lines += [f"| `{k}` | `{_cell(t)}` | `{_cell(d)}` | {_cell(m)} |" for k, t, d, m in rows] + [""]
        else:
            lines.append(f"[{title}]")
            lines += [f"  {k:<34} {t:<28} default {d:<14} {m}" for k, t, d, m in rows] + [""]
    return "\n".join(lines)
