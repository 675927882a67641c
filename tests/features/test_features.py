"""Segment feature vectors: layout, finiteness on awkward input, determinism."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from callsort.features.spectral import (
    PROSODY_DESCRIPTORS,
    SEGMENT_MEASURES,
    STATISTICS,
    VOICED_DESCRIPTORS,
    descriptor_sizes,
    feature_names,
    segment_features,
    summarise,
)
from callsort.settings import FeatureSettings

SETTINGS = FeatureSettings()
N_FEATURES = len(feature_names(SETTINGS))


def assert_valid_vector(x: np.ndarray, settings: FeatureSettings = SETTINGS) -> None:
    assert x.shape == (len(feature_names(settings)),)
    assert x.dtype == np.float32
    assert np.isfinite(x).all()


def test_feature_names_are_unique_and_follow_the_descriptor_layout():
    names = feature_names(SETTINGS)
    assert len(names) == len(set(names))
    per_frame = sum(descriptor_sizes(SETTINGS).values()) + len(PROSODY_DESCRIPTORS)
    voiced = len(VOICED_DESCRIPTORS)
    assert len(names) == (per_frame + voiced) * len(STATISTICS) + len(SEGMENT_MEASURES)
    assert names[: len(STATISTICS)] == [f"mfcc_0_{s}" for s in STATISTICS]
    assert names[-1] == SEGMENT_MEASURES[-1]
    assert all(" " not in n for n in names)
    spectral_only = feature_names(replace(SETTINGS, prosody=False))
    assert names[: len(spectral_only)] == spectral_only
    assert spectral_only[-1] == "zcr_kurtosis"


def test_feature_count_follows_the_settings():
    small = FeatureSettings(n_mfcc=13, n_mels=32, n_contrast_bands=4, prosody=False)
    expected = (3 * 13 + 32 + 1 + 5 + 12 + 4) * len(STATISTICS)
    assert len(feature_names(small)) == expected
    assert len(set(feature_names(small))) == expected


def test_speech_like_segment(make_speech):
    x = segment_features(make_speech(1.5, seed=1), settings=SETTINGS)
    assert_valid_vector(x)
    assert np.count_nonzero(x) > N_FEATURES // 2  # a real signal gives real values


def test_all_zeros_segment():
    assert_valid_vector(
        segment_features(np.zeros(SETTINGS.sample_rate, np.float32), settings=SETTINGS)
    )


@pytest.mark.parametrize("n_samples", [100, 1, 0])
def test_very_short_segment(make_speech, n_samples):
    y = make_speech(0.5, seed=2)[4000 : 4000 + n_samples]
    assert_valid_vector(segment_features(y, settings=SETTINGS))


def test_full_scale_clipped_noise():
    rng = np.random.default_rng(3)
    y = np.clip(3.0 * rng.standard_normal(SETTINGS.sample_rate), -1.0, 1.0).astype(np.float32)
    assert_valid_vector(segment_features(y, settings=SETTINGS))


def test_constant_dc_segment():
    assert_valid_vector(segment_features(np.full(8000, 0.5, np.float32), settings=SETTINGS))


def test_float64_input_is_accepted(make_speech):
    y = make_speech(0.5, seed=4)
    np.testing.assert_array_equal(
        segment_features(y.astype(np.float64), settings=SETTINGS),
        segment_features(y, settings=SETTINGS),
    )


def test_other_settings_give_their_own_length(make_speech):
    small = FeatureSettings(n_mfcc=13, n_mels=32, n_contrast_bands=4)
    assert_valid_vector(segment_features(make_speech(0.8, seed=5), settings=small), small)


def test_same_input_gives_identical_output(make_speech):
    y = make_speech(1.0, seed=6)
    first = segment_features(y, settings=SETTINGS)
    second = segment_features(y.copy(), settings=SETTINGS)
    np.testing.assert_array_equal(first, second)


def test_different_sounds_give_different_features(make_speech, make_noise):
    speech = segment_features(make_speech(1.0, seed=7), settings=SETTINGS)
    noise = segment_features(make_noise(1.0, rms=0.1, seed=7), settings=SETTINGS)
    names = feature_names(SETTINGS)
    flatness = names.index("flatness_mean")
    assert noise[flatness] > 10 * speech[flatness]  # white noise is spectrally flat


def test_summarise_statistics_of_a_known_row():
    row = np.array([[1.0, 2.0, 3.0, 4.0, 10.0]])
    stats = summarise([row])
    mean, median, std, minimum, maximum, skew, _ = stats
    assert mean == pytest.approx(4.0)
    assert median == pytest.approx(3.0)
    assert std == pytest.approx(np.std(row))
    assert (minimum, maximum) == (1.0, 10.0)
    assert skew > 0  # one large value: right-skewed


def test_summarise_constant_row_has_zero_higher_moments():
    stats = summarise([np.full((1, 50), -42.0)])
    np.testing.assert_array_equal(stats, [-42.0, -42.0, 0.0, -42.0, -42.0, 0.0, 0.0])


GAIN_TOLERANCE = {"contrast": 0.5, "mfcc": 0.02}
"""How far a feature may move with the line's gain, per family (all in dB or dB-like units):
spectral contrast takes a quantile of the quietest bins of each band, where float32
rounding shows (0.2 dB measured), MFCC sum all bands (0.003 measured)."""
UNIT_INTERVAL = ("chroma", "flatness", "voiced", "zcr")
"""Families whose values lie in [0, 1]: a gain may move them 1e-4 at most."""


def gain_tolerance(name: str) -> float:
    family = name.split("_", 1)[0]
    if family in UNIT_INTERVAL:
        return 1e-4
    return GAIN_TOLERANCE.get(family, 0.005)


@pytest.mark.parametrize("gain", [0.01, 0.1, 3.0])
def test_features_do_not_depend_on_the_line_gain(make_speech, gain):
    """Each segment is brought to reference_level_db first: gain changes nothing."""
    y = make_speech(1.0, seed=8)
    reference = segment_features(y, settings=SETTINGS)
    scaled = segment_features((y * gain).astype(np.float32), settings=SETTINGS)
    names = feature_names(SETTINGS)
    tolerance = np.array([gain_tolerance(n) for n in names])
    moved = np.abs(scaled - reference) > tolerance
    assert not moved.any(), [
        (n, float(a), float(b))
        for n, a, b, m in zip(names, reference, scaled, moved, strict=True)
        if m
    ]


def test_without_a_reference_level_the_gain_shows_in_level_features(make_speech):
    raw = FeatureSettings(reference_level_db=None)
    y = make_speech(1.0, seed=8)
    loud = segment_features(y, settings=raw)
    quiet = segment_features((y * 0.1).astype(np.float32), settings=raw)
    rms_db_mean = feature_names(raw).index("rms_db_mean")
    assert loud[rms_db_mean] - quiet[rms_db_mean] == pytest.approx(20.0, abs=0.1)


# --- prosody -------------------------------------------------------------------------------


def harmonic_tone(f0_hz: float, seconds: float = 1.0, *, noise: float = 0.0) -> np.ndarray:
    """A voice-like tone: ten harmonics of ``f0_hz`` with falling amplitude, plus noise."""
    sr = SETTINGS.sample_rate
    t = np.arange(int(seconds * sr)) / sr
    y = sum(np.sin(2 * np.pi * k * f0_hz * t) / k for k in range(1, 11))
    y = y + noise * np.random.default_rng(0).standard_normal(t.size)
    return (0.1 * y).astype(np.float32)


def prosody_of(y: np.ndarray, settings: FeatureSettings = SETTINGS) -> dict[str, float]:
    return dict(zip(feature_names(settings), segment_features(y, settings=settings), strict=True))


@pytest.mark.parametrize("f0_hz", [110.0, 220.0])
def test_pitch_is_found_in_semitones(f0_hz):
    got = prosody_of(harmonic_tone(f0_hz))
    assert got["f0_semitones_median"] == pytest.approx(12 * np.log2(f0_hz / 100.0), abs=0.3)
    assert got["f0_semitones_std"] < 0.5
    assert got["voiced_share"] > 0.9


def test_pitch_survives_the_telephone_band():
    """300-3400 Hz removes a 110 Hz fundamental; its harmonics still give the pitch."""
    from callsort.training.augment import telephone

    got = prosody_of(telephone(harmonic_tone(110.0)))
    assert got["f0_semitones_median"] == pytest.approx(12 * np.log2(1.1), abs=0.5)


def test_noise_is_unvoiced_and_less_harmonic_than_a_tone():
    noise = 0.1 * np.random.default_rng(1).standard_normal(SETTINGS.sample_rate)
    tone, hiss = prosody_of(harmonic_tone(150.0)), prosody_of(noise.astype(np.float32))
    assert hiss["voiced_share"] < 0.2
    assert tone["hnr_db_mean"] > hiss["hnr_db_mean"] + 10.0
    assert hiss["f0_semitones_mean"] == 0.0  # no voiced frames: no pitch statistics


def test_rising_pitch_has_a_positive_slope():
    sr = SETTINGS.sample_rate
    t = np.arange(sr) / sr
    f0 = 120.0 * 2 ** (t * 12 / 12)  # one octave (12 semitones) per second
    phase = 2 * np.pi * np.cumsum(f0) / sr
    y = (0.1 * sum(np.sin(k * phase) / k for k in range(1, 8))).astype(np.float32)
    assert prosody_of(y)["f0_slope_st_per_s"] == pytest.approx(12.0, rel=0.15)


def test_syllable_rate_proxy_counts_bursts():
    sr = SETTINGS.sample_rate
    t = np.arange(2 * sr) / sr
    envelope = np.clip(np.sin(2 * np.pi * 3.0 * t), 0.0, None) ** 2  # 3 bursts a second
    y = (envelope * harmonic_tone(150.0, 2.0)).astype(np.float32)
    assert prosody_of(y)["level_peaks_per_s"] == pytest.approx(3.0, abs=0.5)


def syllables(seconds: float = 2.0, rate_hz: float = 3.0) -> np.ndarray:
    sr = SETTINGS.sample_rate
    t = np.arange(int(seconds * sr)) / sr
    envelope = np.clip(np.sin(2 * np.pi * rate_hz * t), 0.0, None) ** 2
    return (envelope * harmonic_tone(150.0, seconds)).astype(np.float32)


def test_the_feature_constants_are_settings():
    """Voicing threshold, level peaks, roll-off and delta width are read from the
    settings (and so stored on the model card), each changing only its own features."""
    y = syllables()
    base = prosody_of(y)
    assert base["voiced_share"] > 0.4 and base["level_peaks_per_s"] > 2.0
    strict = prosody_of(y, replace(SETTINGS, voicing_threshold=0.9999))
    assert strict["voiced_share"] == 0.0 and strict["f0_semitones_mean"] == 0.0
    assert strict["hnr_db_mean"] == base["hnr_db_mean"]
    flat = prosody_of(y, replace(SETTINGS, level_peak_db=60.0))
    assert flat["level_peaks_per_s"] == 0.0 and flat["voiced_share"] == base["voiced_share"]
    smoother = prosody_of(y, replace(SETTINGS, level_smooth_frames=31))
    assert smoother["level_peaks_per_s"] != base["level_peaks_per_s"]
    low = prosody_of(y, replace(SETTINGS, rolloff_fraction=0.5))
    assert (
        low["rolloff_hz_mean"] < base["rolloff_hz_mean"]
        and low["mfcc_0_mean"] == base["mfcc_0_mean"]
    )
    narrow = prosody_of(y, replace(SETTINGS, delta_width=3))
    assert narrow["mfcc_delta_1_std"] != base["mfcc_delta_1_std"]
    assert narrow["mfcc_1_std"] == base["mfcc_1_std"]


def test_a_card_from_before_the_constants_were_settings_reads_as_today():
    """Cards written before issue 14 lack the new fields: they take their defaults,
    which are the values those models were trained with."""
    old_card = {
        k: v
        for k, v in SETTINGS.to_dict().items()
        if k
        not in {
            "voicing_threshold",
            "level_smooth_frames",
            "level_peak_db",
            "rolloff_fraction",
            "delta_width",
        }
    }
    settings = FeatureSettings(**old_card)
    assert settings == SETTINGS
    assert (settings.voicing_threshold, settings.level_peak_db) == (0.45, 3.0)
    assert (settings.level_smooth_frames, settings.rolloff_fraction, settings.delta_width) == (
        5,
        0.85,
        9,
    )


def test_deltas_equal_librosa_segment_by_segment():
    """Deltas of segments side by side (long, short, too short for a filter) are
    librosa's of each segment on its own."""
    import librosa

    from callsort.features.kernels import deltas

    counts = np.array([57, 9, 12, 4, 30, 2, 10, 7])
    x = np.random.default_rng(2).standard_normal((20, counts.sum())).astype(np.float32)
    first, second = deltas(x, max_width=9, counts=counts)
    start = 0
    for n in counts:
        segment = x[:, start : start + n]
        width = min(9, n if n % 2 else n - 1)
        for order, got in ((1, first), (2, second)):
            expected = (
                librosa.feature.delta(segment, width=width, order=order)
                if width >= 3
                else np.zeros_like(segment)
            )
            np.testing.assert_allclose(got[:, start : start + n], expected, atol=1e-5)
        start += n


