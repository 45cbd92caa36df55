"""What each network class declares: capabilities (plasticity, freeze-in, brian2), its one-step map
in closed rate form, and its firing rate."""
import numpy as np
import pytest
import torch

from bioplastic.networks import NETWORKS, build_network, kind_supports, kinds_supporting
from bioplastic.networks.recurrence import phi


def _net(kind, **params):
    rngs = [np.random.default_rng(s) for s in (0, 1)]
    return build_network(kind, {"n_units": 6, **params}, n_inputs=3, n_outputs=2, dt_ms=10.0, rngs=rngs,
                         dtype=torch.float64)


def test_capabilities_come_from_the_classes():
    assert kinds_supporting("supports_plasticity") == ("leaky_rate", "low_rank")
    assert kinds_supporting("supports_freeze_in") == ("leaky_rate",)
    assert kinds_supporting("supports_brian2") == ("leaky_rate", "low_rank")
    for kind in NETWORKS.names():
        for cap in ("supports_plasticity", "supports_freeze_in", "supports_brian2"):
            assert kind_supports(kind, cap) == getattr(NETWORKS.get(kind), cap)
    assert not kind_supports("no_such_kind", "supports_plasticity")
    with pytest.raises(ValueError, match="unknown network capability"):
        kinds_supporting("supports_flying")


@pytest.mark.parametrize("kind, params", [("leaky_rate", {"phi": "softplus"}), ("low_rank", {"rank": 2}), ("plrnn", {})])
def test_rate_map_is_the_one_step_map(kind, params):
    net = _net(kind, **params)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 6, generator=g, dtype=torch.float64)
    u = torch.randn(2, 3, generator=g, dtype=torch.float64)
    m = net.rate_map(u)
    F = m.decay_exs[:, None, :] * x + torch.einsum("enm,ekm->ekn", m.weights_exsxs, phi(m.phi, x)) + m.offset_exs[:, None, :]
    torch.testing.assert_close(F, net.one_step(x, u), rtol=1e-12, atol=1e-12)


def test_lstm_has_no_closed_form_map():
    assert _net("lstm").rate_map(torch.zeros(2, 3, dtype=torch.float64)) is None


@pytest.mark.parametrize("kind, rate", [("leaky_rate", torch.tanh), ("low_rank", torch.tanh),
                                        ("plrnn", torch.relu), ("lstm", lambda h: h)])
def test_rates_of_a_rollout(kind, rate):
    net = _net(kind)
    u = torch.randn(2, 4, 7, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    roll = net.run(u)
    r = net.rates(roll)
    assert not r.requires_grad
    torch.testing.assert_close(r, rate(roll.state_exbxtxn.detach()))


@pytest.mark.parametrize("kind", NETWORKS.names())
def test_members_with_their_own_init_settings_draw_as_they_would_alone(kind):
    """A member given its own values of the class's init_fields starts from the weights it would
    have alone; any other setting must be shared (a clear error names it)."""
    cls = NETWORKS.get(kind)
    assert cls.init_fields <= set(cls.Config.model_fields), "init_fields must name settings"
    base = {"n_units": 6}
    other = dict(base, **{f: _changed(cls.Config().model_dump()[f]) for f in cls.init_fields})
    kw = dict(n_inputs=2, n_outputs=1, dt_ms=20)
    mixed = build_network(kind, base, rngs=[np.random.default_rng(0), np.random.default_rng(1)],
                          member_params=[base, other], **kw)
    alone = build_network(kind, other, rngs=[np.random.default_rng(1)], **kw)
    for k, v in alone.params.items():
        assert torch.equal(mixed.params[k][1], v[0]), k
    if cls.init_fields:
        first = build_network(kind, base, rngs=[np.random.default_rng(1)], **kw)
        assert any(not torch.equal(first.params[k][0], v[0]) for k, v in alone.params.items())
    with pytest.raises(ValueError, match=r"member_configs\[1\] differs .* in n_units"):
        build_network(kind, base, rngs=[np.random.default_rng(0)] * 2, member_params=[base, {"n_units": 7}], **kw)


def _changed(value):
    return value * 0.5 if value not in (0, None) else 0.3


@pytest.mark.parametrize("kind, readout", [("leaky_rate", "W_out"), ("plrnn", "B")])
def test_output_scale_scales_the_initial_readout_only(kind, readout):
    """``output_scale`` multiplies the initial readout draw and changes no other weight (the same seed
    draws the same numbers), so a near-zero readout starts from the default network's own dynamics."""
    full, small = _net(kind), _net(kind, output_scale=0.01)
    assert set(full.params) == set(small.params)
    for k, v in full.params.items():
        if k == readout:
            torch.testing.assert_close(small.params[k], 0.01 * v, rtol=1e-12, atol=0)
            assert v.abs().max() > 0.1
        else:
            assert torch.equal(small.params[k], v), k
