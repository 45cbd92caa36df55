"""Named random streams: declared in one place, none can share numbers with another."""
import itertools

import numpy as np
import pytest

from bioplastic.seeds import NAMED, STREAMS, numpy_rng, spawn_key, torch_generator


def test_no_declared_stream_key_is_a_prefix_of_another():
    """Two uses collide only if one stream's key is a prefix of another's (counters are appended)."""
    keys = {name: spawn_key(name) for name in NAMED}
    for (a, ka), (b, kb) in itertools.combinations(keys.items(), 2):
        n = min(len(ka), len(kb))
        assert ka[:n] != kb[:n], f"streams {a} {ka} and {b} {kb}: one key is a prefix of the other"


def test_every_stream_gives_its_own_numbers():
    draws = {name: numpy_rng(20261130, name, 1, 2).integers(2 ** 62) for name in NAMED}
    assert len(set(draws.values())) == len(NAMED)
    torch_draws = {name: int(torch_generator(3, name, 1).initial_seed()) for name in NAMED}
    assert len(set(torch_draws.values())) == len(NAMED)


def test_streams_are_counter_based_and_root_dependent():
    a = numpy_rng(5, "train_data", 0, 7).random(4)
    np.testing.assert_array_equal(a, numpy_rng(5, "train_data", 0, 7).random(4))
    assert not np.array_equal(a, numpy_rng(5, "train_data", 0, 8).random(4))
    assert not np.array_equal(a, numpy_rng(6, "train_data", 0, 7).random(4))


def test_base_streams_keep_their_keys():
    """Old runs stay reproducible: the base streams and the analysis keys are append-only."""
    assert STREAMS[:6] == ("init", "train_data", "train_noise", "eval_data", "analysis", "weight_noise")
    assert spawn_key("train_data", 3, 9) == (1, 3, 9)
    assert spawn_key("fixed_point_starts", 2, 0) == (4, 1, 2, 0)
    assert spawn_key("prediction_noise", 5) == (4, 3, 1, 5)


def test_unknown_stream_is_refused_with_the_names():
    with pytest.raises(KeyError, match="train_data"):
        numpy_rng(0, "trian_data", 0)
