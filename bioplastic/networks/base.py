"""The network interface: dynamics only, with a leading ensemble axis.

A network holds E independent members. Its trainable parameters live in ``params`` as tensors with
a leading ensemble dimension (``W`` is (E, unit, unit_pre)); non-trained tensors (fixed random parts,
masks) live in ``buffers``. Members never interact: every operation is batched over E, so E networks
trained together give the same numbers as each trained alone.

Learning rules, regularizers and analyses are separate objects that call :meth:`Network.run`.
"""
from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from ..registry import Registry
from ..schema_base import Schema, validated_config

NETWORKS: Registry[type[Network]] = Registry("model kind")


@dataclass
class Rollout:
    """Result of running a network on a batch of trials.

    state_exbxtxn:  (E, trial, time, unit) the hidden state TCR acts on (h, z, or LSTM h[, c])
    output_exbxtxo: (E, trial, time, output) the readout
    full_state_exbxtxs: the full dynamical state the one-step map acts on, when it differs from
                        ``state_exbxtxn`` (the LSTM's (h, c)); None otherwise
    plasticity: detached signatures of the short-term plasticity when the network has it
                (see regularizers/tcr_plasticity.py); None otherwise
    """

    state_exbxtxn: torch.Tensor
    output_exbxtxo: torch.Tensor
    full_state_exbxtxs: torch.Tensor | None = None
    plasticity: dict[str, torch.Tensor] | None = None

    @property
    def full_state(self) -> torch.Tensor:
        return self.state_exbxtxn if self.full_state_exbxtxs is None else self.full_state_exbxtxs


@dataclass
class RateMap:
    """A one-step map in closed rate form, ``F(x) = decay * x + weights @ phi(x) + offset``, whose
    Jacobian is ``diag(decay) + weights diag(phi'(x))`` (the fixed-point finder uses it).

    decay_exs: (E, S) per-unit decay;  weights_exsxs: (E, S, S) effective recurrent weights
    [unit, unit_pre];  offset_exs: (E, S) the constant input's drive;  phi: the nonlinearity's name
    """

    decay_exs: torch.Tensor
    weights_exsxs: torch.Tensor
    offset_exs: torch.Tensor
    phi: str


