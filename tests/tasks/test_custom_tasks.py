"""Tasks, networks and rules from outside the package: module paths and entry points named in a
protocol, their errors, the example task of examples/custom_task, and the neurogym adapter (with a
stand-in environment always; with neurogym itself where it is importable)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from bioplastic import ProtocolError, load_protocol
from bioplastic.learning import RULES
from bioplastic.networks import NETWORKS
from bioplastic.protocol.load import protocol_from_text
from bioplastic.registry import KindImportError, Registry, UnknownNameError
from bioplastic.tasks import TASKS, Task, build_task
from bioplastic.training.units import plan_units, result_path, run_unit

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "custom_task"

TRAINING = "training: {lr: 1e-2, iterations: 4, batch_size: 4, checkpoint_every: 2, eval_every: 2, eval_trials: 8}\n"
BASE = textwrap.dedent("""
    name: ext
    seed: 3
    seeds: 1
    task: {kind: evidence_accumulation, stimulus_ms: 100, delay_min_ms: 40, delay_max_ms: 60, response_ms: 40}
    model: {kind: leaky_rate, n_units: 6}
    output: {figures: false}
    """) + TRAINING

# a module with a task, a network and a rule from outside; {name} is replaced by a unique module name
EXTENSIONS = '''
from typing import ClassVar, Literal
import numpy as np
from pydantic import Field
from bioplastic.learning.bptt import BPTT
from bioplastic.networks.leaky_rate import LeakyRate, LeakyRateConfig
from bioplastic.schema_base import Schema
from bioplastic.tasks import Task, Trials

CALLS = []

class SignConfig(Schema):
    dt_ms: float = Field(20.0, gt=0)
    n_steps: int = Field(6, ge=2)

class Sign(Task):
    """Report the sign of the first input step at the last step."""
    kind = "sign"
    Config = SignConfig
    n_inputs = 1
    n_outputs = 1
    period_names = ("trial",)

    @property
    def n_steps(self):
        return self.config.n_steps

    def sample(self, rng, n_trials):
        T = self.config.n_steps
        s = 2 * rng.integers(2, size=n_trials) - 1
        x = np.zeros((n_trials, T, 1), np.float32); x[:, 0, 0] = s
        m = np.zeros((n_trials, T, 1), np.float32); m[:, -1] = 1
        return Trials(x, m * s[:, None, None], m, {"trial": np.tile([0, T], (n_trials, 1))}, {"sign": s})

    def score(self, outputs, trials):
        return (np.sign(np.asarray(outputs)[..., -1, 0]) == trials.conditions["sign"]).astype(float)

class MyNetConfig(LeakyRateConfig):
    kind: Literal["my_net"] = "my_net"

class MyNet(LeakyRate):
    Config = MyNetConfig

class NoKindConfig(Schema):
    n_units: int = 5

class NoKindNet(LeakyRate):
    """A network whose Config has no kind field (built from a leaky-rate config)."""
    Config = NoKindConfig
    def __init__(self, config, *args, **kwargs):
        super().__init__(LeakyRateConfig(n_units=config.n_units), *args, **kwargs)

class MyRule(BPTT):
    def step(self, *args, **kwargs):
        CALLS.append(1)
        return super().step(*args, **kwargs)

def helper():
    return 1

class NotATask:
    Config = SignConfig

class Abstract(Task):
    Config = SignConfig

class NoConfig(Sign):
    Config = None
'''


@pytest.fixture
def ext(tmp_path, monkeypatch):
    """A folder with a protocol beside a fresh extension module (unique name); sys.path restored after."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    name = f"ext_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(EXTENSIONS)

    def write(text: str) -> Path:
        path = tmp_path / "p.yaml"
        path.write_text(text.replace("EXT", name))
        return path

    write.name = name
    return write


def _problems(path) -> list[str]:
    with pytest.raises(ProtocolError) as info:
        load_protocol(path)
    return info.value.problems


