"""Per-archive standardisation in the protocol (see :mod:`callsort.features.archive`).

An "archive" is one corpus under one audio condition (one recording chain):
training clips are standardised over their own corpus's training clips under
the same condition; test clips over a sample of the test clips under the same
condition, chosen without their labels (or, to mimic a real archive that is
mostly calm, skewed by them: the labels pick which clips form the archive,
never enter the statistics), shrunk toward the training population.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from callsort.features.archive import (
    ArchiveStatistics,
    archive_statistics,
    pooled,
    shrunk,
    standardised,
)


@dataclass(frozen=True)
class ArchiveSample:
    """Which test clips the test archive's statistics come from."""

    n_clips: int | None = None  # a random sample of this many clips (None: every one)
    calm_share: float | None = None  # share of calm clips in the sample (None: as it comes)
    calm_label: str = "calm"
    # segments the training population counts as when the sample's statistics are
    # shrunk toward it; a model's card stores it for the archives it will label
    prior_weight: float = 20.0


def sample_clips(
    labels: Sequence[str], sample: ArchiveSample, *, rng: np.random.Generator
) -> np.ndarray:
    """Indices into ``labels`` of the clips that make the test archive's sample."""
    labels = np.asarray(labels)
    everyone = np.arange(len(labels))
    if sample.calm_share is None:
        n = len(labels) if sample.n_clips is None else min(sample.n_clips, len(labels))
        return np.sort(rng.choice(everyone, size=n, replace=False))
    calm = everyone[labels == sample.calm_label]
    other = everyone[labels != sample.calm_label]
    # as many clips as the calm ones allow (or n_clips), with calm_share of them calm
    n = len(calm) / sample.calm_share if sample.n_clips is None else sample.n_clips
    n_calm = min(len(calm), int(round(n * sample.calm_share)))
    n_other = min(len(other), int(round(n_calm * (1 - sample.calm_share) / sample.calm_share)))
    picked = [rng.choice(calm, size=n_calm, replace=False)]
    # the other emotions in equal parts, as far as they go
    others = sorted(set(labels[other].tolist()))
    per = {lab: everyone[labels == lab] for lab in others}
    share = np.array_split(np.arange(n_other), len(others)) if others else []
    for lab, part in zip(others, share, strict=False):
        picked.append(rng.choice(per[lab], size=min(len(part), len(per[lab])), replace=False))
    return np.sort(np.concatenate(picked).astype(int))


def archive_standardised(
    clips: Sequence,
    features: dict[str, list],
    train: np.ndarray,
    test: np.ndarray,
    *,
    sample: ArchiveSample,
    seed: int,
    make: type,
    train_conditions: Sequence[str],
) -> tuple[dict[str, list], ArchiveStatistics]:
    """``features`` with every training clip standardised over its corpus's training clips
    (per condition) and every test clip over its test archive's sample (per corpus and
    condition, shrunk toward the training population). ``make(X=..., durations_s=...)``
    builds a clip's features. The population pools the training clips under
    ``train_conditions``. Clips in neither ``train`` nor ``test`` are left out
    (``None``). Returns the features and the training population's statistics."""
    corpus = np.array([c.corpus for c in clips], dtype=object)
    labels = np.array([c.label for c in clips], dtype=object)
    out = {cond: [None] * len(clips) for cond in features}
    parts = []
    for cond, feats in features.items():
        for name in dict.fromkeys(corpus[train]):
            members = train[corpus[train] == name]
            X = [feats[i].X for i in members if len(feats[i].X)]
            if not X:
                continue
            stats = archive_statistics(np.concatenate(X))
            if cond in train_conditions:
                parts.append(stats)
            for i in members:
                out[cond][i] = make(
                    X=standardised(feats[i].X, stats), durations_s=feats[i].durations_s
                )
    population = pooled(parts)
    for name in dict.fromkeys(corpus[test]):
        members = test[corpus[test] == name]
        rng = np.random.default_rng([seed, 0xA5C, len(members)])
        chosen = members[sample_clips(labels[members], sample, rng=rng)]
        for cond, feats in features.items():
            X = [feats[i].X for i in chosen if len(feats[i].X)]
            stats = population
            if X:
                stats = shrunk(
                    archive_statistics(np.concatenate(X)),
                    population=population,
                    weight=sample.prior_weight,
                )
            for i in members:
                out[cond][i] = make(
                    X=standardised(feats[i].X, stats), durations_s=feats[i].durations_s
                )
    return out, population
