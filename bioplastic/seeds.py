"""Random streams derived from one root seed (no global RNG anywhere).

Every stream is ``SeedSequence(root, spawn_key=(stream id, seed index, *counters))``: counter-based,
so the data of iteration k of network s is the same whether the run went straight through, was
resumed, or trained s alone or in an ensemble. Seed index s is shared across conditions (paired
design: the conditions differ only in the treatment). STREAMS is append-only: new streams go at
the end so old runs stay reproducible.
"""
from __future__ import annotations

import numpy as np
import torch

STREAMS = ("init", "train_data", "train_noise", "eval_data", "analysis", "weight_noise")


def _sequence(root: int, stream: str, *key: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(int(root), spawn_key=(STREAMS.index(stream), *map(int, key)))


def numpy_rng(root: int, stream: str, *key: int) -> np.random.Generator:
    """A numpy Generator for (stream, *key), e.g. ``numpy_rng(seed, "train_data", s, k)``."""
    return np.random.Generator(np.random.PCG64(_sequence(root, stream, *key)))


def torch_generator(root: int, stream: str, *key: int) -> torch.Generator:
    """A CPU torch Generator for (stream, *key)."""
    state = _sequence(root, stream, *key).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
