"""Tell the two speakers of a mono channel apart (issue 19).

Works on the channel's speech segments only (``(start_s, end_s)`` from
:mod:`callsort.audio.segment`): :func:`speaker_windows` turns one segment's 16 kHz
samples into speaker embeddings of short windows (:mod:`callsort.audio.voices`,
a voice encoder shipped in the package); :func:`diarise` centres them on the channel's
mean and whitens them (:func:`speaker_space`), clusters the segments' mean windows in
two (Ward's agglomerative clustering refined by k-means; scipy's Ward tree), tests
whether the two clusters are two speakers or one (:func:`separation`), smooths each
segment's window labels and cuts the segment where the speaker changes. Nothing is
fetched at run time. :func:`diarisation_error` scores the result.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from callsort.audio.filters import median_filter
from callsort.audio.voices import (
    EMBEDDING_DIMS,
    FRAMES_PER_S,
    MIN_SAMPLES,
    voice_embeddings,
    voice_mel,
    voice_whitening,
)
from callsort.settings import ANALYSIS_SAMPLE_RATE, DiarisationSettings

SR = ANALYSIS_SAMPLE_RATE


@dataclass(frozen=True)
class SegmentWindows:
    """The speaker features of one speech segment's windows."""

    offsets: np.ndarray  # (windows, 2) start and end (s) from the segment's start
    features: np.ndarray  # (windows, 256) float64: speaker embeddings of unit length


@dataclass(frozen=True)
class Speakers:
    """The outcome of :func:`diarise` for one channel.

    ``segments[k]`` and ``confidence[k]`` are speaker ``k``'s turns (in order) and how
    sure each assignment is (0.5: a coin toss, 1: sure); one list when the channel has
    one speaker (its segments unchanged, confidence None).
    """

    segments: list[list[tuple[float, float]]]
    confidence: list[np.ndarray | None]
    separation: float  # of the two clusters (NaN: too few windows to tell)
    similarity: float = float("nan")  # cosine of the two clusters' mean embeddings

    @property
    def n_speakers(self) -> int:
        return len(self.segments)


def speaker_windows(
    segments: Iterable[np.ndarray], *, settings: DiarisationSettings
) -> list[SegmentWindows]:
    """Speaker embeddings (:func:`callsort.audio.voices.voice_embeddings`) of
    ``window_s`` windows every ``hop_s`` of each 16 kHz segment of ``segments``, one
    :class:`SegmentWindows` each; the last window ends with its segment. A segment
    shorter than a window is one window, none when shorter than ``min_window_s``. The
    windows of many segments are embedded together (``batch_windows`` at a time)."""
    s = settings
    offsets: list[np.ndarray] = []
    embedded: list[np.ndarray] = []
    pending: list[np.ndarray] = []

    def embed_pending() -> None:
        if pending:
            embedded.append(voice_embeddings(pending, batch=s.batch_windows).astype(np.float64))
            pending.clear()

    for y in segments:
        found, mels = _windows(y, settings=s)
        offsets.append(found)
        pending.extend(mels)
        if len(pending) >= s.batch_windows:
            embed_pending()
    embed_pending()
    features = np.concatenate(embedded) if embedded else np.zeros((0, EMBEDDING_DIMS))
    bounds = np.cumsum([0, *(len(o) for o in offsets)])
    return [SegmentWindows(o, features[bounds[i] : bounds[i + 1]]) for i, o in enumerate(offsets)]


def _windows(y: np.ndarray, *, settings: DiarisationSettings) -> tuple[np.ndarray, list]:
    """The windows of one segment: their ``(start, end)`` offsets (s) and mel spectra."""
    s = settings
    duration = y.size / SR
    if duration < s.min_window_s or y.size < MIN_SAMPLES:
        return np.zeros((0, 2)), []
    mel = voice_mel(y, level_dbfs=s.level_dbfs)
    n_frames = mel.shape[0]
    win = max(1, round(s.window_s * FRAMES_PER_S))
    hop = max(1, round(s.hop_s * FRAMES_PER_S))
    if n_frames <= win:
        starts = [0]
        win = n_frames
    else:
        starts = list(range(0, n_frames - win + 1, hop))
        if starts[-1] + win < n_frames:  # the tail gets a window of its own
            starts.append(n_frames - win)
    offsets = [(a / FRAMES_PER_S, min((a + win) / FRAMES_PER_S, duration)) for a in starts]
    return np.array(offsets), [mel[a : a + win] for a in starts]


def centred(X: np.ndarray) -> np.ndarray:
    """The windows ``X`` (windows, features) of one channel centred on the channel's
    mean, so that what the channel's windows share (the line, the codec) does not
    count."""
    return X - X.mean(axis=0)


