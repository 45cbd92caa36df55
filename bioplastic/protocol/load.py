"""Loading and validating a protocol once, at the boundary.

``load_protocol(path, overrides)`` reads the YAML (with YAML 1.2 scalars), applies ``--set``
overrides, resolves the model spec from ``models/``, validates every section with its typed schema,
and expands the conditions. Every problem is collected and raised as one :class:`ProtocolError`.
"""
from __future__ import annotations

import copy
import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ..learning import RULES
from ..networks import NETWORKS, kinds_supporting
from ..registry import UnknownNameError
from ..resources import UnknownResourceError, models_dir, protocol_path
from ..tasks import TASKS
from .errors import ProtocolError, describe, format_validation_error
from .limits import MAX_FILE_BYTES, MAX_NETWORKS, MAX_SWEEP_POINTS, LimitError, memory_problems
from .schema import CONDITION_KEYS, NAME_RE, SHARED_MODEL, SHARED_TRAINING, ProtocolConfig, SweepConfig, TCRConfig, TrainingConfig
from .yaml12 import YamlProblem, dump_yaml, load_yaml

#: the shipped model specs (the checkout's models/, or the installed package data bioplastic/models/);
#: ``REPO_MODELS.parent / "protocols"`` holds the shipped protocols. See bioplastic.resources.
REPO_MODELS = models_dir()


@dataclass(frozen=True)
class Condition:
    """One fully resolved condition: everything needed to build and train its networks."""

    name: str
    task_kind: str
    task: BaseModel
    model_kind: str
    model: BaseModel
    training: TrainingConfig
    tcr: TCRConfig

    def group_key(self) -> str:
        """Conditions with equal keys - of one sweep point or of several - train together in one
        ensemble (training/units.py). Members may differ in the settings the trainer applies per
        member: ``lr``, ``clip_grad_norm``, the start from a trained run (``init``), the TCR loss settings, the plasticity's ``eta_F`` and its
        schedule, and the model settings read only when the initial weights are drawn (the network
        class's ``init_fields``, e.g. a leaky network's ``g``). The optimizer's ``adam_betas`` and
        ``momentum`` are one per ensemble, so they are part of the key."""
        training = self.training.model_dump(mode="json", exclude={"lr", "clip_grad_norm", "init"})
        # networks with short-term plasticity simulate differently: they train in their own ensembles
        plasticity = (self.tcr.plasticity.model_dump(mode="json", exclude={"eta_F", "schedule"})
                      if self.tcr.form == "plasticity" else None)
        model = self.model.model_dump(mode="json", exclude=set(NETWORKS.get(self.model_kind).init_fields))
        return json.dumps([self.task_kind, self.task.model_dump(mode="json"), self.model_kind, model, training,
                           plasticity], sort_keys=True)


@dataclass(frozen=True)
class Point:
    """One point of a sweep: the values of the swept fields, and the protocol they make."""

    coords: dict[str, Any]
    protocol: Protocol


