"""benchmarks/bptt.py times each network kind against a plain PyTorch reference: the reference must
compute the same equations (same weights -> same states and outputs), and an unknown kind is refused
naming the kinds."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bioplastic.networks import build_network

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_bptt", ROOT / "benchmarks" / "bptt.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(sys.modules[spec.name])
    return sys.modules[spec.name]


@pytest.mark.parametrize("kind", ["leaky_rate", "low_rank", "plrnn", "lstm"])
def test_the_plain_reference_computes_the_networks_equations(kind):
    bench = _bench()
    net = build_network(kind, {"n_units": 6, **bench.MODELS[kind]}, n_inputs=bench.I, n_outputs=bench.O, dt_ms=bench.DT,
                        rngs=[np.random.default_rng(e) for e in range(2)], dtype=torch.float64)
    u = torch.randn(2, 3, 9, bench.I, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    roll = net.run(u)
    for e in range(2):
        state, out = bench.plain_member(net, e)(u[e])
        torch.testing.assert_close(state, roll.state_exbxtxn[e], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(out, roll.output_exbxtxo[e], rtol=1e-12, atol=1e-12)


def test_every_registered_kind_has_a_reference_and_cases():
    from bioplastic.networks import NETWORKS

    bench = _bench()
    assert set(bench.MODELS) == set(NETWORKS.names())
    assert all(bench.cases(k) for k in bench.MODELS)


def test_an_unknown_kind_is_refused_naming_the_kinds():
    bench = _bench()
    with pytest.raises(SystemExit) as info:
        bench.check_kinds(["lstm", "gru"])
    assert str(info.value) == "--kinds: unknown network kind 'gru'; the kinds are leaky_rate, low_rank, plrnn, lstm"
