"""Voice-activity detection on synthesised 16 kHz audio with known speech positions."""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise

import numpy as np
import pytest
from conftest import held_vowel

from callsort.audio.segment import frame_measures, speech_segments
from callsort.settings import SegmentationSettings

SR = 16_000
SETTINGS = SegmentationSettings()
FRAME_LENGTH = round(SETTINGS.frame_s * SR)
TOLERANCE_S = 0.15


def segments_of(y: np.ndarray, settings: SegmentationSettings = SETTINGS):
    energy, zcr = frame_measures(y, frame_length=FRAME_LENGTH)
    return speech_segments(energy, zcr, settings=settings)


def assert_segments_match(found, truth, tolerance=TOLERANCE_S):
    assert len(found) == len(truth), f"found {found}, expected about {truth}"
    for (start, end), (true_start, true_end) in zip(found, truth, strict=True):
        assert start == pytest.approx(true_start, abs=tolerance), (found, truth)
        assert end == pytest.approx(true_end, abs=tolerance), (found, truth)


# frame_measures ----------------------------------------------------------------------------


def test_frame_measures_energy_and_zcr_of_known_signals():
    full_scale_square = np.tile(np.r_[np.ones(8), -np.ones(8)], 100).astype(np.float32)
    energy, zcr = frame_measures(full_scale_square, frame_length=160)
    assert energy.shape == zcr.shape == (10,)
    np.testing.assert_allclose(energy, 0.0, atol=1e-4)  # power 1 = 0 dB
    np.testing.assert_allclose(zcr, 19 / 160)  # 10 periods: 19 sign changes inside a frame

    half_amplitude = 0.5 * full_scale_square
    np.testing.assert_allclose(
        frame_measures(half_amplitude, frame_length=160)[0], 20 * np.log10(0.5), atol=1e-4
    )
    silence_db = frame_measures(np.zeros(480, np.float32), frame_length=160)[0]
    np.testing.assert_allclose(silence_db, -120.0)


def test_frame_measures_ignores_a_trailing_partial_frame_and_handles_channels():
    y = np.zeros((2, 1000), np.float32)
    y[1] = 0.1
    energy, zcr = frame_measures(y, frame_length=160)
    assert energy.shape == zcr.shape == (2, 6)
    assert (energy[1] > energy[0]).all()


# speech_segments ----------------------------------------------------------------------------


def test_one_segment_per_burst_at_the_right_place(make_bursts):
    truth = [(1.0, 2.5), (3.7, 5.7), (7.0, 8.0)]
    y = make_bursts(truth, 9.0, seed=3)
    found = segments_of(y)
    assert_segments_match(found, truth)
    assert all(b > a for a, b in found)
    assert all(b1 <= a2 for (_, b1), (a2, _) in pairwise(found))  # in order, disjoint


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bursts_are_found_whatever_the_random_draw(make_bursts, seed):
    truth = [(0.5, 2.0), (3.0, 4.5)]
    assert_segments_match(segments_of(make_bursts(truth, 5.5, seed=seed)), truth)


def test_speech_at_the_very_start_and_end_is_clipped_to_the_recording(make_speech, make_noise):
    y = make_noise(3.0, rms=1e-3, seed=1)
    speech = make_speech(1.0, seed=2)
    y[: len(speech)] += speech
    y[-len(speech) :] += speech
    found = segments_of(y)
    assert_segments_match(found, [(0.0, 1.0), (2.0, 3.0)])
    assert found[0][0] >= 0.0 and found[-1][1] <= 3.0


def test_speech_over_digital_silence(make_bursts):
    truth = [(1.0, 2.2)]
    y = make_bursts(truth, 3.0, noise_rms=0.0)
    assert_segments_match(segments_of(y), truth)


@pytest.mark.parametrize("scale", [0.01, 3.0], ids=["-40dB", "+10dB"])
def test_thresholds_are_relative_to_the_signal_level(make_bursts, scale):
    y = make_bursts([(1.0, 2.5), (3.7, 5.7)], 7.0, seed=4)
    assert segments_of(y * np.float32(scale)) == segments_of(y)


def test_zeros_give_no_segments():
    assert segments_of(np.zeros(3 * SR, np.float32)) == []


