"""Standardise features against the archive they come from.

Two corpora (or two call archives) differ in everything a model should not
learn: microphones, rooms, codecs, languages, how loud the actors were told to
be. Standardising each archive's features over its own segments removes the
part of that difference that is a shift and a scale of each feature. The
statistics are unlabelled by construction: means and variances of segments,
whatever their emotion.

A model trains on each corpus standardised over its own clips and stores the
training population's statistics (:class:`ArchiveStatistics` of all its
training segments). An archive being labelled computes the statistics of a
sample of its own segments, shrunk toward the training population's (the
population counts as ``weight`` segments, as in
:mod:`callsort.features.normalise`), stores them with its dataset so that
later runs standardise alike, and applies them to every segment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_BLOCK = 1024  # rows summed at a time
_FLOOR = 1e-12  # variance floor: a constant feature stays finite


@dataclass(frozen=True)
class ArchiveStatistics:
    """Mean and variance of every feature over ``n_segments`` segments, ``(features,)``."""

    mean: np.ndarray
    var: np.ndarray
    n_segments: float  # segments behind the figures (fractional after shrinking)

    def __post_init__(self):
        if np.shape(self.mean) != np.shape(self.var) or np.ndim(self.mean) != 1:
            raise ValueError("mean and var must be vectors of the same length")

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(np.maximum(self.var, 0.0) + _FLOOR)

    def to_dict(self) -> dict:
        return {
            "n_segments": float(self.n_segments),
            "mean": [float(v) for v in self.mean],
            "var": [float(v) for v in self.var],
        }

    @classmethod
    def from_dict(cls, data: dict) -> ArchiveStatistics:
        return cls(
            mean=np.asarray(data["mean"], dtype=np.float64),
            var=np.asarray(data["var"], dtype=np.float64),
            n_segments=float(data["n_segments"]),
        )


def archive_statistics(X: np.ndarray) -> ArchiveStatistics:
    """Statistics of segments ``X`` of shape ``(segments, features)``, summed in float64
    blocks of rows (no float64 copy of a large archive sample). Non-finite rows are skipped."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be (segments, features), got shape {X.shape}")
    finite = np.isfinite(X).all(axis=1)
    if not finite.all():
        X = X[finite]
    n = len(X)
    if n == 0:
        raise ValueError("no segments to compute archive statistics from")
    total = np.zeros(X.shape[1])
    for i in range(0, n, _BLOCK):
        total += X[i : i + _BLOCK].sum(axis=0, dtype=np.float64)
    mean = total / n
    squares = np.zeros(X.shape[1])
    for i in range(0, n, _BLOCK):
        squares += np.square(X[i : i + _BLOCK] - mean).sum(axis=0)
    return ArchiveStatistics(mean=mean, var=squares / n, n_segments=float(n))


def pooled(parts: Sequence[ArchiveStatistics]) -> ArchiveStatistics:
    """The statistics of the union of the segments behind ``parts`` (exact)."""
    if not parts:
        raise ValueError("nothing to pool")
    n = np.array([p.n_segments for p in parts], dtype=np.float64)
    means = np.stack([p.mean for p in parts])
    mean = (n[:, None] * means).sum(axis=0) / n.sum()
    second = (n[:, None] * (np.stack([p.var for p in parts]) + np.square(means - mean))).sum(axis=0)
    return ArchiveStatistics(mean=mean, var=second / n.sum(), n_segments=float(n.sum()))


def shrunk(
    statistics: ArchiveStatistics, *, population: ArchiveStatistics, weight: float
) -> ArchiveStatistics:
    """``statistics`` shrunk toward ``population``, which counts as ``weight`` segments.

    The result is the pooled statistics of the archive's segments and ``weight``
    segments distributed like the population: with ``weight`` 0 the archive's
    own, with a weight much larger than the sample the population's.
    """
    if weight < 0:
        raise ValueError("weight must be >= 0")
    if weight == 0:
        return statistics
    prior = ArchiveStatistics(population.mean, population.var, float(weight))
    return pooled([statistics, prior])


def standardised(X: np.ndarray, statistics: ArchiveStatistics) -> np.ndarray:
    """``(X - mean) / std`` in float32, ``(segments, features)``, clipped to +-50."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != len(statistics.mean):
        raise ValueError(
            f"X has shape {X.shape}; the statistics have {len(statistics.mean)} features"
        )
    mean = statistics.mean.astype(np.float32)
    std = statistics.std.astype(np.float32)
    return np.clip((X - mean) / std, -50.0, 50.0).astype(np.float32, copy=False)
