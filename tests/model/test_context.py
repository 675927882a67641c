"""A segment's probabilities in its channel's context, against exact enumeration."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from callsort.model.context import gaps_between, in_context
from callsort.settings import ContextSettings


def enumerated(proba, *, p_stay, prior=None, weight=1.0, gaps_s=None, half_life_s=60.0):
    """Exact posterior marginals by summing over every label path.

    The chain written out directly: the first emotion is drawn from the prior; each
    next one is the same with probability ``p_stay`` (relaxed toward a fresh draw by
    the silence before it) and otherwise drawn from the prior; each segment's
    evidence is ``(p / prior) ** weight``.
    """
    proba = np.asarray(proba, dtype=float)
    n, k = proba.shape
    prior = np.full(k, 1.0 / k) if prior is None else np.asarray(prior, dtype=float)
    gaps = np.zeros(n - 1) if gaps_s is None else np.asarray(gaps_s, dtype=float)
    marginals = np.zeros((n, k))
    for path in itertools.product(range(k), repeat=n):
        weight_of_path = prior[path[0]] * (proba[0, path[0]] / prior[path[0]]) ** weight
        for t in range(1, n):
            # P(same) for a uniform prior is p_stay; the part above chance fades with silence
            above_chance = (p_stay - 1.0 / k) / (1.0 - 1.0 / k) * 0.5 ** (gaps[t - 1] / half_life_s)
            move = above_chance * (path[t] == path[t - 1]) + (1 - above_chance) * prior[path[t]]
            weight_of_path *= move * (proba[t, path[t]] / prior[path[t]]) ** weight
        for t, c in enumerate(path):
            marginals[t, c] += weight_of_path
    return marginals / marginals.sum(axis=1, keepdims=True)


def random_channel(n, k, seed):
    return np.random.default_rng(seed).dirichlet(np.ones(k), n)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_forward_backward_equals_enumerating_every_path(n, seed):
    proba = random_channel(n, 4, seed)
    settings = ContextSettings(p_stay=0.8)
    np.testing.assert_allclose(
        in_context(proba, settings=settings), enumerated(proba, p_stay=0.8), atol=1e-12
    )


def test_gaps_prior_and_weight_also_equal_the_enumeration():
    proba = random_channel(4, 4, seed=7)
    prior = np.array([0.1, 0.4, 0.3, 0.2])
    gaps = np.array([0.0, 45.0, 300.0])
    settings = ContextSettings(p_stay=0.9, half_life_s=45.0, weight=0.7)
    expected = enumerated(proba, p_stay=0.9, prior=prior, weight=0.7, gaps_s=gaps, half_life_s=45.0)
    got = in_context(proba, settings=settings, gaps_s=gaps, prior=prior)
    np.testing.assert_allclose(got, expected, atol=1e-12)
    np.testing.assert_allclose(got.sum(axis=1), 1.0)


def test_no_tie_returns_the_models_probabilities():
    proba = random_channel(6, 4, seed=3)
    for p_stay in (0.25, 0.1):  # 1 / classes, or below: each segment on its own
        np.testing.assert_allclose(
            in_context(proba, settings=ContextSettings(p_stay=p_stay)), proba, atol=1e-12
        )


def test_one_segment_is_unchanged_and_uninformative_segments_stay_uninformative():
    proba = random_channel(1, 4, seed=2)
    np.testing.assert_allclose(in_context(proba, settings=ContextSettings()), proba)
    flat = np.full((5, 4), 0.25)
    np.testing.assert_allclose(in_context(flat, settings=ContextSettings(p_stay=0.95)), flat)


def test_a_channel_that_never_changes_multiplies_its_evidence():
    """p_stay = 1: one emotion for the whole channel, whose posterior is the normalised
    product of the segments' probabilities (uniform prior), the same for every segment."""
    proba = random_channel(5, 4, seed=5)
    product = proba.prod(axis=0) / proba.prod(axis=0).sum()
    got = in_context(proba, settings=ContextSettings(p_stay=1.0))
    np.testing.assert_allclose(got, np.tile(product, (5, 1)), atol=1e-12)


def test_a_long_silence_unties_the_segments_on_either_side():
    proba = np.array([[0.9, 0.05, 0.03, 0.02], [0.2, 0.3, 0.3, 0.2]])
    settings = ContextSettings(p_stay=0.9, half_life_s=10.0)
    near = in_context(proba, settings=settings, gaps_s=np.array([0.0]))
    far = in_context(proba, settings=settings, gaps_s=np.array([600.0]))
    assert near[1, 0] > 0.6  # pulled toward its angry neighbour
    np.testing.assert_allclose(far, proba, atol=1e-9)  # 60 half-lives: on its own


def test_a_clear_change_of_emotion_stays_visible():
    """Three confident calm segments, then three confident angry ones."""
    calm, angry = [0.05, 0.85, 0.05, 0.05], [0.85, 0.05, 0.05, 0.05]
    proba = np.array([calm] * 3 + [angry] * 3)
    labels = in_context(proba, settings=ContextSettings(p_stay=0.8)).argmax(axis=1)
    assert labels.tolist() == [1, 1, 1, 0, 0, 0]


def test_gaps_between_segments_and_shapes():
    assert gaps_between([(0.0, 1.0), (1.5, 2.0), (1.9, 3.0)]).tolist() == [0.5, 0.0]
    assert gaps_between([(0.0, 1.0)]).shape == (0,)
    assert in_context(np.zeros((0, 4)), settings=ContextSettings()).shape == (0, 4)
    with pytest.raises(ValueError, match="gaps_s"):
        in_context(random_channel(3, 4, 0), settings=ContextSettings(), gaps_s=np.zeros(3))


@pytest.mark.parametrize(
    "bad", [{"p_stay": 1.5}, {"p_stay": -0.1}, {"half_life_s": 0.0}, {"weight": 0.0}]
)
def test_settings_out_of_range_are_refused(bad):
    with pytest.raises(ValueError):
        ContextSettings(**bad)


def test_channels_side_by_side_each_get_their_own_result():
    """A batch of channels, the shorter padded with prior rows, equals one at a time."""
    settings = ContextSettings(p_stay=0.85, half_life_s=20.0)
    long, short = random_channel(5, 4, seed=11), random_channel(3, 4, seed=12)
    long_gaps, short_gaps = np.array([1.0, 0.0, 30.0, 2.0]), np.array([5.0, 0.5])
    batch = np.stack([long, np.vstack([short, np.full((2, 4), 0.25)])])
    gaps = np.stack([long_gaps, np.r_[short_gaps, 0.0, 0.0]])
    got = in_context(batch, settings=settings, gaps_s=gaps)
    np.testing.assert_allclose(got[0], in_context(long, settings=settings, gaps_s=long_gaps))
    np.testing.assert_allclose(
        got[1, :3], in_context(short, settings=settings, gaps_s=short_gaps), atol=1e-12
    )