# ------------------------------------------------------------------------- module paths in protocols


def test_task_network_and_rule_by_module_path_beside_the_protocol(ext, tmp_path):
    text = BASE.replace("{kind: evidence_accumulation, stimulus_ms: 100, delay_min_ms: 40, delay_max_ms: 60, response_ms: 40}",
                        "{kind: EXT:Sign, n_steps: 5}").replace("kind: leaky_rate", "kind: EXT:MyNet")
    text = text.replace("training: {lr", "training: {rule: EXT:MyRule, lr")
    p = load_protocol(ext(text))
    c = p.conditions[0]
    assert (c.task_kind, c.model_kind, c.training.rule) == (f"{ext.name}:Sign", f"{ext.name}:MyNet", f"{ext.name}:MyRule")
    assert str(tmp_path) in sys.path  # found beside the protocol, so worker processes find it too
    # the resolved text keeps the module paths, and a worker resolves it again from the text alone
    assert p.resolved["task"] == {"kind": f"{ext.name}:Sign", "dt_ms": 20.0, "n_steps": 5}
    assert p.resolved["model"]["kind"] == f"{ext.name}:MyNet"
    again = protocol_from_text(p.text)
    assert again.text == p.text and again.conditions[0].model_kind == f"{ext.name}:MyNet"
    # a worker's path: train one unit from the protocol text
    (unit,) = plan_units(p)
    run_unit(p.text, unit.id, str(tmp_path / "out"))
    assert result_path(tmp_path / "out", unit.id).is_file()
    assert sys.modules[ext.name].CALLS, "the custom rule did not train"
    assert isinstance(TASKS.get(f"{ext.name}:Sign")(c.task), Task)
    assert f"{ext.name}:Sign" not in TASKS.names() and f"{ext.name}:Sign" in TASKS.loaded_names()


def test_settings_of_a_task_from_outside_are_validated_by_its_config(ext):
    text = BASE.replace("{kind: evidence_accumulation, stimulus_ms: 100, delay_min_ms: 40, delay_max_ms: 60, response_ms: 40}",
                        "{kind: EXT:Sign, n_steps: 1, colour: red}")
    problems = _problems(ext(text))
    assert any(p.startswith("task.n_steps:") and "greater than or equal to 2" in p for p in problems)
    assert any(p.startswith("task.colour: unknown key") for p in problems)


def test_a_network_config_without_kind_and_a_condition_override(ext):
    text = BASE.replace("kind: leaky_rate, n_units: 6", "kind: EXT:NoKindNet, n_units: 6") + \
        "conditions: {a: {}, b: {model: {n_units: 6}}}\n"
    p = load_protocol(ext(text))
    assert [c.model_kind for c in p.conditions] == [f"{ext.name}:NoKindNet"] * 2
    assert p.resolved["model"] == {"kind": f"{ext.name}:NoKindNet", "n_units": 6}


@pytest.mark.parametrize(("where", "value", "expected"), [
    ("task", "no_such_module_xyz:Task", "module 'no_such_module_xyz' not found"),
    ("task", "EXT:Sgn", "has no attribute 'Sgn' (did you mean 'Sign'?)"),
    ("task", "EXT:helper", "expected a class, got function"),
    ("task", "EXT:NotATask", "is not a subclass of bioplastic.tasks.Task"),
    ("task", "EXT:Abstract", "is abstract; it does not implement: n_inputs, n_outputs, n_steps, period_names, sample, score"),
    ("task", "EXT:NoConfig", "Config must be a pydantic model"),
    ("task", "EXT:MyNet", "is not a subclass of bioplastic.tasks.Task"),
    ("task", "EXT::Sign", "is not a module path; expected package.module:Class"),
    ("model", "EXT:Sign", "is not a subclass of bioplastic.networks.Network"),
    ("rule", "EXT:MyNet", "is not a subclass of bioplastic.learning.LearningRule"),
    ("rule", "nope_rules_xyz:R", "module 'nope_rules_xyz' not found"),
])
def test_errors_name_the_field(ext, where, value, expected):
    if where == "task":
        text = BASE.replace("kind: evidence_accumulation, stimulus_ms: 100, delay_min_ms: 40, delay_max_ms: 60, response_ms: 40",
                            f"kind: '{value}'")
        field = "task.kind"
    elif where == "model":
        text, field = BASE.replace("kind: leaky_rate", f"kind: '{value}'"), "model.kind"
    else:
        text, field = BASE.replace("training: {lr", f"training: {{rule: '{value}', lr"), "training.rule"
    (msg,) = _problems(ext(text))
    assert msg.startswith(f"{field}: ") and expected in msg, msg


