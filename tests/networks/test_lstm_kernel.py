"""The LSTM's compiled kernel (networks/lstm_kernel.py): the same equations as the eager layer and
the float64 oracle, whichever path runs; a member's numbers independent of the ensemble (also at the
small sizes where MKL's batched products round differently); the eager fallback where no compiler
works; compiled files only in the cache folder."""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from bioplastic.networks import build_network, lstm_kernel
from bioplastic.networks.lstm import lstm_recurrence, lstm_reference

F64 = dict(dtype=torch.float64)
TOL = dict(rtol=4096 * torch.finfo(torch.float64).eps, atol=4096 * torch.finfo(torch.float64).eps)
needs_kernel = pytest.mark.skipif(lstm_kernel.kernel() is None, reason=f"LSTM kernel: {lstm_kernel.status()}")


def _layer_args(E=2, B=3, T=7, N=4, n_in=2, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    args = [torch.randn(E, B, T, n_in, generator=g, dtype=dtype), torch.randn(E, 4 * N, n_in, generator=g, dtype=dtype),
            torch.randn(E, 4 * N, generator=g, dtype=dtype), torch.randn(E, 4 * N, N, generator=g, dtype=dtype) / N ** 0.5,
            torch.randn(E, B, N, generator=g, dtype=dtype), torch.randn(E, B, N, generator=g, dtype=dtype)]
    return [a.requires_grad_() for a in args], torch.randn(E, B, T, N, generator=g, dtype=dtype)


def _outputs_and_grads(args, noise, w, compiled=None):
    """States and gradients; ``compiled`` (if given): whether the compiled layer must have run."""
    h, c, hc = lstm_recurrence(*args, noise)
    if compiled is not None:
        assert h.grad_fn.name() == ("LSTMRecurrenceCompiledBackward" if compiled else "_LSTMRecurrenceBackward")
    loss = (h * w[..., :h.shape[-1]]).sum() + (c.square() * w[..., h.shape[-1]:]).sum() + hc.square().sum()
    return [h.detach(), c.detach(), *torch.autograd.grad(loss, args)]


def _noncontiguous(t: torch.Tensor, units_strided: bool) -> torch.Tensor:
    """The same values, not contiguous: the last dimension of stride 2, or of stride 1 in padded rows."""
    if units_strided:
        return t.repeat_interleave(2, -1)[..., ::2]
    return torch.cat([t, t.new_zeros(t.shape[:-1] + (3,))], -1)[..., :t.shape[-1]]


#: block_bytes of one step, of 3 steps (T = 7: blocks of 1, 3, 3 - a partial block and the two
#: delta buffers reused), and the default (all steps in one block), at the default sizes
_B3G16 = 3 * 16 * 8


@needs_kernel
@pytest.mark.parametrize("case", ["blocks of 1 step", "blocks of 3 steps", "default blocks", "E=B=T=N=1",
                                  "B=N=1", "T=1", "inputs with padded rows",
                                  "inputs with strided units"])
def test_compiled_layer_matches_the_plain_loop_in_float64(case, monkeypatch):
    """States and the gradients in every input against autograd through the plain cell, with noise
    and gradients from outside on h, c and (h, c); blocks of delta of one, three and all steps,
    sizes of 1, and inputs, noise and outside gradients that are not contiguous."""
    monkeypatch.setattr(lstm_kernel, "BLOCK_BYTES", {"blocks of 1 step": 1, "blocks of 3 steps": 3 * _B3G16}.get(case, 1 << 19))
    sizes = {"E=B=T=N=1": dict(E=1, B=1, T=1, N=1, n_in=1), "B=N=1": dict(E=2, B=1, T=5, N=1, n_in=1),
             "T=1": dict(T=1)}.get(case, {})
    args, noise = _layer_args(**sizes)
    if case.startswith("inputs with"):
        strided = case.endswith("units")
        args, noise = [_noncontiguous(a.detach(), strided).requires_grad_() for a in args], _noncontiguous(noise, strided)
    h_ref, c_ref = lstm_reference(*args, noise)
    N = h_ref.shape[-1]
    w = torch.randn(h_ref.shape[:-1] + (2 * N,), generator=torch.Generator().manual_seed(1), **F64)
    if case.startswith("inputs with"):
        w = _noncontiguous(w, strided)
    got = _outputs_and_grads(args, noise, w, compiled=True)
    loss = (h_ref * w[..., :N]).sum() + (c_ref.square() * w[..., N:]).sum() + torch.cat([h_ref, c_ref], -1).square().sum()
    want = [h_ref.detach(), c_ref.detach(), *torch.autograd.grad(loss, args)]
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **TOL)


