"""A model that works at 8 kHz: files are decoded to its rate, and speech is found alike."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from callsort.audio.decode import probe
from callsort.run.analysis import mono_speakers, recording_features
from callsort.settings import AnalysisSettings, FeatureSettings

SAMPLES = Path(__file__).resolve().parents[2] / "sample_recordings"
AT_8K = FeatureSettings(
    sample_rate=8000, n_fft=256, hop_length=80, fmax_hz=4000.0, n_contrast_bands=5
)


def test_an_8khz_file_reaches_an_8khz_model_as_stored():
    """The features of each segment are those of the file's own samples (soundfile's
    decode, no resampling) between the segment's bounds."""
    path = SAMPLES / "call_01_escalation.wav"
    found = recording_features(path, feature_settings=AT_8K, settings=AnalysisSettings())
    stored, rate = sf.read(path, dtype="float32")
    assert rate == 8000
    for c, (segments, X) in enumerate(zip(found.segments, found.features, strict=True)):
        assert len(segments) > 3
        from callsort.features.spectral import segments_features

        cuts = [stored[round(a * 8000) : round(b * 8000), c] for a, b in segments]
        np.testing.assert_array_equal(X, segments_features(cuts, settings=AT_8K))


@pytest.mark.parametrize(
    ("name", "frames"),
    [
        ("call_01_escalation.wav", 1),
        ("call_03_happy.wav", 1),
        ("call_06_mono.wav", 1),
        # 16 kHz: at 8 kHz a fricative's energy above 4 kHz is gone, and an edge may move
        ("voicemail_05_mono.flac", 2),
    ],
)
def test_speech_is_found_at_8khz_where_it_is_found_at_16khz(name, frames):
    """The same segments, each bound of an 8 kHz file's within one 10 ms frame,
    whichever rate a model hears (the tone test counts crossings per 16 kHz sample)."""
    settings = AnalysisSettings(diarisation=None)
    at_16k = recording_features(
        SAMPLES / name, feature_settings=FeatureSettings(), settings=settings
    ).segments
    at_8k = recording_features(SAMPLES / name, feature_settings=AT_8K, settings=settings).segments
    for wide, narrow in zip(at_16k, at_8k, strict=True):
        assert len(wide) == len(narrow) > 0
        np.testing.assert_allclose(np.array(narrow), np.array(wide), atol=0.01 * frames + 1e-6)


def test_a_tone_is_not_speech_at_either_rate(tmp_path):
    """A steady 440 Hz tone with a slow swell (hold signal) is dropped at 8 kHz as at
    16 kHz: the tone test's zero-crossing unit does not move with the rate."""
    t = np.arange(8000 * 6) / 8000
    tone = 0.3 * (1 + 0.1 * np.sin(2 * np.pi * 0.5 * t)) * np.sin(2 * np.pi * 440 * t)
    y = np.concatenate([np.zeros(8000), tone, np.zeros(8000)]).astype(np.float32)
    path = tmp_path / "tone.wav"
    sf.write(path, y, 8000, subtype="ULAW")
    for fs in (FeatureSettings(), AT_8K):
        found = recording_features(path, feature_settings=fs, settings=AnalysisSettings())
        assert found.segments == [[]]


def test_pitch_of_an_8khz_segment_is_read_without_resampling():
    """A harmonic vowel-like tone at 180 Hz: its mean pitch feature (semitones re 100 Hz)
    is 12 * log2(1.8) at 8 kHz as at 16 kHz."""
    from callsort.features.spectral import feature_names, segment_features

    expected = 12 * np.log2(180 / 100)
    for fs in (FeatureSettings(), AT_8K):
        t = np.arange(fs.sample_rate) / fs.sample_rate
        y = sum(np.sin(2 * np.pi * 180 * k * t) / k for k in range(1, 8)).astype(np.float32)
        values = dict(zip(feature_names(fs), segment_features(y, settings=fs), strict=True))
        assert values["f0_semitones_mean"] == pytest.approx(expected, abs=0.1)
        assert values["voiced_share"] > 0.9


def test_speakers_of_a_mono_call_are_told_apart_at_8khz():
    """The speaker encoder hears 16 kHz: a mono call analysed at 8 kHz finds the same two
    speakers, segment for segment, as at 16 kHz."""
    path = SAMPLES / "call_06_mono.wav"
    settings = AnalysisSettings()
    assignments = []
    for fs in (FeatureSettings(), AT_8K):
        found = recording_features(path, feature_settings=fs, settings=settings)
        assert len(found.names) == 2
        assignments.append([len(s) for s in found.segments])
    assert assignments[0] == assignments[1]
    stored, rate = sf.read(path, dtype="float32")
    segments = recording_features(
        path, feature_settings=AT_8K, settings=AnalysisSettings(diarisation=None)
    ).segments[0]
    at_8k = mono_speakers(path, probe(path), settings, segments, kept=stored[np.newaxis], rate=rate)
    assert at_8k.n_speakers == 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sample_rate": 8000}, "fmax_hz"),
        ({"sample_rate": 8000, "fmax_hz": 4000.0}, "contrast bands"),
        (
            {
                "sample_rate": 8000,
                "fmax_hz": 4000.0,
                "n_contrast_bands": 5,
                "encoder": "whisper-base",
            },
            "encoder hears 16000 Hz",
        ),
    ],
)
def test_settings_a_rate_cannot_serve_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        FeatureSettings(**changes)
