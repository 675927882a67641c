"""A segment's probabilities in the context of its channel's other segments.

Segments of one channel are not independent: an angry turn is usually next to
another. :func:`in_context` treats a channel's emotion as a hidden Markov chain
over its segments in time order and returns each segment's posterior given the
evidence of them all (forward-backward):

* the chain keeps its emotion from one segment to the next with probability
  ``p_stay`` and otherwise draws one from the class prior; a silence of
  ``half_life_s`` between two segments halves the tie (``p_stay`` moves halfway
  toward no tie), so a long pause lets the emotion change more freely;
* each segment's evidence is the model's probability divided by the class prior
  (a scaled likelihood), raised to ``weight``.

With ``p_stay`` at ``1 / classes`` (or below) there is no tie and the result is
the model's probabilities (``weight`` 1), so a change of emotion inside a call
stays visible as long as the evidence for it outweighs the tie.
"""

from __future__ import annotations

import numpy as np

from callsort.settings import ContextSettings

FLOOR = 1e-12
"""Evidence is floored here, so a probability of exactly 0 never vetoes a class."""


def in_context(
    proba: np.ndarray,
    *,
    settings: ContextSettings,
    gaps_s: np.ndarray | None = None,
    prior: np.ndarray | None = None,
) -> np.ndarray:
    """Posterior class probabilities ``(segments, classes)`` of one channel's segments.

    ``proba`` ``(segments, classes)``: the model's probabilities of the channel's
    segments in time order. ``gaps_s`` ``(segments - 1,)``: the silence before each
    segment but the first, in seconds (default none). ``prior`` ``(classes,)``: the
    class frequencies the model was trained on (default uniform). Rows of the result
    sum to 1. Leading axes, if any, are channels of their own (``proba`` of shape
    ``(channels, segments, classes)``, ``gaps_s`` ``(channels, segments - 1)``); a
    shorter channel padded at its end with rows of ``prior`` gets the result it would
    get alone.
    """
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim < 2:
        raise ValueError(f"proba has shape (segments, classes), not {proba.shape}")
    n, k = proba.shape[-2:]
    if n == 0 or k == 0:
        return proba.copy()
    prior = np.full(k, 1.0 / k) if prior is None else np.asarray(prior, dtype=np.float64)
    prior = prior / prior.sum()
    evidence = (np.maximum(proba, FLOOR) / prior) ** settings.weight
    evidence /= evidence.sum(axis=-1, keepdims=True)
    tie = ties(proba.shape[:-1], settings=settings, n_classes=k, gaps_s=gaps_s)[..., None]

    # forward: alpha[t] = p(class at t | evidence up to t); backward: beta[t] ~ p(evidence
    # after t | class at t); the transition is tie * identity + (1 - tie) * (draw from prior)
    alpha = np.empty_like(evidence)
    alpha[..., 0, :] = prior * evidence[..., 0, :]
    alpha[..., 0, :] /= alpha[..., 0, :].sum(axis=-1, keepdims=True)
    for t in range(1, n):
        predicted = tie[..., t - 1, :] * alpha[..., t - 1, :] + (1.0 - tie[..., t - 1, :]) * prior
        alpha[..., t, :] = predicted * evidence[..., t, :]
        alpha[..., t, :] /= alpha[..., t, :].sum(axis=-1, keepdims=True)
    beta = np.ones_like(evidence)
    for t in range(n - 2, -1, -1):
        ahead = evidence[..., t + 1, :] * beta[..., t + 1, :]
        fresh = (ahead @ prior)[..., None]
        beta[..., t, :] = tie[..., t, :] * ahead + (1.0 - tie[..., t, :]) * fresh
        beta[..., t, :] /= beta[..., t, :].sum(axis=-1, keepdims=True)
    posterior = alpha * beta
    return posterior / posterior.sum(axis=-1, keepdims=True)


def ties(
    shape: int | tuple[int, ...],
    *,
    settings: ContextSettings,
    n_classes: int,
    gaps_s: np.ndarray | None = None,
) -> np.ndarray:
    """The tie between each pair of consecutive segments of channels of ``shape``
    (``segments``, or ``(channels..., segments)``), of shape ``(..., segments - 1)``: the
    weight of "same emotion as before" in the transition, 0 (none) to 1 (never changes).

    ``p_stay`` at no silence is ``tie + (1 - tie) / n_classes`` for a uniform prior;
    the tie halves with every ``half_life_s`` of silence ``gaps_s`` (default none).
    """
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    expected = (*shape[:-1], max(shape[-1] - 1, 0))
    uniform = 1.0 / max(n_classes, 1)
    tie = max(settings.p_stay - uniform, 0.0) / (1.0 - uniform) if n_classes > 1 else 0.0
    gaps = np.zeros(expected)
    if gaps_s is not None:
        gaps = np.asarray(gaps_s, dtype=np.float64)
        if gaps.shape != expected:
            raise ValueError(f"gaps_s has shape {gaps.shape}, not {expected}")
    return tie * 0.5 ** (np.maximum(gaps, 0.0) / settings.half_life_s)


def gaps_between(segments: list[tuple[float, float]]) -> np.ndarray:
    """Silence before each segment but the first ``(segments - 1,)``, in seconds."""
    if len(segments) < 2:
        return np.zeros(0)
    starts = np.array([s for s, _ in segments[1:]], dtype=np.float64)
    ends = np.array([e for _, e in segments[:-1]], dtype=np.float64)
    return np.maximum(starts - ends, 0.0)