@dataclass(frozen=True)
class Protocol:
    config: ProtocolConfig
    conditions: list[Condition]
    resolved: dict[str, Any] = field(repr=False)
    source: str = ""
    sweep: SweepConfig | None = None
    sweep_points: tuple[Point, ...] = ()

    @property
    def points(self) -> list[Point]:
        """The sweep's points in order (grid in row-major order, zip innermost); one point without a sweep."""
        return list(self.sweep_points) if self.sweep is not None else [Point({}, self)]

    @property
    def sweep_dims(self) -> list[tuple[str, list[Any]]]:
        """(dim name, values) of the sweep, in order: one dim per grid field, then `zip`."""
        if self.sweep is None:
            return []
        dims = [(k, list(v)) for k, v in self.sweep.grid.items()]
        if self.sweep.zip:
            dims.append(("zip", list(range(len(next(iter(self.sweep.zip.values())))))))
        return dims

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def text(self) -> str:
        """The resolved protocol as YAML (written to OUT/protocol.yaml and into the dataset)."""
        return dump_yaml(self.resolved)

    @property
    def condition_names(self) -> list[str]:
        return [c.name for c in self.conditions]

    def __repr__(self) -> str:
        """One line: what the protocol trains, and how many networks (``.text`` is the whole of it)."""
        c, cfg = self.conditions[0], self.config
        n_units = getattr(c.model, "n_units", None)
        model = c.model_kind + (f" (N = {n_units})" if n_units is not None else "")
        names = ", ".join(self.condition_names)
        networks = len(self.points) * len(self.conditions) * cfg.seeds
        sweep = ""
        if self.sweep is not None:
            sweep = f" x {len(self.points)} sweep points ({', '.join(f'{k}: {len(v)}' for k, v in self.sweep_dims)})"
        rules = list(dict.fromkeys(x.training.rule for x in self.conditions))
        return (f"<Protocol {self.name}: task {c.task_kind}, model {model}, rule{'s' * (len(rules) > 1)} {', '.join(rules)}, "
                f"{c.training.iterations} iterations; {len(self.conditions)} condition(s) ({names}) x {cfg.seeds} seed(s)"
                f"{sweep} = {networks} network(s); .text holds the resolved YAML>")

    __str__ = __repr__


def read_yaml_file(path: Path, what: str = "protocol", field_prefix: str = "") -> dict:
    """The mapping a YAML file holds; a problem of its structure (a duplicate key, an alias bomb)
    names its field, under ``field_prefix`` (``model`` for a model spec)."""
    if not path.is_file():
        raise ProtocolError(f"{what} file not found: {path}")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ProtocolError(f"{path}: {what} file of {path.stat().st_size} bytes; expected at most {MAX_FILE_BYTES}")
    try:
        data = load_yaml(path.read_text())
    except YamlProblem as exc:
        field = f"{field_prefix}.{exc.field}" if field_prefix and exc.field != "(top level)" else exc.field
        raise ProtocolError(f"{field}: {exc.message}" + (f" (in {what} {path})" if field_prefix else ""),
                            "" if field_prefix else str(path)) from None
    except Exception as exc:  # yaml.YAMLError and decoding errors
        raise ProtocolError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise ProtocolError(f"{path}: expected a mapping of keys to values at the top level, got {type(data).__name__}")
    return data


def apply_overrides(data: dict, overrides: list[str] | Mapping[str, Any] | str) -> dict:
    """Apply overrides to a copy of ``data``: ``--set`` items ``dotted.key=value`` (values parsed as
    YAML; one string is one item), or a mapping ``{"dotted.key": value}`` (Python values, used as
    they are: ``{"seeds": 2, "training.lr": 1e-3}``). Either way a value replaces the field it names
    (a mapping value replaces a whole section), and a condition is changed, never added."""
    items = []
    if isinstance(overrides, Mapping):
        for key, value in overrides.items():
            label = f"overrides[{key!r}]"
            if not isinstance(key, str) or not key or any(not p for p in key.split(".")):
                raise ProtocolError(f"{label}: expected a field name or a dotted path as the key, e.g. 'seeds' or "
                                    f"'training.lr'; got {describe(key)}")
            items.append((key, value, label))
    else:
        for item in [overrides] if isinstance(overrides, str) else overrides:
            if not isinstance(item, str):
                raise ProtocolError(f"overrides: expected dotted.key=value strings (as for --set) or a mapping of "
                                    f"dotted keys to values; got {describe(item)} in {describe(overrides)}")
            key, sep, raw = item.partition("=")
            if not sep or not key or any(not p for p in key.split(".")):
                raise ProtocolError(f"--set {item!r}: expected dotted.key=value, e.g. training.lr=1e-3")
            try:
                value = load_yaml(raw) if raw.strip() else ""
            except YamlProblem as exc:
                where = key if exc.field == "(top level)" else f"{key}.{exc.field}"
                raise ProtocolError(f"--set {where}: {exc.message}") from None
            except Exception:
                value = raw
            items.append((key, value, f"--set {item!r}"))
    data = copy.deepcopy(data)
    for key, value, label in items:
        node = data
        parts = key.split(".")
        conds = data.get("conditions")
        if parts[0] == "conditions" and len(parts) > 1 and isinstance(conds, dict) and parts[1] not in conds:
            # a typo must not train an extra condition; replacing the whole map (--set conditions=...) is explicit
            raise ProtocolError(f"{label}: the protocol has no condition {parts[1]!r} (its conditions: "
                                f"{', '.join(map(str, conds))}); an override changes conditions, it does not add them "
                                "(add it in the protocol file, or replace them all with --set 'conditions={...}')")
        for i, part in enumerate(parts[:-1]):
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ProtocolError(f"{label}: {'.'.join(parts[:i + 1])} is {describe(nxt)}, not a section")
            node = nxt
        node[parts[-1]] = copy.deepcopy(value)
    return data


