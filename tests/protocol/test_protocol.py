"""Protocol loading: YAML 1.1 pitfalls, schema errors with dotted paths, condition resolution."""
from pathlib import Path

import pytest

from bioplastic import ProtocolError, load_protocol
from bioplastic.protocol.yaml12 import load_yaml


def test_yaml_pitfalls_load_as_people_mean_them():
    data = load_yaml("lr: 1e-3\nflag: yes\nseed: 010\nb: true\nname: on\nhex: 0x10\nneg: -2.5E+2\n")
    assert data == {"lr": 0.001, "flag": "yes", "seed": 10, "b": True, "name": "on", "hex": 16, "neg": -250.0}


def _errors(write_protocol, text):
    with pytest.raises(ProtocolError) as info:
        load_protocol(write_protocol(text))
    return info.value.problems


BASE = """
name: t
seed: 1
task: {kind: evidence_accumulation}
model: {kind: leaky_rate, n_units: 8}
"""


def test_scientific_notation_is_a_number(write_protocol):
    p = load_protocol(write_protocol(BASE + "training: {lr: 1e-3}\n"))
    assert p.conditions[0].training.lr == 0.001


def test_yes_is_not_a_boolean(write_protocol):
    (msg,) = _errors(write_protocol, BASE + "training: {stop_when_learned: yes}\n")
    assert msg.startswith("training.stop_when_learned:") and "bool" in msg and "'yes'" in msg


def test_leading_zero_integer_is_decimal(write_protocol):
    assert load_protocol(write_protocol(BASE.replace("seed: 1", "seed: 010"))).config.seed == 10


def test_unknown_keys_are_refused_with_their_dotted_path(write_protocol):
    problems = _errors(write_protocol, BASE + "training: {lrr: 0.1}\ncolour: red\n")
    assert "training.lrr: unknown key; allowed keys here: " in problems[0] or "training.lrr" in " ".join(problems)
    assert any("training.lrr: unknown key" in p and p.endswith("(did you mean lr?)") for p in problems)
    assert any(p.startswith("colour: unknown key") for p in problems)
    assert any("lr" in p and "allowed keys" in p for p in problems)


@pytest.mark.parametrize("where, text", [("", "1: x\n"), ("training.", "training: {1: 2}\n"),
                                         ("conditions.", "conditions: {1: {}}\n"), ("task.", None)])
def test_a_key_that_is_a_number_is_refused_naming_it(write_protocol, where, text):
    """YAML reads `1: x` as the number 1: the problem names the key (the top level said only
    "keywords must be strings"), says why and how to write it as a name."""
    text = text or ""
    base = BASE.replace("{kind: evidence_accumulation}", "{kind: evidence_accumulation, 1: 2}") if where == "task." else BASE
    (msg,) = _errors(write_protocol, base + text)
    assert msg.startswith(f"{where}1: a key must be text (a name); got the number 1 - quote it ('1': ...)"), msg
    if where in ("", "training."):
        assert "allowed keys here: " in msg and ("seeds" in msg if where == "" else "lr" in msg)


def test_unknown_key_in_model_and_task_settings(write_protocol):
    problems = _errors(write_protocol, BASE.replace("n_units: 8", "n_units: 8, gain: 2")
                       .replace("{kind: evidence_accumulation}", "{kind: evidence_accumulation, delay: 3}"))
    assert any(p.startswith("model.gain: unknown key") for p in problems)
    assert any(p.startswith("task.delay: unknown key") for p in problems)


def test_wrong_type_and_out_of_range_name_field_expected_and_given(write_protocol):
    problems = _errors(write_protocol, BASE + "training: {lr: -0.1, iterations: many}\n")
    assert any(p.startswith("training.lr:") and "greater than 0" in p and "-0.1" in p for p in problems)
    assert any(p.startswith("training.iterations:") and "integer" in p and "'many'" in p for p in problems)


def test_unknown_kind_lists_the_known_ones(write_protocol):
    (msg,) = _errors(write_protocol, BASE.replace("kind: leaky_rate", "kind: leaky_rat"))
    assert msg.startswith("model.kind: unknown model kind 'leaky_rat'") and "did you mean 'leaky_rate'" in msg
    (msg,) = _errors(write_protocol, BASE.replace("evidence_accumulation", "evidence"))
    assert msg.startswith("task.kind:") and "flipflop" in msg


