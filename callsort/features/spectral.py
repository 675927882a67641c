"""Acoustic features of speech segments: librosa's descriptors, summarised per segment.

One STFT per segment; every spectral descriptor is derived from it (as librosa
does given ``S=``). Each descriptor is a matrix ``(coefficients, frames)``,
summarised over time per coefficient by seven statistics. The result is a
float32 vector whose layout :func:`feature_names` spells out; the model card
stores those names so a model never meets features of another layout.

Segments are computed in batches (:func:`segments_features`): the frames of
all of them are stacked, each step runs once over the stack, and only what
belongs to one segment (its statistics, deltas, pitch resampling) runs per
segment. A segment's values do not depend on the batch it is in.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import scipy.fft

from callsort.audio.filters import chroma_filters, fft_frequencies, hann, mel_filters
from callsort.features.kernels import (
    centred_frames,
    deltas,
    grouped_statistics,
    harmonicity,
    spectral_contrast,
    spectral_rolloff,
    yin_frames,
    zero_crossing_rates,
)
from callsort.settings import FeatureSettings

STATISTICS = ("mean", "median", "std", "min", "max", "skew", "kurtosis")
PITCH_SAMPLE_RATE = 8000  # Hz: YIN runs on a copy at this rate, or at the input's if lower
BATCH_FRAMES = 4096
"""STFT frames computed together (41 s of speech at a 10 ms hop; about 80 MB of
working arrays): enough that the per-call cost of numpy no longer shows."""


def descriptor_sizes(settings: FeatureSettings) -> dict[str, int]:
    """Descriptor name -> number of coefficients, in feature order."""
    return {
        "mfcc": settings.n_mfcc,
        "mfcc_delta": settings.n_mfcc,
        "mfcc_delta2": settings.n_mfcc,
        "logmel": settings.n_mels,
        "rms_db": 1,
        "contrast": settings.n_contrast_bands + 1,
        "chroma": 12,
        "centroid_hz": 1,
        "rolloff_hz": 1,
        "flatness": 1,
        "zcr": 1,
    }


PROSODY_DESCRIPTORS = (
    "hnr_db",  # harmonics-to-noise ratio per frame, from the normalised autocorrelation
    "alpha_ratio_db",  # energy 50-1000 Hz over 1000-5000 Hz
    "hammarberg_db",  # strongest bin 0-2 kHz over strongest 2-5 kHz
    "slope_0_500",  # dB per kHz, regression over the bins in the band
    "slope_500_1500",
    "rms_db_change",  # frame-to-frame change of the level (dB per frame)
)
VOICED_DESCRIPTORS = ("f0_semitones",)  # summarised over voiced frames only (re 100 Hz)
SEGMENT_MEASURES = (
    "voiced_share",  # of the frames
    "f0_slope_st_per_s",  # regression of pitch on time over voiced frames
    "level_peaks_per_s",  # syllable-rate proxy: peaks of the smoothed level per second
)


def feature_names(settings: FeatureSettings) -> list[str]:
    """Names of the values :func:`segment_features` returns, in order."""
    sizes = dict(descriptor_sizes(settings))
    if settings.prosody:
        sizes.update({name: 1 for name in (*PROSODY_DESCRIPTORS, *VOICED_DESCRIPTORS)})
    names = []
    for descriptor, size in sizes.items():
        for i in range(size):
            base = descriptor if size == 1 else f"{descriptor}_{i}"
            names.extend(f"{base}_{stat}" for stat in STATISTICS)
    if settings.prosody:
        names.extend(SEGMENT_MEASURES)
    if settings.encoder is not None:
        names.extend(_encoder_names(settings.encoder))
    return names


def _encoder_names(name: str) -> list[str]:
    from callsort.features.encoder import embedding_names

    _check_encoder(name)
    return embedding_names()


def _check_encoder(name: str) -> None:
    from callsort.features.encoder import WHISPER_BASE

    if name != WHISPER_BASE:
        raise ValueError(f"unknown encoder {name!r} (callsort knows {WHISPER_BASE!r})")


def segment_features(y: np.ndarray, *, settings: FeatureSettings) -> np.ndarray:
    """Feature vector of one segment ``y`` (mono float32 at ``settings.sample_rate``).

    Returns shape ``(len(feature_names(settings)),)``, all finite.
    """
    return segments_features([y], settings=settings)[0]


def segments_features(segments: Sequence[np.ndarray], *, settings: FeatureSettings) -> np.ndarray:
    """Feature vectors of many segments: ``(len(segments), len(feature_names(settings)))``
    float32, row ``i`` equal to ``segment_features(segments[i])``.

    Computed in batches of up to :data:`BATCH_FRAMES` frames.
    """
    s = settings
    level = s.reference_level_db
    if not len(segments):
        return np.zeros((0, len(feature_names(s))), dtype=np.float32)
    # Extreme input (clipped, 1e30, NaN-free but huge) must give finite values, not
    # warnings on the user's terminal: every result goes through nan_to_num.
    with np.errstate(all="ignore"):
        levelled = []
        for y in segments:
            y = np.asarray(y, dtype=np.float32)
            levelled.append(_at_level(y, level) if level is not None else y)
        handmade = np.concatenate(
            [_handmade(levelled[a:b], settings=s) for a, b in _batches(levelled, s)]
        )
    if s.encoder is None:
        return handmade
    from callsort.features.encoder import load_encoder

    _check_encoder(s.encoder)
    return np.concatenate([handmade, load_encoder(layers=s.encoder_layers).embed(levelled)], axis=1)


def _batches(segments: list[np.ndarray], s: FeatureSettings) -> list[tuple[int, int]]:
    """``[start, end)`` ranges of ``segments`` of at most :data:`BATCH_FRAMES` frames
    (a longer segment makes a batch of its own)."""
    ranges, start, frames = [], 0, 0
    for i, y in enumerate(segments):
        n = 1 + max(len(y), s.n_fft) // s.hop_length
        if frames and frames + n > BATCH_FRAMES:
            ranges.append((start, i))
            start, frames = i, 0
        frames += n
    ranges.append((start, len(segments)))
    return ranges


def _handmade(segments: list[np.ndarray], *, settings: FeatureSettings) -> np.ndarray:
    """The hand-made features of segments already at the reference level (float32):
    ``(segments, features)``."""
    s = settings
    padded = [y if y.size >= s.n_fft else np.pad(y, (0, s.n_fft - y.size)) for y in segments]
    descriptors, power, power_by_frame, counts = _descriptors(padded, settings=s)
    if not s.prosody:
        return _finite(_statistics(descriptors, counts))
    parts = _prosody(segments, descriptors, (power, power_by_frame), counts, settings=s)
    return np.concatenate(parts, axis=1)


def frame_descriptors(y: np.ndarray, *, settings: FeatureSettings) -> list[np.ndarray]:
    """Per-frame spectral descriptors of ``y``, each ``(coefficients, frames)``, in the
    order of :func:`descriptor_sizes`."""
    y = np.asarray(y, dtype=np.float32)
    if settings.reference_level_db is not None:
        y = _at_level(y, settings.reference_level_db)
    if y.size < settings.n_fft:
        y = np.pad(y, (0, settings.n_fft - y.size))
    return _descriptors([y], settings=settings)[0]


def _descriptors(
    segments: list[np.ndarray], *, settings: FeatureSettings
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """The descriptors of segments at the reference level, padded to ``n_fft``, frames
    of all segments side by side; the power spectrum ``(1 + n_fft // 2, frames)``, the
    same ``(frames, 1 + n_fft // 2)``; and the frames of each segment.

    The spectra are kept in two layouts. ``(bins, frames)`` C-contiguous: band minima,
    cumulative sums and band sums then run over whole rows of frames at once.
    ``(frames, bins)``: the means over a frame's bins, summed pairwise along memory as
    they always were (a sum in the other layout is sequential, and changes the
    geometric mean in flatness by up to 1e-4).
    """
    s = settings
    by_frame, counts = _stft_magnitudes(segments, n_fft=s.n_fft, hop_length=s.hop_length)
    power_by_frame = by_frame * by_frame
    spectrum = np.ascontiguousarray(by_frame.T)
    power = spectrum * spectrum
    mel_basis, chroma_basis, freqs = _bases(s)
    # librosa.power_to_db(ref=1.0, amin=1e-10, top_db=None) and librosa.feature.mfcc
    spans = _spans(counts)
    log_mel = _decibels(np.maximum(1e-10, _by_segment(mel_basis, power, spans)))
    mfcc = scipy.fft.dct(log_mel, axis=0, type=2, norm="ortho")[: s.n_mfcc]
    delta, delta2 = deltas(mfcc, max_width=s.delta_width, counts=counts)
    mean_power = np.mean(power_by_frame, axis=1)[np.newaxis, :]
    rms = np.sqrt(mean_power * 2.0 / s.n_fft)
    rms_db = 20.0 * np.log10(rms + 1e-6)
    contrast = spectral_contrast(
        spectrum,
        sr=s.sample_rate,
        n_fft=s.n_fft,
        n_bands=s.n_contrast_bands,
        fmin=s.contrast_fmin_hz,
        counts=counts,
    )
    chroma = _by_segment(chroma_basis, power, spans)
    chroma = chroma / np.maximum(chroma.max(axis=0, keepdims=True), 1e-10)
    work = power_by_frame + 1e-10  # one (frames, bins) buffer for both temporaries
    flatness = np.exp(np.mean(np.log(work, out=work), axis=1))[np.newaxis, :] / (mean_power + 1e-10)
    magnitude_sum = np.maximum(by_frame.sum(axis=1), 1e-10)
    weighted = np.multiply(by_frame, freqs, out=work)
    centroid = (weighted.sum(axis=1) / magnitude_sum)[np.newaxis, :]
    rolloff = spectral_rolloff(spectrum, freqs, fraction=s.rolloff_fraction)
    zcr = zero_crossing_rates(segments, frame_length=s.n_fft, hop_length=s.hop_length)
    descriptors = [
        mfcc,
        delta,
        delta2,
        log_mel,
        rms_db,
        contrast,
        chroma,
        centroid,
        rolloff,
        flatness,
        zcr[np.newaxis, :],
    ]
    return descriptors, power, power_by_frame, counts


def prosody_features(
    y: np.ndarray,
    descriptors: list[np.ndarray],
    power: np.ndarray,
    *,
    settings: FeatureSettings,
) -> list[np.ndarray]:
    """The spectral summary plus prosody: pitch, harmonicity, spectral balance, dynamics.

    ``descriptors`` and ``power`` are what the STFT of ``y`` gave
    (:func:`frame_descriptors` and its power spectrum): nothing is computed twice.
    Returns the three parts of the vector, in the order of :func:`feature_names`.
    """
    level = settings.reference_level_db
    y = np.asarray(y, dtype=np.float32)
    levelled = _at_level(y, level) if level is not None else y
    powers = (power, np.ascontiguousarray(power.T))
    counts = np.array([power.shape[1]])
    parts = _prosody([levelled], descriptors, powers, counts, settings=settings)
    return [part[0] for part in parts]


def _stft_magnitudes(
    segments: list[np.ndarray], *, n_fft: int, hop_length: int
) -> tuple[np.ndarray, np.ndarray]:
    """``abs(librosa.stft(y, n_fft, hop_length, window="hann", center=True)).T`` of each
    segment, frames side by side: ``(frames, 1 + n_fft // 2)``, and the frames of each
    segment. Without librosa's per-call checks; equal to it to float32 rounding (tested).
    """
    frames, counts = centred_frames(segments, frame_length=n_fft, hop_length=hop_length)
    frames *= _hann(n_fft)
    return np.abs(scipy.fft.rfft(frames, axis=1)), counts


def _prosody(
    segments: list[np.ndarray],
    descriptors: list[np.ndarray],
    powers: tuple[np.ndarray, np.ndarray],
    counts: np.ndarray,
    *,
    settings: FeatureSettings,
) -> list[np.ndarray]:
    """:func:`prosody_features` of segments already at the reference level (float32),
    whose frames (``counts`` per segment) lie side by side in ``descriptors`` and
    ``powers`` (the power spectrum by bins and by frames): the three parts, each
    ``(segments, values)``."""
    s = settings
    power, power_by_frame = powers
    rms_db = descriptors[list(descriptor_sizes(s)).index("rms_db")][0]
    hnr_db, voiced = harmonicity(
        power_by_frame,
        sample_rate=s.sample_rate,
        f0_range_hz=(s.f0_min_hz, s.f0_max_hz),
        voicing_threshold=s.voicing_threshold,
    )
    alpha_ratio = np.subtract(
        *(10.0 * np.log10(power[a:b].sum(axis=0) + 1e-10) for a, b in _bins(s, "alpha"))
    )
    # the strongest bin of a band is the log of its largest power: no log of every bin
    (low_a, low_b), (mid_a, mid_b) = _bins(s, "hammarberg")
    hammarberg = 10.0 * np.log10(
        (power[low_a:low_b].max(axis=0) + 1e-10) / (power[mid_a:mid_b].max(axis=0) + 1e-10)
    )
    freqs = _bases(s)[2]
    below_1500 = _bins(s, "slopes")[0][1]
    log_power = _decibels(power[:below_1500] + 1e-10)
    spans = _spans(counts)
    slopes = [
        _band_slope(log_power, freqs[:below_1500], lo, hi, spans)
        for lo, hi in ((0, 500), (500, 1500))
    ]
    firsts = np.array([a for a, _ in spans])
    level_change = np.empty_like(rms_db)
    level_change[1:] = rms_db[1:] - rms_db[:-1]
    level_change[firsts] = rms_db[firsts] - rms_db[firsts]  # np.diff(prepend=first): 0
    frame_rows = [hnr_db, alpha_ratio, hammarberg, *slopes, level_change]
    frame_matrix = np.stack([np.asarray(r, dtype=np.float64) for r in frame_rows])
    summary = _finite(_statistics([*descriptors, frame_matrix], counts))

    step = s.pitch_every_frames
    f0, f0_counts = _pitch(segments, settings=s)
    semitones = 12.0 * np.log2(np.maximum(f0, 1.0) / 100.0)
    frame_s = s.hop_length / s.sample_rate
    voiced_values, voiced_counts = [], []
    measures = np.zeros((len(segments), len(SEGMENT_MEASURES)))
    for i, ((a, b), (p, q)) in enumerate(zip(spans, _spans(f0_counts), strict=True)):
        v = voiced[a:b][::step][: q - p]  # the pitch frames are every step-th STFT frame
        v = v & np.isfinite(f0[p : p + v.size])
        st = semitones[p : p + v.size][v]
        if st.size >= 2:
            voiced_values.append(st)
            voiced_counts.append((i, st.size))
        measures[i] = [
            v.mean() if v.size else 0.0,
            _slope(np.flatnonzero(v) * frame_s * step, st),
            _peak_rate(
                rms_db[a:b],
                frame_s=frame_s,
                width=s.level_smooth_frames,
                min_rise_db=s.level_peak_db,
            ),
        ]
    pitch_stats = np.zeros((len(segments), len(STATISTICS)), dtype=np.float32)
    if voiced_values:
        which, sizes = (np.array(x) for x in zip(*voiced_counts, strict=True))
        values = np.concatenate(voiced_values)[np.newaxis, :]
        pitch_stats[which] = _finite(grouped_statistics(values, sizes)[:, 0])
    return [summary, pitch_stats, _finite(measures)]


def summarise(descriptors: list[np.ndarray]) -> np.ndarray:
    """Seven statistics over time of every coefficient, concatenated (finite, float32)."""
    n_frames = descriptors[0].shape[1]
    return _finite(_statistics(descriptors, np.array([n_frames])))[0]


def _statistics(descriptors: list[np.ndarray], counts: np.ndarray) -> np.ndarray:
    """:func:`~callsort.features.kernels.grouped_statistics` of the descriptors' rows
    over each segment's frames, ``(segments, coefficients * 7)``: names run
    coefficient-major. The float32 descriptors are summarised apart from the others,
    so that their rows are sorted as float32."""
    narrow = [d.dtype == np.float32 for d in descriptors]
    rows = np.concatenate(
        [np.full(d.shape[0], f) for d, f in zip(descriptors, narrow, strict=True)]
    )
    stats = np.empty((len(counts), rows.size, len(STATISTICS)))
    for kind in (True, False):
        if any(f == kind for f in narrow):
            dtype = np.float32 if kind else np.float64
            m = np.concatenate([d for d, f in zip(descriptors, narrow, strict=True) if f == kind])
            stats[:, rows == kind] = grouped_statistics(m.astype(dtype, copy=False), counts)
    return stats.reshape(len(counts), -1)


def _decibels(power: np.ndarray) -> np.ndarray:
    """``10 * log10(power)``, as ``log(power) * (10 / ln 10)``, in place: numpy has a SIMD
    float32 ``log`` on AVX2 machines but not ``log10`` (four times faster; equal to
    within a float32 rounding or two)."""
    return np.multiply(np.log(power, out=power), np.float32(10.0 / np.log(10.0)), out=power)


def _finite(x: np.ndarray) -> np.ndarray:
    return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def _spans(counts: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` of each segment's frames."""
    ends = np.cumsum(counts).tolist()
    return list(zip([0, *ends[:-1]], ends, strict=True))


def _pitch(
    segments: list[np.ndarray], *, settings: FeatureSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Fundamental frequency (Hz) with ``librosa.yin`` on an 8 kHz copy of each segment
    (the segment itself when it is at 8 kHz already), one value every
    ``settings.pitch_every_frames`` STFT frames (centred like them); the values of all
    segments side by side, and their count per segment.

    Pitch needs no more than 4 kHz, and 8 kHz instead of 16 makes YIN four times
    cheaper; a 20 ms step halves it again and still follows intonation. YIN is
    :func:`~callsort.features.kernels.yin_frames`, equal to librosa's.
    """
    import soxr

    s = settings
    rate = min(s.sample_rate, PITCH_SAMPLE_RATE)
    hop = s.hop_length * s.pitch_every_frames * rate // s.sample_rate
    frame_length = 1 << int(np.ceil(np.log2(2.2 * rate / s.f0_min_hz)))  # two periods and more
    # one resampler for the batch, cleared between segments: the same output as
    # soxr.resample, without designing its filter again for every segment
    stream = soxr.ResampleStream(s.sample_rate, rate, 1, dtype="float32")
    narrow = []
    for y in segments:
        x = y if rate == s.sample_rate else stream.resample_chunk(y, last=True)
        stream.clear()
        narrow.append(x if x.size >= frame_length else np.pad(x, (0, frame_length - x.size)))
    frames, counts = centred_frames(narrow, frame_length=frame_length, hop_length=hop)
    return yin_frames(frames, fmin=s.f0_min_hz, fmax=s.f0_max_hz, sr=rate), counts


@lru_cache(maxsize=8)
def _bins(s: FeatureSettings, what: str) -> tuple[tuple[int, int], ...]:
    """The bins ``[first, end)`` of the bands a prosody measure compares, in Hz:
    alpha ratio 50-1000 over 1000-5000, Hammarberg 0-2000 over 2000-5000, the
    slopes below 1500."""
    bands = {
        "alpha": ((50, 1000), (1000, 5000)),
        "hammarberg": ((0, 2000), (2000, 5000)),
        "slopes": ((0, 1500),),
    }[what]
    freqs = _bases(s)[2]
    return tuple(
        (int(np.searchsorted(freqs, lo, "left")), int(np.searchsorted(freqs, hi, "left")))
        for lo, hi in bands
    )


@lru_cache(maxsize=8)
def _hann(n_fft: int) -> np.ndarray:
    return hann(n_fft).astype(np.float32)


def _band_slope(
    log_power: np.ndarray, freqs: np.ndarray, lo: float, hi: float, spans: list[tuple[int, int]]
) -> np.ndarray:
    """Least-squares slope (dB per kHz) of the spectrum between ``lo`` and ``hi`` Hz."""
    band = (freqs >= lo) & (freqs < hi)
    f = freqs[band] / 1000.0
    f = f - f.mean()
    return _by_segment(f, log_power[band], spans) / max(float(f @ f), 1e-12)


def _by_segment(basis: np.ndarray, x: np.ndarray, spans: list[tuple[int, int]]) -> np.ndarray:
    """``basis @ x``, one product per segment's frames (columns ``spans``): BLAS sums in
    an order that depends on the number of columns, so a segment's values would
    otherwise depend on the segments beside it."""
    out = np.empty((*basis.shape[:-1], x.shape[1]), dtype=np.result_type(basis, x))
    for a, b in spans:
        out[..., a:b] = basis @ x[:, a:b]
    return out


def _slope(t: np.ndarray, values: np.ndarray) -> float:
    if values.size < 2 or np.ptp(t) == 0:
        return 0.0
    t = t - t.mean()
    return float((t @ (values - values.mean())) / (t @ t))


def _peak_rate(level_db: np.ndarray, *, frame_s: float, width: int, min_rise_db: float) -> float:
    """Local maxima of the level (dB per frame of ``frame_s`` seconds), smoothed over
    ``width`` frames, that stand ``min_rise_db`` above its median, per second: a proxy
    for syllables per second."""
    if level_db.size < width:
        return 0.0
    smooth = np.convolve(level_db, np.ones(width) / width, mode="same")
    inner = smooth[1:-1]
    peaks = (
        (inner > smooth[:-2]) & (inner >= smooth[2:]) & (inner > np.median(smooth) + min_rise_db)
    )
    return float(peaks.sum() / (level_db.size * frame_s))


def _at_level(y: np.ndarray, level_db: float) -> np.ndarray:
    """``y`` scaled to an RMS of ``level_db`` dBFS; near-silence is left as it is."""
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) if y.size else 0.0
    if rms < 1e-5:  # -100 dBFS: nothing to scale
        return y
    return (y * (10 ** (level_db / 20) / rms)).astype(np.float32)


@lru_cache(maxsize=8)
def _bases(s: FeatureSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mel = mel_filters(
        sr=s.sample_rate, n_fft=s.n_fft, n_mels=s.n_mels, fmin=s.fmin_hz, fmax=s.fmax_hz
    )
    chroma = chroma_filters(sr=s.sample_rate, n_fft=s.n_fft)
    freqs = fft_frequencies(sr=s.sample_rate, n_fft=s.n_fft)
    return mel.astype(np.float32), chroma.astype(np.float32), freqs.astype(np.float32)
