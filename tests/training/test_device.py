"""training.device (cpu | cuda | auto) and --device: resolution in one place, a clear error where torch
sees no GPU, the CPU path untouched, worker processes told, and - where a GPU exists - the same
numbers on it as on the CPU to float tolerance. The GPU tests are skipped elsewhere."""
from __future__ import annotations

import contextlib
import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import xarray as xr

import bioplastic.device as device_mod
from bioplastic import analyze, load_protocol, predict, train
from bioplastic.analysis.fixed_points import find_fixed_points, plrnn_exact_fixed_points, sample_initial_states
from bioplastic.device import DeviceError, device_scope, resolve_device
from bioplastic.learning import RULES, Batch
from bioplastic.networks import build_network
from bioplastic.protocol.errors import ProtocolError
from bioplastic.regularizers.tcr_plasticity import PlasticityConfig, attach_plasticity
from bioplastic.storage.io import safe_torch_load
from bioplastic.training.executors import LocalPoolExecutor
from bioplastic.training.loop import EnsembleTrainer, Interrupted
from bioplastic.training.units import groups, plan_units

GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible")

#: a tiny float64 protocol: plain, TCR loss and TCR plasticity (anti-Hebbian, freeze-in), with an analysis
DATA = {
    "name": "device", "seed": 5, "seeds": 2,
    "task": {"kind": "evidence_accumulation", "stimulus_ms": 200, "delay_min_ms": 40, "delay_max_ms": 100, "response_ms": 60},
    "model": {"kind": "leaky_rate", "n_units": 10, "g": 1.5},
    "training": {"lr": 1e-2, "iterations": 12, "batch_size": 8, "checkpoint_every": 4, "eval_every": 3,
                 "eval_trials": 16, "dtype": "float64"},
    "conditions": {"baseline": {}, "tcr_loss": {"tcr": {"form": "loss", "lambda": 0.5}},
                   "tcr_plasticity": {"tcr": {"form": "plasticity", "plasticity": {"eta_F": 0.05, "kappa": 0.1}}}},
    "analysis": {"initial_states": 8, "trials": 4},
    "output": {"figures": False},
}


def protocol_on(device: str | None, data: dict = DATA):
    d = copy.deepcopy(data)
    if device is not None:
        d["training"]["device"] = device
    return load_protocol(d)


@pytest.fixture
def no_gpu(monkeypatch):
    """This machine as one where torch sees no CUDA device (whatever it has)."""
    monkeypatch.setattr(device_mod, "cuda_available", lambda: False)


