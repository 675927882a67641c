"""Writing tables: typed Parquet and CSV, atomic replacement, spreadsheet-safe CSV."""

from __future__ import annotations

import os
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from callsort.dataset import writers
from callsort.dataset.writers import spreadsheet_safe, write_table
from callsort.errors import CallsortError
from callsort.schema import arrow_schema, call_columns, segment_columns

FORMATS = ("parquet", "csv")
WHEN = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=timezone.utc)


def example_value(field: pa.Field, row: int):
    """A plain value of the field's type; row 1 is null for nullable numbers."""
    t = field.type
    if pa.types.is_string(t):
        return f"{field.name}_{row}"
    if pa.types.is_floating(t):
        return None if row == 1 else 0.25 * (row + 1)
    if pa.types.is_integer(t):
        return row + 7
    if pa.types.is_boolean(t):
        return row % 2 == 0
    if pa.types.is_timestamp(t):
        return WHEN
    raise AssertionError(f"no example for {t}")


def example_table(columns, n_rows: int = 3) -> pa.Table:
    schema = arrow_schema(columns)
    data = {f.name: [example_value(f, r) for r in range(n_rows)] for f in schema}
    return pa.table(data, schema=schema)


def read_csv_typed(path, schema: pa.Schema) -> pa.Table:
    options = pacsv.ConvertOptions(column_types=schema, strings_can_be_null=False)
    return pacsv.read_csv(path, convert_options=options)


def folder_listing(folder) -> list[str]:
    return sorted(os.listdir(folder))


@pytest.mark.parametrize(
    "columns",
    [segment_columns(), call_columns(), segment_columns(["neutral", "angry"])],
    ids=["segments", "calls", "segments-other-classes"],
)
def test_parquet_and_csv_keep_the_schema_types(tmp_path, columns):
    table = example_table(columns)
    written = write_table(table, tmp_path / "out", "t", formats=FORMATS)
    assert written == [tmp_path / "out" / "t.parquet", tmp_path / "out" / "t.csv"]

    parquet = pq.read_table(written[0])
    assert parquet.schema.equals(table.schema, check_metadata=True)  # units and descriptions
    assert parquet.equals(table)

    csv = read_csv_typed(written[1], table.schema)
    assert csv.column_names == table.column_names
    assert [f.type for f in csv.schema] == [f.type for f in table.schema]
    assert csv.to_pylist() == table.to_pylist()


def test_column_metadata_carries_units(tmp_path):
    table = example_table(call_columns())
    (path,) = write_table(table, tmp_path, "calls", formats=["parquet"])
    field = pq.read_schema(path).field("duration_s")
    assert field.metadata[b"unit"] == b"s"
    assert field.metadata[b"description"]


def test_empty_table_still_has_its_header(tmp_path):
    table = example_table(segment_columns(), n_rows=0)
    write_table(table, tmp_path, "segments", formats=FORMATS)
    assert pq.read_table(tmp_path / "segments.parquet").schema.equals(table.schema)
    header = (tmp_path / "segments.csv").read_text().splitlines()
    assert header == [",".join(f'"{name}"' for name in table.column_names)]


def test_no_temporary_files_are_left_behind(tmp_path):
    write_table(example_table(segment_columns()), tmp_path, "segments", formats=FORMATS)
    write_table(example_table(call_columns()), tmp_path, "calls", formats=FORMATS)
    assert folder_listing(tmp_path) == [
        "calls.csv",
        "calls.parquet",
        "segments.csv",
        "segments.parquet",
    ]


def test_rewriting_replaces_the_previous_tables(tmp_path):
    write_table(example_table(call_columns(), n_rows=5), tmp_path, "calls", formats=FORMATS)
    write_table(example_table(call_columns(), n_rows=2), tmp_path, "calls", formats=FORMATS)
    assert pq.read_table(tmp_path / "calls.parquet").num_rows == 2
    assert read_csv_typed(tmp_path / "calls.csv", arrow_schema(call_columns())).num_rows == 2
    assert folder_listing(tmp_path) == ["calls.csv", "calls.parquet"]


def test_written_files_are_readable_by_others_under_the_usual_umask(tmp_path):
    old = os.umask(0o022)
    try:
        paths = write_table(example_table(call_columns()), tmp_path, "calls", formats=FORMATS)
    finally:
        os.umask(old)
    assert [p.stat().st_mode & 0o777 for p in paths] == [0o644, 0o644]


