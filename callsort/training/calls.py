"""Pseudo-calls in call order: every segment of a test speaker's pseudo-call, labelled.

The protocol (:mod:`callsort.training.crossval`) scores a test clip inside a
pseudo-call of its speaker. To measure what the channel context of
:mod:`callsort.model.context` adds, :func:`call_segments` lays the same
pseudo-calls out as calls: their 8 clips one after the other, in an order, each
segment with the model's probabilities (normalised within the call, as
``callsort label`` normalises within a channel) and the silence before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from callsort.features.normalise import PopulationPrior, channel_normalised
from callsort.training.config import ClipFeatures
from callsort.training.corpora import Clip
from callsort.training.crossval import MIX_KINDS, pseudo_call

ORDERS = ("turns", "shuffled")
"""How a pseudo-call's clips follow each other: ``turns``, each emotion's clips together
(the smaller group inserted at a random place in the larger: an outburst, an emotion
that sets in or passes); ``shuffled``, a random order (emotions interleaved: the hardest
case for a context that expects an emotion to last)."""
CLIP_PAUSE_S = 3.0
"""Silence between two clips of a pseudo-call (the other party's turn), in seconds."""
SEGMENT_PAUSE_S = 0.4
"""Silence between two segments of one clip: the shortest pause that splits speech
(``SegmentationSettings.min_pause_s``); the corpus features keep durations, not times."""
PREDICT_ROWS = 4096
"""Segments predicted at a time (bounds the memory of a large test set)."""


@dataclass(frozen=True)
class CallSegments:
    """The segments of a set of pseudo-calls, each call's in order, calls one after another."""

    proba: np.ndarray  # (segments, classes) float32, the model's probabilities
    truth: np.ndarray  # (segments,) int8, index of the segment's clip's class
    call: np.ndarray  # (segments,) int32, which call (contiguous, in order)
    gaps_s: np.ndarray  # (segments,) float32, silence before the segment (0 first in a call)
    anchor: np.ndarray  # (segments,) bool, a segment of the clip the call was drawn for


def call_order(
    members: Sequence[int], clips: Sequence[Clip], *, order: str, rng: np.random.Generator
) -> list[int]:
    """The clips of a pseudo-call (``members``, the first its anchor: :func:`pseudo_call`)
    in call order (:data:`ORDERS`)."""
    if order == "shuffled":
        return [int(members[j]) for j in rng.permutation(len(members))]
    if order != "turns":
        raise ValueError(f"order is one of {ORDERS}, not {order!r}")
    label = clips[members[0]].label
    own = [int(j) for j in members[1:] if clips[j].label == label]
    others = [int(j) for j in members[1:] if clips[j].label != label]
    own.insert(int(rng.integers(len(own) + 1)), int(members[0]))
    small, large = (others, own) if len(others) < len(own) else (own, others)
    at = int(rng.integers(len(large) + 1))
    return large[:at] + small + large[at:]


def call_segments(
    model,
    prior: PopulationPrior | None,
    clips: Sequence[Clip],
    features: Sequence[ClipFeatures],
    test: np.ndarray,
    *,
    kind: str,
    order: str,
    classes: Sequence[str],
    seed: int,
) -> CallSegments:
    """Every segment of the pseudo-call of ``kind`` of each test clip, in ``order``.

    ``test`` indexes the test clips in ``clips`` and ``features`` (one condition); the
    calls are the protocol's own (the same members as
    :func:`~callsort.training.crossval.cross_validate` draws for its clip figures), with
    their order drawn apart. ``model`` predicts channel-normalised features with
    ``prior`` (raw features when None).
    """
    test_clips = [clips[i] for i in test]
    index = {c: n for n, c in enumerate(classes)}
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("proba", "truth", "call", "gaps", "anchor")
    }
    pending: list[np.ndarray] = []  # normalised features not yet predicted

    def predict() -> None:
        if pending:
            parts["proba"].append(model.predict_proba(np.concatenate(pending)).astype(np.float32))
            pending.clear()

    for n, i in enumerate(test):
        rng = np.random.default_rng([seed, int(i), MIX_KINDS.index(kind)])
        members = pseudo_call(n, test_clips, kind=kind, rng=rng)
        order_rng = np.random.default_rng(
            [seed, int(i), MIX_KINDS.index(kind), 1 + ORDERS.index(order)]
        )
        ordered = call_order(members, test_clips, order=order, rng=order_rng)
        sizes = [len(features[test[j]].X) for j in ordered]
        if not sum(sizes):
            continue
        X = np.concatenate([features[test[j]].X for j in ordered])
        pending.append(X if prior is None else channel_normalised(X, prior=prior))
        if sum(len(x) for x in pending) >= PREDICT_ROWS:
            predict()
        parts["truth"].append(np.repeat([index[test_clips[j].label] for j in ordered], sizes))
        parts["call"].append(np.full(len(X), n))
        gaps = np.concatenate(
            [[CLIP_PAUSE_S] + [SEGMENT_PAUSE_S] * (size - 1) for size in sizes if size]
        )
        gaps[0] = 0.0
        parts["gaps"].append(gaps)
        parts["anchor"].append(np.repeat([j == n for j in ordered], sizes))
    predict()
    if not parts["proba"]:
        return CallSegments(
            proba=np.zeros((0, len(classes)), np.float32),
            truth=np.zeros(0, np.int8),
            call=np.zeros(0, np.int32),
            gaps_s=np.zeros(0, np.float32),
            anchor=np.zeros(0, bool),
        )
    return CallSegments(
        proba=np.concatenate(parts["proba"]),
        truth=np.concatenate(parts["truth"]).astype(np.int8),
        call=np.concatenate(parts["call"]).astype(np.int32),
        gaps_s=np.concatenate(parts["gaps"]).astype(np.float32),
        anchor=np.concatenate(parts["anchor"]),
    )