# --------------------------------------------------------------------------------------------- resolution
def test_auto_takes_a_gpu_only_when_torch_sees_one(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu") and resolve_device(None) == torch.device("cpu")
    monkeypatch.setattr(device_mod, "cuda_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(device_mod, "cuda_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda") == torch.device("cuda")


def test_auto_here_is_what_torch_sees():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_cuda_where_torch_sees_no_gpu_is_an_error_naming_the_field(no_gpu):
    with pytest.raises(DeviceError) as err:
        resolve_device("cuda")
    msg = str(err.value)
    assert msg.startswith("training.device: expected cpu or auto") and "got 'cuda'" in msg and "--device cpu" in msg
    with pytest.raises(DeviceError, match=r"^--device: expected cpu or auto.*got 'cuda'"):
        resolve_device("cuda", "--device")
    with pytest.raises(DeviceError, match="expected one of cpu, cuda, auto; got 'tpu'"):
        resolve_device("tpu")
    with pytest.raises(DeviceError):  # the trainer resolves the members' setting
        EnsembleTrainer(groups(protocol_on("cuda"))[0], 5)


def test_the_schema_takes_cpu_cuda_or_auto_shared_by_every_condition():
    assert protocol_on(None).config.training.device == "cpu"  # the default: the same numbers everywhere
    assert "device: cpu" in protocol_on(None).text
    with pytest.raises(ProtocolError, match=r"training\.device: expected 'cpu', 'cuda' or 'auto'"):
        protocol_on("gpu")
    data = copy.deepcopy(DATA)
    data["conditions"]["tcr_loss"]["training"] = {"device": "auto"}
    with pytest.raises(ProtocolError, match=r"conditions\.tcr_loss\.training\.device: must be the same in every condition"):
        load_protocol(data)


# --------------------------------------------------------------------------------------------- command line
def test_run_on_cuda_without_a_gpu_exits_2_with_the_field_and_writes_nothing(no_gpu, write_protocol, tmp_path, cli):
    path = write_protocol()
    code, _, err = cli("run", path, "--out", tmp_path / "flag", "--device", "cuda", "--quiet")
    assert code == 2 and "Traceback" not in err
    assert "training.device: expected cpu or auto" in err and "got 'cuda'" in err
    assert not (tmp_path / "flag").exists()
    text = path.read_text().replace("  dtype: float64\n", "  dtype: float64\n  device: cuda\n")
    code, _, err = cli("run", write_protocol(text, "cuda.yaml"), "--out", tmp_path / "field", "--quiet")
    assert code == 2 and "training.device" in err and "got 'cuda'" in err and "Traceback" not in err
    assert not (tmp_path / "field").exists()


def test_analyze_on_cuda_without_a_gpu_exits_2(no_gpu, tiny_run, cli):
    code, _, err = cli("analyze", tiny_run, "--device", "cuda")
    assert code == 2 and err.startswith("error: --device: expected cpu or auto") and "Traceback" not in err
    assert not (tiny_run / "analysis.nc").exists()


def test_device_cpu_gives_the_numbers_of_no_flag_bit_for_bit(write_protocol, tmp_path, cli):
    path = write_protocol()
    runs = {}
    for name, extra in (("default", ()), ("cpu", ("--device", "cpu"))):
        code, _, err = cli("run", path, "--out", tmp_path / name, "--quiet", "--executor", "inprocess", *extra)
        assert code == 0, err
        runs[name] = xr.load_dataset(tmp_path / name / "results.nc", engine="h5netcdf")
    a, b = runs["default"], runs["cpu"]
    assert a.attrs["device"] == b.attrs["device"] == "cpu"
    assert a.attrs["protocol"] == b.attrs["protocol"] and "device: cpu" in a.attrs["protocol"]
    assert set(a.data_vars) == set(b.data_vars)
    for v in a.data_vars:
        np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=v)


# --------------------------------------------------------------------------------------------- workers
@pytest.mark.integration
@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible: cuda would not fail in the workers")
def test_worker_processes_train_on_the_protocols_device(write_protocol, tmp_path):
    """The protocol text carries training.device to each worker, which resolves it itself: asked for
    cuda on a machine without one, the worker refuses (this process resolves nothing here)."""
    text = write_protocol().read_text().replace("  dtype: float64\n", "  dtype: float64\n  device: cuda\n")
    protocol = load_protocol(write_protocol(text, "cuda.yaml"))
    with pytest.raises(DeviceError, match="training.device"):
        LocalPoolExecutor(workers=1).run(protocol.text, plan_units(protocol)[:1], tmp_path / "out")


# --------------------------------------------------------------------------------------------- device discipline
def _meta_batch(E, B, T, I, O, N):
    m = lambda *shape: torch.ones(*shape, device="meta")  # noqa: E731
    return Batch(m(E, B, T, I), m(E, B, T, O), m(E, B, T, O), m(E, B, T), m(E, B, T, N), m(E), None, "none", True)


CASES = [("leaky_rate", "bptt", {}, None), ("low_rank", "bptt", {}, None), ("plrnn", "bptt", {}, None),
         ("lstm", "bptt", {}, None), ("leaky_rate", "rflo", {}, None), ("leaky_rate", "rflo", {"variant": "online"}, None),
         ("plrnn", "eprop", {}, None), ("plrnn", "eprop", {"variant": "online"}, None),
         ("low_rank", "node_perturbation", {}, None),
         ("leaky_rate", "bptt", {}, {}), ("leaky_rate", "bptt", {}, {"F_max": 1.0}),
         ("leaky_rate", "rflo", {}, {"rule": "tsodyks_markram"}), ("leaky_rate", "node_perturbation", {}, {})]


@pytest.mark.parametrize("kind, rule, options, plasticity", CASES)
def test_networks_and_rules_compute_where_the_parameters_are(kind, rule, options, plasticity):
    """A network moved to a device runs there, and every rule's update stays there: checked on torch's
    meta device (no numbers; it refuses tensors of another device), so it runs without a GPU. A
    tensor made on the CPU in the step (a factory call without ``device``) makes it fail. The
    plasticity's recurrence relies on the training loop's device scope, as in training."""
    E, B, T, I, O, N = 2, 3, 5, 2, 1, 5
    net = build_network(kind, {"n_units": N, "sigma_h": 0.1}, n_inputs=I, n_outputs=O, dt_ms=10.0,
                        rngs=[np.random.default_rng(e) for e in range(E)])
    if plasticity is not None:
        attach_plasticity(net, SimpleNamespace(form="plasticity", plasticity=PlasticityConfig(**plasticity)))
    net.to("meta")
    assert net.device.type == "meta" and all(p.is_leaf and p.requires_grad for p in net.params.values())
    assert all(b.device.type == "meta" for b in net.buffers.values())
    cls = RULES.get(rule)
    batch = _meta_batch(E, B, T, I, O, N)
    alive = torch.ones(E, dtype=torch.bool, device="meta")
    with device_scope(torch.device("meta")) if plasticity is not None else contextlib.nullcontext():
        keys = {"member_keys": [0, 1]} if rule in ("rflo", "eprop") else {}  # (a key from the weights reads them)
        r = cls(cls.Config(**options), net, **keys)
        if rule == "node_perturbation":  # (its own perturbation hashes the batch's numbers: given here)
            res = r.estimate(batch, alive, torch.ones(E, B, T, N, device="meta"))
        else:
            res = r.step(batch, alive)
    assert {res.loss_e.device.type, res.task_loss_e.device.type, res.term_e.device.type} == {"meta"}
    assert {g.device.type for g in res.grads.values()} == {"meta"}
    assert set(res.grads) == set(net.params)


def test_moving_a_network_keeps_its_dicts_and_leaves():
    """The optimizer and the rules hold the ``params`` dict: moving fills the same dict; on the device
    each parameter is again a leaf that requires grad; moving to where it is changes nothing."""
    net = build_network("leaky_rate", {"n_units": 6, "connection_prob": 0.5}, n_inputs=2, n_outputs=1, dt_ms=10.0,
                        rngs=[np.random.default_rng(e) for e in range(2)])
    attach_plasticity(net, SimpleNamespace(form="plasticity", plasticity=PlasticityConfig()))
    params, W = net.params, net.params["W"]
    assert net.to("cpu") is net and net.params is params and net.params["W"] is W and net.device == torch.device("cpu")
    net.to("meta")
    assert net.params is params and net.device.type == "meta"
    assert all(p.device.type == "meta" and p.is_leaf and p.requires_grad for p in net.params.values())
    assert net.buffers["mask"].device.type == "meta" and net.plasticity.eta_e.device.type == "meta"


# --------------------------------------------------------------------------------------------- on a GPU
def _compare(a: xr.Dataset, b: xr.Dataset, rtol: float, atol: float, skip=()):
    assert set(a.data_vars) == set(b.data_vars)
    for v in a.data_vars:
        if v in skip:
            continue
        x, y = a[v].values, b[v].values
        assert x.shape == y.shape, v
        if x.dtype.kind in "fc":
            np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, equal_nan=True, err_msg=v)
        else:
            np.testing.assert_array_equal(x, y, err_msg=v)