def test_empty_signal_gives_no_segments():
    assert segments_of(np.zeros(0, np.float32)) == []
    empty = np.zeros(0, np.float32)
    assert speech_segments(empty, empty, settings=SETTINGS) == []


@pytest.mark.parametrize("rms", [1e-4, 1e-2])
def test_low_steady_noise_gives_no_segments(make_noise, rms):
    assert segments_of(make_noise(4.0, rms=rms, seed=5)) == []


@pytest.mark.parametrize("freq_hz", [1000.0, 425.0])
def test_steady_tone_in_noise_gives_no_segments(make_sine, make_noise, freq_hz):
    y = make_noise(4.0, rms=1e-3, seed=6)
    y[SR : 3 * SR] += make_sine(freq_hz, 2.0, amplitude=0.3)
    assert segments_of(y) == []


def test_cadenced_ringback_tone_gives_no_segments(make_sine, make_noise):
    """425 Hz, 1 s on / 1 s off: loud and starting and stopping, but not speech."""
    y = make_noise(6.0, rms=1e-3, seed=7)
    for start in (0.5, 2.5, 4.5):
        a = int(start * SR)
        y[a : a + SR] += make_sine(425.0, 1.0, amplitude=0.3)
    assert segments_of(y) == []


@pytest.mark.parametrize("freq_hz", [425.0, 2000.0])
def test_tone_with_syllable_rate_tremolo_gives_no_segments(make_sine, make_noise, freq_hz):
    """Its level moves like speech, but its spectrum (zero-crossing rate) never does."""
    y = make_noise(4.0, rms=1e-3, seed=6)
    t = np.arange(2 * SR) / SR
    tremolo = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t)
    y[SR : 3 * SR] += (make_sine(freq_hz, 2.0, amplitude=0.3) * tremolo).astype(np.float32)
    assert segments_of(y) == []


def test_what_counts_as_a_tone_is_a_setting(make_sine, make_noise):
    """The tremolo tone above is refused by ``min_zcr_spread``; without that test its
    moving level makes it speech."""
    y = make_noise(4.0, rms=1e-3, seed=6)
    t = np.arange(2 * SR) / SR
    tremolo = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t)
    y[SR : 3 * SR] += (make_sine(425.0, 2.0, amplitude=0.3) * tremolo).astype(np.float32)
    assert segments_of(y) == []
    assert_segments_match(segments_of(y, replace(SETTINGS, min_zcr_spread=0.0)), [(1.0, 3.0)])


def test_the_segmentation_constants_are_settings_with_the_old_values():
    """Fields added in issue 14 default to the constants they replace, so a card
    written before them reads as the same settings."""
    old_card = {
        k: v
        for k, v in SETTINGS.__dict__.items()
        if k not in {"min_zcr_spread", "silence_db", "smooth_s", "peak_percentile"}
    }
    settings = SegmentationSettings(**old_card)
    assert settings == SETTINGS
    assert (settings.min_zcr_spread, settings.silence_db) == (0.012, -120.0)
    assert (settings.smooth_s, settings.peak_percentile) == (0.05, 99.5)
    assert round(settings.smooth_s / settings.frame_s) == 5  # frames, as before


def test_steady_hiss_switching_on_gives_no_segments(make_noise):
    """Broadband noise 30 dB above the floor for 2 s: loud, but its level never moves."""
    y = make_noise(4.0, rms=1e-3, seed=7)
    y[SR : 3 * SR] += make_noise(2.0, rms=0.03, seed=8)
    assert segments_of(y) == []


def test_single_click_gives_no_segments(make_noise):
    y = make_noise(3.0, rms=1e-3, seed=8)
    y[SR + 123] = 0.9
    assert segments_of(y) == []


def test_burst_shorter_than_min_speech_is_dropped_beside_speech(make_bursts):
    y = make_bursts([(1.0, 1.25), (2.0, 3.5)], 4.5)  # one syllable, then 1.5 s of speech
    assert_segments_match(segments_of(y), [(2.0, 3.5)])
    # ... and min_speech_s is what drops it:
    assert len(segments_of(y, replace(SETTINGS, min_speech_s=0.1))) == 2


# short utterances: a channel whose only speech is shorter than min_speech_s ---------------

