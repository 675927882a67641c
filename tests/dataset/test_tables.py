"""Table building: shares, the escalation rule, error rows, schema types."""

from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pytest

from callsort.audio.decode import AudioInfo
from callsort.dataset.tables import RecordingResult, calls_table, channel_summary, segments_table
from callsort.run.analysis import ChannelAnalysis, RecordingAnalysis
from callsort.schema import arrow_schema, call_columns, segment_columns
from callsort.settings import DEFAULT_CLASSES

CLASSES = list(DEFAULT_CLASSES)


def channel(labels, *, seconds=3.0, gap=1.0, name="right"):
    """A channel whose consecutive segments carry ``labels`` with confident probabilities."""
    segments, rows, t = [], [], 0.0
    for label in labels:
        segments.append((t, t + seconds))
        p = np.full(len(CLASSES), 0.1 / (len(CLASSES) - 1))
        p[CLASSES.index(label)] = 0.9
        rows.append(p)
        t += seconds + gap
    return ChannelAnalysis(name, segments, np.array(rows).reshape(len(rows), len(CLASSES)))


def summary(labels, **kw):
    ch = channel(labels, **kw)
    duration = ch.segments[-1][1] + 1.0 if ch.segments else 10.0
    return channel_summary(ch, classes=CLASSES, duration_s=duration)


def test_call_turning_angry_is_escalated():
    s = summary(["calm"] * 6 + ["angry"] * 3)
    assert s["escalated"] is True
    assert s["angry_share_last_third"] == 1.0
    assert s["share_angry"] == pytest.approx(3 / 9, abs=1e-4)
    assert s["dominant_label"] == "calm"


def test_angry_throughout_is_not_escalated_but_dominant():
    s = summary(["angry"] * 9)
    assert s["escalated"] is False
    assert s["dominant_label"] == "angry"
    assert s["escalation_score"] == 0.0


def test_calm_call_is_not_escalated():
    assert summary(["calm"] * 9)["escalated"] is False


def test_too_little_late_speech_is_not_escalated():
    # Calm early on, then one 1.5 s angry segment: under 2 s of speech in the last third.
    ch = ChannelAnalysis(
        "right",
        [(0.0, 3.0), (4.0, 7.0), (8.0, 11.0), (28.0, 29.5)],
        np.array([[0.0, 1.0, 0.0, 0.0]] * 3 + [[1.0, 0.0, 0.0, 0.0]]),
    )
    s = channel_summary(ch, classes=CLASSES, duration_s=30.0)
    assert s["angry_share_last_third"] == 1.0
    assert s["escalation_score"] == 1.0
    assert s["escalated"] is False


def test_channel_without_speech():
    s = summary([])
    assert s["n_segments"] == 0 and s["speech_s"] == 0.0
    assert s["dominant_label"] == "" and s["escalated"] is False
    assert s["angry_share_last_third"] is None


def result(name, analysis=None, error=""):
    return RecordingResult(
        recording=name,
        recording_id="0" * 16,
        analysis=analysis,
        error=error,
        processing_s=0.5,
        processed_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
    )


def test_tables_have_schema_types_and_error_rows():
    info = AudioInfo(
        sample_rate=8000, n_channels=2, n_frames=8000 * 40, format="WAV", subtype="ULAW"
    )
    analysis = RecordingAnalysis(
        info=info,
        duration_s=40.0,
        channels=[channel(["calm"] * 3, name="left"), channel(["sad"] * 2, name="right")],
    )
    results = [result("a.wav", analysis), result("broken.wav", error="empty file (0 bytes)")]
    segs = segments_table(results, classes=CLASSES, model_version="test")
    calls = calls_table(results, classes=CLASSES, model_version="test")
    assert segs.schema.equals(arrow_schema(segment_columns(CLASSES)))
    assert calls.schema.equals(arrow_schema(call_columns(CLASSES)))
    assert segs.num_rows == 5
    rows = calls.to_pylist()
    assert [(r["recording"], r["channel"], r["status"]) for r in rows] == [
        ("a.wav", "left", "ok"),
        ("a.wav", "right", "ok"),
        ("broken.wav", "", "error"),
    ]
    assert rows[2]["error"] == "empty file (0 bytes)"
    assert rows[2]["duration_s"] is None and rows[2]["escalated"] is False
    assert rows[1]["dominant_label"] == "sad" and rows[1]["n_segments"] == 2
    assert pa.types.is_timestamp(calls.schema.field("processed_at").type)


def test_labels_follow_model_class_order():
    classes = ["sad", "angry", "calm", "happy"]
    ch = ChannelAnalysis("mono", [(0.0, 2.0)], np.array([[0.1, 0.6, 0.2, 0.1]]))
    info = AudioInfo(
        sample_rate=16000, n_channels=1, n_frames=32000, format="WAV", subtype="PCM_16"
    )
    analysis = RecordingAnalysis(info=info, duration_s=2.0, channels=[ch])
    row = segments_table(
        [result("x.wav", analysis)], classes=classes, model_version="t"
    ).to_pylist()[0]
    assert row["label"] == "angry" and row["p_angry"] == 0.6 and row["confidence"] == 0.6


def test_labels_shares_and_escalation_come_from_the_context_the_raw_columns_from_the_model():
    """In context the channel turns angry for its last three segments; alone, the model
    heard the middle one as angry too and the last one as sad. Labels, shares and the
    escalation rule follow the context; raw_label and raw_p_* keep the model's own."""
    context = channel(["calm"] * 6 + ["angry"] * 3)
    raw = channel(["calm"] * 3 + ["angry"] + ["calm"] * 2 + ["angry"] * 2 + ["sad"])
    ch = ChannelAnalysis("right", context.segments, context.probabilities, raw.probabilities)
    duration = ch.segments[-1][1] + 1.0
    info = AudioInfo(
        sample_rate=8000, n_channels=1, n_frames=int(8000 * duration), format="WAV", subtype="ULAW"
    )
    analysis = RecordingAnalysis(info=info, duration_s=duration, channels=[ch])
    rows = segments_table([result("x.wav", analysis)], classes=CLASSES, model_version="t")
    rows = rows.to_pylist()
    assert [r["label"] for r in rows] == ["calm"] * 6 + ["angry"] * 3
    assert [r["raw_label"] for r in rows] == ["calm"] * 3 + ["angry"] + ["calm"] * 2 + [
        "angry"
    ] * 2 + ["sad"]
    assert rows[3]["p_angry"] == pytest.approx(0.1 / 3) and rows[3]["raw_p_angry"] == 0.9
    s = channel_summary(ch, classes=CLASSES, duration_s=duration)
    assert s["share_angry"] == pytest.approx(3 / 9, abs=1e-4) and s["share_sad"] == 0.0
    assert s["angry_share_last_third"] == 1.0 and s["escalated"] is True


def test_without_context_the_raw_columns_repeat_the_labels():
    ch = channel(["calm", "sad", "angry"])
    info = AudioInfo(
        sample_rate=8000, n_channels=1, n_frames=8000 * 12, format="WAV", subtype="ULAW"
    )
    analysis = RecordingAnalysis(info=info, duration_s=12.0, channels=[ch])
    for row in segments_table(
        [result("x.wav", analysis)], classes=CLASSES, model_version="t"
    ).to_pylist():
        assert row["raw_label"] == row["label"]
        assert [row[f"raw_p_{c}"] for c in CLASSES] == [row[f"p_{c}"] for c in CLASSES]
