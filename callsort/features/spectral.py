"""Acoustic features of one speech segment, computed with librosa.

One STFT per segment; every spectral descriptor is derived from it (librosa
accepts ``S=``). Each descriptor is a matrix ``(coefficients, frames)``,
summarised over time per coefficient by seven statistics. The result is a
float32 vector whose layout :func:`feature_names` spells out; the model card
stores those names so a model never meets features of another layout.
"""

from __future__ import annotations

from functools import lru_cache

import librosa
import numpy as np

from callsort.settings import FeatureSettings

STATISTICS = ("mean", "median", "std", "min", "max", "skew", "kurtosis")


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
    y = np.asarray(y, dtype=np.float32)
    # Extreme input (clipped, 1e30, NaN-free but huge) must give finite values, not
    # warnings on the user's terminal: every result goes through nan_to_num.
    with np.errstate(all="ignore"):
        descriptors, power = _spectral_descriptors(y, settings=settings)
        if not settings.prosody:
            handmade = summarise(descriptors)
        else:
            handmade = np.concatenate(prosody_features(y, descriptors, power, settings=settings))
    if settings.encoder is None:
        return handmade
    from callsort.features.encoder import load_encoder

    _check_encoder(settings.encoder)  # once per segment: no 1,024 names built here
    level = settings.reference_level_db
    embedding = load_encoder().embed([_at_level(y, level) if level is not None else y])[0]
    return np.concatenate([handmade, embedding])


def frame_descriptors(y: np.ndarray, *, settings: FeatureSettings) -> list[np.ndarray]:
    """Per-frame spectral descriptors of ``y``, each ``(coefficients, frames)``, in the
    order of :func:`descriptor_sizes`."""
    return _spectral_descriptors(y, settings=settings)[0]


def _spectral_descriptors(
    y: np.ndarray, *, settings: FeatureSettings
) -> tuple[list[np.ndarray], np.ndarray]:
    """:func:`frame_descriptors` and the power spectrum ``(1 + n_fft // 2, frames)``."""
    s = settings
    y = np.asarray(y, dtype=np.float32)
    if s.reference_level_db is not None:
        y = _at_level(y, s.reference_level_db)
    if y.size < s.n_fft:
        y = np.pad(y, (0, s.n_fft - y.size))
    spectrum = _stft_magnitude(y, n_fft=s.n_fft, hop_length=s.hop_length)
    power = spectrum**2
    mel_basis, chroma_basis, freqs = _bases(s)
    log_mel = librosa.power_to_db(mel_basis @ power, ref=1.0, amin=1e-10, top_db=None)
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=s.n_mfcc)
    delta, delta2 = _deltas(mfcc, max_width=s.delta_width)
    rms = np.sqrt(np.mean(power, axis=0, keepdims=True) * 2.0 / s.n_fft)
    rms_db = 20.0 * np.log10(rms + 1e-6)
    contrast = librosa.feature.spectral_contrast(
        S=spectrum,
        sr=s.sample_rate,
        n_fft=s.n_fft,
        n_bands=s.n_contrast_bands,
        fmin=s.contrast_fmin_hz,
    )
    chroma = chroma_basis @ power
    chroma = chroma / np.maximum(chroma.max(axis=0, keepdims=True), 1e-10)
    magnitude_sum = np.maximum(spectrum.sum(axis=0, keepdims=True), 1e-10)
    centroid = (freqs[:, None] * spectrum).sum(axis=0, keepdims=True) / magnitude_sum
    rolloff = _rolloff(spectrum, freqs, fraction=s.rolloff_fraction)
    flatness = np.exp(np.mean(np.log(power + 1e-10), axis=0, keepdims=True)) / (
        np.mean(power, axis=0, keepdims=True) + 1e-10
    )
    zcr = _zero_crossing_rate(y, frame_length=s.n_fft, hop_length=s.hop_length)
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
        zcr,
    ]
    return descriptors, power


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
    s = settings
    spectral = descriptors
    rms_db = descriptors[list(descriptor_sizes(s)).index("rms_db")]
    n_frames = power.shape[1]
    freqs = _bases(s)[2]
    hnr_db, voiced = _harmonicity(power, settings=s)
    band_db = [
        10.0 * np.log10(power[(freqs >= lo) & (freqs < hi)].sum(axis=0) + 1e-10)
        for lo, hi in ((50, 1000), (1000, 5000))
    ]
    alpha_ratio = band_db[0] - band_db[1]
    # the strongest bin of a band is the log of its largest power: no log of every bin
    low, mid = freqs < 2000, (freqs >= 2000) & (freqs < 5000)
    hammarberg = 10.0 * np.log10(
        (power[low].max(axis=0) + 1e-10) / (power[mid].max(axis=0) + 1e-10)
    )
    below_1500 = freqs < 1500
    log_power = 10.0 * np.log10(power[below_1500] + 1e-10)
    slopes = [
        _band_slope(log_power, freqs[below_1500], lo, hi) for lo, hi in ((0, 500), (500, 1500))
    ]
    level_change = np.diff(rms_db[0], prepend=rms_db[0, :1])
    frame_rows = [hnr_db, alpha_ratio, hammarberg, *slopes, level_change]
    frame_matrix = np.stack([np.asarray(r, dtype=np.float64)[:n_frames] for r in frame_rows])

    step = s.pitch_every_frames
    level = s.reference_level_db
    f0 = _pitch(_at_level(y, level) if level is not None else y, settings=s)
    voiced = voiced[::step][: f0.size]  # the pitch frames are every step-th STFT frame
    f0 = f0[: voiced.size]
    voiced = voiced & np.isfinite(f0)
    semitones = 12.0 * np.log2(np.maximum(f0, 1.0) / 100.0)
    pitch_stats = _summarise_row(semitones[voiced])
    frame_s = s.hop_length / s.sample_rate
    measures = np.array(
        [
            voiced.mean() if voiced.size else 0.0,
            _slope(np.flatnonzero(voiced) * frame_s * step, semitones[voiced]),
            _peak_rate(
                rms_db[0],
                frame_s=frame_s,
                width=s.level_smooth_frames,
                min_rise_db=s.level_peak_db,
            ),
        ]
    )
    return [
        summarise([*spectral, frame_matrix]),
        pitch_stats,
        np.nan_to_num(measures, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32),
    ]


