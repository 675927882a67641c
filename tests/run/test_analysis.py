"""One recording through the whole analysis: streamed and in-memory paths agree."""

from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from callsort.errors import DecodeError
from callsort.model.folder import load_model
from callsort.run.analysis import analyse_recording, decode_mono, waveform_segments
from callsort.settings import AnalysisSettings, FeatureSettings

SAMPLES = Path(__file__).resolve().parents[2] / "sample_recordings"
CALL = SAMPLES / "call_01_escalation.wav"


@pytest.fixture(scope="module")
def model():
    return load_model()


def test_streamed_long_path_equals_in_memory_path(model):
    """Forcing the two-pass block-streaming path (used for long recordings) gives the
    same segments and the same labels as decoding the file at once."""
    in_memory = analyse_recording(CALL, model=model, settings=AnalysisSettings())
    streamed = analyse_recording(
        CALL, model=model, settings=AnalysisSettings(in_memory_s=0.0, block_s=1.7)
    )
    assert in_memory.duration_s == pytest.approx(streamed.duration_s, abs=1e-3)
    assert [c.name for c in in_memory.channels] == ["left", "right"]
    for a, b in zip(in_memory.channels, streamed.channels, strict=True):
        assert a.segments == b.segments
        assert len(a.segments) > 3
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=0.02)
        np.testing.assert_array_equal(
            a.probabilities.argmax(axis=1), b.probabilities.argmax(axis=1)
        )


def test_block_size_does_not_change_the_analysis(model):
    small = analyse_recording(CALL, model=model, settings=AnalysisSettings(block_s=0.37))
    large = analyse_recording(CALL, model=model, settings=AnalysisSettings(block_s=600.0))
    for a, b in zip(small.channels, large.channels, strict=True):
        assert a.segments == b.segments
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=0.02)


def test_training_path_matches_label_path(model):
    """Training clips go through the same segmentation and features as `label`."""
    y = decode_mono(SAMPLES / "voicemail_05_mono.flac")
    settings = AnalysisSettings()
    segments, X = waveform_segments(
        y, settings=settings, feature_settings=FeatureSettings(**model.card.feature_settings)
    )
    analysed = analyse_recording(SAMPLES / "voicemail_05_mono.flac", model=model, settings=settings)
    assert segments == analysed.channels[0].segments
    np.testing.assert_allclose(model.channel_proba(X), analysed.channels[0].raw, atol=1e-6)


def test_max_segment_bounds_every_segment(model):
    settings = AnalysisSettings()
    settings = replace(settings, segmentation=replace(settings.segmentation, max_segment_s=1.0))
    analysis = analyse_recording(CALL, model=model, settings=settings)
    lengths = [e - s for c in analysis.channels for s, e in c.segments]
    assert lengths and max(lengths) <= 1.0 + 1e-9


def test_header_only_file_is_a_decode_error(tmp_path, model):
    empty = tmp_path / "header_only.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 8000)
    with pytest.raises(DecodeError, match="no audio data"):
        analyse_recording(empty, model=model, settings=AnalysisSettings())


def test_silent_recording_has_no_segments(tmp_path, model):
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros((8000 * 5, 2), dtype=np.float32), 8000, subtype="ULAW")
    analysis = analyse_recording(silent, model=model, settings=AnalysisSettings())
    assert [c.segments for c in analysis.channels] == [[], []]
    assert analysis.duration_s == pytest.approx(5.0)


def test_a_short_answer_alone_is_labelled_with_its_duration(tmp_path, model, demo_voice):
    """A real 0.2 s word on a call's line, as an 8 kHz mu-law file: one segment shorter
    than min_speech_s (with its padding), labelled, its duration in its row; before
    short utterances the channel had no segment and so no label."""
    from callsort.dataset.tables import RecordingResult, calls_table, segments_table

    y = np.concatenate([demo_voice["line"][:16000], demo_voice["word"], demo_voice["line"]])
    path = tmp_path / "no.wav"
    sf.write(path, y[::2], 8000, subtype="ULAW")  # the voice is band-limited already
    settings = AnalysisSettings()
    analysis = analyse_recording(path, model=model, settings=settings)
    (channel,) = analysis.channels
    assert len(channel.segments) == 1
    ((start, end),) = channel.segments
    assert start == pytest.approx(0.95, abs=0.08) and end == pytest.approx(1.25, abs=0.08)
    assert end - start < settings.segmentation.min_speech_s + 2 * settings.segmentation.pad_s
    result = RecordingResult("no.wav", "0" * 16, analysis, "", 1.0, datetime.now(timezone.utc))
    (row,) = segments_table([result], classes=model.classes, model_version="t").to_pylist()
    assert row["label"] in model.classes and row["duration_s"] == round(end - start, 3)
    assert row["confidence"] == pytest.approx(max(row[f"p_{c}"] for c in model.classes))
    (call,) = calls_table([result], classes=model.classes, model_version="t").to_pylist()
    assert call["n_segments"] == 1 and call["dominant_label"] == row["label"]

    before = replace(settings, segmentation=replace(settings.segmentation, short_utterance_s=None))
    assert analyse_recording(path, model=model, settings=before).channels[0].segments == []


def test_context_follows_the_escalating_customer_of_the_demo_call(model):
    """In call_01 the agent is calm throughout and the customer speaks three calm turns,
    then four angry ones (sample_recordings/ground_truth.csv). Each segment alone, the
    model hears some calm agent turn otherwise; in the context of each channel every turn
    gets its true emotion, and the customer's change to angry stays where it happens."""
    import pandas as pd

    truth = pd.read_csv(SAMPLES / "ground_truth.csv")
    analysis = analyse_recording(CALL, model=model, settings=AnalysisSettings())
    heard = {}
    for channel in analysis.channels:
        said = truth[(truth["recording"] == CALL.name) & (truth["channel"] == channel.name)]
        expected = []
        for start, end in channel.segments:
            overlap = np.minimum(said["end_s"], end) - np.maximum(said["start_s"], start)
            expected.append(said["emotion"].to_numpy()[int(np.argmax(overlap))])
        in_context = [model.classes[i] for i in channel.probabilities.argmax(axis=1)]
        alone = [model.classes[i] for i in channel.raw.argmax(axis=1)]
        heard[channel.name] = expected, in_context, alone
    expected, in_context, _ = heard["right"]
    assert expected == ["calm"] * 3 + ["angry"] * 4
    assert in_context == expected
    expected, in_context, alone = heard["left"]
    assert set(expected) == {"calm"} and len(expected) >= 10
    assert in_context == expected
    assert alone != expected