def test_unknown_spec_and_missing_file(write_protocol, tmp_path):
    (msg,) = _errors(write_protocol, BASE.replace("{kind: leaky_rate, n_units: 8}", "{spec: nope}"))
    assert msg.startswith("model.spec: no model spec 'nope'") and "leaky_rate_chaotic" in msg
    (msg,) = _errors(write_protocol, BASE.replace("{kind: leaky_rate, n_units: 8}", "{spec: ../../etc/passwd}"))
    assert msg.startswith("model.spec: expected the name of a file in models/")
    with pytest.raises(ProtocolError, match="protocol file not found"):
        load_protocol(tmp_path / "absent.yaml")


def test_spec_is_loaded_and_overridden(write_protocol):
    p = load_protocol(write_protocol(BASE.replace("{kind: leaky_rate, n_units: 8}", "{spec: leaky_rate_chaotic, g: 2.5}")))
    m = p.conditions[0].model
    assert (m.kind, m.n_units, m.g) == ("leaky_rate", 100, 2.5)


def test_condition_errors_name_the_condition(write_protocol):
    problems = _errors(write_protocol, BASE + "conditions:\n  base: {}\n  tcr: {tcr: {form: loss, lambda: -1}}\n"
                                              "  odd: {task: {}}\n")
    assert any(p.startswith("conditions.tcr.tcr.lambda:") and "greater than or equal to 0" in p for p in problems)
    assert any(p.startswith("conditions.odd.task: unknown key; a condition may override: tcr, training, model")
               for p in problems)


def test_conditions_may_not_change_result_shapes(write_protocol):
    problems = _errors(write_protocol, BASE + "conditions:\n  a: {}\n  b: {training: {iterations: 5}}\n")
    assert problems[0].startswith("conditions.b.training.iterations: must be the same in every condition")


def test_tcr_window_must_be_a_period(write_protocol):
    (msg,) = _errors(write_protocol, BASE + "tcr: {form: loss, window: dela}\n")
    assert msg.startswith("tcr.window:") and "delay" in msg
    p = load_protocol(write_protocol(BASE + "tcr: {form: loss, window: delay}\n"))
    assert p.conditions[0].tcr.window == "delay"


def test_schedule_errors_drop_the_union_tag(write_protocol):
    (msg,) = _errors(write_protocol, BASE + "tcr: {form: loss, schedule: {kind: warmup}}\n")
    assert msg == "tcr.schedule.iterations: required, but missing"


def test_overrides_with_set(write_protocol):
    p = load_protocol(write_protocol(BASE), ["training.lr=1e-2", "seeds=5", "tcr.form=loss"])
    assert (p.conditions[0].training.lr, p.config.seeds, p.conditions[0].tcr.form) == (0.01, 5, "loss")
    with pytest.raises(ProtocolError, match="expected dotted.key=value"):
        load_protocol(write_protocol(BASE), ["training.lr"])


def test_resolved_protocol_reloads_to_the_same_protocol(write_protocol):
    p = load_protocol(write_protocol(BASE.replace("{kind: leaky_rate, n_units: 8}", "{spec: leaky_rate_chaotic}")
                                     + "conditions: {a: {}, b: {tcr: {form: loss}}}\n"))
    again = load_protocol(write_protocol(p.text, "resolved.yaml"))
    assert again.text == p.text and again.conditions == p.conditions


@pytest.mark.parametrize("name", sorted(p.stem for p in Path(__file__).resolve().parents[2].joinpath("protocols").glob("*.yaml")))
def test_shipped_protocols_validate(name):
    p = load_protocol(f"protocols/{name}.yaml")
    assert p.name == name and p.config.seeds >= 3


