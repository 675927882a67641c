"""Channel normalisation: z-scores against the channel's own speaker, shrunk to a prior."""

from __future__ import annotations

import numpy as np
import pytest

from callsort.features.normalise import (
    PopulationPrior,
    channel_normalised,
    channel_statistics,
    normalised_names,
    population_prior,
)

N_FEATURES = 6


@pytest.fixture(scope="module")
def prior() -> PopulationPrior:
    rng = np.random.default_rng(0)
    return population_prior(rng.normal(0.0, 2.0, size=(500, N_FEATURES)), weight=5.0)


def speaker(offset: float, n: int, seed: int) -> np.ndarray:
    """``n`` segments of one speaker whose voice shifts every feature by ``offset``."""
    rng = np.random.default_rng(seed)
    return (offset + rng.normal(0.0, 1.0, size=(n, N_FEATURES))).astype(np.float32)


def test_output_keeps_the_raw_features_and_adds_z_scores(prior):
    X = speaker(3.0, 40, seed=1)
    out = channel_normalised(X, prior=prior)
    assert out.shape == (40, 2 * N_FEATURES)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[:, :N_FEATURES], X)
    assert normalised_names(["a", "b"]) == ["a", "b", "z_a", "z_b"]


def test_a_long_channel_is_compared_with_itself(prior):
    z = channel_normalised(speaker(3.0, 400, seed=2), prior=prior)[:, N_FEATURES:]
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=0.05)
    np.testing.assert_allclose(z.std(axis=0), 1.0, atol=0.05)


def test_the_speakers_offset_is_removed(prior):
    """The same speech from a higher, louder voice gives the same z-scores."""
    base = speaker(0.0, 200, seed=3)
    low = channel_normalised(base, prior=prior)
    high = channel_normalised(base + 4.0, prior=prior)
    z_low, z_high = low[:, N_FEATURES:], high[:, N_FEATURES:]
    assert np.abs(z_low - z_high).max() < 0.25  # the prior (5 of 205 segments) pulls a little
    # while the raw half still tells the two voices apart, by the offset they were given
    np.testing.assert_allclose(high[:, :N_FEATURES] - low[:, :N_FEATURES], 4.0, atol=1e-5)


def test_a_single_segment_is_compared_mostly_with_the_population(prior):
    x = np.full((1, N_FEATURES), 6.0, dtype=np.float32)  # three population sd above
    z = channel_normalised(x, prior=prior)[0, N_FEATURES:]
    mean, std = channel_statistics(x, prior=prior)
    # the shrunk mean sits 5/6 of the way to the population's: the segment stays unusual
    np.testing.assert_allclose(mean, (6.0 + 5 * prior.mean) / 6, rtol=1e-6)
    assert np.all(z > 0.8)
    assert np.all(np.isfinite(z))


def test_a_constant_channel_gives_finite_z_scores():
    flat_prior = PopulationPrior(mean=np.zeros(N_FEATURES), var=np.zeros(N_FEATURES), weight=5.0)
    z = channel_normalised(np.ones((10, N_FEATURES), np.float32), prior=flat_prior)
    assert np.all(np.isfinite(z))
    assert np.abs(z).max() <= 50.0


def test_context_sets_the_statistics(prior):
    """Segments can be normalised against a larger set (training: a pseudo-call)."""
    call = speaker(2.0, 100, seed=4)
    one = call[:1]
    alone = channel_normalised(one, prior=prior)
    in_call = channel_normalised(one, prior=prior, context=call)
    np.testing.assert_array_equal(in_call, channel_normalised(call, prior=prior)[:1])
    assert not np.allclose(alone, in_call)


def test_prior_round_trips_through_json(prior):
    back = PopulationPrior.from_dict(prior.to_dict())
    np.testing.assert_allclose(back.mean, prior.mean)
    np.testing.assert_allclose(back.var, prior.var)
    assert back.weight == prior.weight
