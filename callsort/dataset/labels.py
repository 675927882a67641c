"""A centre's own labels: read a labels file and match it to speech segments.

A labels file is CSV with a header, in one of two forms:

* **spans**: ``recording,channel,start_s,end_s,label``: one row per labelled
  stretch of a channel, times in seconds from the start of the recording;
* **whole channels**: ``recording,channel,label``: one label for every
  segment of the channel.

In the span form a row with both times empty labels the whole channel, so
one file may hold both kinds (but not both for the same channel). The label
column may be called ``emotion`` (as in ``sample_recordings/ground_truth.csv``);
columns are found by name in any order, other columns are ignored, and a
header with semicolons instead of commas is read as such. ``recording`` is
the path as ``callsort label`` stores it: relative to the folder it was given.

Labels are compared without case or surrounding spaces (``Angry`` is the
class ``angry``); a label outside the classes is counted, not an error.
Errors name the file and the 1-based line: a short or long row, a missing
value, a time that is not a number or is negative, an end at or before its
start, a duplicate span or whole-channel row, spans of one channel that
overlap with different labels. Spans that overlap with the same label are
accepted. :func:`match_segments` adds unknown recordings and channels.

Matching (:func:`match_segments`) needs only segment times, so it works for
segments from a dataset or computed anew: each segment takes the label of the
span that overlaps it most, if that overlap is longer than zero; on equal
overlaps the span that starts first wins (then the earlier line). A
whole-channel row labels every segment of its channel. A row that labels no
segment is *unmatched*.
"""

from __future__ import annotations

import csv
import hashlib
import heapq
import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

from callsort.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd

LABEL_COLUMNS = ("label", "emotion")
"""Accepted names of the label column."""
MAX_PROBLEMS_SHOWN = 10
"""How many problems a :class:`LabelsError` message lists (all are in ``problems``)."""
MATCH_COLUMNS = ["recording", "channel", "segment_index", "start_s", "end_s", "label", "line"]
"""Columns of :attr:`LabelMatch.labelled`."""


class LabelsError(UsageError):
    """A labels file that cannot be used; the message names the file and the lines (exit 2)."""

    def __init__(self, path: Path | str, problems: Sequence[tuple[int, str]]) -> None:
        self.path = Path(path)
        self.problems = tuple(problems)
        """``(line, what is wrong)`` for every problem found, line 1-based (0: the whole file)."""
        shown = [
            f"line {line}: {what}" if line else what
            for line, what in self.problems[:MAX_PROBLEMS_SHOWN]
        ]
        more = len(self.problems) - len(shown)
        if len(shown) == 1 and not more:
            message = f"labels file {self.path}: {shown[0]}"
        else:
            message = f"labels file {self.path}: {len(self.problems)} problems\n  " + "\n  ".join(
                shown
            )
            if more:
                message += f"\n  ... and {more} more"
        super().__init__(message)


@dataclass(frozen=True)
class LabelRow:
    """One row of a labels file; ``start_s`` and ``end_s`` are None for a whole channel."""

    line: int
    recording: str
    channel: str
    start_s: float | None
    end_s: float | None
    label: str

    @property
    def whole_channel(self) -> bool:
        return self.start_s is None