@GPU
def test_cuda_training_analysis_and_predictions_equal_the_cpu_to_float_tolerance():
    cpu_p, gpu_p = protocol_on("cpu"), protocol_on("cuda")
    cpu, gpu = train(cpu_p), train(gpu_p)
    assert cpu.attrs["device"] == "cpu" and gpu.attrs["device"].startswith("cuda:")
    _compare(gpu, cpu, rtol=1e-6, atol=1e-9)
    cpu_a, gpu_a = analyze(cpu, cpu_p), analyze(gpu, gpu_p)  # on each protocol's device
    assert gpu_a.attrs["device"].startswith("cuda:") and cpu_a.attrs["device"] == "cpu"
    for v in ("trajectory_change", "participation_ratio"):
        np.testing.assert_allclose(gpu_a[v].values, cpu_a[v].values, rtol=1e-6, atol=1e-9, equal_nan=True, err_msg=v)
    for v in ("fp_valid", "fp_is_fixed", "fp_kind"):  # the same points, of the same kinds
        np.testing.assert_array_equal(gpu_a[v].values, cpu_a[v].values, err_msg=v)
    np.testing.assert_allclose(gpu_a["fp_x"].values, cpu_a["fp_x"].values, rtol=1e-6, atol=1e-8, equal_nan=True)
    cpu_pred, gpu_pred = predict(cpu, cpu_p, cpu_a, trials=16), predict(gpu, gpu_p, gpu_a, trials=16)
    assert gpu_pred.attrs["device"].startswith("cuda:")
    for v in ("accuracy", "fraction_ramping", "participation_ratio", "plasticity_mean_abs", "n_attractors"):
        np.testing.assert_allclose(gpu_pred[v].values, cpu_pred[v].values, rtol=1e-5, atol=1e-8, equal_nan=True, err_msg=v)
    np.testing.assert_allclose(gpu_pred["mean_rate"].values, cpu_pred["mean_rate"].values, rtol=1e-6, atol=1e-9,
                               equal_nan=True)
    # the CPU's analysis of the GPU's results: a run trained on a GPU is read anywhere
    cross = analyze(gpu, gpu_p, device="cpu")
    assert cross.attrs["device"] == "cpu"
    np.testing.assert_array_equal(cross["fp_kind"].values, cpu_a["fp_kind"].values)


