"""Recurrent network kinds, one per file, registered by kind in :data:`NETWORKS`."""
from .base import NETWORKS, Network, Rollout, build_network
from . import leaky_rate, low_rank, lstm, plrnn  # noqa: F401  (registration)

__all__ = ["NETWORKS", "Network", "Rollout", "build_network"]