@needs_kernel
def test_compiled_and_eager_layers_agree():
    """float64: the two paths compute the same function (to a few thousand eps); float32: within the
    float32 roundings they differ by (sigmoid, order of sums)."""
    for dtype, tol in ((torch.float64, TOL), (torch.float32, dict(rtol=1e-5, atol=1e-5))):
        args, noise = _layer_args(E=3, B=5, T=12, N=6, dtype=dtype)
        w = torch.randn(3, 5, 12, 12, generator=torch.Generator().manual_seed(2), dtype=dtype)
        compiled = _outputs_and_grads(args, noise, w, compiled=True)
        with lstm_kernel.eager():
            eager = _outputs_and_grads(args, noise, w, compiled=False)
        for a, b in zip(compiled, eager):
            torch.testing.assert_close(a, b, **tol)


@needs_kernel
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("N,B,T", [(7, 6, 30), (13, 5, 20), (33, 3, 50), (24, 16, 25)])
def test_a_member_alone_and_in_an_ensemble_bit_for_bit(N, B, T, threads):
    """float32, states and the gradients of the recurrence's inputs: member e of an ensemble of 4
    equals the same member alone, at sizes where a batched product of torch rounds a lone member
    differently (the eager layer, measured: at (7, 6, 30) and (33, 3, 50), with two threads also at
    (13, 5, 20), in every gradient)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        E = 4
        args, noise = _layer_args(E=E, B=B, T=T, N=N, n_in=3, seed=3, dtype=torch.float32)
        w = torch.randn(E, B, T, 2 * N, generator=torch.Generator().manual_seed(4))
        full = _outputs_and_grads(args, noise, w, compiled=True)
        for e in range(E):
            one = [a.detach()[e:e + 1].clone().requires_grad_() for a in args]
            alone = _outputs_and_grads(one, noise[e:e + 1], w[e:e + 1])
            for a, b in zip(full, alone):
                assert torch.equal(a[e:e + 1], b)
    finally:
        torch.set_num_threads(previous)


def _fresh_kernel(monkeypatch, tmp_path, **env):
    """The kernel decided anew with a cache folder in tmp_path and ``env`` (the kernel on, unless ``env``
    turns it off: the suite may run with BIOPLASTIC_LSTM_KERNEL=0)."""
    monkeypatch.setenv("BIOPLASTIC_KERNEL_DIR", str(tmp_path / "kernels"))
    monkeypatch.delenv("BIOPLASTIC_LSTM_KERNEL", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    lstm_kernel.reset()
    return lstm_kernel.kernel()


@pytest.fixture
def isolated_kernel_state():
    yield
    lstm_kernel.reset()  # the next use decides anew, with the real environment


@pytest.mark.usefixtures("isolated_kernel_state")
@pytest.mark.parametrize("cause,env", [("no compiler", {"CC": ""}),
                                       ("compiler fails", {"CC": "exits 1"}),
                                       ("turned off", {"BIOPLASTIC_LSTM_KERNEL": "0"})])
def test_without_a_working_compiler_the_eager_code_runs(cause, env, monkeypatch, tmp_path):
    """No kernel, a status line that says why, and the layer still matches the plain loop."""
    if cause == "no compiler":
        monkeypatch.setattr(lstm_kernel.shutil, "which", lambda name: None)
    if cause == "compiler fails":  # a program that fails (not `false`: a machine may lack it on PATH)
        env = {"CC": _script(tmp_path / "cc", "sys.exit(1)\n")}
    assert _fresh_kernel(monkeypatch, tmp_path, **env) is None
    status = lstm_kernel.status()
    assert {"no compiler": "no C compiler found", "compiler fails": "compiling the LSTM kernel failed",
            "turned off": "BIOPLASTIC_LSTM_KERNEL=0"}[cause] in status, status
    args, noise = _layer_args()
    h, c, _ = lstm_recurrence(*args, noise)
    h_ref, c_ref = lstm_reference(*args, noise)
    torch.testing.assert_close(h, h_ref, **TOL)
    torch.testing.assert_close(c, c_ref, **TOL)


@needs_kernel
@pytest.mark.usefixtures("isolated_kernel_state")
def test_the_compiled_file_goes_to_the_cache_folder_only(monkeypatch, tmp_path):
    """Built into $BIOPLASTIC_KERNEL_DIR (nothing in an empty HOME), loaded from there the second time."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    k = _fresh_kernel(monkeypatch, tmp_path)
    assert k is not None and k.path.parent == tmp_path / "kernels"
    assert sorted(p.name for p in (tmp_path / "kernels").iterdir()) == [k.path.name]
    assert list(home.iterdir()) == []
    lstm_kernel.reset()
    assert lstm_kernel.kernel().path == k.path