def merge(base: dict, override: dict) -> dict:
    """Deep merge; a dict that names a new ``kind`` replaces the old one instead of merging."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and v.get("kind", out[k].get("kind")) == out[k].get("kind"):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _validate(cls, data: dict, prefix: str, problems: list[str]):
    try:  # (model_validate, not cls(**data): a key that is not text, e.g. `1: x`, is then named in the error)
        return cls.model_validate(data) if isinstance(data, dict) and hasattr(cls, "model_validate") else cls(**data)
    except ValidationError as exc:
        problems.extend(format_validation_error(exc, prefix, cls))
    except TypeError as exc:
        problems.append(f"{prefix}: {exc}")
    return None


def find_model_spec(spec: Any, protocol_dir: Path) -> Path:
    if not isinstance(spec, str) or not NAME_RE.match(spec):
        raise ProtocolError(f"model.spec: expected the name of a file in models/ (without .yaml), got {describe(spec)}")
    # beside the protocol, then the working directory, then the shipped specs
    folders = list(dict.fromkeys([protocol_dir.parent / "models", Path.cwd() / "models", models_dir()]))
    for folder in folders:
        if (folder / f"{spec}.yaml").is_file():
            return folder / f"{spec}.yaml"
    known = sorted({p.stem for f in folders if f.is_dir() for p in f.glob("*.yaml")})
    raise ProtocolError(f"model.spec: no model spec {spec!r} in models/; expected one of: {', '.join(known) or '(none found)'}")


def _resolve_kind(registry, section: str, data: dict, problems: list[str], protocol_dir: Path | None = None):
    """Validate a ``{kind: ..., **settings}`` section against the registered class's Config.

    ``kind`` is a built-in name, an optional kind, an entry point, or a module path
    ``package.module:Class`` (imported from sys.path, else from ``protocol_dir``); see
    bioplastic.registry. Returns (kind, validated config) or (None, None) with the problem recorded."""
    if not isinstance(data, dict):
        problems.append(f"{section}: expected a mapping with a `kind`, got {describe(data)}")
        return None, None
    kind = data.get("kind")
    if kind is None:
        problems.append(f"{section}.kind: required, but missing; expected one of: {', '.join(registry.names())}")
        return None, None
    cls = _lookup(registry, f"{section}.kind", kind, problems, protocol_dir)
    if cls is None:
        return None, None
    if "kind" not in cls.Config.model_fields:
        data = {k: v for k, v in data.items() if k != "kind"}
    elif kind not in registry.names():
        # a class found by module path or entry point keeps its own `kind` field (e.g. a Literal of its
        # short name); the protocol names it by the path, which the resolved protocol keeps
        own = cls.Config.model_fields["kind"].default
        data = {k: v for k, v in data.items() if k != "kind"} | ({"kind": own} if isinstance(own, str) else {})
    return kind, _validate(cls.Config, data, section, problems)


def _lookup(registry, where: str, name: Any, problems: list[str], protocol_dir: Path | None = None):
    """The class ``registry`` has for ``name`` (a module path is imported, from ``protocol_dir`` if it
    is not on sys.path), or None with the problem recorded under ``where``."""
    try:
        return registry.get(name, search=[protocol_dir] if protocol_dir is not None else [])
    except UnknownNameError as exc:
        problems.append(f"{where}: {exc}")
        return None


def resolve_protocol_path(path: str | Path) -> Path:
    """An existing protocol file as given; else a bare name (``evidence_accum``) names a shipped protocol."""
    try:
        return protocol_path(path)
    except (UnknownResourceError, FileNotFoundError) as exc:
        raise ProtocolError(str(exc)) from None


def load_protocol(path: str | Path | dict, overrides: list[str] | Mapping[str, Any] | None = None) -> Protocol:
    """Read, override, validate and resolve a protocol file, or a shipped protocol named without a
    folder (``load_protocol("evidence_accum")``; bioplastic.resources.shipped_protocols() lists them),
    or a protocol given as a dict with the fields of a protocol file (no YAML needed; model specs
    are looked up from the working directory, then the shipped ones).

    ``overrides``: ``--set`` strings (``["seeds=2", "training.lr=1e-3"]``) or a mapping of dotted
    field paths to values (``{"seeds": 2, "training.lr": 1e-3}``); see :func:`apply_overrides`."""
    if isinstance(path, dict):
        raw = apply_overrides(copy.deepcopy(path), overrides or [])
        return protocol_from_data(raw, "<protocol dict>", Path.cwd())
    path = resolve_protocol_path(path)
    raw = apply_overrides(read_yaml_file(path), overrides or [])
    return protocol_from_data(raw, str(path), path.resolve().parent)


def protocol_from_text(text: str, source: str = "<protocol text>") -> Protocol:
    """A protocol from resolved YAML text (what OUT/protocol.yaml and the dataset hold)."""
    try:
        data = load_yaml(text)
    except YamlProblem as exc:
        raise ProtocolError(str(exc), source) from None
    if not isinstance(data, dict):
        raise ProtocolError(f"{source}: expected a mapping at the top level")
    return protocol_from_data(data, source, Path.cwd())


def set_dotted(data: dict, key: str, value: Any) -> dict:
    """A copy of ``data`` with the dotted ``key`` set to ``value``."""
    out = copy.deepcopy(data)
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        nxt = node.setdefault(part, {})
        if nxt is None:
            raise ProtocolError(f"{key}: {part} is null (off) in this protocol; give {part} its settings first "
                                f"(e.g. in the protocol file) to set {key}")
        if not isinstance(nxt, dict):
            raise ProtocolError(f"{key}: {part} is {describe(nxt)}, not a section")
        node = nxt
    node[parts[-1]] = copy.deepcopy(value)
    return out


def protocol_from_data(raw: dict, source: str, protocol_dir: Path) -> Protocol:
    """Validate a protocol given as data; a ``sweep`` section is expanded into its points."""
    sweep_raw = raw.get("sweep")
    base_raw = {k: v for k, v in raw.items() if k != "sweep"}
    base = _resolve(base_raw, source, protocol_dir)
    if sweep_raw is None:
        _check_memory(base, 1, "", source)
        return base
    problems: list[str] = []
    sweep = _validate(SweepConfig, sweep_raw if isinstance(sweep_raw, dict) else {"grid": sweep_raw}, "sweep", problems)
    if sweep is None:
        raise ProtocolError(problems, source)
    # the size of the sweep from the lengths of its lists, before any point is made
    sizes = [(f"grid {k}", len(v)) for k, v in sweep.grid.items()]
    sizes += [("zip", len(v)) for v in list(sweep.zip.values())[:1]]
    n_points = math.prod(n for _, n in sizes)
    if n_points > MAX_SWEEP_POINTS:
        raise ProtocolError([f"sweep: {n_points} points ({' x '.join(f'{w}: {n}' for w, n in sizes)}); expected at most "
                             f"{MAX_SWEEP_POINTS} - sweep fewer values"], source)
    n_nets = n_points * len(base.conditions) * base.config.seeds
    if n_nets > MAX_NETWORKS:
        raise ProtocolError([f"sweep: {n_points} points x {len(base.conditions)} condition(s) x {base.config.seeds} seeds "
                             f"= {n_nets} networks; expected at most {MAX_NETWORKS} - sweep fewer values or reduce seeds"], source)
    _check_memory(base, n_points, "", source)
    if base.config.brian2.enabled:
        raise ProtocolError(["brian2.enabled: the re-simulation of sweeps is not supported; set it to false for a sweep"], source)
    # each grid entry alone first, so that a problem names the sweep entry that causes it; zipped
    # entries are taken together (e.g. delay_min_ms and delay_max_ms), so they are checked by point below
    for key, values in sweep.grid.items():
        for value in values:
            try:
                _check_memory(_resolve(set_dotted(base_raw, key, value), source, protocol_dir), n_points, "", source)
            except ProtocolError as exc:
                problems.extend(f"sweep.grid.{key} = {value!r}: {p}" for p in exc.problems)
    if problems:
        raise ProtocolError(list(dict.fromkeys(problems)), source)
    points = []
    grid = list(itertools.product(*[[(k, v) for v in vals] for k, vals in sweep.grid.items()]))
    zipped = [list(zip(sweep.zip, row)) for row in zip(*sweep.zip.values())] or [[]]
    for combo in grid:
        for row in zipped:
            coords = dict(combo) | dict(row)
            point_raw = base_raw
            try:
                for key, value in coords.items():
                    point_raw = set_dotted(point_raw, key, value)
                point = _resolve(point_raw, source, protocol_dir)
                _check_memory(point, n_points, "", source)
                points.append(Point(coords, point))
            except ProtocolError as exc:
                where = ", ".join(f"{k}={v!r}" for k, v in coords.items())
                problems.extend(f"sweep point {where}: {p}" for p in exc.problems)
    if problems:
        raise ProtocolError(list(dict.fromkeys(problems)), source)
    resolved = dict(base.resolved, sweep=sweep.model_dump(mode="json"))
    return Protocol(base.config, base.conditions, resolved, source, sweep, tuple(points))


def _check_memory(protocol: Protocol, n_points: int, prefix: str, source: str) -> None:
    """Refuse a run whose estimated memory exceeds the machine's (bioplastic.protocol.limits)."""
    try:
        problems = memory_problems(protocol.conditions, protocol.config.seeds, protocol.config.analysis, n_points)
    except LimitError as exc:
        raise ProtocolError(str(exc), source) from None
    if problems:
        raise ProtocolError([prefix + p for p in problems], source)