@dataclass(frozen=True)
class LabelsFile:
    """A labels file that passed :func:`read_labels`.

    ``rows`` are the rows whose label is one of ``classes`` (spelled as the
    class is); ``outside`` the rows whose label is not (lower-cased, kept for
    matching so that they still claim their segments, and for reporting).
    """

    path: Path
    sha256: str
    classes: tuple[str, ...]
    rows: tuple[LabelRow, ...]
    outside: tuple[LabelRow, ...] = ()

    @property
    def unknown_labels(self) -> dict[str, int]:
        """Rows per label outside the classes, most frequent first."""
        counts: dict[str, int] = {}
        for row in self.outside:
            counts[row.label] = counts.get(row.label, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    @property
    def n_rows(self) -> int:
        return len(self.rows) + len(self.outside)


@dataclass(frozen=True)
class LabelMatch:
    """The segments a labels file labels, and the rows that label none.

    ``labelled`` has :data:`MATCH_COLUMNS`, one row per labelled segment:
    ``label`` is the labels file's (one of the classes), ``line`` the row that
    gave it. Segments claimed by a row outside the classes are not in it;
    ``n_outside_segments`` counts them.
    """

    labels: LabelsFile
    labelled: pd.DataFrame
    unmatched: tuple[LabelRow, ...]
    n_outside_segments: int = 0
    matched_lines: frozenset[int] = field(default_factory=frozenset)

    @property
    def n_matched_rows(self) -> int:
        return len(self.matched_lines)


def read_labels(path: Path | str, *, classes: Sequence[str]) -> LabelsFile:
    """Read and check a labels file (module doc); :class:`LabelsError` names every bad line."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the labels file {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LabelsError(
            path, [(0, f"not UTF-8 text ({exc.reason} at byte {exc.start})")]
        ) from None
    by_name = {c.strip().lower(): c for c in classes}
    rows, problems = _parse(text, path)
    problems += _conflicts(rows)
    if problems:
        raise LabelsError(path, sorted(problems))
    known, outside = [], []
    for row in rows:
        name = by_name.get(row.label.lower())
        if name is None:
            outside.append(_with_label(row, row.label.lower()))
        else:
            known.append(_with_label(row, name))
    return LabelsFile(
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        classes=tuple(classes),
        rows=tuple(known),
        outside=tuple(outside),
    )


def _with_label(row: LabelRow, label: str) -> LabelRow:
    return LabelRow(row.line, row.recording, row.channel, row.start_s, row.end_s, label)


def _parse(text: str, path: Path) -> tuple[list[LabelRow], list[tuple[int, str]]]:
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise LabelsError(path, [(0, "empty (expected a header: recording,channel,...,label)")])
    header_line = lines[first]
    delimiter = ";" if "," not in header_line and ";" in header_line else ","
    reader = csv.reader(lines[first:], delimiter=delimiter)
    header = [h.strip().lower() for h in next(reader)]
    columns = _columns(header, path, first + 1)
    rows: list[LabelRow] = []
    problems: list[tuple[int, str]] = []
    for values in reader:
        line = first + reader.line_num
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            problems.append(
                (line, f"{len(values)} fields, the header has {len(header)} ({','.join(header)})")
            )
            continue
        row, problem = _row(values, columns, line)
        if problem:
            problems.append((line, problem))
        else:
            rows.append(row)
    if not rows and not problems:
        problems.append((0, "has a header but no labels"))
    return rows, problems


def _columns(header: list[str], path: Path, line: int) -> dict[str, int]:
    wanted = ["recording", "channel"]
    label = [c for c in LABEL_COLUMNS if c in header]
    problems = [f"no '{c}' column" for c in wanted if c not in header]
    if not label:
        problems.append("no 'label' (or 'emotion') column")
    elif len(label) > 1:
        problems.append("both 'label' and 'emotion' columns: keep one")
    times = [c for c in ("start_s", "end_s") if c in header]
    if len(times) == 1:
        problems.append(f"'{times[0]}' without '{({'start_s', 'end_s'} - set(times)).pop()}'")
    repeated = sorted({h for h in header if h and header.count(h) > 1})
    if repeated:
        problems.append(f"repeated columns {', '.join(repeated)}")
    if problems:
        expected = "(expected recording,channel,start_s,end_s,label or recording,channel,label)"
        raise LabelsError(path, [(line, f"header: {'; '.join(problems)} {expected}")])
    names = wanted + label + (["start_s", "end_s"] if times else [])
    columns = {name: header.index(name) for name in names}
    columns["label"] = columns.pop(label[0])
    return columns


def normalise_recording(name: str) -> str:
    """A recording path as datasets store it: ``/`` separators, no leading ``./``."""
    path = name.strip().replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    return path


def _row(values: list[str], columns: dict[str, int], line: int) -> tuple[LabelRow | None, str]:
    text = {name: values[i].strip() for name, i in columns.items()}
    missing = [name for name in ("recording", "channel", "label") if not text[name]]
    if missing:
        return None, f"empty {' and '.join(missing)}"
    start = end = None
    if "start_s" in columns and (text["start_s"] or text["end_s"]):
        if not (text["start_s"] and text["end_s"]):
            return None, "give both start_s and end_s (or neither, for the whole channel)"
        times = []
        for name in ("start_s", "end_s"):
            try:
                value = float(text[name])
            except ValueError:
                return None, f"{name} '{text[name]}' is not a number of seconds"
            if not math.isfinite(value) or value < 0:
                return None, f"{name} {text[name]} is not a time (seconds, 0 or more)"
            times.append(value)
        start, end = times
        if end <= start:
            return None, f"end_s {end:g} is not after start_s {start:g}"
    recording = normalise_recording(text["recording"])
    return LabelRow(line, recording, text["channel"], start, end, text["label"]), ""


def _conflicts(rows: list[LabelRow]) -> list[tuple[int, str]]:
    """Duplicates, whole channels that also have spans, overlaps with different labels."""
    problems: list[tuple[int, str]] = []
    by_channel: dict[tuple[str, str], list[LabelRow]] = {}
    for row in rows:
        by_channel.setdefault((row.recording, row.channel), []).append(row)
    for (recording, channel), group in by_channel.items():
        where = f"{recording} {channel}"
        whole = [r for r in group if r.whole_channel]
        spans = sorted((r for r in group if not r.whole_channel), key=_span_order)
        for r in whole[1:]:
            problems.append(
                (r.line, f"duplicate whole-channel label for {where} (line {whole[0].line})")
            )
        if whole and spans:
            problems.append(
                (
                    whole[0].line,
                    f"whole-channel label for {where}, which also has spans (line {spans[0].line})",
                )
            )
        seen: dict[tuple[float, float], LabelRow] = {}
        active: list[tuple[float, int, LabelRow]] = []  # spans not yet ended, by end
        for r in spans:
            twin = seen.get((r.start_s, r.end_s))
            if twin is not None:
                problems.append(
                    (r.line, f"duplicate span {_span(r)} of {where} (line {twin.line})")
                )
                continue
            seen[(r.start_s, r.end_s)] = r
            while active and active[0][0] <= r.start_s:
                heapq.heappop(active)
            other = next((a for _, _, a in active if a.label.lower() != r.label.lower()), None)
            if other is not None:
                problems.append(
                    (
                        r.line,
                        f"span {_span(r)} '{r.label}' of {where} overlaps span {_span(other)} '{other.label}' (line {other.line})",
                    )
                )
                continue
            heapq.heappush(active, (r.end_s, r.line, r))
    return problems


def _span_order(row: LabelRow) -> tuple[float, int]:
    return (row.start_s, row.line)  # type: ignore[return-value]


def _span(row: LabelRow) -> str:
    return f"{row.start_s:g}-{row.end_s:g} s"


def match_segments(
    labels: LabelsFile,
    segments: pd.DataFrame,
    *,
    recordings: Iterable[str] | None = None,
    channels: Iterable[tuple[str, str]] | None = None,
) -> LabelMatch:
    """Label ``segments`` from ``labels`` (module doc: most overlap wins, whole channels).

    ``segments`` needs ``recording``, ``channel``, ``segment_index``, ``start_s``
    and ``end_s`` (seconds). ``recordings`` and ``channels`` (``(recording,
    channel)`` pairs) are what the source knows, with or without segments
    (default: what ``segments`` holds). A row naming a recording outside
    ``recordings``, or a channel of a known recording outside ``channels``, is
    a :class:`LabelsError`; a row of a recording with no known channel (it
    failed) is unmatched.
    """
    import pandas as pd

    seg_recordings = segments["recording"].astype(str).to_numpy()
    seg_channels = segments["channel"].astype(str).to_numpy()
    known_recordings = set(seg_recordings) | set(() if recordings is None else recordings)
    pairs = set(zip(seg_recordings, seg_channels, strict=True))
    pairs |= set(() if channels is None else channels)
    known_recordings |= {r for r, _ in pairs}
    channels_of: dict[str, set[str]] = {}
    for recording, channel in pairs:
        channels_of.setdefault(recording, set()).add(channel)
    every = sorted(labels.rows + labels.outside, key=lambda r: r.line)
    problems = _unknown(every, known_recordings, channels_of)
    if problems:
        raise LabelsError(labels.path, problems)

    starts = segments["start_s"].to_numpy(dtype=float)
    ends = segments["end_s"].to_numpy(dtype=float)
    index = segments["segment_index"].to_numpy()
    rows_by_channel: dict[tuple[str, str], list[LabelRow]] = {}
    for row in every:
        rows_by_channel.setdefault((row.recording, row.channel), []).append(row)
    segs_by_channel: dict[tuple[str, str], list[int]] = {}
    for i, key in enumerate(zip(seg_recordings, seg_channels, strict=True)):
        if key in rows_by_channel:
            segs_by_channel.setdefault(key, []).append(i)
    outside_lines = {r.line for r in labels.outside}
    chosen: list[tuple[int, LabelRow]] = []  # (segment position, row)
    for key, rows in rows_by_channel.items():
        positions = segs_by_channel.get(key, [])
        if rows[0].whole_channel:  # read_labels: a whole channel has no spans
            chosen += [(i, rows[0]) for i in positions]
        else:
            chosen += _by_overlap(rows, positions, starts, ends)
    matched = {row.line for _, row in chosen}
    kept = [(i, row) for i, row in chosen if row.line not in outside_lines]
    labelled = pd.DataFrame(
        {
            "recording": [seg_recordings[i] for i, _ in kept],
            "channel": [seg_channels[i] for i, _ in kept],
            "segment_index": np.asarray([index[i] for i, _ in kept], dtype=np.int64),
            "start_s": np.asarray([starts[i] for i, _ in kept], dtype=float),
            "end_s": np.asarray([ends[i] for i, _ in kept], dtype=float),
            "label": [row.label for _, row in kept],
            "line": np.asarray([row.line for _, row in kept], dtype=np.int64),
        },
        columns=MATCH_COLUMNS,
    )
    labelled = labelled.sort_values(["recording", "channel", "segment_index"], kind="mergesort")
    return LabelMatch(
        labels=labels,
        labelled=labelled.reset_index(drop=True),
        unmatched=tuple(r for r in every if r.line not in matched),
        n_outside_segments=len(chosen) - len(kept),
        matched_lines=frozenset(matched),
    )


def _unknown(
    rows: list[LabelRow], recordings: set[str], channels_of: dict[str, set[str]]
) -> list[tuple[int, str]]:
    problems = []
    by_name: dict[str, list[str]] = {}
    for recording in recordings:
        by_name.setdefault(PurePosixPath(recording).name, []).append(recording)
    for row in rows:
        if row.recording not in recordings:
            alike = by_name.get(PurePosixPath(row.recording).name, [])
            hint = f" (did you mean '{alike[0]}'?)" if len(alike) == 1 else ""
            problems.append((row.line, f"unknown recording '{row.recording}'{hint}"))
        elif channels_of.get(row.recording) and row.channel not in channels_of[row.recording]:
            has = ", ".join(sorted(channels_of[row.recording]))
            problems.append(
                (row.line, f"unknown channel '{row.channel}' of {row.recording} (it has {has})")
            )
    return problems


def _by_overlap(
    rows: list[LabelRow], positions: list[int], starts: np.ndarray, ends: np.ndarray
) -> list[tuple[int, LabelRow]]:
    """Each segment's span of most overlap (> 0); ties to the earlier start, then line."""
    spans = sorted(rows, key=_span_order)
    span_starts = [r.start_s for r in spans]
    reach = np.maximum.accumulate([r.end_s for r in spans])  # latest end so far
    chosen = []
    for i in positions:
        a, b = starts[i], ends[i]
        lo = int(np.searchsorted(reach, a, side="right"))  # spans before lo end by a
        hi = bisect_left(span_starts, b)  # spans from hi start at or after b
        best, best_overlap = None, 0.0
        for span in spans[lo:hi]:
            overlap = min(b, span.end_s) - max(a, span.start_s)
            if overlap > best_overlap:
                best, best_overlap = span, overlap
        if best is not None:
            chosen.append((i, best))
    return chosen