def test_the_default_cache_folder_is_in_the_temp_dir(monkeypatch):
    monkeypatch.delenv("BIOPLASTIC_KERNEL_DIR", raising=False)
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    assert lstm_kernel.cache_dir() == Path(tempfile.gettempdir()) / f"bioplastic-{uid}" / "kernels"


@needs_kernel
def test_network_training_step_uses_the_kernel_and_matches_eager(monkeypatch):
    """The LSTM network's rollout and gradients (float64, tcr_on_cell, noise) are the same on both
    paths, and the compiled layer runs (outside :func:`eager` only)."""
    calls = []
    apply = lstm_kernel.LSTMRecurrenceCompiled.apply
    monkeypatch.setattr(lstm_kernel.LSTMRecurrenceCompiled, "apply", lambda *a: calls.append(1) or apply(*a))
    net = build_network("lstm", {"n_units": 5, "tcr_on_cell": True, "sigma_h": 0.2}, n_inputs=3, n_outputs=2, dt_ms=20,
                        rngs=[np.random.default_rng(s) for s in range(2)], dtype=torch.float64)
    g = torch.Generator().manual_seed(8)
    u, noise = torch.randn(2, 4, 9, 3, generator=g, **F64), torch.randn(2, 4, 9, 5, generator=g, **F64)

    def run():
        roll = net.run(u, noise)
        loss = roll.output_exbxtxo.square().sum() + roll.state_exbxtxn.diff(dim=2).square().sum()
        return [roll.full_state.detach(), *torch.autograd.grad(loss, list(net.params.values()))]

    compiled = run()
    n_compiled = len(calls)
    with lstm_kernel.eager():
        eager = run()
    assert n_compiled > 0 and len(calls) == n_compiled
    for a, b in zip(compiled, eager):
        torch.testing.assert_close(a, b, **TOL)



def _script(path: Path, body: str) -> str:
    """An executable Python script (this interpreter) of ``body`` (``sys`` imported); its path."""
    path.write_text(f"#!{sys.executable}\nimport sys\n" + body)
    path.chmod(0o755)
    return str(path)


@pytest.mark.usefixtures("isolated_kernel_state")
@pytest.mark.parametrize("cause", ["cannot run", "library without the functions", "--version hangs"])
def test_a_broken_compiler_falls_back_to_the_eager_code(cause, monkeypatch, tmp_path):
    """A $CC that cannot be executed (bad interpreter line), one that builds a library without the
    kernel's functions, and one whose --version never returns: no exception, the eager code, and
    a status line with the reason."""
    if cause == "cannot run":
        cc = str(tmp_path / "cc")
        Path(cc).write_text("#!/nonexistent/interpreter\n")
        Path(cc).chmod(0o755)
    elif cause == "library without the functions":
        real = lstm_kernel._compiler()
        if real is None:
            pytest.skip("needs a C compiler")
        cc = _script(tmp_path / "cc", "import subprocess\nout = sys.argv[sys.argv.index('-o') + 1]\n"
                                      f"subprocess.run([{real!r}, '-x', 'c', '-shared', '-fPIC', '-o', out, '-'], input=b'int x;', check=True)\n")
    else:
        cc = _script(tmp_path / "cc", "")
        run = subprocess.run

        def hangs(cmd, *args, **kw):
            if "--version" in cmd:
                raise subprocess.TimeoutExpired(cmd, kw.get("timeout"))
            return run(cmd, *args, **kw)
        monkeypatch.setattr(lstm_kernel.subprocess, "run", hangs)
    assert _fresh_kernel(monkeypatch, tmp_path, CC=cc) is None
    assert lstm_kernel.status().startswith("unavailable, eager torch code:"), lstm_kernel.status()
    args, noise = _layer_args()
    h, c, _ = lstm_recurrence(*args, noise)
    assert h.grad_fn.name() == "_LSTMRecurrenceBackward"
    h_ref, c_ref = lstm_reference(*args, noise)
    torch.testing.assert_close(h, h_ref, **TOL)
    torch.testing.assert_close(c, c_ref, **TOL)


