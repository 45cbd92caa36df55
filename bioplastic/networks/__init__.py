"""Recurrent network kinds, one per file, registered by kind in :data:`NETWORKS`."""
from . import leaky_rate, low_rank, lstm, plrnn  # noqa: F401  (registration)
from .base import NETWORKS, Network, RateMap, Rollout, build_network, kind_supports, kinds_supporting

__all__ = ["NETWORKS", "Network", "RateMap", "Rollout", "build_network", "kind_supports", "kinds_supporting"]