@GPU
def test_cuda_resume_states_are_cpu_files_and_resume_to_the_same_numbers(tmp_path):
    (members,) = [g for g in groups(protocol_on("cuda")) if g[0].tcr.form != "plasticity"]
    state = tmp_path / "state.pt"
    with pytest.raises(Interrupted):
        EnsembleTrainer(members, 5).run(state, interrupt_at=6)
    saved = safe_torch_load(state)
    tensors = [t for part in ("params", "opt", "rule") for t in saved[part].values() if isinstance(t, torch.Tensor)]
    assert tensors and {t.device.type for t in tensors} == {"cpu"}
    trainer = EnsembleTrainer(members, 5)
    assert trainer.device.type == "cuda" and trainer.net.params["W"].device.type == "cuda"
    resumed, straight = trainer.run(state), EnsembleTrainer(members, 5).run()
    assert resumed.device.startswith("cuda:")
    for k in straight.weights:
        np.testing.assert_allclose(resumed.weights[k], straight.weights[k], rtol=1e-9, atol=1e-12, err_msg=k)


@GPU
def test_cuda_run_through_worker_processes_and_the_command_line(write_protocol, tmp_path, cli):
    path = write_protocol()
    code, _, err = cli("run", path, "--out", tmp_path / "gpu", "--quiet", "--device", "cuda", "--workers", "2")
    assert code == 0, err
    code, _, err = cli("run", path, "--out", tmp_path / "cpu", "--quiet", "--executor", "inprocess")
    assert code == 0, err
    gpu = xr.load_dataset(tmp_path / "gpu" / "results.nc", engine="h5netcdf")
    cpu = xr.load_dataset(tmp_path / "cpu" / "results.nc", engine="h5netcdf")
    assert gpu.attrs["device"].startswith("cuda:") and "device: cuda" in gpu.attrs["protocol"]
    _compare(gpu, cpu, rtol=1e-6, atol=1e-9)
    code, _, err = cli("analyze", tmp_path / "cpu", "--device", "cuda")
    assert code == 0, err
    assert xr.load_dataset(tmp_path / "cpu" / "analysis.nc", engine="h5netcdf").attrs["device"].startswith("cuda:")