def _other_user(path: Path) -> None:
    """Hand ``path`` to another user (needs root)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("needs root to make a file of another user")
    os.chown(path, 65534, 65534, follow_symlinks=False)


@needs_kernel
@pytest.mark.usefixtures("isolated_kernel_state")
@pytest.mark.parametrize("how", ["folder writable by others", "folder of another user", "parent of another user",
                                 "library of another user", "library writable by others"])
def test_a_library_another_user_could_have_planted_is_not_loaded(how, monkeypatch, tmp_path):
    """The default cache folder <tempdir>/bioplastic-<uid>/kernels, made in advance by someone else
    with a library in it (here a copy of the real one, under the name the kernel would look for):
    not loaded, the eager code runs, and the status says why."""
    monkeypatch.delenv("BIOPLASTIC_KERNEL_DIR", raising=False)
    monkeypatch.delenv("BIOPLASTIC_LSTM_KERNEL", raising=False)
    real = lstm_kernel.kernel().path
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    folder = lstm_kernel.cache_dir()
    assert folder.parent.parent == tmp_path
    folder.mkdir(parents=True, mode=0o700)
    folder.parent.chmod(0o700)
    planted = folder / real.name
    shutil.copy(real, planted)
    planted.chmod(0o755)
    if how == "folder writable by others":
        folder.chmod(0o777)
    elif how == "folder of another user":
        _other_user(folder)
    elif how == "parent of another user":
        _other_user(folder.parent)
    elif how == "library of another user":
        _other_user(planted)
    else:
        planted.chmod(0o777)
    lstm_kernel.reset()
    assert lstm_kernel.kernel() is None
    assert "can be changed by another user" in lstm_kernel.status() or "that only they can write to" in lstm_kernel.status()
    args, noise = _layer_args()
    assert lstm_recurrence(*args, noise)[0].grad_fn.name() == "_LSTMRecurrenceBackward"


@needs_kernel
@pytest.mark.usefixtures("isolated_kernel_state")
def test_the_cache_folders_are_made_private_whatever_the_umask(monkeypatch, tmp_path):
    """With umask 002 (group-writable files by default) the folders made are 0700 and the library
    writable by its owner only - and it is loaded."""
    monkeypatch.delenv("BIOPLASTIC_KERNEL_DIR", raising=False)
    monkeypatch.delenv("BIOPLASTIC_LSTM_KERNEL", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    previous = os.umask(0o002)
    try:
        lstm_kernel.reset()
        k = lstm_kernel.kernel()
    finally:
        os.umask(previous)
    assert k is not None, lstm_kernel.status()
    assert k.path.parent == tmp_path / f"bioplastic-{os.getuid()}" / "kernels"
    assert (k.path.parent.stat().st_mode & 0o777, k.path.parent.parent.stat().st_mode & 0o777) == (0o700, 0o700)
    assert k.path.stat().st_mode & 0o022 == 0


@needs_kernel
@pytest.mark.parametrize("kind", ["float32 noise, float64 layer", "noise (E, B, T, 1)", "noise (1, B, T, N)",
                                  "noise with strided units"])
def test_noise_of_another_dtype_or_broadcast_is_read_as_the_eager_layer_reads_it(kind):
    """The C loop reads the noise in place with the layer's dtype and (E, B, T, N) strides; noise the
    eager layer accepts (another dtype, a shape that broadcasts, units not contiguous) gives the same
    states and gradients on both paths (before: read as if of the layer's dtype and full shape -
    past the end of the tensor)."""
    args, noise = _layer_args(E=3, B=4, T=6, N=5)
    noise = {"float32 noise, float64 layer": noise.float(), "noise (E, B, T, 1)": noise[..., :1].clone(),
             "noise (1, B, T, N)": noise[:1].clone(),
             "noise with strided units": noise.repeat_interleave(2, -1)[..., ::2]}[kind]
    w = torch.randn(3, 4, 6, 10, generator=torch.Generator().manual_seed(5), **F64)
    compiled = _outputs_and_grads(args, noise, w, compiled=True)
    with lstm_kernel.eager():
        eager = _outputs_and_grads(args, noise, w, compiled=False)
    for a, b in zip(compiled, eager):
        torch.testing.assert_close(a, b, **TOL)

