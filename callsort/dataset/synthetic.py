"""Synthetic datasets: plausible ``segments`` and ``calls`` tables without any audio.

For tests, demos and benchmarks of what reads the tables (reports, summaries,
exports) at sizes no test could label. Calls are two-channel (``agent`` and
``customer``), spread over consecutive days; about one in twelve customers
turns angry towards the end, so the escalation rule fires on them. The
``calls`` figures are computed from the segments with the rule in
:mod:`callsort.dataset.tables`, so the tables agree with each other. Seeded: the same
arguments give the same tables.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa

from callsort.audio.discover import recording_id
from callsort.dataset.tables import (
    ESCALATION_MIN_ANGRY_SHARE,
    ESCALATION_MIN_RISE,
    ESCALATION_MIN_SPEECH_S,
)
from callsort.schema import arrow_schema, call_columns, segment_columns
from callsort.settings import DEFAULT_CLASSES

CHANNELS = ("agent", "customer")
MODEL_VERSION = "synthetic"


def synthetic_tables(
    n_calls: int,
    *,
    days: int = 30,
    start: date = date(2025, 1, 6),
    seed: int = 0,
    mean_segments: int = 24,
    failed_every: int = 500,
) -> tuple[pa.Table, pa.Table, dict[str, str]]:
    """``(segments, calls, dates)``: ``dates`` maps each recording to its ISO date.

    Every ``failed_every``-th call is a failed recording (one error row, no segments).
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    classes = list(DEFAULT_CLASSES)
    day_of_call = np.sort(rng.integers(0, max(days, 1), n_calls))
    names = [
        f"{(start + timedelta(days=int(d))).isoformat()}/queue{rng.integers(1, 4)}/call_{i:06d}.wav"
        for i, d in enumerate(day_of_call)
    ]
    failed = np.zeros(n_calls, dtype=bool)
    if failed_every:
        failed[failed_every - 1 :: failed_every] = True
    duration = rng.uniform(60.0, 600.0, n_calls).round(3)
    escalating = rng.random(n_calls) < 1 / 12
    base_mood = rng.dirichlet([1.0, 6.0, 2.0, 2.0], n_calls)

    seg_parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("call", "channel", "index", "start", "end", "label", "proba")
    }
    for ch_index in range(len(CHANNELS)):
        n_seg = np.where(failed, 0, rng.poisson(mean_segments, n_calls).clip(2, 120))
        call = np.repeat(np.arange(n_calls), n_seg)
        total = int(n_seg.sum())
        offsets = np.cumsum(n_seg) - n_seg
        index = np.arange(total) - np.repeat(offsets, n_seg)
        # segments spread evenly over the call, each filling part of its slot
        slot = duration[call] / n_seg[call]
        seg_start = index * slot + rng.uniform(0.0, 0.3, total) * slot
        seg_len = np.minimum(rng.uniform(0.6, 4.0, total), slot * 0.65)
        position = seg_start / duration[call]
        mood = base_mood[call].copy()
        if CHANNELS[ch_index] == "customer":
            late = escalating[call] & (position > 0.62)
            mood[late] = [0.85, 0.05, 0.02, 0.08]
        cumulative = np.cumsum(mood / mood.sum(axis=1, keepdims=True), axis=1)
        label = (rng.random(total)[:, None] > cumulative[:, :-1]).sum(axis=1)
        proba = rng.dirichlet([1.0, 1.0, 1.0, 1.0], total) * 0.55
        proba[np.arange(total), label.astype(int)] += 0.45
        seg_parts["call"].append(call)
        seg_parts["channel"].append(np.full(total, ch_index))
        seg_parts["index"].append(index)
        seg_parts["start"].append(seg_start.round(3))
        seg_parts["end"].append((seg_start + seg_len).round(3))
        seg_parts["label"].append(label.astype(int))
        seg_parts["proba"].append(proba)

    call = np.concatenate(seg_parts["call"])
    channel = np.concatenate(seg_parts["channel"])
    start_s = np.concatenate(seg_parts["start"])
    end_s = np.concatenate(seg_parts["end"])
    label = np.concatenate(seg_parts["label"])
    proba = np.concatenate(seg_parts["proba"])
    order = np.lexsort((np.concatenate(seg_parts["index"]), channel, call))
    call, channel, start_s, end_s, label, proba = (
        a[order] for a in (call, channel, start_s, end_s, label, proba)
    )
    index = np.concatenate(seg_parts["index"])[order]
    ids = np.array([recording_id(n) for n in names], dtype=object)
    name_arr = np.array(names, dtype=object)
    channel_names = np.array(CHANNELS, dtype=object)
    label_names = np.array(classes, dtype=object)
    seg_cols = {
        "recording": name_arr[call],
        "recording_id": ids[call],
        "channel": channel_names[channel],
        "speaker_confidence": pa.nulls(len(call), pa.float64()),
        "segment_index": index.astype(np.int64),
        "start_s": start_s,
        "end_s": end_s,
        "duration_s": (end_s - start_s).round(3),
        "label": label_names[label],
        "confidence": proba.max(axis=1),
        **{f"p_{c}": proba[:, i] for i, c in enumerate(classes)},
        "raw_label": label_names[label],
        **{f"raw_p_{c}": proba[:, i] for i, c in enumerate(classes)},
        "model_version": np.full(len(call), MODEL_VERSION, dtype=object),
    }
    segments = pa.table(seg_cols, schema=arrow_schema(segment_columns(classes)))

    # calls: one row per (call, channel) from the segments, with the escalation rule
    frame = pd.DataFrame(
        {"call": call, "channel": channel, "start": start_s, "end": end_s, "label": label}
    )
    frame["dur"] = frame["end"] - frame["start"]
    boundary = 2.0 * duration[frame["call"]] / 3.0
    frame["late"] = np.clip(frame["end"] - np.maximum(frame["start"], boundary), 0.0, None)
    frame["early"] = np.clip(np.minimum(frame["end"], boundary) - frame["start"], 0.0, None)
    angry = frame["label"] == classes.index("angry")
    for c_i, c in enumerate(classes):
        frame[f"s_{c}"] = frame["dur"].where(frame["label"] == c_i, 0.0)
    frame["late_angry"] = frame["late"].where(angry, 0.0)
    frame["early_angry"] = frame["early"].where(angry, 0.0)
    frame["p_angry"] = proba[:, classes.index("angry")]
    g = frame.groupby(["call", "channel"]).agg(
        speech=("dur", "sum"),
        n=("dur", "size"),
        late=("late", "sum"),
        early=("early", "sum"),
        late_angry=("late_angry", "sum"),
        early_angry=("early_angry", "sum"),
        peak=("p_angry", "max"),
        **{f"s_{c}": (f"s_{c}", "sum") for c in classes},
    )
    g = g.reset_index()
    shares = np.stack([g[f"s_{c}"] / g["speech"] for c in classes], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        late_share = np.where(g["late"] > 0, g["late_angry"] / g["late"], np.nan)
        early_share = np.where(g["early"] > 0, g["early_angry"] / g["early"], np.nan)
    score = late_share - early_share
    escalated = (
        (g["late"] >= ESCALATION_MIN_SPEECH_S)
        & (late_share >= ESCALATION_MIN_ANGRY_SHARE)
        & ~np.isnan(score)
        & (score >= ESCALATION_MIN_RISE)
    )
    rows_call = g["call"].to_numpy()
    processed = datetime(2025, 1, 1, tzinfo=timezone.utc)
    fail_idx = np.flatnonzero(failed)
    n_ok = len(g)
    n_rows = n_ok + len(fail_idx)

    def col(ok_values, fail_value):
        return np.concatenate(
            [np.asarray(ok_values, dtype=object), np.full(len(fail_idx), fail_value, dtype=object)]
        )

    all_call = np.concatenate([rows_call, fail_idx])
    call_cols = {
        "recording": name_arr[all_call],
        "recording_id": ids[all_call],
        "channel": col(channel_names[g["channel"]], ""),
        "status": col(np.full(n_ok, "ok"), "error"),
        "error": col(np.full(n_ok, ""), "decode failed: synthetic broken file"),
        "duration_s": col(duration[rows_call], None),
        "sample_rate": col(np.full(n_ok, 8000), None),
        "n_channels": col(np.full(n_ok, 2), None),
        "speech_s": col(g["speech"].round(3), None),
        "n_segments": col(g["n"], None),
        **{f"share_{c}": col(shares[:, i].round(4), None) for i, c in enumerate(classes)},
        "dominant_label": col(np.array(classes, dtype=object)[shares.argmax(axis=1)], None),
        "peak_p_angry": col(g["peak"], None),
        "angry_share_last_third": col(_none_nan(late_share.round(4)), None),
        "escalation_score": col(_none_nan(score.round(4)), None),
        "escalated": col(escalated.to_numpy(), False),
        "processing_s": col(np.full(n_ok, 0.5), 0.01),
        "model_version": np.full(n_rows, MODEL_VERSION, dtype=object),
        "processed_at": np.full(n_rows, processed, dtype=object),
    }
    order_calls = np.lexsort((call_cols["channel"].astype(str), all_call))
    call_cols = {k: v[order_calls] for k, v in call_cols.items()}
    calls = pa.table(
        {
            k: pa.array(list(v), type=c.type)
            for (k, v), c in zip(call_cols.items(), call_columns(classes), strict=True)
        },
        schema=arrow_schema(call_columns(classes)),
    )
    dates = {
        n: (start + timedelta(days=int(d))).isoformat()
        for n, d in zip(names, day_of_call, strict=True)
    }
    return segments, calls, dates


def _none_nan(values: np.ndarray) -> list:
    return [None if np.isnan(v) else float(v) for v in values]


def write_flat(folder: Path | str, segments: pa.Table, calls: pa.Table) -> Path:
    """Write the tables as ``callsort label --out`` does (Parquet only)."""
    from callsort.dataset.writers import write_table

    folder = Path(folder)
    write_table(segments, folder, "segments", formats=("parquet",))
    write_table(calls, folder, "calls", formats=("parquet",))
    return folder


def write_partitioned(
    folder: Path | str, segments: pa.Table, calls: pa.Table, dates: dict[str, str]
) -> Path:
    """Write the tables Hive-partitioned by ``date`` (``TABLE/date=YYYY-MM-DD/*.parquet``)."""
    import pyarrow.dataset as ds

    folder = Path(folder)
    for name, table in (("segments", segments), ("calls", calls)):
        date_col = pa.array([dates[r] for r in table.column("recording").to_pylist()], pa.string())
        ds.write_dataset(
            table.append_column("date", date_col),
            folder / name,
            format="parquet",
            partitioning=ds.partitioning(pa.schema([("date", pa.string())]), flavor="hive"),
            existing_data_behavior="overwrite_or_ignore",
            basename_template="part-{i}.parquet",
        )
    return folder
