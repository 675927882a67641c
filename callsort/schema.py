"""The output schema: one place that names every column, its type and unit.

Both writers (Parquet and CSV) and every table builder use these definitions,
so analysts can rely on the names and Parquet files carry real types.
Probability columns follow the model's classes: ``p_<class>``, ``raw_p_<class>`` and
``share_<class>`` for each class, in the model's column order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from callsort.settings import DEFAULT_CLASSES


@dataclass(frozen=True)
class Column:
    """One output column: name, Arrow type, unit and meaning."""

    name: str
    type: pa.DataType
    unit: str
    description: str


_STRING = pa.string()
_FLOAT = pa.float64()
_INT = pa.int64()
_BOOL = pa.bool_()
_TIME = pa.timestamp("us", tz="UTC")


def segment_columns(classes: Sequence[str] = DEFAULT_CLASSES) -> list[Column]:
    """Columns of the ``segments`` table (one row per speech segment)."""
    return [
        Column("recording", _STRING, "", "path of the recording relative to the input root"),
        Column(
            "recording_id",
            _STRING,
            "",
            "stable hash of the recording's path as stored on disk (16 hex digits)",
        ),
        Column(
            "channel",
            _STRING,
            "",
            "analysis channel: mono, mix, a channel name, or one of the two speakers of a "
            "mono file (speaker_a, speaker_b, or the --channel-names)",
        ),
        Column(
            "speaker_confidence",
            _FLOAT,
            "fraction",
            "how sure the segment's speaker is, for a speaker of a mono file (0.5: a coin "
            "toss, 1: sure); empty for a channel of the file itself",
        ),
        Column("segment_index", _INT, "", "0-based position of the segment within its channel"),
        Column("start_s", _FLOAT, "s", "segment start in the original recording"),
        Column("end_s", _FLOAT, "s", "segment end in the original recording"),
        Column("duration_s", _FLOAT, "s", "end_s - start_s"),
        Column(
            "label",
            _STRING,
            "",
            "most probable emotion, the segment heard in the context of its channel's "
            "other segments",
        ),
        Column("confidence", _FLOAT, "probability", "probability of `label`"),
        *[
            Column(f"p_{c}", _FLOAT, "probability", f"probability of {c}, in context")
            for c in classes
        ],
        Column("raw_label", _STRING, "", "most probable emotion of the segment alone"),
        *[
            Column(f"raw_p_{c}", _FLOAT, "probability", f"model probability of {c}, segment alone")
            for c in classes
        ],
        Column("model_version", _STRING, "", "version of the model that labelled the segment"),
    ]


def call_columns(classes: Sequence[str] = DEFAULT_CLASSES) -> list[Column]:
    """Columns of the ``calls`` table (one row per recording and channel)."""
    return [
        Column("recording", _STRING, "", "path of the recording relative to the input root"),
        Column(
            "recording_id",
            _STRING,
            "",
            "stable hash of the recording's path as stored on disk (16 hex digits)",
        ),
        Column("channel", _STRING, "", "analysis channel; empty when the recording failed"),
        Column("status", _STRING, "", "ok, or error when the recording could not be analysed"),
        Column("error", _STRING, "", "why the recording failed; empty when ok"),
        Column("duration_s", _FLOAT, "s", "length of the recording"),
        Column("sample_rate", _INT, "Hz", "sample rate of the file as stored"),
        Column("n_channels", _INT, "", "number of channels in the file"),
        Column("speech_s", _FLOAT, "s", "total length of this channel's speech segments"),
        Column("n_segments", _INT, "", "number of speech segments in this channel"),
        *[
            Column(f"share_{c}", _FLOAT, "fraction", f"share of speech seconds labelled {c}")
            for c in classes
        ],
        Column("dominant_label", _STRING, "", "label with the largest share; empty without speech"),
        Column("peak_p_angry", _FLOAT, "probability", "highest p_angry of any segment"),
        Column(
            "angry_share_last_third",
            _FLOAT,
            "fraction",
            "share of speech seconds labelled angry in the last third of the recording",
        ),
        Column(
            "escalation_score",
            _FLOAT,
            "fraction",
            "angry share in the last third minus angry share in the first two thirds",
        ),
        Column("escalated", _BOOL, "", "the channel turned angry (rule in the README)"),
        Column("processing_s", _FLOAT, "s", "wall time spent on the whole recording"),
        Column("model_version", _STRING, "", "version of the model that labelled the recording"),
        Column("processed_at", _TIME, "UTC", "when the recording was analysed"),
    ]


PARTITION_COLUMN = Column(
    "date",
    _STRING,
    "",
    "date of the recording, YYYY-MM-DD (from --date-pattern, else file mtime, UTC)",
)
"""The Hive partition key of a dataset (``segments/date=2026-11-25/...``).

It lives in the folder names, not inside the Parquet files; pyarrow, pandas and
DuckDB add it as a column when they read ``segments/`` or ``calls/`` as one table.
"""


def manifest_columns() -> list[Column]:
    """Columns of ``manifest.parquet``: one row per recording ever committed to a dataset."""
    return [
        Column("recording", _STRING, "", "path of the recording relative to the archive root"),
        Column(
            "recording_id",
            _STRING,
            "",
            "stable hash of the recording's path as stored on disk (16 hex digits)",
        ),
        Column("size_bytes", _INT, "B", "file size when it was analysed"),
        Column("mtime_ns", _INT, "ns", "file modification time when it was analysed"),
        Column(
            "content_sha256", _STRING, "", "hash of the file's bytes; empty without --verify-hash"
        ),
        Column(
            "fingerprint", _STRING, "", "hash of the model and analysis settings that made its rows"
        ),
        Column(
            "status",
            _STRING,
            "",
            "ok; error when the recording could not be analysed; internal_error when "
            "callsort itself failed on it (retried by the next run)",
        ),
        Column("error", _STRING, "", "why the recording failed; empty when ok"),
        Column("date", _STRING, "", "the partition its rows live in (YYYY-MM-DD)"),
        Column("duration_s", _FLOAT, "s", "length of the recording; null when it failed"),
        Column("n_segments", _INT, "", "rows it has in the segments table"),
        Column(
            "segments_file",
            _STRING,
            "",
            "file holding its segments rows, relative to the dataset; empty if none",
        ),
        Column("calls_file", _STRING, "", "file holding its calls rows, relative to the dataset"),
        Column("model_version", _STRING, "", "version of the model that labelled it"),
        Column("run_id", _STRING, "", "the run that committed it (see runs/<run_id>.json)"),
        Column("processed_at", _TIME, "UTC", "when the recording was analysed"),
    ]


def arrow_schema(columns: Sequence[Column]) -> pa.Schema:
    """Arrow schema with each column's unit and description as field metadata."""
    return pa.schema(
        [
            pa.field(c.name, c.type, metadata={"unit": c.unit, "description": c.description})
            for c in columns
        ]
    )


def markdown_table(columns: Sequence[Column]) -> str:
    """The columns as a Markdown table (the README's schema section is this output)."""
    lines = ["| column | type | unit | meaning |", "|---|---|---|---|"]
    for c in columns:
        lines.append(f"| `{c.name}` | {c.type} | {c.unit} | {c.description} |")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m callsort.schema prints the README's schema tables
    print("### `segments`\n")
    print(markdown_table(segment_columns()))
    print("\n### `calls`\n")
    print(markdown_table(call_columns()))
    print("\n### `manifest`\n")
    print(markdown_table(manifest_columns()))