def speaker_space(X: np.ndarray, *, settings: DiarisationSettings) -> np.ndarray:
    """The windows ``X`` (windows, 256) of one channel where they are clustered:
    :func:`centred`, then, with ``settings.whiten``, times the within-speaker whitening
    (:func:`callsort.audio.voices.voice_whitening`)."""
    Z = centred(X)
    return Z @ voice_whitening() if settings.whiten else Z


def separation(Z: np.ndarray, labels: np.ndarray, owner: np.ndarray) -> float:
    """How well the two clusters of the windows ``Z`` (``labels``; ``owner``: the segment
    of each window) stand apart: the :func:`silhouette` of the segments' mean windows,
    each segment in the cluster most of its windows are in; 0 when either cluster has
    fewer than two segments. Two voices give clusters that stand apart, one voice cut in
    two does not."""
    ids = np.unique(owner)
    M = np.stack([Z[owner == i].mean(axis=0) for i in ids])
    majority = np.array([np.bincount(labels[owner == i], minlength=2).argmax() for i in ids])
    if np.bincount(majority, minlength=2).min() < 2:
        return 0.0
    return silhouette(M, majority)


def silhouette(X: np.ndarray, labels: np.ndarray) -> float:
    """The mean silhouette of the points ``X`` (points, features) in two clusters
    (``labels`` 0/1), Euclidean, as scikit-learn's
    ``silhouette_score`` computes it: for each point ``(b - a) / max(a, b)``, with ``a``
    its mean distance to the other points of its cluster and ``b`` to the other cluster's."""
    sq = np.sum(X * X, axis=1)
    D = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * (X @ X.T), 0))
    np.fill_diagonal(D, 0)
    size = np.bincount(labels, minlength=2).astype(float)
    sums = np.stack([D[:, labels == k].sum(axis=1) for k in (0, 1)], axis=1)  # (points, 2)
    rows = np.arange(len(X))
    with np.errstate(invalid="ignore", divide="ignore"):  # a point alone in its cluster: 0
        a = sums[rows, labels] / (size[labels] - 1)
        b = sums[rows, 1 - labels] / size[1 - labels]
        s = np.nan_to_num((b - a) / np.maximum(a, b))
    return float(s.mean())


def similarity(X: np.ndarray, labels: np.ndarray) -> float:
    """How alike the two clusters (``labels``, 0/1) of the speaker embeddings ``X``
    (windows, 256) sound: the cosine of their mean embeddings. The separation is
    relative (two tight clusters stand apart however close they are); this is absolute:
    one recording played twice, or a prompt repeated, gives clusters that stand apart
    but sound the same."""
    a, b = (X[labels == k].mean(axis=0) for k in (0, 1))
    return float(a @ b / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))


def heard_as_two(separation: float, similarity: float, *, settings: DiarisationSettings) -> bool:
    """Whether ``--speakers auto`` takes two clusters of this :func:`separation` and
    :func:`similarity` for two speakers: they stand apart (``min_separation``) and do not
    sound alike (``max_similarity``)."""
    return separation >= settings.min_separation and similarity < settings.max_similarity


def diarise(
    segments: list[tuple[float, float]],
    windows: list[SegmentWindows],
    *,
    settings: DiarisationSettings,
) -> Speakers:
    """The speakers of one channel whose speech ``segments`` have the speaker features
    ``windows`` (one :class:`SegmentWindows` each, from :func:`speaker_windows`).

    Two speakers when ``settings.speakers`` is 2, or None and the clusters are
    :func:`heard_as_two`; speakers in the order of ``settings.agent``.
    """
    s = settings
    if s.speakers == 1 or not segments:
        return Speakers([list(segments)], [None], float("nan"))
    owner = np.concatenate([np.full(len(w.features), i) for i, w in enumerate(windows)])
    X = np.concatenate([w.features for w in windows]) if len(owner) else np.zeros((0, 1))
    if len(X) < 4:
        return Speakers([list(segments)], [None], float("nan"))
    Z = speaker_space(X, settings=s)
    labels, centroids = _two_clusters(Z, owner, settings=s)
    sep = separation(Z, labels, owner)
    alike = similarity(X, labels)
    if s.speakers is None and not heard_as_two(sep, alike, settings=s):
        return Speakers([list(segments)], [None], sep, alike)

    d = np.linalg.norm(Z[:, None, :] - centroids[None, :, :], axis=2)  # (windows, 2)
    sure = d[:, ::-1] / np.maximum(d.sum(axis=1, keepdims=True), 1e-12)  # (windows, 2)
    pieces: list[tuple[float, float, int, float]] = []  # start, end, speaker, confidence
    for i, (start, end) in enumerate(segments):
        rows = np.flatnonzero(owner == i)
        if len(rows) == 0:
            pieces.append((start, end, -1, 0.5))  # decided below from its neighbours
            continue
        pieces.extend(
            _segment_pieces(start, end, windows[i].offsets, labels[rows], sure[rows], settings=s)
        )
    pieces = _fill_unknown(pieces)
    if len({k for _, _, k, _ in pieces}) < 2:  # the smoothing left one speaker
        return Speakers([list(segments)], [None], sep, alike)
    order = _speaker_order(pieces, agent=s.agent)
    out_segments: list[list[tuple[float, float]]] = [[], []]
    out_conf: list[list[float]] = [[], []]
    for start, end, k, c in pieces:
        j = order.index(k)
        out_segments[j].append((start, end))
        out_conf[j].append(c)
    return Speakers(out_segments, [np.array(c) for c in out_conf], sep, alike)


