"""Normalise a channel's features against that channel's own speaker.

Each channel of a call is one speaker, so its segments tell us that speaker's
baseline for free: how high their voice is, how loud, how bright. The model
sees every segment twice: as measured, and as z-scores against the mean and
spread of all segments of the same channel. The raw half keeps a call that is
angry throughout recognisably angry (its z-scores are all near zero); the
normalised half removes the speaker's identity from the rest.

With few segments a channel's own statistics are unreliable, so they are
shrunk toward the training population's: the population counts as
``prior_weight`` segments. A channel with one segment is therefore compared
mostly with the population, and one with fifty mostly with itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Z_PREFIX = "z_"
_BLOCK = 1024  # rows summed at a time


@dataclass(frozen=True)
class PopulationPrior:
    """Mean and variance of every feature over the training segments, ``(features,)``."""

    mean: np.ndarray
    var: np.ndarray
    weight: float  # how many segments the population counts as

    def to_dict(self) -> dict:
        return {
            "weight": self.weight,
            "mean": [float(v) for v in self.mean],
            "var": [float(v) for v in self.var],
        }

    @classmethod
    def from_dict(cls, data: dict) -> PopulationPrior:
        return cls(
            mean=np.asarray(data["mean"], dtype=np.float64),
            var=np.asarray(data["var"], dtype=np.float64),
            weight=float(data["weight"]),
        )


def population_prior(X: np.ndarray, *, weight: float) -> PopulationPrior:
    """The prior from training segments ``X`` of shape ``(segments, features)``."""
    X = np.asarray(X, dtype=np.float64)
    return PopulationPrior(mean=X.mean(axis=0), var=X.var(axis=0), weight=weight)


def channel_statistics(X: np.ndarray, *, prior: PopulationPrior) -> tuple[np.ndarray, np.ndarray]:
    """Shrunk mean and standard deviation of one channel's segments ``X``.

    Summed in float64 blocks of rows, so a long channel needs no float64 copy.
    """
    n, k = len(X), prior.weight
    total = sum(
        (X[i : i + _BLOCK].sum(axis=0, dtype=np.float64) for i in range(0, n, _BLOCK)),
        np.zeros(X.shape[1]),
    )
    mean = (total + k * prior.mean) / (n + k)
    squares = sum(
        (np.square(X[i : i + _BLOCK] - mean).sum(axis=0) for i in range(0, n, _BLOCK)),
        np.zeros(X.shape[1]),
    )
    var = (squares + k * prior.var) / (n + k)
    return mean, np.sqrt(var + 1e-12)


def channel_normalised(
    X: np.ndarray,
    *,
    prior: PopulationPrior,
    context: np.ndarray | None = None,
    statistics: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """``[X, z]``: the features and their z-scores within the channel, ``(segments, 2 * features)``.

    ``context`` holds the segments whose statistics define the channel (default:
    ``X`` itself, all the segments of one channel of one recording);
    ``statistics``, the :func:`channel_statistics` of that context if known.
    """
    X = np.asarray(X, dtype=np.float32)
    if statistics is None:
        statistics = channel_statistics(X if context is None else context, prior=prior)
    mean, std = statistics
    z = ((X - mean) / std).astype(np.float32)
    return np.hstack([X, np.clip(z, -50.0, 50.0)])


def normalised_names(names: Sequence[str]) -> list[str]:
    """Feature names of :func:`channel_normalised`'s output."""
    return [*names, *(Z_PREFIX + n for n in names)]
