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


def feature_names(settings: FeatureSettings) -> list[str]:
    """Names of the values :func:`segment_features` returns, in order."""
    names = []
    for descriptor, size in descriptor_sizes(settings).items():
        for i in range(size):
            base = descriptor if size == 1 else f"{descriptor}_{i}"
            names.extend(f"{base}_{stat}" for stat in STATISTICS)
    return names


def segment_features(y: np.ndarray, *, settings: FeatureSettings) -> np.ndarray:
    """Feature vector of one segment ``y`` (mono float32 at ``settings.sample_rate``).

    Returns shape ``(len(feature_names(settings)),)``, all finite.
    """
    descriptors = frame_descriptors(y, settings=settings)
    return summarise(descriptors)


def frame_descriptors(y: np.ndarray, *, settings: FeatureSettings) -> list[np.ndarray]:
    """Per-frame descriptors of ``y``, each ``(coefficients, frames)``, in feature order."""
    s = settings
    y = np.asarray(y, dtype=np.float32)
    if s.reference_level_db is not None:
        y = _at_level(y, s.reference_level_db)
    if y.size < s.n_fft:
        y = np.pad(y, (0, s.n_fft - y.size))
    spectrum = np.abs(
        librosa.stft(y, n_fft=s.n_fft, hop_length=s.hop_length, window="hann", center=True)
    )
    power = spectrum**2
    mel_basis, chroma_basis, freqs = _bases(s)
    log_mel = librosa.power_to_db(mel_basis @ power, ref=1.0, amin=1e-10, top_db=None)
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=s.n_mfcc)
    delta, delta2 = _deltas(mfcc)
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
    rolloff = _rolloff(spectrum, freqs)
    flatness = np.exp(np.mean(np.log(power + 1e-10), axis=0, keepdims=True)) / (
        np.mean(power, axis=0, keepdims=True) + 1e-10
    )
    zcr = librosa.feature.zero_crossing_rate(
        y, frame_length=s.n_fft, hop_length=s.hop_length, center=True
    )
    return [
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


def summarise(descriptors: list[np.ndarray]) -> np.ndarray:
    """Seven statistics over time of every coefficient, concatenated (finite, float32)."""
    m = np.concatenate(descriptors, axis=0).astype(np.float64)
    mean = m.mean(axis=1)
    centred = m - mean[:, None]
    variance = np.mean(centred**2, axis=1)
    std = np.sqrt(variance)
    # Moments of a (nearly) constant row are undefined: call them 0, as for a normal.
    flat = std <= 1e-6 * np.maximum(np.abs(mean), 1.0)
    safe_var = np.where(flat, 1.0, variance)
    skew = np.where(flat, 0.0, np.mean(centred**3, axis=1) / safe_var**1.5)
    kurtosis = np.where(flat, 0.0, np.mean(centred**4, axis=1) / safe_var**2 - 3.0)
    stats = np.stack(
        [mean, np.median(m, axis=1), std, m.min(axis=1), m.max(axis=1), skew, kurtosis], axis=1
    )  # (coefficients, statistics): names run coefficient-major
    return np.nan_to_num(stats.ravel(), nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


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


def _deltas(mfcc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and second time derivatives; the window shrinks for short segments."""
    n = mfcc.shape[1]
    width = min(9, n if n % 2 else n - 1)
    if width < 3:
        zeros = np.zeros_like(mfcc)
        return zeros, zeros
    return (
        librosa.feature.delta(mfcc, width=width, order=1),
        librosa.feature.delta(mfcc, width=width, order=2),
    )


def _rolloff(spectrum: np.ndarray, freqs: np.ndarray, fraction: float = 0.85) -> np.ndarray:
    cumulative = np.cumsum(spectrum, axis=0)
    threshold = fraction * cumulative[-1:, :]
    index = np.argmax(cumulative >= threshold, axis=0)
    return freqs[index][np.newaxis, :]