def test_a_module_that_fails_to_import_is_reported_with_its_error(ext, tmp_path):
    (tmp_path / "broken_ext_mod.py").write_text("import numpy\nraise RuntimeError('boom at import')\n")
    (tmp_path / "missing_dep_mod.py").write_text("import not_installed_dep_xyz\n")
    (msg,) = _problems(ext(BASE.replace("kind: leaky_rate", "kind: broken_ext_mod:Net")))
    assert msg.startswith("model.kind: ") and "importing module 'broken_ext_mod' failed: RuntimeError: boom at import" in msg
    (msg,) = _problems(ext(BASE.replace("kind: leaky_rate", "kind: missing_dep_mod:Net")))
    assert "importing module 'missing_dep_mod' failed: ModuleNotFoundError" in msg and "not_installed_dep_xyz" in msg


def test_unknown_plain_names_still_suggest_and_mention_module_paths(ext):
    (msg,) = _problems(ext(BASE.replace("kind: leaky_rate", "kind: leaky_rat")))
    assert msg.startswith("model.kind: unknown model kind 'leaky_rat'") and "did you mean 'leaky_rate'" in msg
    assert "module path package.module:Class" in msg
    (msg,) = _problems(ext(BASE.replace("evidence_accumulation,", "cue_memory,")))
    assert msg.startswith("task.kind: unknown task kind 'cue_memory'") and "optional: neurogym" in msg


def test_entry_points_are_looked_up_by_name(ext, monkeypatch):
    import importlib.metadata as md

    ep = md.EntryPoint(name="sign_task", value=f"{ext.name}:Sign", group="bioplastic.tasks")
    bad = md.EntryPoint(name="bad_task", value=f"{ext.name}:helper", group="bioplastic.tasks")
    path = ext(BASE)  # writes the module folder's protocol; the module must be importable for the entry point
    sys.path.append(str(path.parent))
    monkeypatch.setattr(md, "entry_points", lambda group=None: [ep, bad] if group == "bioplastic.tasks" else [])
    reg = Registry("task kind")
    assert reg.get("sign_task").__name__ == "Sign"
    with pytest.raises(KindImportError, match=r"entry point 'bad_task'.*expected a class"):
        reg.get("bad_task")
    with pytest.raises(UnknownNameError, match=r"installed by entry points \(bioplastic.tasks\): bad_task, sign_task"):
        reg.get("nothing")
    # through a protocol (the package's own registry consults the same group)
    p = load_protocol(ext(BASE.replace("kind: evidence_accumulation, stimulus_ms: 100, delay_min_ms: 40, delay_max_ms: 60, "
                                       "response_ms: 40", "kind: sign_task")))
    assert p.conditions[0].task_kind == "sign_task"


def test_builtin_listings_stay_builtin():
    assert TASKS.names() == ["delayed_addition", "evidence_accumulation", "filtered_noise", "flipflop"]
    assert TASKS.optional_names() == ["neurogym"] and "neurogym" in TASKS
    assert {"leaky_rate", "lstm"} <= set(NETWORKS.names()) and "bptt" in RULES.names()
    with pytest.raises(ValueError, match="registered twice"):
        TASKS.register_lazy("neurogym", "x:Y")