def summarise(descriptors: list[np.ndarray]) -> np.ndarray:
    """Seven statistics over time of every coefficient, concatenated (finite, float32)."""
    m = np.concatenate(descriptors, axis=0).astype(np.float64)
    mean = m.mean(axis=1)
    centred = m - mean[:, None]
    # Products, not ``**3``/``**4``: numpy raises to those powers with the general pow(),
    # ten times slower, and this function would be half of the feature cost.
    c2 = centred * centred
    variance = np.mean(c2, axis=1)
    std = np.sqrt(variance)
    # Moments of a (nearly) constant row are undefined: call them 0, as for a normal.
    flat = std <= 1e-6 * np.maximum(np.abs(mean), 1.0)
    safe_var = np.where(flat, 1.0, variance)
    skew = np.where(flat, 0.0, np.mean(c2 * centred, axis=1) / (safe_var * np.sqrt(safe_var)))
    kurtosis = np.where(flat, 0.0, np.mean(c2 * c2, axis=1) / (safe_var * safe_var) - 3.0)
    stats = np.stack(
        [mean, np.median(m, axis=1), std, m.min(axis=1), m.max(axis=1), skew, kurtosis], axis=1
    )  # (coefficients, statistics): names run coefficient-major
    return np.nan_to_num(stats.ravel(), nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def _summarise_row(values: np.ndarray) -> np.ndarray:
    """The seven statistics of one series; zeros when it has fewer than two values."""
    if values.size < 2:
        return np.zeros(len(STATISTICS), dtype=np.float32)
    return summarise([values[np.newaxis, :]])


def _pitch(y: np.ndarray, *, settings: FeatureSettings) -> np.ndarray:
    """Fundamental frequency (Hz) with ``librosa.yin`` on an 8 kHz copy, one value
    every ``settings.pitch_every_frames`` STFT frames (centred like them).

    Pitch needs no more than 4 kHz, and halving the rate makes YIN four times
    cheaper; a 20 ms step halves it again and still follows intonation.
    """
    import soxr

    s = settings
    rate = s.sample_rate // 2
    hop = s.hop_length * s.pitch_every_frames // 2
    narrow = soxr.resample(y, s.sample_rate, rate)
    frame_length = 1 << int(np.ceil(np.log2(2.2 * rate / s.f0_min_hz)))  # two periods and more
    if narrow.size < frame_length:
        narrow = np.pad(narrow, (0, frame_length - narrow.size))
    return librosa.yin(
        narrow,
        fmin=s.f0_min_hz,
        fmax=s.f0_max_hz,
        sr=rate,
        frame_length=frame_length,
        hop_length=hop,
        center=True,
    )


def _stft_magnitude(y: np.ndarray, *, n_fft: int, hop_length: int) -> np.ndarray:
    """``abs(librosa.stft(y, n_fft, hop_length, window="hann", center=True))``,
    shape ``(1 + n_fft // 2, frames)``, without librosa's per-call checks (a third of
    its cost on segments this short). Equal to librosa's to float32 rounding (tested).
    """
    import scipy.fft

    padded = np.pad(y, n_fft // 2)  # centred frames, zero padding as librosa's default
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop_length]
    return np.abs(scipy.fft.rfft(frames * _hann(n_fft), axis=1)).T


@lru_cache(maxsize=8)
def _hann(n_fft: int) -> np.ndarray:
    import scipy.signal

    return scipy.signal.get_window("hann", n_fft, fftbins=True).astype(np.float32)


@lru_cache(maxsize=8)
def _window_autocorrelation(n_fft: int) -> np.ndarray:
    window = np.hanning(n_fft + 1)[:-1]  # periodic Hann, as the STFT's
    spectrum = np.abs(np.fft.rfft(window, n=2 * n_fft)) ** 2
    r = np.fft.irfft(spectrum)[:n_fft]
    return r / r[0]


def _harmonicity(power: np.ndarray, *, settings: FeatureSettings) -> tuple[np.ndarray, np.ndarray]:
    """Harmonics-to-noise ratio (dB) and a voicing decision per frame.

    Boersma's method: the autocorrelation of each windowed frame (the inverse
    FFT of its power spectrum) divided by the window's own autocorrelation;
    its highest peak in the pitch range is the harmonic share of the energy.
    """
    import scipy.fft

    s = settings
    r = scipy.fft.irfft(power, axis=0)[: s.n_fft // 2]  # float32 in, float32 out
    r = r / np.maximum(r[:1], 1e-12)
    r = r / np.maximum(_window_autocorrelation(s.n_fft)[: s.n_fft // 2, None], 0.1)
    lo = int(s.sample_rate / s.f0_max_hz)
    hi = min(int(s.sample_rate / s.f0_min_hz), s.n_fft // 2 - 1)
    peak = np.clip(r[lo : hi + 1].max(axis=0), 1e-4, 1 - 1e-4)
    return 10.0 * np.log10(peak / (1.0 - peak)), peak > s.voicing_threshold


def _band_slope(log_power: np.ndarray, freqs: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Least-squares slope (dB per kHz) of the spectrum between ``lo`` and ``hi`` Hz."""
    band = (freqs >= lo) & (freqs < hi)
    f = freqs[band] / 1000.0
    f = f - f.mean()
    return (f @ log_power[band]) / max(float(f @ f), 1e-12)


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
    mel = librosa.filters.mel(
        sr=s.sample_rate, n_fft=s.n_fft, n_mels=s.n_mels, fmin=s.fmin_hz, fmax=s.fmax_hz
    )
    chroma = librosa.filters.chroma(sr=s.sample_rate, n_fft=s.n_fft, tuning=0.0)
    freqs = librosa.fft_frequencies(sr=s.sample_rate, n_fft=s.n_fft)
    return mel.astype(np.float32), chroma.astype(np.float32), freqs.astype(np.float32)


def _deltas(mfcc: np.ndarray, *, max_width: int) -> tuple[np.ndarray, np.ndarray]:
    """First and second time derivatives over ``max_width`` frames (odd); the window
    shrinks for short segments."""
    n = mfcc.shape[1]
    width = min(max_width, n if n % 2 else n - 1)
    if width < 3:
        zeros = np.zeros_like(mfcc)
        return zeros, zeros
    return _savgol(mfcc, width=width, order=1), _savgol(mfcc, width=width, order=2)


@lru_cache(maxsize=32)
def _savgol_operator(width: int, order: int) -> np.ndarray:
    """The ``(width, width)`` linear map of ``scipy.signal.savgol_filter(mode="interp")``
    on a window of ``width`` frames: its middle row filters the interior, the rows
    above and below it give the edges (polynomial fits)."""
    import scipy.signal

    eye = np.eye(width)
    return scipy.signal.savgol_filter(eye, width, polyorder=order, deriv=order, axis=0)


def _savgol(x: np.ndarray, *, width: int, order: int) -> np.ndarray:
    """``librosa.feature.delta(x, width=width, order=order)`` along frames, with the
    filter built once per width instead of on every call (half the cost of deltas)."""
    m = _savgol_operator(width, order).astype(x.dtype)
    h, n = width // 2, x.shape[1]
    out = np.empty_like(x)
    out[:, h : n - h] = sum(m[h, j] * x[:, j : n - width + 1 + j] for j in range(width))
    out[:, :h] = x[:, :width] @ m[:h].T
    out[:, n - h :] = x[:, n - width :] @ m[h + 1 :].T
    return out


def _zero_crossing_rate(y: np.ndarray, *, frame_length: int, hop_length: int) -> np.ndarray:
    """librosa's ``zero_crossing_rate(center=True)``, counted once with a cumulative sum.

    Returns shape ``(1, frames)``; librosa frames the signal and counts each
    frame apart, which costs as much as the STFT.
    """
    padded = np.pad(y, frame_length // 2, mode="edge")
    negative = np.signbit(np.where(np.abs(padded) <= 1e-10, 0.0, padded))
    crossings = np.concatenate([[0], np.cumsum(negative[1:] != negative[:-1])])
    starts = np.arange(1 + (padded.size - frame_length) // hop_length) * hop_length
    # a frame counts the crossings between its own samples, not the one into its first
    counts = crossings[starts + frame_length - 1] - crossings[starts]
    return (counts / frame_length)[np.newaxis, :]


def _rolloff(spectrum: np.ndarray, freqs: np.ndarray, *, fraction: float) -> np.ndarray:
    """The frequency (Hz) below which ``fraction`` of each frame's magnitude lies, ``(1, frames)``."""
    cumulative = np.cumsum(spectrum, axis=0)
    threshold = fraction * cumulative[-1:, :]
    index = np.argmax(cumulative >= threshold, axis=0)
    return freqs[index][np.newaxis, :]