def test_plrnn_atlas_sweeps_one_factor_at_a_time_around_its_reference():
    """The PLRNN's regime atlas names claim 1, trains PLRNNs at every point, and each point changes one
    factor of the reference (the start A, g counts as one factor, the delay range as one)."""
    p = load_protocol("protocols/abrupt_atlas_plrnn.yaml")
    assert p.config.claims == [1] and p.condition_names == ["baseline"]
    factors = {"training.optimizer": "optimizer and lr", "training.lr": "optimizer and lr", "model.g": "start",
               "model.a_init": "start", "model.output_scale": "readout", "task.delay_min_ms": "delay",
               "task.delay_max_ms": "delay", "model.n_units": "N"}
    assert set(p.sweep.zip) == set(factors)
    ref, *others = p.points
    assert ref.coords == {k: v[0] for k, v in p.sweep.zip.items()}
    model, training = ref.protocol.conditions[0].model, ref.protocol.conditions[0].training
    assert (model.kind, model.a_init, model.g, model.output_scale, model.sigma_h) == ("plrnn", 0.5, 0.6, 0.01, 0.0)
    assert (training.optimizer, training.lr, training.clip_grad_norm) == ("sgd", 0.03, 1.0)
    changed = [{factors[k] for k in ref.coords if point.coords[k] != ref.coords[k]} for point in others]
    assert all(len(c) == 1 for c in changed), changed
    assert {f for c in changed for f in c} == set(factors.values())


def test_abrupt_delayed_addition_compares_the_lstm_tcr_loss_in_its_plateau_regime():
    """The delayed-addition protocol of abrupt learning trains LSTMs in the regime measured to have a long
    "output the mean" plateau (a 50-step stimulus, no delay, Adam 1e-3, batch 32: docs/abrupt_atlas.md),
    long enough (8000 iterations) for most baselines to leave it, and compares the baseline with the TCR
    form an LSTM supports, the loss, at the strength measured to take the networks off the plateau."""
    p = load_protocol("protocols/abrupt_delayed_addition.yaml")
    assert p.config.claims == [1, 3, 6] and p.config.seeds >= 10 and p.sweep is None
    assert p.condition_names == ["baseline", "tcr_loss"]
    base, tcr = p.conditions
    task = base.task
    assert (task.dt_ms, task.stimulus_ms, task.delay_min_ms, task.delay_max_ms) == (20, 1000, 0, 0)
    for c in p.conditions:
        assert c.model.kind == "lstm" and c.model.n_units == 64
        assert (c.training.optimizer, c.training.lr, c.training.batch_size, c.training.iterations) == ("adam", 1e-3, 32, 8000)
        assert c.task == task
    assert base.tcr.form == "none"
    assert (tcr.tcr.form, tcr.tcr.normalize, tcr.tcr.lambda_, tcr.model.tcr_on_cell) == ("loss", "variance", 1.0, False)


def test_plasticity_parameters_out_of_range_name_the_field(write_protocol):
    problems = _errors(write_protocol, BASE + "tcr: {form: plasticity, plasticity: {tau_F_ms: -5, eta_F: -1, F_max: 0}}\n")
    for field in ("tcr.plasticity.tau_F_ms", "tcr.plasticity.eta_F", "tcr.plasticity.F_max"):
        assert any(p.startswith(field + ":") for p in problems), (field, problems)
    (msg,) = _errors(write_protocol, BASE + "tcr: {form: plasticity, plasticity: {tau_F_ms: 5}}\n")
    assert msg.startswith("tcr.plasticity.tau_F_ms: expected at least the task's time step") and "got 5" in msg


