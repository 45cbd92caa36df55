"""Bad input is bounded before any work: alias bombs, huge sweeps and seeds, duplicate keys,
non-finite numbers, sizes that cannot fit in memory, and unusable output folders are refused
quickly (exit status 2), naming the field, writing nothing."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bioplastic import ProtocolError, load_protocol
from bioplastic.cli import main
from bioplastic.protocol.errors import describe
from bioplastic.protocol.limits import MAX_SEEDS, MAX_SWEEP_POINTS, MEMORY_ENV, format_bytes
from bioplastic.protocol.paths import OutputPathError, check_output_dir
from bioplastic.tasks import TASKS

BASE = """
name: t
seed: 1
task: {kind: evidence_accumulation}
model: {kind: leaky_rate, n_units: 8}
"""

#: nine levels of ten aliases each: 10^9 values written in a few lines
_LEVELS = ["&x0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"] + [f"&x{i} [" + ", ".join([f"*x{i - 1}"] * 10) + "]" for i in range(1, 9)]
BOMB = "[" + ", ".join(_LEVELS) + "]"


def _errors(write_protocol, text, overrides=()):
    with pytest.raises(ProtocolError) as info:
        load_protocol(write_protocol(text), list(overrides))
    return info.value.problems


def _validate_subprocess(path: Path, *args, timeout=60):
    """`validate` in a child process: a hang fails by the timeout instead of blocking the suite."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "bioplastic", "validate", str(path), *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=path.parent)