# ------------------------------------------------------------------------- the example task


def _cue_memory():
    sys.path.insert(0, str(EXAMPLE))
    try:
        import cue_memory
    finally:
        sys.path.remove(str(EXAMPLE))
    return cue_memory


def test_example_task_follows_the_conventions():
    mod = _cue_memory()
    task = mod.CueMemory(mod.Config(dt_ms=20, delay_min_ms=100, delay_max_ms=300))
    trials = task.sample(np.random.default_rng(0), 64)
    T = task.n_steps
    assert T == 5 + 5 + 15 + 10
    assert trials.inputs_bxtxi.shape == (64, T, 3) and trials.targets_bxtxo.shape == (64, T, 1)
    names = list(trials.periods)
    assert tuple(names) == task.period_names
    starts = np.stack([trials.periods[n][:, 0] for n in names], 1)
    stops = np.stack([trials.periods[n][:, 1] for n in names], 1)
    assert (starts[:, 0] == 0).all() and (stops[:, -1] == T).all() and (starts[:, 1:] == stops[:, :-1]).all()
    cue = trials.periods["cue"][0]
    on = trials.inputs_bxtxi[:, cue[0]:cue[1], :2].sum(axis=1)
    assert np.array_equal(np.argmax(on, axis=1), trials.conditions["channel"]) and (on.min(axis=1) == 0).all()
    assert set(np.unique(trials.targets_bxtxo[trials.mask_bxtxo == 1])) == {-1.0, 1.0}
    assert task.accuracy(trials.targets_bxtxo, trials) == 1.0 and task.accuracy(-trials.targets_bxtxo, trials) == 0.0
    assert task.score(np.stack([trials.targets_bxtxo, -trials.targets_bxtxo]), trials).mean(axis=1).tolist() == [1.0, 0.0]
    again = task.sample(np.random.default_rng(0), 64)
    assert np.array_equal(again.inputs_bxtxi, trials.inputs_bxtxi)
    with pytest.raises(ValueError, match="delay_min_ms"):
        mod.Config(delay_min_ms=500, delay_max_ms=100)