WITHOUT_SHORT = replace(SETTINGS, short_utterance_s=None)  # callsort before issue 17


def between(line: np.ndarray, sound: np.ndarray) -> np.ndarray:
    """``sound`` at 1.0 s, between the first and the second second of ``line``."""
    return np.concatenate([line[:SR], sound.astype(np.float32), line[SR : 2 * SR]])


def test_a_short_answer_alone_in_a_channel_gets_a_segment(demo_voice):
    """A real 0.2 s word in the line's background: once dropped as too short (the channel
    had no segment at all), now its own segment, padded like any other."""
    y = between(demo_voice["line"], demo_voice["word"])
    assert segments_of(y, WITHOUT_SHORT) == []
    found = segments_of(y)
    assert_segments_match(found, [(1.0, 1.2)], tolerance=0.08)
    ((start, end),) = found
    assert end - start < SETTINGS.min_speech_s + 2 * SETTINGS.pad_s


def test_a_short_answer_in_a_long_quiet_recording_gets_a_segment(demo_voice, make_noise):
    """One word in two minutes: under 0.5 % of the recording, fewer loud frames than
    min_speech_s, and still found."""
    y = make_noise(120.0, rms=1e-3, seed=3)
    y[60 * SR : 60 * SR + len(demo_voice["word"])] += demo_voice["word"]
    assert segments_of(y, WITHOUT_SHORT) == []
    assert_segments_match(segments_of(y), [(60.0, 60.2)], tolerance=0.08)


def test_a_short_word_beside_longer_speech_stays_dropped(demo_voice):
    """Where the channel has speech, a burst under min_speech_s is still a click."""
    line, turn = demo_voice["line"], demo_voice["turn"]
    y = np.concatenate([between(line, demo_voice["word"]), turn, line[:SR]])
    found = segments_of(y)
    assert found == segments_of(y, WITHOUT_SHORT)
    assert found and all(start > 2.0 for start, _ in found)  # only the turn, from 2.2 s


def test_a_short_word_needs_short_utterance_s(demo_voice):
    y = between(demo_voice["line"], demo_voice["word"])
    assert segments_of(y, replace(SETTINGS, short_utterance_s=0.3)) == []


@pytest.mark.parametrize("sound", ["line", "beep", "faded beep", "dual tone", "click"])
def test_no_short_segment_in_a_channel_of_noise_tones_or_clicks(demo_voice, sound):
    """A short tone (an IVR beep, a DTMF digit) or a click, alone in a channel, is not a
    short answer: its level or its zero-crossing rate does not move like a voice."""
    t = np.arange(round(0.2 * SR)) / SR
    sounds = {
        "line": np.zeros(0),
        "beep": 0.3 * np.sin(2 * np.pi * 1000 * t),
        "faded beep": 0.3 * np.sin(2 * np.pi * 1000 * t) * np.sin(np.pi * t / 0.2) ** 2,
        "dual tone": 0.15 * (np.sin(2 * np.pi * 697 * t) + np.sin(2 * np.pi * 1209 * t)),
        "click": np.r_[0.9, np.zeros(15)],
    }
    assert segments_of(between(demo_voice["line"], sounds[sound])) == []


def test_a_held_vowel_alone_in_a_channel_gets_a_segment(demo_voice):
    """The speech runs' steadiness test (zero-crossing quartiles) takes it for a tone; a
    channel without other speech judges it by the deciles, which its fricative spreads."""
    y = between(demo_voice["line"], held_vowel(fricative_s=0.2))
    quartiles = replace(SETTINGS, short_utterance_zcr_percentiles=(25.0, 75.0))
    assert segments_of(y, quartiles) == []
    assert_segments_match(segments_of(y), [(1.0, 2.8)])


def test_a_tone_after_a_hiss_stays_without_a_segment(demo_voice):
    """The same hiss before a steady 165 Hz tone: the deciles of its zero-crossing rate
    spread as the vowel's do, but its level does not move."""
    assert segments_of(between(demo_voice["line"], held_vowel(fricative_s=0.2, tone=True))) == []