@pytest.mark.integration
@pytest.mark.parametrize("where", ["seeds: BOMB\n", "sweep:\n  grid:\n    model.g: BOMB\n"])
def test_alias_bomb_is_refused_quickly_naming_the_field(write_protocol, where):
    path = write_protocol(BASE + where.replace("BOMB", BOMB))
    proc = _validate_subprocess(path, timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    field = "seeds" if where.startswith("seeds") else "sweep.grid.model.g"
    assert f"  - {field}" in proc.stderr and "aliases" in proc.stderr
    assert len(proc.stderr) < 2000 and proc.stdout == ""


def test_alias_bomb_in_an_override_names_the_option(write_protocol):
    with pytest.raises(ProtocolError, match=r"--set seeds.*aliases"):
        load_protocol(write_protocol(BASE), [f"seeds={BOMB}"])


def test_recursive_alias_is_refused(write_protocol):
    (msg,) = _errors(write_protocol, BASE + "description: &d [*d]\n")
    assert msg.startswith("description:") and "recursive" in msg


def test_small_aliases_still_work(write_protocol):
    p = load_protocol(write_protocol(BASE + "tcr: &t {lambda: 0.5}\nconditions: {a: {tcr: *t}, b: {}}\n"))
    assert p.conditions[0].tcr.lambda_ == 0.5


def test_describe_truncates_without_building_a_full_repr():
    big = [[1] * 10_000] * 10_000  # a full repr would be ~300 MB
    text = describe(big)
    assert len(text) < 100 and "10000 items" in text
    assert len(describe("x" * 10 ** 7)) <= 60
    assert describe(10 ** 5000)  # too long for str(): still described


@pytest.mark.integration
def test_huge_sweep_grid_is_refused_before_expanding(write_protocol):
    vals = "[" + ", ".join(str(0.01 * (i + 1)) for i in range(100)) + "]"
    path = write_protocol(BASE + f"sweep:\n  grid:\n    model.g: {vals}\n    training.lr: {vals}\n    tcr.lambda: {vals}\n")
    proc = _validate_subprocess(path, timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "  - sweep: 1000000 points" in proc.stderr and str(MAX_SWEEP_POINTS) in proc.stderr


def test_too_many_networks_in_a_sweep(write_protocol):
    vals = "[" + ", ".join(str(0.1 * (i + 1)) for i in range(100)) + "]"
    (msg,) = _errors(write_protocol, BASE + f"seeds: 5000\nsweep: {{grid: {{model.g: {vals}}}}}\n")
    assert msg.startswith("sweep: 100 points x 1 condition(s) x 5000 seeds = 500000 networks")


def test_seeds_bounded(write_protocol, capsys):
    path = write_protocol(BASE + "seeds: 1000000\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "  - seeds: expected less than or equal to 10000" in err
    assert load_protocol(write_protocol(BASE + f"seeds: {MAX_SEEDS}\n")).config.seeds == MAX_SEEDS


def test_duplicate_keys_are_refused_naming_key_and_lines(write_protocol, capsys):
    path = write_protocol(BASE + "training:\n  lr: 1e-3\n  lr: 10\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "  - training.lr: duplicate key: given on line 7 and again on line 8" in err
    (msg,) = _errors(write_protocol, BASE + "seed: 2\n")
    assert msg.startswith("seed: duplicate key")


def test_duplicate_key_in_a_model_spec_names_the_model_field(write_protocol, tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "dup.yaml").write_text("kind: leaky_rate\nn_units: 8\ng: 1.0\ng: 2.0\n")
    (tmp_path / "protocols").mkdir()  # specs are looked up in models/ beside the protocol's folder
    with pytest.raises(ProtocolError) as info:
        load_protocol(write_protocol(BASE.replace("{kind: leaky_rate, n_units: 8}", "{spec: dup}"), name="protocols/p.yaml"))
    (msg,) = info.value.problems
    assert msg.startswith("model.g: duplicate key: given on line 3 and again on line 4")


@pytest.mark.parametrize("field", ["model.g", "training.lr", "tcr.lambda", "training.clip_grad_norm",
                                   "tcr.plasticity.tau_F_ms", "task.dt_ms", "analysis.noise_std"])
@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_non_finite_numbers_are_refused_naming_the_field(write_protocol, field, value):
    section, key = field.rsplit(".", 1)
    text = BASE.replace("{kind: leaky_rate, n_units: 8}", "{kind: leaky_rate, n_units: 8, KEY}" if section == "model" else "{kind: leaky_rate, n_units: 8}")
    if section == "model":
        text = text.replace("KEY", f"{key}: {value}")
    elif section == "task":
        text = text.replace("{kind: evidence_accumulation}", f"{{kind: evidence_accumulation, {key}: {value}}}")
    elif section == "tcr.plasticity":
        text += f"tcr: {{plasticity: {{{key}: {value}}}}}\n"
    else:
        text += f"{section}: {{{key}: {value}}}\n"
    problems = _errors(write_protocol, text)
    assert any(p.startswith(f"{field}:") and "finite" in p for p in problems), problems


def test_nan_in_a_file_names_the_field_not_yaml(write_protocol, capsys):
    path = write_protocol(BASE + "training: {lr: .nan}\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "  - training.lr: expected a finite number" in err and "not valid YAML" not in err


@pytest.mark.parametrize("override, field", [
    ("model.n_units=200000", "model.n_units"),
    ("training.batch_size=100000000", "training.batch_size"),
    ("training.iterations=1000000000000", "training.iterations"),
    ("training.eval_trials=1000000000", "training.eval_trials"),
    ("task.dt_ms=1e-6", "task.dt_ms"),
    ("analysis={initial_states: 1000000000}", "analysis.initial_states"),
])
def test_sizes_that_cannot_fit_are_refused_naming_the_field(write_protocol, tmp_path, capsys, override, field):
    path = write_protocol(BASE)
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--set", override, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"  - {field}:" in err, err
    assert not out.exists()


@pytest.mark.parametrize("override, field", [
    ("model.n_units=2000", "model.n_units"),
    ("training.batch_size=100000", "training.batch_size"),
    ("task.dt_ms=0.01", "task.dt_ms"),
    ("analysis={initial_states: 100000}", "analysis.initial_states"),
    ("training.eval_trials=100000", "training.eval_trials"),
])
def test_memory_estimate_names_the_driving_field_the_estimate_and_the_limit(write_protocol, monkeypatch, override, field):
    path = write_protocol(BASE)
    load_protocol(path, [override])  # fits in a generous limit
    monkeypatch.setenv(MEMORY_ENV, "100M")
    with pytest.raises(ProtocolError) as info:
        load_protocol(path, [override])
    msg = info.value.problems[0]
    assert msg.startswith(f"{field}: with ") and "would need about" in msg and "100 MiB" in msg and MEMORY_ENV in msg


def test_an_lstm_ensemble_too_large_for_memory_is_refused_before_training_with_the_numbers(write_protocol, tmp_path,
                                                                                       monkeypatch, capsys):
    """The LSTM's BPTT keeps 8 numbers per step and state unit (2N) for each of its E x B trials: an
    ensemble of 16 LSTMs of 100 units with batches of 4096 over 100 steps would hold ~33 GiB."""
    path = write_protocol(BASE.replace("{kind: leaky_rate, n_units: 8}", "{kind: lstm, n_units: 100}")
                          + "training: {batch_size: 4096, ensemble_size: 16}\nseeds: 16\n")
    monkeypatch.setenv(MEMORY_ENV, "8G")
    with pytest.raises(ProtocolError) as info:
        load_protocol(path)
    msg = info.value.problems[0]
    task = TASKS.get("evidence_accumulation")
    T = task(task.Config()).n_steps
    need = format_bytes(16 * 4096 * T * 200 * 8 * 4)
    assert msg.startswith(f"training.batch_size: with 4096, the run would need about {need} of memory for activations "
                          f"kept for backpropagation: 16 networks x 4096 trials x {T} steps x 200 state x 8 x 4 bytes"), msg
    assert "8 GiB this machine has available" in msg and MEMORY_ENV in msg
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 2  # refused before anything is trained or written
    assert "training.batch_size: with 4096" in capsys.readouterr().err and not out.exists()


def test_the_exact_plasticity_gradients_memory_is_counted(write_protocol, monkeypatch):
    """``tcr.plasticity.gradient: exact`` keeps the fast efficacies of every step for the backward
    pass (E x B x T x N^2, twice): a size the detached path runs in is refused with it."""
    text = BASE.replace("{kind: leaky_rate, n_units: 8}", "{kind: leaky_rate, n_units: 200}") + "training: {batch_size: 64}\n"
    plastic = "tcr: {form: plasticity, plasticity: {gradient: %s}}\n"
    monkeypatch.setenv(MEMORY_ENV, "2G")
    load_protocol(write_protocol(text + plastic % "detached", "d.yaml"))
    with pytest.raises(ProtocolError) as info:
        load_protocol(write_protocol(text + plastic % "exact", "e.yaml"))
    assert "fast efficacies kept for the exact gradient" in info.value.problems[0]


def test_memory_of_a_sweep_point_is_checked_before_training(write_protocol, monkeypatch):
    monkeypatch.setenv(MEMORY_ENV, "1G")
    problems = _errors(write_protocol, BASE + "sweep: {grid: {model.n_units: [8, 20000]}}\n")
    assert any(p.startswith("sweep.grid.model.n_units = 20000: model.n_units: with 20000") for p in problems), problems


def test_bad_memory_override_is_a_clear_error(write_protocol, monkeypatch):
    monkeypatch.setenv(MEMORY_ENV, "lots")
    with pytest.raises(ProtocolError, match=MEMORY_ENV):
        load_protocol(write_protocol(BASE))


def test_shipped_protocols_fit_a_small_machine(monkeypatch):
    from bioplastic.resources import shipped_protocols

    monkeypatch.setenv(MEMORY_ENV, "4G")
    for name in shipped_protocols():
        load_protocol(name)


# ------------------------------------------------------------------------------------------ --out
def _refused(path: Path, *words: str):
    with pytest.raises(OutputPathError) as info:
        check_output_dir(path)
    msg = str(info.value)
    assert "--out" in msg and all(w in msg for w in words), msg
    assert isinstance(info.value, ProtocolError)


def test_out_that_is_a_file_or_under_one(tmp_path):
    (tmp_path / "f").write_text("x")
    _refused(tmp_path / "f", "existing file")
    _refused(tmp_path / "f" / "sub", "which is a file")
    assert (tmp_path / "f").read_text() == "x" and not (tmp_path / "f.tmp").exists()


def test_out_dangling_symlink(tmp_path):
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    _refused(tmp_path / "link", "symbolic link")
    _refused(tmp_path / "link" / "sub", "symbolic link")
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("path", ["/proc/bioplastic_out", "/proc", "/sys/bioplastic_out"])
def test_out_in_a_pseudo_filesystem(path):
    _refused(Path(path), "pseudo file system")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write anywhere")
def test_out_unwritable(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        _refused(ro / "out", "cannot write")
        _refused(ro, "cannot write")
    finally:
        ro.chmod(0o755)


def test_good_out_folders_pass_and_nothing_is_written(tmp_path):
    check_output_dir(tmp_path / "new" / "deeper")
    check_output_dir(tmp_path)
    (tmp_path / "target").mkdir()
    (tmp_path / "good_link").symlink_to(tmp_path / "target")
    check_output_dir(tmp_path / "good_link")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good_link", "target"]


def test_protocol_output_dir_stays_confined(write_protocol):
    problems = _errors(write_protocol, BASE + "output: {dir: /tmp/x}\n")
    assert problems[0].startswith("output.dir:")


def test_limits_are_documented():
    from bioplastic.protocol.docs import schema_text

    text = schema_text(markdown=True)
    assert "## Limits" in text and MEMORY_ENV in text and f"{MAX_SWEEP_POINTS:,}" in text
    doc = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
    assert doc.read_text().strip() == textwrap.dedent(text).strip(), "regenerate: python -m bioplastic schema --markdown > docs/protocol.md"