def _run_example(tmp_path, *executor: str) -> Path:
    out = tmp_path / "out"
    sets = ["seeds=1", "training.iterations=6", "training.batch_size=4", "training.checkpoint_every=3",
            "training.eval_every=3", "training.eval_trials=8", "model.n_units=6", "analysis.initial_states=4",
            "analysis.trials=4", "output.figures=false"]
    cmd = [sys.executable, "-m", "bioplastic", "run", str(EXAMPLE / "cue_memory.yaml"), "--out", str(out),
           "--workers", "1", "--quiet", *executor] + [a for s in sets for a in ("--set", s)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.mark.integration
def test_example_protocol_runs_from_the_command_line(tmp_path):
    """As a user runs it, from another folder: the module is found beside the protocol, also by the
    worker process of the local pool (it copies sys.path, where the protocol's folder was added)."""
    out = _run_example(tmp_path)
    with xr.open_dataset(out / "results.nc", engine="h5netcdf") as ds:
        assert list(ds.condition.values) == ["baseline", "tcr_loss"]
        assert ds.sizes["seed"] == 1 and np.isfinite(ds.loss.values).all()
        assert any("kind: cue_memory:CueMemory" in str(v) for v in ds.attrs.values())
    assert "cue_memory:CueMemory" in (out / "report.html").read_text()
    assert "kind: cue_memory:CueMemory" in (out / "protocol.yaml").read_text()


@pytest.mark.slow
def test_example_protocol_runs_on_dask_workers(tmp_path):
    """A dask LocalCluster's worker processes import the module beside the protocol too."""
    out = _run_example(tmp_path, "--executor", "dask")
    with xr.open_dataset(out / "results.nc", engine="h5netcdf") as ds:
        assert np.isfinite(ds.loss.values).all()


def test_example_protocol_validates():
    p = load_protocol(EXAMPLE / "cue_memory.yaml")
    assert p.conditions[0].task_kind == "cue_memory:CueMemory"


# ------------------------------------------------------------------------- neurogym adapter


class _Discrete:
    def __init__(self, n):
        self.n = n


class _Box:
    def __init__(self, shape):
        self.shape = shape


class FakeTrialEnv:
    """A stand-in for a neurogym TrialEnv: ``dt`` (ms), ``timing``, ``rng`` (RandomState), ``seed``,
    ``new_trial()`` -> trial dict, then ``ob`` (time, obs), ``gt`` (time,) actions and the periods in
    ``start_t`` / ``end_t`` (ms). Fixation, a stimulus of 200 or 400 ms on channel 1 + choice, a decision
    period whose ground truth is action 1 + choice (action 0: fixate)."""

    def __init__(self, dt=100, timing=None, n_choices=2):
        self.dt, self.n_choices = dt, n_choices
        self.timing = {"fixation": 200, "stimulus": [200, 400], "decision": 200} | (timing or {})
        self.action_space = _Discrete(1 + n_choices)
        self.observation_space = _Box((1 + n_choices,))
        self.rng = np.random.RandomState(0)
        self.start_t, self.end_t = {}, {}

    def seed(self, seed=None):
        self.rng = np.random.RandomState(seed)

    def new_trial(self):
        choice = int(self.rng.randint(self.n_choices))
        t = 0
        for name in ("fixation", "stimulus", "decision"):
            v = self.timing[name]
            d = (self.rng.choice(v) if isinstance(v, list) else v) // self.dt * self.dt
            self.start_t[name], self.end_t[name] = t, t + d
            t += d
        n = int(t // self.dt)
        sl = {k: slice(int(self.start_t[k] // self.dt), int(self.end_t[k] // self.dt)) for k in self.start_t}
        self.ob = np.zeros((n, 1 + self.n_choices), np.float32)
        self.ob[sl["fixation"], 0] = self.ob[sl["stimulus"], 0] = 1
        self.ob[sl["stimulus"], 1 + choice] = 1 + self.rng.randn(sl["stimulus"].stop - sl["stimulus"].start)
        self.gt = np.zeros(n, np.int64)
        self.gt[sl["decision"]] = 1 + choice
        self.trial = {"ground_truth": choice, "label": "not a number"}
        return self.trial


FAKE = f"{__name__}:FakeTrialEnv"


class FakeCoherenceEnv(FakeTrialEnv):
    """The stand-in with neurogym's evidence label: ``coh`` 0 (no evidence) or 50 in the trial dict."""

    def new_trial(self):
        trial = super().new_trial()
        trial["coh"] = float(self.rng.choice([0.0, 50.0]))
        return trial


FAKE_COH = f"{__name__}:FakeCoherenceEnv"


def test_neurogym_accuracy_counts_the_trials_with_evidence():
    """Held-out accuracy (and so the criterion) leaves out 0-coherence trials by default: outputs right on
    every trial with evidence and wrong on every trial without score 1.0 (a criterion of 0.95 reachable),
    and the fraction of trials with evidence with accuracy_trials: all; an env without coh scores all."""
    task = build_task("neurogym", {"env": FAKE_COH, "dt_ms": 100})
    trials = task.sample(np.random.default_rng(3), 400)
    coh = trials.conditions["coh"]
    assert set(coh) == {0.0, 50.0}
    wrong = np.roll(trials.targets_bxtxo, 1, axis=2)
    out = np.where((coh == 0)[:, None, None], wrong, trials.targets_bxtxo)
    assert task.accuracy(out, trials) == 1.0 and task.accuracy(wrong, trials) == 0.0
    every = build_task("neurogym", {"env": FAKE_COH, "dt_ms": 100, "accuracy_trials": "all"})
    assert every.accuracy(out, trials) == (coh != 0).mean()
    assert np.array_equal(task.evidence_trials(trials), coh != 0) and every.evidence_trials(trials).all()
    plain = build_task("neurogym", {"env": FAKE, "dt_ms": 100})
    tr = plain.sample(np.random.default_rng(3), 50)
    assert plain.evidence_trials(tr).all() and plain.accuracy(np.roll(tr.targets_bxtxo, 1, axis=2), tr) == 0.0


def test_neurogym_adapter_on_a_stand_in_environment():
    task = build_task("neurogym", {"env": FAKE, "dt_ms": 100})
    assert (task.n_inputs, task.n_outputs, task.n_steps) == (3, 3, 8)
    assert task.period_names == ("fixation", "stimulus", "decision", "padding")
    trials = task.sample(np.random.default_rng(1), 200)
    names = list(trials.periods)
    starts = np.stack([trials.periods[n][:, 0] for n in names], 1)
    stops = np.stack([trials.periods[n][:, 1] for n in names], 1)
    assert (starts[:, 0] == 0).all() and (stops[:, -1] == 8).all() and (starts[:, 1:] == stops[:, :-1]).all()
    n_b = trials.conditions["trial_steps"]
    assert set(n_b) == {6, 8}  # both stimulus durations; the short trials padded
    short = n_b == 6
    assert (trials.inputs_bxtxi[short, 6:] == 0).all() and (trials.mask_bxtxo[short, 6:] == 0).all()
    # one-hot targets of gt on every step; the loss only in the decision period
    assert np.array_equal(trials.targets_bxtxo.sum(axis=2)[~short], np.ones((int((~short).sum()), 8)))
    dec = trials.periods["decision"]
    assert np.array_equal(trials.mask_bxtxo[:, :, 0].sum(axis=1), dec[:, 1] - dec[:, 0])
    assert np.array_equal(trials.conditions["action"], 1 + trials.conditions["ground_truth"])
    assert "label" not in trials.conditions
    assert np.array_equal(trials.targets_bxtxo[np.arange(200), dec[:, 0]].argmax(axis=1), trials.conditions["action"])
    # score: the correct action has the largest mean output in the decision period; leading axes kept
    assert task.accuracy(trials.targets_bxtxo, trials) == 1.0
    wrong = np.roll(trials.targets_bxtxo, 1, axis=2)
    assert task.accuracy(wrong, trials) == 0.0
    assert task.score(np.stack([trials.targets_bxtxo, wrong]), trials).mean(axis=1).tolist() == [1.0, 0.0]
    # same generator state, same trials; another, others
    again = task.sample(np.random.default_rng(1), 200)
    assert np.array_equal(again.inputs_bxtxi, trials.inputs_bxtxi)
    assert not np.array_equal(task.sample(np.random.default_rng(2), 200).inputs_bxtxi, trials.inputs_bxtxi)


def test_neurogym_adapter_options():
    whole = build_task("neurogym", {"env": FAKE, "dt_ms": 100, "loss": "trial"})
    tr = whole.sample(np.random.default_rng(0), 50)
    assert np.array_equal(tr.mask_bxtxo[:, :, 0].sum(axis=1), tr.conditions["trial_steps"])
    fixed = build_task("neurogym", {"env": FAKE, "dt_ms": 100, "n_steps": 7, "kwargs": {"timing": {"decision": 100}}})
    tr = fixed.sample(np.random.default_rng(0), 50)
    assert fixed.n_steps == 7 and set(tr.conditions["trial_steps"]) == {5, 7}
    raw = build_task("neurogym", {"env": FAKE, "dt_ms": 100, "targets": "raw"})
    tr = raw.sample(np.random.default_rng(0), 20)
    assert raw.n_outputs == 1 and raw.accuracy(tr.targets_bxtxo, tr) == 1.0 and raw.accuracy(tr.targets_bxtxo + 1, tr) == 0.0
    too_short = build_task("neurogym", {"env": FAKE, "dt_ms": 100, "n_steps": 5})
    with pytest.raises(RuntimeError, match="longer than n_steps=5"):
        too_short.sample(np.random.default_rng(0), 2)


def test_neurogym_task_in_a_protocol_and_its_errors(write_protocol, tmp_path):
    text = BASE.replace("kind: evidence_accumulation, stimulus_ms: 100, delay_min_ms: 40, delay_max_ms: 60, response_ms: 40",
                        f"kind: neurogym, env: '{FAKE}', dt_ms: 100") + "tcr: {window: decision}\n"
    p = load_protocol(write_protocol(text))
    assert p.resolved["task"]["kind"] == "neurogym" and p.resolved["task"]["env"] == FAKE
    (unit,) = plan_units(p)
    run_unit(p.text, unit.id, str(tmp_path / "out"))  # in this process: the stand-in lives in this test module
    bad = text.replace("dt_ms: 100", "dt_ms: 100, kwargs: {colour: red, timing: {decision: 100}}, decision_period: response")
    problems = _problems(write_protocol(bad))
    assert any(p.startswith("task.kwargs:") and "colour" in p for p in problems), problems
    (msg,) = _problems(write_protocol(text.replace("dt_ms: 100", "dt_ms: 100, decision_period: response")))
    assert msg.startswith("task.decision_period:") and "fixation, stimulus, decision" in msg
    (msg,) = _problems(write_protocol(text.replace("dt_ms: 100", "dt_ms: 100, kwargs: {dt: 10}")))
    assert msg.startswith("task.kwargs:") and "dt_ms" in msg
    (msg,) = _problems(write_protocol(text.replace(FAKE, f"{__name__}:NoSuchEnv")))
    assert msg.startswith("task.env:") and "NoSuchEnv" in msg


def test_neurogym_missing_is_a_clear_error(write_protocol, monkeypatch):
    import bioplastic.tasks.neurogym_task as ngt

    monkeypatch.setitem(sys.modules, "neurogym", None)  # as if not installed
    ngt._probe.cache_clear()
    text = BASE.replace("kind: evidence_accumulation, stimulus_ms: 100, delay_min_ms: 40, delay_max_ms: 60, response_ms: 40",
                        "kind: neurogym, env: PerceptualDecisionMaking-v0")
    (msg,) = _problems(write_protocol(text))
    assert msg.startswith("task.env:") and ngt.INSTALL_RECIPE in msg


@pytest.mark.parametrize("env", ["PerceptualDecisionMaking-v0", "DelayMatchSample-v0"])
def test_real_neurogym_environments(env, write_protocol, tmp_path):
    pytest.importorskip("neurogym")
    task = build_task("neurogym", {"env": env, "dt_ms": 20})
    trials = task.sample(np.random.default_rng(0), 64)
    assert trials.inputs_bxtxi.shape == (64, task.n_steps, task.n_inputs)
    assert task.n_outputs == task.env.action_space.n and task.period_names[-1] == "padding"
    assert "decision" in task.period_names and (trials.conditions["action"] >= 1).all()
    assert task.accuracy(trials.targets_bxtxo, trials) == 1.0 and task.accuracy(np.zeros_like(trials.targets_bxtxo), trials) == 0.0
    assert np.array_equal(task.sample(np.random.default_rng(0), 64).inputs_bxtxi, trials.inputs_bxtxi)
    if "coh" in trials.conditions:  # 0-coherence trials are left out of held-out accuracy
        assert (trials.conditions["coh"] == 0).any()
        assert np.array_equal(task.evidence_trials(trials), trials.conditions["coh"] != 0)
    text = BASE.replace("kind: evidence_accumulation, stimulus_ms: 100, delay_min_ms: 40, delay_max_ms: 60, response_ms: 40",
                        f"kind: neurogym, env: {env}, dt_ms: 100")
    p = load_protocol(write_protocol(text))
    (unit,) = plan_units(p)
    run_unit(p.text, unit.id, str(tmp_path / "out"))
    assert result_path(tmp_path / "out", unit.id).is_file()


def test_the_predictions_accuracy_counts_the_same_trials_as_the_criterion():
    """predictions.nc's held-out accuracy leaves out the trials without evidence as the criterion does:
    the same networks (accuracy_trials changes no training step) score differently on the same trials,
    and by 'all' exactly as before (every trial)."""
    from bioplastic import predict, train

    def run(which):
        p = load_protocol({"name": "ng", "seed": 4, "seeds": 2,
                           "task": {"kind": "neurogym", "env": FAKE_COH, "dt_ms": 100, "accuracy_trials": which},
                           "model": {"kind": "leaky_rate", "n_units": 8},
                           "training": {"iterations": 4, "batch_size": 8, "checkpoint_every": 2, "eval_every": 2,
                                        "eval_trials": 16},
                           "conditions": {"baseline": {}}})
        results = train(p)
        return results, predict(results, p, trials=64)

    (r_ev, p_ev), (r_all, p_all) = run("evidence"), run("all")
    np.testing.assert_array_equal(r_ev["loss"].values, r_all["loss"].values)
    acc_ev, acc_all = p_ev["accuracy"].values, p_all["accuracy"].values
    assert np.isfinite(acc_ev).all() and not np.array_equal(acc_ev, acc_all)
    # on 64 trials with ~half without evidence, accuracies are multiples of 1/(trials counted)
    assert np.allclose(acc_all * 64, np.round(acc_all * 64))


def test_neurogym_coherence_is_signed_by_the_correct_side_in_the_psychometric_curve():
    """The predictions' psychometric curve of a neurogym task reads the trial's ``coh`` signed by the
    correct side: + where the rewarded action is the larger one ("right"), - where it is the smaller;
    0-coherence trials at 0. The curve's x values and trial counts are those of the held-out trials
    (re-drawn here from the same stream), and every network's P(right) is a fraction at each level."""
    from bioplastic import predict, train
    from bioplastic.seeds import numpy_rng

    p = load_protocol({"name": "ng", "seed": 4, "seeds": 2,
                       "task": {"kind": "neurogym", "env": FAKE_COH, "dt_ms": 100},
                       "model": {"kind": "leaky_rate", "n_units": 8},
                       "training": {"iterations": 4, "batch_size": 8, "checkpoint_every": 2, "eval_every": 2, "eval_trials": 16},
                       "conditions": {"baseline": {}}})
    pred = predict(train(p), p, trials=64)
    trials = build_task("neurogym", {"env": FAKE_COH, "dt_ms": 100}).sample(numpy_rng(4, "prediction_trials"), 64)
    coh, action = trials.conditions["coh"], trials.conditions["action"]
    assert set(action) == {1, 2} and set(coh) == {0.0, 50.0}
    signed = np.where(action == 2, 1.0, -1.0) * coh
    np.testing.assert_array_equal(pred["evidence_level"].values, [-50.0, 0.0, 50.0])
    assert not np.signbit(pred["evidence_level"].values[1])  # 0, not -0
    np.testing.assert_array_equal(pred["n_trials_at_evidence"].values, [(signed == v).sum() for v in (-50.0, 0.0, 50.0)])
    assert (pred["n_trials_at_evidence"].values > 0).all()
    counts = pred["n_trials_at_evidence"].values
    assert counts[0] != counts[2]  # coh signed by the wrong side would swap these
    p_right = pred["p_right"].values
    assert p_right.shape == (1, 2, 3) and np.isfinite(p_right).all() and ((p_right >= 0) & (p_right <= 1)).all()
    # each level's P(right) is a count of its trials
    n = pred["n_trials_at_evidence"].values
    np.testing.assert_allclose(p_right * n, np.round(p_right * n), atol=1e-9)
    assert pred["psychometric_fit_status"].dtype.kind == "i"