def test_file_modes_are_computed_without_touching_the_umask(tmp_path, monkeypatch):
    """Setting the umask, even for a moment, races with every thread that creates files."""
    from callsort.dataset.writers import atomic_path

    old = os.umask(0o027)
    try:

        def forbidden(mask):
            raise AssertionError("os.umask called while writing")

        monkeypatch.setattr(os, "umask", forbidden)
        paths = write_table(example_table(call_columns()), tmp_path, "calls", formats=FORMATS)
        with atomic_path(tmp_path / "summary.json") as tmp:
            tmp.write_text("{}")
        monkeypatch.undo()
    finally:
        os.umask(old)
    modes = [p.stat().st_mode & 0o777 for p in [*paths, tmp_path / "summary.json"]]
    assert modes == [0o640, 0o640, 0o640]


def write_half_then_fail(table, where, *args, **kwargs):
    """Stands in for a pyarrow writer: starts the file, then fails like a full disk."""
    with open(where, "wb") as f:
        f.write(b"half a table")
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize(
    ("fmt", "module", "function"),
    [("parquet", pq, "write_table"), ("csv", pacsv, "write_csv")],
)
def test_failed_write_leaves_the_previous_file_untouched(
    tmp_path, monkeypatch, fmt, module, function
):
    old_table = example_table(call_columns(), n_rows=4)
    write_table(old_table, tmp_path, "calls", formats=[fmt])
    target = tmp_path / f"calls.{fmt}"
    before = target.read_bytes()

    monkeypatch.setattr(module, function, write_half_then_fail)
    with pytest.raises(CallsortError, match="No space left on device") as caught:
        write_table(example_table(call_columns(), n_rows=1), tmp_path, "calls", formats=[fmt])
    assert "calls" in str(caught.value) and str(tmp_path) in str(caught.value)

    assert target.read_bytes() == before
    assert folder_listing(tmp_path) == [f"calls.{fmt}"]  # the temporary file is gone


def test_failure_before_any_previous_file_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(pq, "write_table", write_half_then_fail)
    with pytest.raises(CallsortError):
        write_table(example_table(call_columns()), tmp_path, "calls", formats=["parquet"])
    assert folder_listing(tmp_path) == []


def test_output_folder_that_is_a_file_is_a_callsort_error(tmp_path):
    blocker = tmp_path / "out"
    blocker.write_text("not a folder")
    with pytest.raises(CallsortError, match="cannot write"):
        write_table(example_table(call_columns()), blocker, "calls", formats=FORMATS)


def test_unknown_format_is_refused_without_leaving_files(tmp_path):
    with pytest.raises(CallsortError, match="unknown output format"):
        write_table(example_table(call_columns()), tmp_path, "calls", formats=["xlsx"])
    assert folder_listing(tmp_path) == []


def test_atomic_path_creates_missing_folders(tmp_path):
    target = tmp_path / "a" / "b" / "file.txt"
    with writers.atomic_path(target) as tmp:
        assert tmp.parent == target.parent
        tmp.write_text("done")
        assert not target.exists()
    assert target.read_text() == "done"


RISKY = ["=HYPERLINK(1)", "+1", "-2", "@SUM(A1)", "\tx", "\ry"]
SAFE = ["plain", "a=b", "", "2026-01/call.wav", None]


def test_spreadsheet_safe_quotes_formula_starts_only():
    table = pa.table({"text": RISKY + SAFE, "number": list(range(len(RISKY + SAFE)))})
    safe = spreadsheet_safe(table)
    assert safe.column("text").to_pylist() == ["'" + v for v in RISKY] + SAFE
    assert safe.column("number").equals(table.column("number"))
    assert safe.schema.equals(table.schema, check_metadata=True)


def test_csv_is_spreadsheet_safe_but_parquet_keeps_raw_values(tmp_path):
    schema = arrow_schema(segment_columns())
    n = len(RISKY)
    data = {f.name: [example_value(f, 0)] * n for f in schema}
    data["recording"] = RISKY
    data["label"] = ["-calm"] * n
    table = pa.table(data, schema=schema)
    parquet_path, csv_path = write_table(table, tmp_path, "segments", formats=FORMATS)

    raw = pq.read_table(parquet_path)
    assert raw.column("recording").to_pylist() == RISKY
    assert raw.column("label").to_pylist() == ["-calm"] * n

    csv = read_csv_typed(csv_path, schema)
    assert csv.column("recording").to_pylist() == ["'" + v for v in RISKY]
    assert csv.column("label").to_pylist() == ["'-calm"] * n
    assert csv.column("start_s").to_pylist() == raw.column("start_s").to_pylist()  # numbers as is


def test_spreadsheet_safe_also_quotes_large_strings():
    """Tables built from pandas 3 DataFrames carry large_string columns."""
    table = pa.table({"name": pa.array(["=cmd()", "ok"], type=pa.large_string())})
    safe = spreadsheet_safe(table)
    assert safe.column("name").to_pylist() == ["'=cmd()", "ok"]
    assert safe.schema == table.schema
