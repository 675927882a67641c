"""Archive standardisation: statistics, shrinking, JSON, and the protocol's honesty."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from callsort.features.archive import (
    ArchiveStatistics,
    archive_statistics,
    pooled,
    shrunk,
    standardised,
)
from callsort.training.config import ClipFeatures, TrainingConfig
from callsort.training.corpora import Clip
from callsort.training.standardise import ArchiveSample, archive_standardised, sample_clips

EMOTIONS = ("angry", "calm", "happy", "sad")


def test_statistics_are_numpys_mean_and_variance_and_skip_broken_rows():
    rng = np.random.default_rng(0)
    X = rng.normal([1.0, -3.0, 200.0], [0.5, 2.0, 40.0], size=(3000, 3)).astype(np.float32)
    with_nan = np.vstack([X, [[np.nan, 1.0, 1.0]], [[np.inf, 0.0, 0.0]]])
    stats = archive_statistics(with_nan)
    assert stats.n_segments == 3000
    np.testing.assert_allclose(stats.mean, X.astype(np.float64).mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(stats.var, X.astype(np.float64).var(axis=0), rtol=1e-9)
    with pytest.raises(ValueError, match="no segments"):
        archive_statistics(np.full((2, 3), np.nan))


def test_pooled_statistics_are_those_of_the_union():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, (700, 4)), rng.normal(5, 3, (300, 4))
    both = pooled([archive_statistics(a), archive_statistics(b)])
    union = archive_statistics(np.vstack([a, b]))
    np.testing.assert_allclose(both.mean, union.mean, rtol=1e-12)
    np.testing.assert_allclose(both.var, union.var, rtol=1e-12)
    assert both.n_segments == 1000


def test_shrinking_counts_the_population_as_weight_segments():
    rng = np.random.default_rng(2)
    archive = rng.normal(3.0, 2.0, (40, 2))
    # a population sample whose mean and variance are exactly (0, 0) and (1, 1)
    population_rows = np.array([[1.0, -1.0], [-1.0, 1.0]] * 30)
    population = archive_statistics(population_rows)
    stats = shrunk(archive_statistics(archive), population=population, weight=60)
    expected = archive_statistics(np.vstack([archive, population_rows]))
    np.testing.assert_allclose(stats.mean, expected.mean, rtol=1e-12)
    np.testing.assert_allclose(stats.var, expected.var, rtol=1e-12)
    own = shrunk(archive_statistics(archive), population=population, weight=0)
    np.testing.assert_allclose(own.mean, archive.mean(axis=0))
    mostly_population = shrunk(archive_statistics(archive), population=population, weight=1e9)
    np.testing.assert_allclose(mostly_population.mean, [0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(mostly_population.var, [1.0, 1.0], atol=1e-6)
    with pytest.raises(ValueError):
        shrunk(archive_statistics(archive), population=population, weight=-1)


def test_statistics_round_trip_through_json():
    stats = archive_statistics(np.random.default_rng(3).normal(size=(50, 5)))
    again = ArchiveStatistics.from_dict(json.loads(json.dumps(stats.to_dict())))
    np.testing.assert_array_equal(again.mean, stats.mean)
    np.testing.assert_array_equal(again.var, stats.var)
    assert again.n_segments == stats.n_segments == 50


def test_standardising_removes_an_archives_shift_and_scale():
    """Two archives of the same voices, one through a different chain (every feature
    scaled and shifted), look alike once each is standardised over its own segments."""
    rng = np.random.default_rng(4)
    X = rng.normal(0, 1, (500, 3)) * [1.0, 10.0, 0.1] + [0.0, 50.0, -2.0]
    other_chain = X * [2.0, 0.5, 3.0] + [7.0, -20.0, 1.0]
    a = standardised(X, archive_statistics(X))
    b = standardised(other_chain, archive_statistics(other_chain))
    assert a.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-4)
    np.testing.assert_allclose(a.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(a.std(axis=0), 1, atol=1e-4)
    constant = standardised(np.ones((4, 3)), archive_statistics(np.ones((4, 3))))
    assert np.isfinite(constant).all()
    with pytest.raises(ValueError, match="features"):
        standardised(np.ones((4, 2)), archive_statistics(np.ones((4, 3))))


def _two_corpora(rng):
    clips = [
        Clip(path=Path(f"{corpus}-{s}-{e}-{i}.wav"), label=e, speaker=f"{corpus}{s}", corpus=corpus)
        for corpus in ("a", "b")
        for s in range(3)
        for e in EMOTIONS
        for i in range(4)
    ]
    # corpus b: the same kind of voices through another chain (scaled and shifted)
    feats = []
    for c in clips:
        X = rng.normal(EMOTIONS.index(c.label), 1.0, (2, 3))
        if c.corpus == "b":
            X = X * 3.0 + 10.0
        feats.append(ClipFeatures(X=X.astype(np.float32), durations_s=np.ones(2, np.float32)))
    return clips, {"clean": feats}


def test_protocol_standardises_each_corpus_over_its_own_clips_without_test_labels():
    rng = np.random.default_rng(5)
    clips, features = _two_corpora(rng)
    corpus = np.array([c.corpus for c in clips])
    train, test = np.flatnonzero(corpus == "a"), np.flatnonzero(corpus == "b")
    out, population = archive_standardised(
        clips,
        features,
        train,
        test,
        sample=ArchiveSample(prior_weight=0.0),
        seed=0,
        make=ClipFeatures,
        train_conditions=("clean",),
    )
    train_X = np.concatenate([out["clean"][i].X for i in train])
    test_X = np.concatenate([out["clean"][i].X for i in test])
    # each archive is centred and scaled on its own: corpus b's chain is gone
    np.testing.assert_allclose(train_X.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(test_X.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(test_X.std(axis=0), 1, atol=1e-4)
    np.testing.assert_allclose(population.mean, features_mean(features, train), rtol=1e-6)
    # the test clips' labels play no part: relabelled at random, the same features
    shuffled = [
        Clip(c.path, EMOTIONS[int(rng.integers(4))], c.speaker, c.corpus) if c.corpus == "b" else c
        for c in clips
    ]
    again, _ = archive_standardised(
        shuffled,
        features,
        train,
        test,
        sample=ArchiveSample(prior_weight=0.0),
        seed=0,
        make=ClipFeatures,
        train_conditions=("clean",),
    )
    for i in test:
        np.testing.assert_array_equal(again["clean"][i].X, out["clean"][i].X)


def features_mean(features, index):
    return np.concatenate([features["clean"][i].X for i in index]).astype(np.float64).mean(axis=0)


def test_a_skewed_archive_sample_is_mostly_calm():
    labels = np.repeat(EMOTIONS, 32)
    rng = np.random.default_rng(6)
    picked = sample_clips(labels, ArchiveSample(calm_share=0.7), rng=rng)
    counts = {e: int((labels[picked] == e).sum()) for e in EMOTIONS}
    assert counts["calm"] == 32
    assert sum(counts.values()) in range(45, 48)
    assert all(counts[e] in (4, 5) for e in ("angry", "happy", "sad"))
    small = sample_clips(labels, ArchiveSample(n_clips=50), rng=rng)
    assert len(small) == len(set(small.tolist())) == 50


def _shifted_corpora(seed: int = 0):
    """Corpora a and b, 3 speakers each, classes low/high carried by column 1; corpus b
    is the same voices through another chain (every column scaled and shifted)."""
    rng = np.random.default_rng(seed)
    clips, feats = [], []
    for corpus in ("a", "b"):
        for s in range(3):
            for label in ("low", "high"):
                for take in range(6):
                    X = rng.standard_normal((2, 4))
                    X[:, 1] += 3.0 if label == "high" else 0.0
                    if corpus == "b":
                        X = X * 2.0 + 10.0
                    clips.append(
                        Clip(Path(f"{corpus}{s}-{label}-{take}.wav"), label, f"{corpus}{s}", corpus)
                    )
                    feats.append(
                        ClipFeatures(X=X.astype(np.float32), durations_s=np.ones(2, np.float32))
                    )
    return clips, {"clean": feats, "telephone": feats}


@pytest.mark.parametrize("standardise", [False, True])
def test_a_corpus_never_trained_on_is_recognised_once_each_archive_is_standardised(standardise):
    from callsort.training.crossval import cross_validate, make_classifier

    clips, features = _shifted_corpora()
    config = TrainingConfig(
        classes=("low", "high"),
        train_conditions=("clean",),
        channel_normalisation=False,
        n_estimators=40,
        archive_standardisation=standardise,
        archive_sample=ArchiveSample(prior_weight=0.0),
    )
    metrics = cross_validate(
        clips,
        features,
        classes=config.classes,
        config=config,
        make_model=lambda cfg: make_classifier(cfg, jobs=1),
        feature_names=[f"f{i}" for i in range(4)],
        folds=[["b0", "b1", "b2"]],  # leave corpus b out: only a trains
    )
    if standardise:
        assert metrics["clean"]["macro_f1"] > 0.9
    else:  # raw: corpus b lies beyond every threshold learned on a
        assert metrics["clean"]["macro_f1"] < 0.5


def test_the_final_model_stores_the_raw_training_population():
    from callsort.training.crossval import fit_final, make_classifier
    from callsort.training.train import archive_card

    clips, features = _shifted_corpora(1)
    config = TrainingConfig(
        classes=("low", "high"),
        train_conditions=("clean",),
        n_estimators=20,
        archive_standardisation=True,
    )
    fitted = fit_final(
        clips,
        features,
        config=config,
        make_model=lambda cfg: make_classifier(cfg, jobs=1),
        feature_names=[f"f{i}" for i in range(4)],
    )
    raw = np.concatenate([f.X for f in features["clean"]]).astype(np.float64)
    np.testing.assert_allclose(fitted.archive_population.mean, raw.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(fitted.archive_population.var, raw.var(axis=0), rtol=1e-5)
    # the channel prior is learned on standardised features: about 0 and 1
    np.testing.assert_allclose(fitted.prior.mean, 0, atol=1e-5)
    np.testing.assert_allclose(fitted.prior.var, 1, atol=1e-4)
    entry = json.loads(json.dumps(archive_card(fitted.archive_population, config)))
    population = ArchiveStatistics.from_dict(entry["archive_standardisation"]["population"])
    np.testing.assert_allclose(population.mean, fitted.archive_population.mean)
    assert archive_card(None, config) == {}
