"""Recurrent network kinds, one per file, registered by kind in :data:`NETWORKS`."""
from .base import NETWORKS, Network, RateMap, Rollout, build_network, kind_supports, kinds_supporting
from . import leaky_rate, low_rank, lstm, plrnn  # noqa: F401  (registration)

__all__ = ["NETWORKS", "Network", "RateMap", "Rollout", "build_network", "kind_supports", "kinds_supporting"]