def test_plasticity_with_an_unsupported_model_or_rule_is_refused(write_protocol):
    lstm = BASE.replace("{kind: leaky_rate, n_units: 8}", "{kind: lstm, n_units: 8}")
    (msg,) = _errors(write_protocol, lstm + "conditions: {a: {}, p: {tcr: {form: plasticity}}}\n")
    assert msg.startswith("conditions.p.tcr.form: plasticity acts on the recurrent synapses of the model kinds "
                          "leaky_rate, low_rank; the model is lstm")
    low = BASE.replace("{kind: leaky_rate, n_units: 8}", "{kind: low_rank, n_units: 8}")
    (msg,) = _errors(write_protocol, low + "tcr: {form: plasticity, plasticity: {kappa: 0.5}}\n")
    assert msg.startswith("tcr.plasticity.kappa: freeze-in writes into a full recurrent weight matrix")
    (msg,) = _errors(write_protocol, BASE + "training: {rule: rflo, rule_options: {variant: online}}\n"
                                            "tcr: {form: plasticity}\n")
    assert msg.startswith("training.rule_options.variant: online updates are not combined with TCR plasticity")
    (msg,) = _errors(write_protocol, BASE + "training: {rule: rflo}\ntcr: {form: plasticity, plasticity: {gradient: exact}}\n")
    assert msg.startswith("tcr.plasticity.gradient: exact is the gradient BPTT takes through the fast variables; the rule is rflo")
    problems = _errors(write_protocol, BASE + "tcr: {form: plasticity, plasticity: {rule: tsodyks_markram, kappa: 1}}\n")
    assert any(p.startswith("tcr.plasticity:") and "tsodyks_markram has no F" in p for p in problems)


def test_plastic_conditions_train_in_their_own_ensembles(write_protocol):
    from bioplastic.training.units import groups

    p = load_protocol(write_protocol(BASE + "conditions: {a: {}, b: {tcr: {form: loss}}, c: {tcr: {form: plasticity}}}\n"))
    assert sorted(tuple(m.condition.name for m in g) for g in groups(p)) == [("a", "a", "a", "b", "b", "b"),
                                                                            ("c", "c", "c")]


def test_set_on_an_unknown_condition_is_refused(write_protocol):
    from bioplastic.protocol.errors import ProtocolError

    path = write_protocol()
    with pytest.raises(ProtocolError) as info:
        load_protocol(path, ["conditions.tcr_los.tcr.lambda=1"])
    assert "no condition 'tcr_los'" in str(info.value) and "tcr_loss" in str(info.value)
    with pytest.raises(ProtocolError):
        load_protocol(path, ["conditions.extra={tcr: {form: loss, lambda: 2}}"])
    assert load_protocol(path, ["conditions.tcr_loss.tcr.lambda=2"]).condition_names == ["baseline", "tcr_loss"]
    assert load_protocol(path, ["conditions={only: {}}"]).condition_names == ["only"]


def test_seed_must_fit_64_bits(write_protocol):
    (msg,) = _errors(write_protocol, BASE.replace("seed: 1", f"seed: {2 ** 63}"))
    assert msg.startswith("seed:") and str(2 ** 63) in msg


@pytest.mark.parametrize("where", ["/tmp/elsewhere", "../up", "runs/../../up", "~/home"])
def test_output_dir_stays_under_the_working_directory(write_protocol, where):
    (msg,) = _errors(write_protocol, BASE + f"output: {{dir: '{where}'}}\n")
    assert msg.startswith("output.dir:") and "--out" in msg and where in msg


# The atlas cells added for every task x kind (docs/abrupt_atlas.md): file, task kind, model kind, and the
# factor each swept field belongs to (fields of one factor change together, e.g. optimizer and lr).
ATLAS_CELLS = {
    "abrupt_atlas_flipflop_plrnn": ("flipflop", "plrnn", {"training.optimizer": "optimizer and lr", "training.lr": "optimizer and lr",
                                                         "model.g": "start", "model.output_scale": "readout",
                                                         "task.pulse_prob": "pulse sparsity"}),
    "abrupt_atlas_delayed_addition_plrnn": ("delayed_addition", "plrnn", {
        "training.optimizer": "optimizer and lr", "training.lr": "optimizer and lr", "model.g": "start",
        "model.a_init": "start", "model.output_scale": "readout", "task.stimulus_ms": "stimulus length"}),
    "abrupt_atlas_lstm": ("evidence_accumulation", "lstm", {"training.optimizer": "optimizer and lr", "training.lr": "optimizer and lr",
                                                           "model.forget_bias": "forget bias", "task.delay_min_ms": "delay",
                                                           "task.delay_max_ms": "delay"}),
    "abrupt_atlas_flipflop_lstm": ("flipflop", "lstm", {"training.optimizer": "optimizer and lr", "training.lr": "optimizer and lr",
                                                       "model.forget_bias": "forget bias", "task.pulse_prob": "pulse sparsity"}),
    "abrupt_atlas_low_rank_adam": ("evidence_accumulation", "low_rank", {"training.lr": "lr"}),
}