def test_zero_crossing_rates_equal_librosa_signal_by_signal():
    import librosa

    from callsort.features.kernels import zero_crossing_rates

    rng = np.random.default_rng(3)
    signals = [rng.standard_normal(n).astype(np.float32) for n in (9000, 512, 513, 3000, 1200)]
    signals[0][::5] = 0.0
    signals[3][100:900] = 1e-11  # below librosa's zero threshold
    got = zero_crossing_rates(signals, frame_length=512, hop_length=160)
    expected = [
        librosa.feature.zero_crossing_rate(y, frame_length=512, hop_length=160, center=True)[0]
        for y in signals
    ]
    np.testing.assert_array_equal(got, np.concatenate(expected))


@pytest.mark.filterwarnings("ignore:n_fft=512 is too large")  # librosa, on the short case
def test_stft_magnitudes_equal_librosa():
    import librosa

    from callsort.features.spectral import _stft_magnitudes

    signals = [
        np.random.default_rng(n).standard_normal(n).astype(np.float32) for n in (100, 512, 9001)
    ]
    got, counts = _stft_magnitudes(signals, n_fft=512, hop_length=160)
    expected = [
        np.abs(librosa.stft(y, n_fft=512, hop_length=160, window="hann", center=True)).T
        for y in signals
    ]
    assert counts.tolist() == [len(e) for e in expected]
    np.testing.assert_allclose(got, np.concatenate(expected), atol=2e-5)