def plasticity_problems(tcr: TCRConfig, model_kind: str, training: TrainingConfig, dt_ms: float,
                        tcr_where: str, training_where: str) -> list[str]:
    """What a model, rule and task do not support of ``tcr.form: plasticity`` (the model's
    capabilities are those its network class declares)."""
    p, out = tcr.plasticity, []
    plastic, freeze_in = kinds_supporting("supports_plasticity"), kinds_supporting("supports_freeze_in")
    if model_kind not in plastic:
        out.append(f"{tcr_where}.form: plasticity acts on the recurrent synapses of the model kinds "
                   f"{', '.join(plastic)}; the model is {model_kind} (use form: loss or none)")
    if p.rule == "anti_hebbian" and p.tau_F_ms < dt_ms:
        out.append(f"{tcr_where}.plasticity.tau_F_ms: expected at least the task's time step dt = {dt_ms:g} ms; got {p.tau_F_ms:g}")
    if p.kappa > 0 and model_kind not in freeze_in:
        out.append(f"{tcr_where}.plasticity.kappa: freeze-in writes into a full recurrent weight matrix, supported for "
                   f"{', '.join(freeze_in)}; the model is {model_kind} (set kappa: 0)")
    if p.sigma_w > 0 and model_kind not in freeze_in:
        out.append(f"{tcr_where}.plasticity.sigma_w: weight noise is supported for {', '.join(freeze_in)}; "
                   f"the model is {model_kind} (set sigma_w: 0)")
    if p.gradient == "exact" and training.rule != "bptt":
        out.append(f"{tcr_where}.plasticity.gradient: exact is the gradient BPTT takes through the fast variables; "
                   f"the rule is {training.rule} (use training.rule: bptt, or gradient: detached)")
    if training.rule in ("rflo", "eprop") and training.rule_options.get("variant") == "online":
        out.append(f"{training_where}.rule_options.variant: online updates are not combined with TCR plasticity; use variant: trial")
    return out