@pytest.mark.parametrize("name", sorted(ATLAS_CELLS))
def test_atlas_cells_measure_learning_curves_one_factor_at_a_time(name):
    """Each added atlas cell names claim 1, trains the baseline only, of the task and kind its name says,
    with 4-6 seeds and no phase-space analysis (the atlas reads only the learning curves), and each sweep
    point changes one factor of the first point (the reference) - or, with one factor, every point is a
    value of it."""
    task_kind, model_kind, factors = ATLAS_CELLS[name]
    p = load_protocol(f"protocols/{name}.yaml")
    assert p.config.claims == [1] and p.condition_names == ["baseline"] and p.config.analysis is None
    assert 4 <= p.config.seeds <= 6
    assert set(p.sweep.zip) == set(factors)
    for point in p.points:
        c = point.protocol.conditions[0]
        assert (c.task_kind, c.model_kind) == (task_kind, model_kind)
    ref, *others = p.points
    changed = [{factors[k] for k in ref.coords if point.coords[k] != ref.coords[k]} for point in others]
    assert all(len(c) == 1 for c in changed), changed
    assert {f for c in changed for f in c} == set(factors.values()) or len(set(factors.values())) == 1


def test_claim_4_with_adam_protocols_share_their_baselines():
    """chaos_adam (TCR loss), chaos_adam_plasticity (TCR plasticity) and chaos_adam_readout (both, far
    from the solution) ask claim 4 at the same settings: the first two train the same baseline networks
    at g 1.0-4 (>= 1000 iterations, >= 10 seeds, the same root seed), each TCR form at two strengths a
    decade apart; the readout protocol changes the readout scale alone."""
    loss, plastic, readout = (load_protocol(f"protocols/{n}.yaml") for n in ("chaos_adam", "chaos_adam_plasticity",
                                                                             "chaos_adam_readout"))
    g = [1.0, 1.5, 2.0, 3.0, 4.0]
    assert loss.sweep.grid == plastic.sweep.grid == {"model.g": g}
    assert readout.sweep.grid == {"model.g": [1.0, 4.0]}
    for p in (loss, plastic, readout):
        assert 4 in p.config.claims and p.config.seeds >= 10 and p.config.seed == loss.config.seed
        assert p.condition_names[0] == "baseline" and p.conditions[0].tcr.form == "none"
        assert p.conditions[0].training.iterations >= 1000 and p.conditions[0].training.optimizer == "adam"
    assert loss.conditions[0] == plastic.conditions[0]
    far, near = readout.conditions[0], loss.conditions[0]
    assert (far.model.output_scale, near.model.output_scale) == (1.0, 0.01)
    assert far.model.model_copy(update={"output_scale": 0.01}) == near.model and far.training == near.training
    assert [c.tcr.lambda_ for c in loss.conditions[1:]] == [10.0, 100.0]
    assert {c.tcr.form for c in loss.conditions[1:]} == {"loss"}
    assert [c.tcr.plasticity.eta_F for c in plastic.conditions[1:]] == [0.003, 0.03]
    assert {c.tcr.form for c in plastic.conditions[1:]} == {"plasticity"}
    assert [c.tcr.form for c in readout.conditions[1:]] == ["loss", "plasticity"]
    # the start's distance from chaos_adam's trained baselines at g 1.0, near to far, at g 1 and 3
    distance = load_protocol("protocols/chaos_adam_distance.yaml")
    init = distance.conditions[0].training.init
    assert (init.from_run, init.condition, init.select) == (loss.config.output.dir, "baseline", {"model.g": 1.0})
    assert distance.config.seed == loss.config.seed and distance.config.seeds == loss.config.seeds
    assert distance.sweep.grid == {"model.g": [1.0, 3.0], "training.init.distance": [0.25, 0.5, 1.0]}
    assert distance.conditions[0].model == near.model
    assert distance.conditions[0].training.model_copy(update={"init": None}) == near.training
    assert [c.tcr.form for c in distance.conditions[1:]] == ["loss", "plasticity"]
