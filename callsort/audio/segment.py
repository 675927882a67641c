"""Find speech in one channel: energy voice-activity detection with hysteresis.

Works on short non-overlapping frames (``frame_s``, 10 ms by default):
:func:`frame_measures` turns samples into per-frame energy (dB) and zero-crossing
rate, :func:`speech_segments` turns those into ``(start_s, end_s)`` segments.
Thresholds are relative to the channel's own noise floor, so a quiet line and
a loud one are treated alike.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
from scipy.ndimage import uniform_filter1d

from callsort.settings import SegmentationSettings

ZCR_RATE = 16_000  # Hz: zero-crossing rates are crossings per sample at this rate


def frame_measures(
    y: np.ndarray, *, frame_length: int, sample_rate: int = ZCR_RATE
) -> tuple[np.ndarray, np.ndarray]:
    """Energy (dB re full scale) and zero-crossing rate of whole frames of ``y``.

    ``y`` has shape ``(samples,)`` or ``(channels, samples)`` at ``sample_rate`` Hz; a
    trailing partial frame is ignored. Returns two arrays of shape ``(..., frames)``;
    the rate is in crossings per sample at :data:`ZCR_RATE`, the unit the segmentation
    thresholds were set in, whatever the rate of ``y`` (a voice crosses zero as often
    per second at 8 kHz as at 16 kHz).
    """
    n_frames = y.shape[-1] // frame_length
    frames = y[..., : n_frames * frame_length].reshape(*y.shape[:-1], n_frames, frame_length)
    power = np.einsum("...i,...i->...", frames, frames, dtype=np.float64) / frame_length
    energy_db = 10.0 * np.log10(power + 1e-12)
    signs = np.signbit(frames)
    crossings = np.count_nonzero(signs[..., 1:] != signs[..., :-1], axis=-1)
    zcr = crossings / frame_length * (sample_rate / ZCR_RATE)
    return energy_db.astype(np.float32), zcr.astype(np.float32)


def speech_segments(
    energy_db: np.ndarray,
    zcr: np.ndarray,
    *,
    settings: SegmentationSettings,
) -> list[tuple[float, float]]:
    """Speech segments of one channel as ``(start_s, end_s)`` pairs, in order.

    ``energy_db`` and ``zcr`` are per-frame values from :func:`frame_measures`
    (frames of ``settings.frame_s`` seconds). Speech starts where energy rises
    ``start_db`` above the noise floor and lasts while it stays ``stay_db``
    above it; runs closer than ``min_pause_s`` are merged, runs shorter than
    ``min_speech_s`` (clicks) and steady runs (tones, hum) are dropped, and
    long runs are cut into equal windows of at most ``max_segment_s``. A channel
    left without any segment keeps its runs of at least ``short_utterance_s``
    that are not steady (a short answer: "No!"), when that setting is not None; for
    them the zero-crossing rate's spread is taken between
    ``short_utterance_zcr_percentiles``.
    """
    s = settings
    if energy_db.size == 0:
        return []
    smooth = max(1, round(s.smooth_s / s.frame_s))
    e = uniform_filter1d(np.maximum(energy_db, s.silence_db).astype(np.float64), smooth)
    min_frames = round(s.min_speech_s / s.frame_s)
    floor = float(np.percentile(e, s.noise_floor_percentile))
    runs = _speech_runs(e, energy_db, zcr, floor=floor, min_frames=min_frames, s=s)
    if not runs and s.short_utterance_s is not None:
        runs = _short_runs(e, energy_db, zcr, floor=floor, s=s)

    total_s = energy_db.size * s.frame_s
    segments: list[tuple[float, float]] = []
    for a, b in runs:
        start = max(a * s.frame_s - s.pad_s, 0.0)
        end = min(b * s.frame_s + s.pad_s, total_s)
        segments.extend(_windows(start, end, s.max_segment_s))
    return segments


def _speech_runs(
    e: np.ndarray,
    energy_db: np.ndarray,
    zcr: np.ndarray,
    *,
    floor: float,
    min_frames: int,
    s: SegmentationSettings,
) -> list[tuple[int, int]]:
    """Frame ranges of the speech runs of at least ``min_frames`` that are not steady,
    over the smoothed energy ``e`` (empty when nothing rises above the floor)."""
    thresholds = _thresholds(e, floor=floor, min_frames=min_frames, s=s)
    if thresholds is None:
        return []
    start_threshold, stay_threshold = thresholds
    runs = _loud_runs(e, start_threshold, stay_threshold, s)
    return [
        (a, b)
        for a, b in runs
        if b - a >= min_frames
        and not _is_steady(energy_db[a:b], zcr[a:b], e[a:b] > stay_threshold, s)
    ]


def _short_runs(
    e: np.ndarray, energy_db: np.ndarray, zcr: np.ndarray, *, floor: float, s: SegmentationSettings
) -> list[tuple[int, int]]:
    """In a channel without speech runs: the runs of at least ``short_utterance_s`` that
    are not steady. Steadiness is judged on their loud frames alone, so that the quiet
    edges of a short tone burst do not pass for the movement of a voice, and by the
    zero-crossing rate's wider ``short_utterance_zcr_percentiles``: the channel has no
    other speech, and a voice holding one vowel moves its rate less than between-vowel
    speech does (one crossing per 10 ms frame between the quartiles, as a tone)."""
    short_frames = max(1, round(float(s.short_utterance_s or 0.0) / s.frame_s))
    thresholds = _thresholds(e, floor=floor, min_frames=short_frames, s=s)
    if thresholds is None:
        return []
    start_threshold, stay_threshold = thresholds
    kept = []
    for a, b in _loud_runs(e, start_threshold, stay_threshold, s):
        loud = energy_db[a:b] > stay_threshold
        if b - a < short_frames or loud.sum() < 2:
            continue
        percentiles = s.short_utterance_zcr_percentiles
        if not _is_steady(energy_db[a:b][loud], zcr[a:b], loud, s, zcr_percentiles=percentiles):
            kept.append((a, b))
    return kept


def _thresholds(
    e: np.ndarray, *, floor: float, min_frames: int, s: SegmentationSettings
) -> tuple[float, float] | None:
    """``(start, stay)`` thresholds (dB) of a channel, or None when nothing in it rises
    ``start_db`` above its floor."""
    peak = float(np.percentile(e, s.peak_percentile))
    if peak - floor < s.start_db:
        # Speech can be under 0.5 % (100 - peak_percentile) of a long recording (a few
        # turns in an hour on hold): then take the peak among the frames that rise above
        # the floor.
        loud = e[e > floor + s.start_db]
        if loud.size >= min_frames:
            peak = float(np.percentile(loud, s.peak_percentile))
    if peak - floor < s.start_db or peak <= s.silence_db + s.start_db:
        return None  # nothing rises above the floor: silence or a steady sound throughout
    start_threshold = max(floor + s.start_db, peak - s.dynamic_range_db)
    return start_threshold, start_threshold - (s.start_db - s.stay_db)


def _loud_runs(
    e: np.ndarray, start_threshold: float, stay_threshold: float, s: SegmentationSettings
) -> list[tuple[int, int]]:
    """Runs above ``stay_threshold`` that reach ``start_threshold``, close ones merged."""
    runs = [(a, b) for a, b in _runs(e > stay_threshold) if e[a:b].max() > start_threshold]
    return _merge_close(runs, gap=round(s.min_pause_s / s.frame_s))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Half-open ``[start, end)`` frame ranges where ``mask`` is true."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return list(
        zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True)
    )


def _merge_close(runs: list[tuple[int, int]], *, gap: int) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for a, b in runs:
        if merged and a - merged[-1][1] < gap:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


def _is_steady(
    energy_db: np.ndarray,
    zcr: np.ndarray,
    loud: np.ndarray,
    s: SegmentationSettings,
    *,
    zcr_percentiles: tuple[float, float] = (25.0, 75.0),
) -> bool:
    """A tone or hum: its level, or its spectrum (seen through the zero-crossing
    rate of its loud frames, between ``zcr_percentiles``), barely moves. Speech moves
    both all the time."""
    q_e = _percentiles(energy_db, (25.0, 75.0))
    q_z = _percentiles(zcr[loud] if loud.any() else zcr, zcr_percentiles)
    return bool(q_e[1] - q_e[0] < s.min_modulation_db or q_z[1] - q_z[0] < s.min_zcr_spread)


def _percentiles(x: np.ndarray, q: tuple[float, float]) -> np.ndarray:
    """``np.percentile(x, q)`` of a 1-D array (linear interpolation, numpy's steps and
    dtypes): one sort, without numpy's per-call cost (some 80 us, paid twice for every
    run of every channel: most of the time segmentation takes)."""
    v = np.sort(x)
    if v.size and np.isnan(v[-1]):  # NaN sorts last; numpy's percentile is then NaN
        return np.full(len(q), np.nan)
    index = (v.size - 1) * (np.asarray(q, dtype=np.float64) / 100)
    below = np.floor(index)
    above = below + 1
    last = index >= v.size - 1
    below[last] = above[last] = -1
    a, b = v[below.astype(np.intp)], v[above.astype(np.intp)]
    t = index - below
    difference = b - a
    return np.where(t >= 0.5, b - difference * (1 - t), a + difference * t)


def _windows(start: float, end: float, max_len: float) -> list[tuple[float, float]]:
    """Cut ``[start, end)`` into equal pieces no longer than ``max_len`` seconds."""
    n = max(1, int(np.ceil((end - start) / max_len - 1e-9)))
    edges = np.linspace(start, end, n + 1)
    return [(float(a), float(b)) for a, b in pairwise(edges)]