def brian2_problems(cfg: ProtocolConfig, model_kind: str, dt_ms: float) -> list[str]:
    """What the brian2 re-simulation cannot do with this protocol (the model kinds it re-simulates
    are those whose network class declares ``supports_brian2``)."""
    out = []
    supported = kinds_supporting("supports_brian2")
    if model_kind not in supported:
        out.append(f"brian2.enabled: brian2 re-simulates the model kinds {', '.join(supported)}; the model is "
                   f"{model_kind} (set brian2.enabled: false)")
    if cfg.brian2.dt_ms is not None:
        ratio = dt_ms / cfg.brian2.dt_ms
        if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
            out.append(f"brian2.dt_ms: expected a divisor of the task's time step {dt_ms:g} ms (e.g. {dt_ms / 10:g}); "
                       f"got {cfg.brian2.dt_ms:g}")
    return out


def _resolve(raw: dict, source: str, protocol_dir: Path) -> Protocol:
    problems: list[str] = []
    cfg = _validate(ProtocolConfig, raw, "", problems)
    if cfg is None:
        raise ProtocolError(problems, source)
    if cfg.seeds * len(cfg.conditions) > MAX_NETWORKS:
        raise ProtocolError([f"seeds: {cfg.seeds} seeds x {len(cfg.conditions)} conditions = {cfg.seeds * len(cfg.conditions)} "
                             f"networks; expected at most {MAX_NETWORKS}"], source)

    # the model: a spec from models/ with the protocol's keys on top
    model_raw = dict(cfg.model)
    if "spec" in model_raw:
        spec_path = find_model_spec(model_raw.pop("spec"), protocol_dir)
        model_raw = merge(read_yaml_file(spec_path, "model spec", "model"), model_raw)
    model_kind, model = _resolve_kind(NETWORKS, "model", model_raw, problems, protocol_dir)
    task_kind, task = _resolve_kind(TASKS, "task", dict(cfg.task), problems, protocol_dir)
    if task is not None and task_kind not in TASKS.names():
        try:  # a task from outside is built once here, so that its own errors name the section
            TASKS.get(task_kind)(task)
        except Exception as exc:  # noqa: BLE001 - any error of the task's constructor
            problems.append(f"task: building {task_kind} failed: {type(exc).__name__}: {exc}")
    if problems:
        raise ProtocolError(problems, source)
    # the kind as the protocol names it (a module path stays a module path: workers import it again)
    base_model = {**model.model_dump(mode="json"), "kind": model_kind}
    base_tcr = raw.get("tcr", {}) or {}
    base_training = raw.get("training", {}) or {}

    conditions = []
    for name, override in cfg.conditions.items():
        where = f"conditions.{name}"
        if not isinstance(override, dict):
            problems.append(f"{where}: expected a mapping of overrides (or {{}}), got {describe(override)}")
            continue
        for key in override:
            if key not in CONDITION_KEYS:
                problems.append(f"{where}.{key}: unknown key; a condition may override: {', '.join(CONDITION_KEYS)}")
        if any(key not in CONDITION_KEYS for key in override):
            continue
        n0 = len(problems)
        tcr_over, tr_over, model_over = (override.get(k) or {} for k in CONDITION_KEYS)
        # an error in a key the condition sets is reported under the condition; others under the base
        tcr = _validate(TCRConfig, merge(base_tcr, tcr_over), f"{where}.tcr" if tcr_over else "tcr", problems)
        training = _validate(TrainingConfig, merge(base_training, tr_over), f"{where}.training" if tr_over else "training", problems)
        cmodel, cmodel_kind = model, model_kind
        if model_over:
            if "spec" in model_over:
                problems.append(f"{where}.model.spec: a condition cannot change the model spec; override its settings instead")
                continue
            cmodel_kind, cmodel = _resolve_kind(NETWORKS, f"{where}.model", merge(base_model, model_over), problems, protocol_dir)
        if len(problems) > n0:
            continue
        if training is not None:
            rule_where = f"{where}.training" if tr_over else "training"
            rule_cls = _lookup(RULES, f"{rule_where}.rule", training.rule, problems, protocol_dir)
            if rule_cls is None:
                continue
            if rule_cls.supports is not None and (cmodel_kind if cmodel else None) not in rule_cls.supports:
                problems.append(f"{rule_where}.rule: {training.rule} supports the model kinds {', '.join(rule_cls.supports)}; "
                                f"the model is {cmodel_kind}")
            _validate(rule_cls.Config, training.rule_options, f"{rule_where}.rule_options", problems)
            if len(problems) > n0:
                continue
        for key in SHARED_TRAINING:
            if getattr(training, key) != getattr(cfg.training, key):
                problems.append(f"{where}.training.{key}: must be the same in every condition "
                                f"(it fixes the shape of the results); got {getattr(training, key)!r}, the protocol has {getattr(cfg.training, key)!r}")
        if training.device != cfg.training.device:
            problems.append(f"{where}.training.device: must be the same in every condition (conditions are compared "
                            f"on one device: a GPU's numbers differ from the CPU's in the last bits); got "
                            f"{training.device!r}, the protocol has {cfg.training.device!r}")
        for key in SHARED_MODEL:  # a model found by module path may have no `kind` field: compare the kinds as named
            got, base = (cmodel_kind, model_kind) if key == "kind" else (getattr(cmodel, key, None), getattr(model, key, None))
            if got != base:
                problems.append(f"{where}.model.{key}: must be the same in every condition; got {got!r}, "
                                f"the protocol has {base!r}")
        if tcr.window != "trial" and tcr.window not in TASKS.get(task_kind)(task).period_names:
            periods = ", ".join(("trial",) + TASKS.get(task_kind)(task).period_names)
            problems.append(f"{where if tcr_over else ''}{'.' if tcr_over else ''}tcr.window: expected one of {periods}; got {tcr.window!r}")
        supported = RULES.get(training.rule).tcr_normalizations
        if tcr.normalize not in supported:  # under the condition if it sets normalize or the rule
            own = "normalize" in tcr_over or "rule" in tr_over
            problems.append(f"{where + '.' if own else ''}tcr.normalize: expected {' or '.join(supported)} with "
                            f"training.rule {training.rule} (variance needs bptt); got {tcr.normalize!r}")
        if tcr.form == "plasticity":
            problems.extend(plasticity_problems(tcr, cmodel_kind, training, TASKS.get(task_kind)(task).dt_ms,
                                                f"{where}.tcr" if tcr_over else "tcr",
                                                f"{where}.training" if tr_over else "training"))
        conditions.append(Condition(name, task_kind, task, cmodel_kind, cmodel, training, tcr))
    if cfg.brian2.enabled:
        problems.extend(brian2_problems(cfg, model_kind, TASKS.get(task_kind)(task).dt_ms))
    if problems:
        raise ProtocolError(sorted(set(problems), key=problems.index), source)

    resolved = cfg.model_dump(mode="json", by_alias=True)
    resolved["task"] = {"kind": task_kind, **task.model_dump(mode="json")}
    resolved["model"] = base_model
    return Protocol(cfg, conditions, resolved, source)