def _two_clusters(
    Z: np.ndarray, owner: np.ndarray, *, settings: DiarisationSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Labels (0/1) and centroids ``(2, features)`` of the windows ``Z`` (``owner``: the
    segment of each): the segments' mean windows (at most ``max_cluster_windows``,
    evenly spread) in two by Ward's agglomerative clustering, refined by k-means
    iterations over the segment means weighted by their windows; each window then takes
    the nearer centroid."""
    ids, counts = np.unique(owner, return_counts=True)
    if settings.segment_level:
        M = np.stack([Z[owner == i].mean(axis=0) for i in ids])
        weight = counts.astype(float)
    else:
        M, weight = Z, np.ones(len(Z))
    if len(M) < 2:
        M, weight = Z, np.ones(len(Z))
    n = len(M)
    pick = np.linspace(0, n - 1, min(n, settings.max_cluster_windows)).round().astype(int)
    first = ward_halves(M[pick])
    centroids = np.stack([M[pick][first == k].mean(axis=0) for k in (0, 1)])
    for _ in range(settings.kmeans_iterations):
        d = np.linalg.norm(M[:, None, :] - centroids[None, :, :], axis=2)
        labels = d.argmin(axis=1)
        if (np.bincount(labels, minlength=2) == 0).any():
            break
        new = np.stack(
            [np.average(M[labels == k], axis=0, weights=weight[labels == k]) for k in (0, 1)]
        )
        if np.allclose(new, centroids):
            break
        centroids = new
    d = np.linalg.norm(Z[:, None, :] - centroids[None, :, :], axis=2)
    return d.argmin(axis=1), centroids


def ward_halves(X: np.ndarray) -> np.ndarray:
    """Labels (0/1) of the points ``X`` cut in two by Ward's agglomerative clustering:
    scipy's Ward tree, numbered as scikit-learn's ``AgglomerativeClustering(n_clusters=2,
    linkage="ward")`` numbers it (0: the root's child made last), which matters: a
    segment's window labels are median-filtered with zeros beyond its ends."""
    from scipy.cluster.hierarchy import ward

    tree, n = ward(X), len(X)
    labels = np.ones(n, dtype=int)
    stack = [int(tree[-1, :2].max())]
    while stack:
        node = stack.pop()
        if node < n:
            labels[node] = 0
        else:
            stack.extend(int(child) for child in tree[node - n, :2])
    return labels


def _segment_pieces(
    start: float,
    end: float,
    offsets: np.ndarray,
    labels: np.ndarray,
    sure: np.ndarray,
    *,
    settings: DiarisationSettings,
) -> list[tuple[float, float, int, float]]:
    """One segment cut where its smoothed window labels change: ``(start, end, speaker,
    confidence)`` pieces; a piece shorter than ``min_piece_s`` joins its neighbour."""
    k = settings.smooth_windows
    if len(labels) >= k >= 3:
        labels = median_filter(labels.astype(float), size=k | 1).astype(int)
    centres = start + offsets.mean(axis=1)
    cuts = [start]
    owners = [int(labels[0])]
    members: list[list[int]] = [[0]]
    for j in range(1, len(labels)):
        if labels[j] != owners[-1]:
            cuts.append(float((centres[j - 1] + centres[j]) / 2))
            owners.append(int(labels[j]))
            members.append([])
        members[-1].append(j)
    cuts.append(end)
    pieces = [[cuts[i], cuts[i + 1], owners[i], members[i]] for i in range(len(owners))]
    merged = True
    while merged and len(pieces) > 1:  # the shortest too-short piece joins a neighbour
        merged = False
        lengths = [b - a for a, b, _, _ in pieces]
        i = int(np.argmin(lengths))
        if lengths[i] < settings.min_piece_s:
            j = (
                i - 1
                if i == len(pieces) - 1 or (i > 0 and lengths[i - 1] >= lengths[i + 1])
                else i + 1
            )
            a, b = min(pieces[i][0], pieces[j][0]), max(pieces[i][1], pieces[j][1])
            pieces[j] = [a, b, pieces[j][2], pieces[j][3] + pieces[i][3]]
            del pieces[i]
            merged = True
    # neighbours left with the same speaker become one piece
    out: list[list] = []
    for p in pieces:
        if out and out[-1][2] == p[2]:
            out[-1] = [out[-1][0], p[1], p[2], out[-1][3] + p[3]]
        else:
            out.append(p)
    return [(float(a), float(b), k_, float(np.mean(sure[m, k_]))) for a, b, k_, m in out]


def _fill_unknown(
    pieces: list[tuple[float, float, int, float]],
) -> list[tuple[float, float, int, float]]:
    """Segments too short for a window take the speaker of the nearest piece in time."""
    known = [p for p in pieces if p[2] >= 0]
    if not known:
        return [(a, b, 0, 0.5) for a, b, _, _ in pieces]
    out = []
    for a, b, k, c in pieces:
        if k < 0:
            nearest = min(known, key=lambda p: min(abs(p[0] - b), abs(a - p[1])))
            k, c = nearest[2], 0.5
        out.append((a, b, k, c))
    return out


def _speaker_order(pieces: list[tuple[float, float, int, float]], *, agent: str) -> list[int]:
    """The two cluster numbers in output order: the first speaker first (``first``,
    ``none``), or the one with more speech (``most``)."""
    if agent == "most":
        seconds = {k: sum(b - a for a, b, j, _ in pieces if j == k) for k in (0, 1)}
        first = max((0, 1), key=lambda k: (seconds[k], -k))
    else:
        first = min(pieces, key=lambda p: p[0])[2]
    return [first, 1 - first]


def diarisation_error(
    reference: list[list[tuple[float, float]]],
    hypothesis: list[list[tuple[float, float]]],
    *,
    collar_s: float = 0.25,
    step_s: float = 0.01,
) -> float:
    """Diarisation error rate of ``hypothesis`` against ``reference``: each a list of
    speakers, each speaker a list of ``(start_s, end_s)`` turns.

    Missed speech, false alarm and speaker confusion over the reference's speech time,
    the hypothesis's speakers mapped to the reference's in the best one-to-one way (NIST
    md-eval's definition, counted on a ``step_s`` grid: per step, ``max(n_ref, n_hyp) -
    n_correct`` speakers in error); ``collar_s`` either side of every reference turn's
    start and end is not scored. Overlapped speech counts once per speaker. NaN without
    reference speech.
    """
    from itertools import permutations

    ends = [b for spk in (*reference, *hypothesis) for _, b in spk]
    n = int(np.ceil(max(ends, default=0.0) / step_s)) + 1
    t = (np.arange(n) + 0.5) * step_s

    def active(turns: list[tuple[float, float]]) -> np.ndarray:
        mask = np.zeros(n, dtype=bool)
        for a, b in turns:
            mask |= (t >= a) & (t < b)
        return mask

    ref = np.array([active(s) for s in reference]).reshape(len(reference), n)
    hyp = np.array([active(s) for s in hypothesis]).reshape(len(hypothesis), n)
    scored = np.ones(n, dtype=bool)
    for spk in reference:
        for a, b in spk:
            for edge in (a, b):
                scored &= ~((t >= edge - collar_s) & (t < edge + collar_s))
    ref, hyp = ref[:, scored], hyp[:, scored]
    total = ref.sum()
    if total == 0:
        return float("nan")
    n_ref, n_hyp = ref.sum(axis=0), hyp.sum(axis=0)
    best = None
    k = max(len(reference), len(hypothesis))
    for perm in permutations(range(k), len(hypothesis)):
        correct = np.zeros(ref.shape[1], dtype=int)
        for h, r in enumerate(perm):
            if r < len(reference):
                correct += ref[r] & hyp[h]
        errors = int((np.maximum(n_ref, n_hyp) - correct).sum())
        best = errors if best is None else min(best, errors)
    return float(best / total)


def speaker_turns(
    segments: list[list[tuple[float, float]]], *, max_gap_s: float
) -> list[list[tuple[float, float]]]:
    """Each speaker's segments joined across pauses shorter than ``max_gap_s``: the turns
    of a conversation (a turn holds its speaker's short pauses, which the voice-activity
    detector leaves out of the segments)."""
    out = []
    for spk in segments:
        turns: list[tuple[float, float]] = []
        for a, b in sorted(spk):
            if turns and a - turns[-1][1] < max_gap_s:
                turns[-1] = (turns[-1][0], max(b, turns[-1][1]))
            else:
                turns.append((a, b))
        out.append(turns)
    return out