class Network(ABC):
    """E independent recurrent networks of one kind, trained in one batched computation."""

    kind: ClassVar[str]
    Config: ClassVar[type[Schema]]
    #: names of the dims of each parameter after the leading ensemble dim (storage uses them)
    param_dims: ClassVar[dict[str, tuple[str, ...]]]
    #: names of the dims of each fixed buffer (connectivity mask, Dale signs, fixed random parts);
    #: results datasets store the buffers, so a rebuilt network never re-draws them
    buffer_dims: ClassVar[dict[str, tuple[str, ...]]] = {}
    # -- capabilities (queried through the registry: :func:`kinds_supporting`) --
    #: the recurrent synapses can carry TCR short-term plasticity (regularizers/tcr_plasticity.py)
    supports_plasticity: ClassVar[bool] = False
    #: the trained recurrent weight is a full matrix ``params["W"]`` that freeze-in and weight noise
    #: write into (tcr.plasticity.kappa, sigma_w)
    supports_freeze_in: ClassVar[bool] = False
    #: the network has a rate-neuron form in brian2 (simulate/brian2_bridge.py)
    supports_brian2: ClassVar[bool] = False
    #: settings read only when the initial parameters and buffers are drawn (gains, scales): networks
    #: that differ only in these train in one ensemble, each member drawn with its own settings
    init_fields: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs):
        """Every kind's ``run`` also takes one batch of trials for all members (no ensemble axis) and
        numpy arrays, and its ``rates`` a state tensor (see :meth:`run`, :meth:`rates`): the kinds
        implement the batched tensor form only."""
        super().__init_subclass__(**kwargs)
        if "run" in cls.__dict__ and not getattr(cls.__dict__["run"], "_takes_one_batch", False):
            cls.run = _taking_one_batch(cls.__dict__["run"])
        if "rates" in cls.__dict__ and not getattr(cls.__dict__["rates"], "_takes_a_state", False):
            cls.rates = _taking_a_state(cls.__dict__["rates"])

    def __init__(self, config: Schema, n_inputs: int, n_outputs: int, dt_ms: float,
                 rngs: Sequence[np.random.Generator], dtype: torch.dtype = torch.float32,
                 member_configs: Sequence[Schema] | None = None):
        self.config = config
        self.n_inputs, self.n_outputs, self.dt_ms = n_inputs, n_outputs, float(dt_ms)
        self.n_members = len(rngs)
        self.dtype = dtype
        #: TCR short-term plasticity of the recurrent synapses (regularizers/tcr_plasticity.py); None: off
        self.plasticity = None
        configs = list(member_configs) if member_configs is not None else [config] * len(rngs)
        if len(configs) != len(rngs):
            raise ValueError(f"member_configs: expected one per member ({len(rngs)}), got {len(configs)}")
        for i, c in enumerate(configs):
            differ = sorted(k for k in type(config).model_fields if getattr(c, k) != getattr(config, k))
            if set(differ) - self.init_fields:
                raise ValueError(f"member_configs[{i}] differs from the ensemble's settings in {', '.join(differ)}; "
                                 f"members may differ only in {', '.join(sorted(self.init_fields)) or 'nothing'}")
        members = []
        for c, rng in zip(configs, rngs):  # init_member reads self.config: the member's own, while it is drawn
            self.config = c
            members.append(self.init_member(rng))
        self.config = config
        self.params: dict[str, torch.Tensor] = {
            k: torch.as_tensor(np.stack([m[k] for m in members]), dtype=dtype, device="cpu").requires_grad_(True)
            for k in self.param_dims
        }
        self.buffers: dict[str, torch.Tensor] = {
            k: torch.as_tensor(np.stack([m[k] for m in members]), dtype=dtype, device="cpu")
            for k in members[0] if k not in self.param_dims
        }
        undeclared = sorted(set(self.buffers) - set(self.buffer_dims))
        if undeclared:
            raise TypeError(f"{type(self).__name__}: buffers {', '.join(undeclared)} have no entry in buffer_dims")

    @property
    def n_units(self) -> int:
        return int(self.config.n_units)

    @property
    def device(self) -> torch.device:
        """Where the parameters are (the members are created on the CPU; :meth:`to` moves them)."""
        return next(iter(self.params.values())).device

    def to(self, device: torch.device | str) -> Network:
        """Move the parameters, buffers and the attached plasticity's state to ``device``, in place
        (the ``params`` and ``buffers`` dicts stay the same objects; a parameter stays a leaf that
        requires grad). The values are copied exactly. Returns the network."""
        device = torch.device(device)
        for tensors in (self.params, self.buffers):
            for k, v in tensors.items():
                if v.device != device:
                    tensors[k] = v.detach().to(device).requires_grad_(v.requires_grad)
        eta = getattr(self.plasticity, "eta_e", None)
        if isinstance(eta, torch.Tensor) and eta.device != device:
            self.plasticity.eta_e = eta.to(device)
        return self

    @abstractmethod
    def init_member(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Initial parameters (and buffers) of one member, drawn from ``rng`` only."""

    @abstractmethod
    def run(self, inputs_exbxtxi: torch.Tensor, noise_exbxtxn: torch.Tensor | None = None) -> Rollout:
        """Run every member on its own trials. ``noise`` is standard normal (or None for none).

        ``inputs`` (and ``noise``) may also come without the ensemble axis, (trial, time, input):
        every member then runs the same trials (one network: E = 1), and as numpy arrays (e.g. a
        task's ``Trials.inputs_bxtxi``; made tensors of the network's dtype, on its device). The
        rollout always has the ensemble axis."""

    @property
    def needs_noise(self) -> bool:
        return float(getattr(self.config, "sigma_h", 0.0)) > 0

    def state_dim(self) -> int:
        """Size of the state returned in :class:`Rollout` (the TCR state)."""
        return self.n_units

    def recurrent_weights(self) -> torch.Tensor:
        """The effective recurrent weight matrix (E, unit, unit_pre), for storage and analysis."""
        raise NotImplementedError

    @abstractmethod
    def one_step(self, x_exkxs: torch.Tensor, u_exi: torch.Tensor) -> torch.Tensor:
        """The noise-free one-step map ``x -> F(x, u)`` under a constant input ``u`` (one per member),
        for K states per member. ``x`` is the full dynamical state (size :meth:`full_state_dim`):
        h for rate networks, z for the PLRNN, (h, c) concatenated for the LSTM. Differentiable."""

    def full_state_dim(self) -> int:
        """Size of the full dynamical state the one-step map acts on."""
        return self.n_units

    def rate_map(self, u_exi: torch.Tensor) -> RateMap | None:
        """:meth:`one_step` under the constant input ``u`` in closed rate form, for kinds that have
        one (the fixed-point finder then uses the closed-form Jacobian); None: the finder
        differentiates :meth:`one_step` by autograd."""
        return None

    def rates(self, rollout: Rollout | torch.Tensor) -> torch.Tensor:
        """The firing rate (E, B, T, N) of a rollout of this network, detached; given a state tensor
        instead (a rollout's ``state_exbxtxn``, with or without the ensemble axis), its rates, in its
        shape. By default the TCR state itself (the LSTM's h, or (h, c) with ``tcr_on_cell``)."""
        return _as_rollout(self, rollout).state_exbxtxn.detach()

    def select(self, members: Sequence[int]) -> dict[str, torch.Tensor]:
        """Copies of the parameters of some members (e.g. to compare against single training)."""
        return {k: v.detach()[list(members)].clone() for k, v in self.params.items()}


def _ensemble_batch(net: Network, x, name: str) -> torch.Tensor:
    """``x`` as (E, trial, time, ·): a numpy array becomes a tensor of the network's dtype on its
    device; one batch without the ensemble axis is given to every member."""
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x), dtype=net.dtype, device=net.device)
    if x.ndim == 3:
        return x.unsqueeze(0).expand(net.n_members, *x.shape).contiguous()
    if x.ndim != 4:
        raise ValueError(f"{name}: expected (trial, time, {'input' if name == 'inputs' else 'unit'}) - the same trials for "
                         f"every member - or (ensemble, trial, time, ·); got shape {tuple(x.shape)}")
    return x


def _taking_one_batch(run):
    @functools.wraps(run)
    def wrapper(self, inputs_exbxtxi, noise_exbxtxn=None):
        inputs_exbxtxi = _ensemble_batch(self, inputs_exbxtxi, "inputs")
        if noise_exbxtxn is not None:
            noise_exbxtxn = _ensemble_batch(self, noise_exbxtxn, "noise")
        return run(self, inputs_exbxtxi, noise_exbxtxn)

    wrapper._takes_one_batch = True
    return wrapper


def _as_rollout(net: Network, x) -> Rollout:
    if isinstance(x, Rollout):
        return x
    state = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x), dtype=net.dtype)
    return Rollout(state, None)  # the rates read the state only