@GPU
def test_fixed_points_on_cuda_equal_the_cpus():
    rng = np.random.default_rng(0)
    for kind, n in (("lstm", 6), ("leaky_rate", 8)):  # autograd Jacobians; closed-form rate map
        net = build_network(kind, {"n_units": n}, n_inputs=2, n_outputs=1, dt_ms=10.0,
                            rngs=[np.random.default_rng(e) for e in range(2)], dtype=torch.float64)
        S = net.full_state_dim()
        x0 = sample_initial_states(rng.normal(0, 0.5, (2, 3, 10, S)), 12, noise_std=0.05, rng=np.random.default_rng(1))
        u = np.zeros((2, 2))
        cpu = find_fixed_points(net, u, x0)
        gpu = find_fixed_points(copy.deepcopy(net).to("cuda"), u, x0)
        np.testing.assert_array_equal(gpu.valid_exp, cpu.valid_exp, err_msg=kind)
        np.testing.assert_array_equal(gpu.kind_exp, cpu.kind_exp, err_msg=kind)
        np.testing.assert_allclose(gpu.x_expxs, cpu.x_expxs, rtol=1e-6, atol=1e-9, equal_nan=True, err_msg=kind)
    plrnn = build_network("plrnn", {"n_units": 5}, n_inputs=2, n_outputs=1, dt_ms=10.0,
                          rngs=[np.random.default_rng(e) for e in range(2)], dtype=torch.float64)
    cpu, gpu = plrnn_exact_fixed_points(plrnn, np.zeros((2, 2))), plrnn_exact_fixed_points(copy.deepcopy(plrnn).to("cuda"), np.zeros((2, 2)))
    np.testing.assert_array_equal(gpu.valid_exp, cpu.valid_exp)
    np.testing.assert_allclose(gpu.x_expxs, cpu.x_expxs, rtol=1e-9, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("kind", ["leaky_rate", "lstm", "plrnn"])
def test_the_fixed_point_search_runs_where_the_network_is_whatever_the_default_device(kind):
    """The analyses run inside a device scope (torch's default device set to the GPU); the finder must
    follow the network's device and keep its numpy steps on the CPU. A CPU network searched inside
    a scope of another device (meta: it holds no numbers) gives the same points as outside it."""
    net = build_network(kind, {"n_units": 5}, n_inputs=2, n_outputs=1, dt_ms=10.0,
                        rngs=[np.random.default_rng(e) for e in range(2)])
    S = net.full_state_dim()
    x0 = sample_initial_states(np.random.default_rng(0).normal(0, 0.5, (2, 3, 6, S)), 6, noise_std=0.05,
                               rng=np.random.default_rng(1))
    u = np.zeros((2, 2))
    plain = find_fixed_points(net, u, x0)
    with device_scope(torch.device("meta")):
        scoped = find_fixed_points(net, u, x0)
        exact = plrnn_exact_fixed_points(net, u) if kind == "plrnn" else None
    np.testing.assert_array_equal(scoped.x_expxs, plain.x_expxs)
    np.testing.assert_array_equal(scoped.eigenvalues_expxs, plain.eigenvalues_expxs)
    if exact is not None:
        np.testing.assert_array_equal(exact.x_expxs, plrnn_exact_fixed_points(net, u).x_expxs)
