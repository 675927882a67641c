"""read_dataset: the flat tables of ``callsort label`` and the date-partitioned layout."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import callsort
from callsort.dataset.reading import detect_layout, folder_of, read_dataset
from callsort.dataset.synthetic import synthetic_tables, write_flat, write_partitioned
from callsort.errors import UsageError


@pytest.fixture(scope="module")
def tables():
    return synthetic_tables(60, days=3, seed=1, mean_segments=6, failed_every=25)


def _sorted(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return frame.sort_values(keys, kind="mergesort").reset_index(drop=True)


def test_flat_layout_reads_back_what_was_written(tmp_path, tables):
    segments, calls, _ = tables
    write_flat(tmp_path, segments, calls)
    data = callsort.read_dataset(tmp_path)
    assert data.layout == "flat"
    assert not data.has_dates
    assert "date" not in data.calls.columns
    pd.testing.assert_frame_equal(data.calls, calls.to_pandas())
    pd.testing.assert_frame_equal(data.segments, segments.to_pandas())
    seg, cal = data  # unpacks as segments, calls
    assert seg is data.segments and cal is data.calls


def test_partitioned_layout_with_hive_folders(tmp_path, tables):
    segments, calls, dates = tables
    write_partitioned(tmp_path, segments, calls, dates)
    # what a nightly run may leave beside the tables: all of it is ignored
    (tmp_path / "manifest.json").write_text('{"runs": []}')
    (tmp_path / "runs").mkdir()
    pq.write_table(calls.slice(0, 3), tmp_path / "runs" / "calls.parquet")
    pq.write_table(calls.slice(0, 3), tmp_path / "calls" / "stray.parquet")  # not in date=
    day = sorted((tmp_path / "calls").glob("date=*"))[0]
    (day / ".part-9.parquet.tmp").write_bytes(b"half-written")
    (day / "notes.txt").write_text("not a table")

    assert detect_layout(tmp_path) == "partitioned"
    data = read_dataset(tmp_path)
    assert data.layout == "partitioned" and data.has_dates
    assert str(data.calls["date"].dtype) == "string"
    assert len(data.calls) == calls.num_rows
    assert len(data.segments) == segments.num_rows
    expected = calls.to_pandas()
    expected["date"] = expected["recording"].map(dates).astype("string")
    keys = ["recording", "channel"]
    got = _sorted(data.calls, keys)[list(expected.columns)]
    pd.testing.assert_frame_equal(got, _sorted(expected, keys))
    # every segment carries its call's date
    assert (data.segments["date"] == data.segments["recording"].map(dates)).all()
    assert sorted(set(data.calls["date"])) == sorted(set(dates.values()))


def test_partitions_with_different_columns_are_unified(tmp_path):
    part = ds.partitioning(pa.schema([("date", pa.string())]), flavor="hive")
    old = pa.table({"recording": ["a.wav"], "channel": ["mono"], "p_angry": [0.2]})
    new = pa.table({"recording": ["b.wav"], "channel": ["mono"], "p_angry": [0.7], "p_fear": [0.1]})
    for name in ("segments", "calls"):
        for table, day in ((old, "2025-03-01"), (new, "2025-03-02")):
            ds.write_dataset(
                table.append_column("date", pa.array([day])),
                tmp_path / name,
                format="parquet",
                partitioning=part,
                existing_data_behavior="overwrite_or_ignore",
                basename_template=f"{day}-{{i}}.parquet",
            )
    data = read_dataset(tmp_path)
    frame = _sorted(data.calls, ["recording"])
    assert frame["recording"].tolist() == ["a.wav", "b.wav"]
    assert frame["date"].tolist() == ["2025-03-01", "2025-03-02"]
    assert pd.isna(frame.loc[0, "p_fear"]) and frame.loc[1, "p_fear"] == 0.1


def test_not_a_dataset(tmp_path):
    with pytest.raises(UsageError, match="not a folder"):
        read_dataset(tmp_path / "missing")
    with pytest.raises(UsageError, match="not a callsort dataset"):
        read_dataset(tmp_path)
    (tmp_path / "calls.csv").write_text("recording\n")
    with pytest.raises(UsageError, match="CSV tables only"):
        read_dataset(tmp_path)


def test_corrupt_table_is_a_usage_error(tmp_path, tables):
    segments, calls, _ = tables
    write_flat(tmp_path, segments, calls)
    (tmp_path / "calls.parquet").write_bytes(b"PAR1 truncated")
    with pytest.raises(UsageError, match="cannot read"):
        read_dataset(tmp_path)


@pytest.mark.parametrize(
    ("recording", "folder"),
    [("a.wav", "(top folder)"), ("queue1/a.wav", "queue1"), ("x/y/z.wav", "x/y")],
)
def test_folder_of(recording, folder):
    assert folder_of(recording) == folder
