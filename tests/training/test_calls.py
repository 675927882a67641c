"""Pseudo-calls laid out as calls: clip order, segments, gaps, the protocol's own members."""

from __future__ import annotations

from itertools import groupby

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from callsort.features.normalise import population_prior
from callsort.training.calls import CLIP_PAUSE_S, ORDERS, SEGMENT_PAUSE_S, call_order, call_segments
from callsort.training.config import ClipFeatures
from callsort.training.crossval import CALL_CLIPS, MIX_KINDS, pseudo_call

EMOTIONS = ("angry", "calm", "happy", "sad")


def runs(labels: list[str]) -> list[str]:
    return [label for label, _ in groupby(labels)]


@pytest.mark.parametrize("kind", MIX_KINDS)
def test_in_turns_each_emotion_of_a_call_comes_in_one_block_or_around_one(clips, kind):
    for i in (0, 9, 40, 63):
        for seed in range(5):
            members = pseudo_call(i, clips, kind=kind, rng=np.random.default_rng([seed, i]))
            ordered = call_order(members, clips, order="turns", rng=np.random.default_rng(seed))
            assert sorted(ordered) == sorted(members)
            labels = [clips[j].label for j in ordered]
            own = clips[i].label
            # the smaller group sits inside the larger or at one end of it
            if kind == "mostly":  # 6 of one, 2 of others (of any other emotion)
                assert runs(["own" if x == own else "other" for x in labels]).count("other") == 1
            elif kind != "one":
                assert len(runs(labels)) <= 3
                assert runs(labels).count(own) + len(set(labels) - {own}) <= 3


def test_shuffled_order_is_a_permutation_that_interleaves(clips):
    interleaved = 0
    for seed in range(20):
        members = pseudo_call(0, clips, kind="two", rng=np.random.default_rng(seed))
        ordered = call_order(members, clips, order="shuffled", rng=np.random.default_rng(seed))
        assert sorted(ordered) == sorted(members)
        interleaved += len(runs([clips[j].label for j in ordered])) > 3
    assert interleaved >= 10
    with pytest.raises(ValueError, match="order"):
        call_order(members, clips, order="backwards", rng=np.random.default_rng(0))


def test_call_segments_lays_out_the_protocols_calls(clips):
    """Every test clip's call: its members are those the protocol scores the clip in,
    its segments in order with their clip's class, gaps of a clip pause between clips and
    a segment pause inside one, one clip marked as the anchor."""
    rng = np.random.default_rng(0)
    n_segments = [1 + (i % 3) for i in range(len(clips))]
    features = [
        ClipFeatures(
            X=rng.normal(EMOTIONS.index(c.label), 1.0, (n, 6)).astype(np.float32),
            durations_s=np.full(n, 1.5, np.float32),
        )
        for c, n in zip(clips, n_segments, strict=True)
    ]
    X = np.concatenate([f.X for f in features])
    prior = population_prior(X, weight=5.0)
    y = np.repeat([c.label for c in clips], n_segments)
    from callsort.features.normalise import channel_normalised

    model = LogisticRegression(max_iter=500).fit(channel_normalised(X, prior=prior), y)
    test = np.arange(32, 64)  # speaker 02
    for kind in MIX_KINDS:
        got = call_segments(
            model, prior, clips, features, test, kind=kind, order="turns", classes=EMOTIONS, seed=3
        )
        assert len(np.unique(got.call)) == len(test)
        np.testing.assert_allclose(got.proba.sum(axis=1), 1.0, atol=1e-5)
        for n, i in enumerate(test):
            mine = got.call == n
            members = pseudo_call(
                n,
                [clips[j] for j in test],
                kind=kind,
                rng=np.random.default_rng([3, int(i), MIX_KINDS.index(kind)]),
            )
            assert mine.sum() == sum(n_segments[test[j]] for j in members)
            assert len(members) == CALL_CLIPS
            assert got.anchor[mine].sum() == n_segments[i]
            gaps = got.gaps_s[mine]
            between = np.isclose(gaps[1:], CLIP_PAUSE_S)
            assert gaps[0] == 0.0 and np.all(between | np.isclose(gaps[1:], SEGMENT_PAUSE_S))
            assert between.sum() == CALL_CLIPS - 1
            truth = sorted(EMOTIONS[t] for t in got.truth[mine])
            assert truth == sorted(np.repeat([clips[test[j]].label for j in members],
                                             [n_segments[test[j]] for j in members]))  # fmt: skip


def test_orders_keep_the_same_members(clips):
    features = [ClipFeatures(X=np.ones((1, 2), np.float32), durations_s=np.ones(1)) for _ in clips]
    model = LogisticRegression().fit(np.arange(8.0).reshape(4, 2), EMOTIONS)
    test = np.arange(32)
    got = {
        order: call_segments(
            model,
            None,
            clips,
            features,
            test,
            kind="two",
            order=order,
            classes=EMOTIONS,
            seed=0,
        )
        for order in ORDERS
    }
    for n in range(len(test)):
        a, b = (got[o].truth[got[o].call == n] for o in ORDERS)
        assert sorted(a) == sorted(b)
