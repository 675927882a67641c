"""The batched kernels equal librosa's and numpy's results, and a segment's features do not
depend on the segments computed beside it."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import scipy.stats
import soxr

from callsort.features import spectral
from callsort.features.kernels import (
    centred_frames,
    cumulative_rows,
    grouped_statistics,
    spectral_contrast,
    yin,
    yin_frames,
)
from callsort.features.spectral import feature_names, segment_features, segments_features
from callsort.settings import FeatureSettings

SETTINGS = FeatureSettings()


def voices(make_speech, make_noise) -> list[np.ndarray]:
    """Segments as labelling meets them: speech of several lengths and levels, noise,
    near-silence, one shorter than a frame and an empty one."""
    return [
        make_speech(2.3, seed=1),
        make_speech(0.4, seed=2) * 0.01,
        make_noise(1.1, rms=0.05, seed=3),
        np.concatenate([make_speech(1.0, seed=4), np.zeros(8000, np.float32)]),
        make_speech(3.7, seed=5) * 3.0,
        make_speech(0.02, seed=6),
        np.zeros(0, np.float32),
        make_noise(0.5, rms=1e-7, seed=7),
    ]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_yin_equals_librosa(make_speech, seed):
    """Bit for bit, on speech at 8 kHz as the pitch feature runs it."""
    y = soxr.resample(make_speech(2.0, seed=seed, f0_range_hz=(80.0, 300.0)), 16000, 8000)
    options = {"fmin": 70.0, "fmax": 400.0, "sr": 8000, "frame_length": 256, "hop_length": 160}
    expected = librosa.yin(y, center=True, **options)
    np.testing.assert_array_equal(yin(y, **options), expected)


def test_yin_of_many_signals_is_yin_of_each(make_speech, make_noise):
    signals = [soxr.resample(y, 16000, 8000) for y in voices(make_speech, make_noise)]
    signals = [np.pad(y, (0, max(0, 256 - y.size))) for y in signals]
    frames, counts = centred_frames(signals, frame_length=256, hop_length=160)
    got = np.split(yin_frames(frames, fmin=70.0, fmax=400.0, sr=8000), np.cumsum(counts)[:-1])
    for y, f0 in zip(signals, got, strict=True):
        expected = yin(y, fmin=70.0, fmax=400.0, sr=8000, frame_length=256, hop_length=160)
        np.testing.assert_array_equal(f0, expected)


@pytest.mark.parametrize("mode", ["constant", "edge"])
def test_centred_frames_equal_librosa_frames(mode):
    rng = np.random.default_rng(0)
    signals = [rng.standard_normal(n).astype(np.float32) for n in (1, 100, 512, 513, 4000)]
    frames, counts = centred_frames(signals, frame_length=512, hop_length=160, mode=mode)
    expected = [
        librosa.util.frame(np.pad(y, 256, mode=mode), frame_length=512, hop_length=160).T
        for y in signals
    ]
    assert counts.tolist() == [len(e) for e in expected]
    np.testing.assert_array_equal(frames, np.concatenate(expected))


def test_spectral_contrast_equals_librosa_segment_by_segment(make_speech, make_noise):
    """Including librosa's 80 dB floor, which is drawn per segment: one segment here
    has a digital silence far below its speech."""
    signals = [y for y in voices(make_speech, make_noise) if y.size >= 512]
    magnitudes, counts = spectral._stft_magnitudes(signals, n_fft=512, hop_length=160)
    options = {"sr": 16000, "n_fft": 512, "n_bands": 6, "fmin": 100.0}
    got = spectral_contrast(np.ascontiguousarray(magnitudes.T), counts=counts, **options)
    expected = [
        librosa.feature.spectral_contrast(S=np.ascontiguousarray(m.T), **options)
        for m in np.split(magnitudes, np.cumsum(counts)[:-1])
    ]
    np.testing.assert_array_equal(got, np.concatenate(expected, axis=1))


def test_cumulative_rows_equals_numpy_cumsum():
    x = np.random.default_rng(1).random((257, 300)).astype(np.float32)
    np.testing.assert_array_equal(cumulative_rows(x), np.cumsum(x, axis=0))


def test_grouped_statistics_are_each_groups_statistics():
    rng = np.random.default_rng(2)
    counts = np.array([50, 1, 7, 200, 3])
    m = rng.standard_normal((4, counts.sum())) ** 3
    m[2, 51:58] = 5.0  # a constant row in one group: no skew or kurtosis
    m[3, 60] = np.nan  # a NaN in one group spoils that group's row only
    got = grouped_statistics(m, counts)
    assert got.shape == (5, 4, 7)
    for g, part in enumerate(np.split(m, np.cumsum(counts)[:-1], axis=1)):
        for r, row in enumerate(part):
            if np.isnan(row).any():
                assert np.isnan(got[g, r, [0, 1, 3, 4]]).all()
                continue
            spread = np.std(row) > 1e-6 * max(abs(np.mean(row)), 1.0)
            expected = [
                np.mean(row),
                np.median(row),
                np.std(row),
                row.min(),
                row.max(),
                scipy.stats.skew(row) if spread else 0.0,
                scipy.stats.kurtosis(row) if spread else 0.0,
            ]
            np.testing.assert_allclose(got[g, r], expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("batch_frames", [4096, 150])
def test_a_segment_s_features_do_not_depend_on_its_batch(
    make_speech, make_noise, monkeypatch, batch_frames
):
    """Computed together, in batches of any size, every segment gets exactly the
    vector it gets alone."""
    monkeypatch.setattr(spectral, "BATCH_FRAMES", batch_frames)
    signals = voices(make_speech, make_noise)
    together = segments_features(signals, settings=SETTINGS)
    assert together.shape == (len(signals), len(feature_names(SETTINGS)))
    alone = np.stack([segment_features(y, settings=SETTINGS) for y in signals])
    np.testing.assert_array_equal(together, alone)
    assert np.isfinite(together).all()


def test_no_segments_give_an_empty_matrix():
    got = segments_features([], settings=SETTINGS)
    assert got.shape == (0, len(feature_names(SETTINGS))) and got.dtype == np.float32