def test_a_held_vowel_without_its_consonant_stays_as_steady_as_a_tone(demo_voice):
    """Where the vowel alone is all there is (no frame off its one or two crossings),
    nothing tells it from a tone: the limit of the zero-crossing test."""
    assert segments_of(between(demo_voice["line"], held_vowel(fricative_s=0.0))) == []


def test_short_utterance_zcr_percentiles_are_two_ordered_percentiles():
    assert SegmentationSettings(short_utterance_zcr_percentiles=[5, 95]) == replace(
        SETTINGS, short_utterance_zcr_percentiles=(5.0, 95.0)
    )
    for bad in [(75.0, 25.0), (10.0, 10.0), (-1.0, 90.0), (10.0, 101.0)]:
        with pytest.raises(ValueError, match="two percentiles"):
            SegmentationSettings(short_utterance_zcr_percentiles=bad)


def test_burst_just_longer_than_min_speech_is_kept(make_bursts):
    truth = [(1.0, 1.0 + 2 * SETTINGS.min_speech_s)]
    assert_segments_match(segments_of(make_bursts(truth, 3.0)), truth)


def test_bursts_separated_by_a_short_pause_merge(make_bursts):
    pause = SETTINGS.min_pause_s / 2  # 0.2 s
    y = make_bursts([(1.0, 2.0), (2.0 + pause, 3.5)], 5.0)
    assert_segments_match(segments_of(y), [(1.0, 3.5)])


def test_bursts_separated_by_a_long_pause_stay_apart(make_bursts):
    truth = [(1.0, 2.0), (2.0 + 3 * SETTINGS.min_pause_s, 3.5)]
    assert_segments_match(segments_of(make_bursts(truth, 5.0)), truth)


def test_long_burst_is_cut_into_equal_windows_covering_it(make_bursts):
    y = make_bursts([(1.0, 12.0)], 13.0)
    found = segments_of(y)
    assert len(found) == 3  # 11 s + padding in windows of at most 4 s
    lengths = [b - a for a, b in found]
    assert all(length <= SETTINGS.max_segment_s + 1e-9 for length in lengths)
    assert max(lengths) - min(lengths) < 1e-6  # equal pieces
    assert all(b1 == pytest.approx(a2) for (_, b1), (a2, _) in pairwise(found))  # contiguous
    assert found[0][0] == pytest.approx(1.0, abs=TOLERANCE_S)
    assert found[-1][1] == pytest.approx(12.0, abs=TOLERANCE_S)


def test_max_segment_setting_is_respected(make_bursts):
    settings = SegmentationSettings(max_segment_s=1.0)
    found = segments_of(make_bursts([(1.0, 4.0)], 5.0), settings)
    assert len(found) == 4  # 3.1 s with padding -> four windows of ~0.78 s
    assert all(b - a <= 1.0 + 1e-9 for a, b in found)


def test_quieter_speaker_next_to_a_loud_one_is_still_found(make_speech, make_noise):
    """Two people on one line, 20 dB apart: both are far above the noise floor."""
    y = make_noise(6.0, rms=1e-3, seed=9)
    loud, quiet = make_speech(1.5, rms=0.2, seed=10), make_speech(1.5, rms=0.02, seed=11)
    y[SR : SR + len(loud)] += loud
    y[4 * SR : 4 * SR + len(quiet)] += quiet
    assert_segments_match(segments_of(y), [(1.0, 2.5), (4.0, 5.5)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_steadiness_percentiles_are_numpys_to_the_bit(dtype):
    from callsort.audio.segment import _percentiles

    rng = np.random.default_rng(7)
    for size in [1, 2, 3, 4, 5, 10, 37, 100, 399]:
        for rounding in (None, 1):  # ties, as in dB levels of a clipped or quiet run
            x = (rng.normal(size=size) * 30 - 40).astype(dtype)
            x = x if rounding is None else np.round(x, rounding)
            for q in ((25.0, 75.0), (10.0, 90.0), (0.0, 100.0)):
                expected = np.percentile(x, list(q))
                found = _percentiles(x, q)
                assert found.dtype == expected.dtype
                np.testing.assert_array_equal(found, expected)
    with_nan = np.array([1.0, np.nan, 3.0], dtype=dtype)
    np.testing.assert_array_equal(_percentiles(with_nan, (25.0, 75.0)), [np.nan, np.nan])