def _taking_a_state(rates):
    @functools.wraps(rates)
    def wrapper(self, rollout):
        return rates(self, _as_rollout(self, rollout))

    wrapper._takes_a_state = True
    return wrapper


def kinds_supporting(capability: str) -> tuple[str, ...]:
    """The registered model kinds whose class sets ``capability`` (``"supports_plasticity"``,
    ``"supports_freeze_in"``, ``"supports_brian2"``), in name order."""
    if capability not in ("supports_plasticity", "supports_freeze_in", "supports_brian2"):
        raise ValueError(f"unknown network capability {capability!r}")
    return tuple(k for k in NETWORKS.names() if getattr(NETWORKS.get(k), capability))


def kind_supports(kind: str, capability: str) -> bool:
    """Whether the model kind ``kind`` has ``capability`` (False for a kind that is not registered)."""
    return kind in kinds_supporting(capability)


def build_network(kind: str, params: Schema | Mapping | None = None, *, n_inputs: int, n_outputs: int, dt_ms: float,
                  rngs: Sequence[np.random.Generator], dtype: torch.dtype = torch.float32,
                  member_params: Sequence[Schema | Mapping] | None = None) -> Network:
    """E = len(rngs) networks of ``kind`` with settings ``params`` (the kind's ``Config``, e.g. a
    protocol condition's ``model``, or a mapping validated by it; ``None``: every default);
    ``member_params`` (one per member) may give members their own values of the class's ``init_fields``."""
    cls = NETWORKS.get(kind)
    members = None if member_params is None else [validated_config(cls.Config, m, "model") for m in member_params]
    return cls(validated_config(cls.Config, params, "model"), n_inputs, n_outputs, dt_ms, rngs, dtype, members)
