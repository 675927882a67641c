"""Turn analysed recordings into the ``segments`` and ``calls`` tables.

Column names, types and order come from :mod:`callsort.schema`; this module
only computes values. The escalation rule lives here (and in the README):

    A channel is *escalated* when at least half of its speech in the last
    third of the recording is labelled angry, that share is at least 0.3
    above the angry share of its speech in the first two thirds, and it has
    at least 2 s of speech in the last third.

Labels, shares and the rule use each segment's probabilities in the context of
its channel (:mod:`callsort.model.context`); the segments table also keeps the
model's probabilities of each segment alone (``raw_label``, ``raw_p_<class>``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa

from callsort.run.analysis import ChannelAnalysis, RecordingAnalysis
from callsort.schema import arrow_schema, call_columns, segment_columns

ESCALATION_MIN_ANGRY_SHARE = 0.5
ESCALATION_MIN_RISE = 0.3
ESCALATION_MIN_SPEECH_S = 2.0


@dataclass(frozen=True)
class RecordingResult:
    """The outcome for one recording: an analysis, or the reason it failed."""

    recording: str
    recording_id: str
    analysis: RecordingAnalysis | None
    error: str
    processing_s: float
    processed_at: datetime
    internal: bool = False  # callsort failed on it (a bug), not the file: the next run retries

    @property
    def ok(self) -> bool:
        return self.analysis is not None


def segments_table(
    results: Sequence[RecordingResult], *, classes: Sequence[str], model_version: str
) -> pa.Table:
    """One row per speech segment of every successful recording."""
    columns = segment_columns(classes)
    rows: dict[str, list] = {c.name: [] for c in columns}
    for result in results:
        if result.analysis is None:
            continue
        for channel in result.analysis.channels:
            labels = _labels(channel.probabilities, classes)
            raw_labels = _labels(channel.raw, classes)
            for i, ((start, end), p, raw) in enumerate(
                zip(channel.segments, channel.probabilities, channel.raw, strict=True)
            ):
                rows["recording"].append(result.recording)
                rows["recording_id"].append(result.recording_id)
                rows["channel"].append(channel.name)
                rows["speaker_confidence"].append(
                    None
                    if channel.speaker_confidence is None
                    else round(float(channel.speaker_confidence[i]), 4)
                )
                rows["segment_index"].append(i)
                rows["start_s"].append(round(start, 3))
                rows["end_s"].append(round(end, 3))
                rows["duration_s"].append(round(end - start, 3))
                rows["label"].append(labels[i])
                rows["confidence"].append(float(p.max()))
                for c, value in zip(classes, p, strict=True):
                    rows[f"p_{c}"].append(float(value))
                rows["raw_label"].append(raw_labels[i])
                for c, value in zip(classes, raw, strict=True):
                    rows[f"raw_p_{c}"].append(float(value))
                rows["model_version"].append(model_version)
    return pa.table(rows, schema=arrow_schema(columns))


def calls_table(
    results: Sequence[RecordingResult], *, classes: Sequence[str], model_version: str
) -> pa.Table:
    """One row per recording and channel; one row with an empty channel per failure."""
    columns = call_columns(classes)
    rows: dict[str, list] = {c.name: [] for c in columns}

    def add(**values: object) -> None:
        for name in rows:
            rows[name].append(values.get(name))

    for result in results:
        common = {
            "recording": result.recording,
            "recording_id": result.recording_id,
            "processing_s": round(result.processing_s, 4),
            "model_version": model_version,
            "processed_at": result.processed_at,
        }
        analysis = result.analysis
        if analysis is None:
            add(**common, channel="", status="error", error=result.error, escalated=False)
            continue
        file_values = {
            "status": "ok",
            "error": "",
            "duration_s": round(analysis.duration_s, 3),
            "sample_rate": analysis.info.sample_rate,
            "n_channels": analysis.info.n_channels,
        }
        for channel in analysis.channels:
            add(
                **common,
                **file_values,
                channel=channel.name,
                **channel_summary(channel, classes=classes, duration_s=analysis.duration_s),
            )
    return pa.table(rows, schema=arrow_schema(columns))


def channel_summary(
    channel: ChannelAnalysis, *, classes: Sequence[str], duration_s: float
) -> dict[str, object]:
    """Per-channel figures of the calls table: shares, peak anger, escalation."""
    starts = np.array([s for s, _ in channel.segments], dtype=np.float64)
    ends = np.array([e for _, e in channel.segments], dtype=np.float64)
    seconds = ends - starts
    labels = np.array(_labels(channel.probabilities, classes))
    speech_s = float(seconds.sum())
    summary: dict[str, object] = {
        "speech_s": round(speech_s, 3),
        "n_segments": len(seconds),
    }
    shares = {c: float(seconds[labels == c].sum() / speech_s) if speech_s else 0.0 for c in classes}
    for c in classes:
        summary[f"share_{c}"] = round(shares[c], 4)
    summary["dominant_label"] = max(classes, key=shares.__getitem__) if speech_s else ""

    if "angry" not in classes:
        summary.update(
            peak_p_angry=None, angry_share_last_third=None, escalation_score=None, escalated=False
        )
        return summary
    p_angry = channel.probabilities[:, list(classes).index("angry")]
    summary["peak_p_angry"] = float(p_angry.max()) if len(p_angry) else 0.0

    boundary = 2.0 * duration_s / 3.0
    late = np.clip(ends - np.maximum(starts, boundary), 0.0, None)
    early = np.clip(np.minimum(ends, boundary) - starts, 0.0, None)
    angry = labels == "angry"
    late_share = late[angry].sum() / late.sum() if late.sum() > 0 else float("nan")
    early_share = early[angry].sum() / early.sum() if early.sum() > 0 else float("nan")
    score = late_share - early_share
    summary["angry_share_last_third"] = None if np.isnan(late_share) else round(late_share, 4)
    summary["escalation_score"] = None if np.isnan(score) else round(score, 4)
    summary["escalated"] = bool(
        late.sum() >= ESCALATION_MIN_SPEECH_S
        and late_share >= ESCALATION_MIN_ANGRY_SHARE
        and not np.isnan(score)
        and score >= ESCALATION_MIN_RISE
    )
    return summary


def _labels(probabilities: np.ndarray, classes: Sequence[str]) -> list[str]:
    if not len(probabilities):
        return []
    return [classes[i] for i in np.argmax(probabilities, axis=1)]
