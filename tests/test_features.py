"""Segment feature vectors: layout, finiteness on awkward input, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from callsort.features import (
    STATISTICS,
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
    assert len(names) == sum(descriptor_sizes(SETTINGS).values()) * len(STATISTICS)
    assert names[: len(STATISTICS)] == [f"mfcc_0_{s}" for s in STATISTICS]
    assert names[-1] == "zcr_kurtosis"
    assert all(" " not in n for n in names)


def test_feature_count_follows_the_settings():
    small = FeatureSettings(n_mfcc=13, n_mels=32, n_contrast_bands=4)
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


@pytest.mark.parametrize("gain", [0.01, 0.1, 3.0])
def test_features_do_not_depend_on_the_line_gain(make_speech, gain):
    """Each segment is brought to reference_level_db first: gain changes nothing."""
    y = make_speech(1.0, seed=8)
    reference = segment_features(y, settings=SETTINGS)
    scaled = segment_features((y * gain).astype(np.float32), settings=SETTINGS)
    np.testing.assert_allclose(scaled, reference, rtol=1e-3, atol=0.2)


def test_without_a_reference_level_the_gain_shows_in_level_features(make_speech):
    raw = FeatureSettings(reference_level_db=None)
    y = make_speech(1.0, seed=8)
    loud = segment_features(y, settings=raw)
    quiet = segment_features((y * 0.1).astype(np.float32), settings=raw)
    rms_db_mean = feature_names(raw).index("rms_db_mean")
    assert loud[rms_db_mean] - quiet[rms_db_mean] == pytest.approx(20.0, abs=0.1)
