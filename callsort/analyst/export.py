"""Filtered exports of a dataset: what ``callsort export`` writes.

A filter is a list of conditions, all of which must hold. A condition is
``COLUMN OP VALUE`` (spaces around OP allowed):

=====  ==========================================================
``=``  equal; ``label=angry,sad`` means any of the listed values
``!=`` not equal to any of the listed values
``<`` ``<=`` ``>`` ``>=``  compare numbers, dates and times
``~``  contains, ignoring case (``recording~queue2/``)
=====  ==========================================================

Values are read by the column's type: ``true``/``false`` for flags,
numbers for numeric columns, ISO dates and times for ``date`` and
``processed_at``. Nothing is evaluated as code. Exporting ``segments``, a
condition on a column that only the ``calls`` table has (``escalated=true``)
keeps the segments of the call channels that match it.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from callsort.dataset.reading import Dataset
from callsort.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd

EXPORT_FORMATS = ("csv", "parquet", "json")
OPERATORS = ("<=", ">=", "!=", "=", "<", ">", "~")
_CONDITION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|!=|=|<|>|~)\s*(.*?)\s*$", re.S)
_TRUE = {"true", "yes", "1", "t", "y"}
_FALSE = {"false", "no", "0", "f", "n"}
_KEYS = ["recording_id", "channel"]

TableName = Literal["calls", "segments"]


@dataclass(frozen=True)
class Condition:
    """One ``COLUMN OP VALUE`` condition, parsed but not yet typed."""

    column: str
    op: str
    value: str

    def __str__(self) -> str:
        return f"{self.column}{self.op}{self.value}"


def parse_condition(text: str) -> Condition:
    """Parse ``COLUMN OP VALUE``; :class:`UsageError` if it is not of that form."""
    match = _CONDITION.match(text)
    if not match:
        raise UsageError(
            f"--where {text!r}: expected COLUMN OP VALUE with OP one of "
            f"{' '.join(OPERATORS)}, e.g. escalated=true or peak_p_angry>=0.8"
        )
    column, op, value = match.groups()
    if value == "" and op not in ("=", "!="):
        raise UsageError(f"--where {text!r}: no value after {op}")
    return Condition(column, op, value)


def date_conditions(since: str | None, until: str | None) -> list[Condition]:
    """``date>=SINCE`` and ``date<=UNTIL`` (inclusive), each checked to be an ISO date."""
    conditions = []
    for value, op, option in ((since, ">=", "--since"), (until, "<=", "--until")):
        if value is None:
            continue
        try:
            date.fromisoformat(value)
        except ValueError:
            raise UsageError(f"{option} takes a date as YYYY-MM-DD, not {value!r}") from None
        conditions.append(Condition("date", op, value))
    return conditions


def mask(frame: pd.DataFrame, condition: Condition) -> pd.Series:
    """Rows of ``frame`` where ``condition`` holds (nulls never match, except for ``!=``)."""
    import pandas as pd

    column = frame[condition.column]
    op, raw = condition.op, condition.value
    if op == "~":
        return column.astype("string").str.contains(raw, case=False, regex=False).fillna(False)
    values = [v.strip() for v in raw.split(",")] if op in ("=", "!=") else [raw]
    typed = [_typed(column, v, condition) for v in values]
    if op in ("=", "!="):
        hit = column.isin(typed)
        if not pd.api.types.is_bool_dtype(column.dtype):
            hit = hit & column.notna()
        return ~hit if op == "!=" else hit
    value = typed[0]
    compare = {
        "<": column.lt,
        "<=": column.le,
        ">": column.gt,
        ">=": column.ge,
    }[op]
    try:
        result = compare(value)
    except TypeError:
        raise UsageError(
            f"--where {condition}: cannot compare {condition.column} with {raw!r}"
        ) from None
    return result.fillna(False).astype(bool)


def _typed(column: pd.Series, raw: str, condition: Condition) -> object:
    import pandas as pd

    dtype = column.dtype
    try:
        if pd.api.types.is_bool_dtype(dtype):
            low = raw.lower()
            if low in _TRUE | _FALSE:
                return low in _TRUE
            raise ValueError(raw)
        if pd.api.types.is_numeric_dtype(dtype):
            return float(raw)
        if isinstance(dtype, pd.DatetimeTZDtype):
            stamp = pd.Timestamp(raw)
            return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
        if pd.api.types.is_datetime64_any_dtype(dtype):
            return pd.Timestamp(raw)
    except ValueError:
        kind = "true or false" if pd.api.types.is_bool_dtype(dtype) else str(dtype)
        raise UsageError(
            f"--where {condition}: {raw!r} is not a value of {condition.column} ({kind})"
        ) from None
    if condition.column == "date" and condition.op not in ("=", "!="):
        try:
            date.fromisoformat(raw)
        except ValueError:
            raise UsageError(f"--where {condition}: dates are YYYY-MM-DD") from None
    return raw


def select(
    data: Dataset, *, table: TableName = "calls", conditions: Sequence[Condition] = ()
) -> pd.DataFrame:
    """The rows of ``table`` that meet every condition.

    For ``segments``, conditions on columns only the ``calls`` table has
    select the call channels whose segments are kept.
    """
    if table not in ("calls", "segments"):
        raise UsageError(f"--table is calls or segments, not {table!r}")
    frame = data.calls if table == "calls" else data.segments
    keep = _all_true(frame)
    call_keep = _all_true(data.calls)
    uses_calls = False
    for condition in conditions:
        if condition.column == "date" and "date" not in data.calls.columns:
            raise UsageError(
                "this dataset has no dates (the flat layout of `callsort label --out`): "
                "--since, --until and date conditions need the date-partitioned layout"
            )
        if condition.column in frame.columns:
            keep &= mask(frame, condition)
        elif table == "segments" and condition.column in data.calls.columns:
            call_keep &= mask(data.calls, condition)
            uses_calls = True
        else:
            raise UsageError(
                f"--where {condition}: no column {condition.column!r} in {table}; "
                f"columns: {', '.join(frame.columns)}"
            )
    result = frame[keep]
    if uses_calls:
        chosen = data.calls.loc[call_keep, _KEYS].drop_duplicates()
        result = result.merge(chosen, on=_KEYS, how="inner")
    return result.reset_index(drop=True)


def _all_true(frame: pd.DataFrame) -> pd.Series:
    import pandas as pd

    return pd.Series(True, index=frame.index)


def write_export(frame: pd.DataFrame, fmt: str, out: Path | None) -> Path | None:
    """Write ``frame`` as ``fmt`` to ``out`` (atomically), or to stdout when ``out`` is None."""
    import pyarrow as pa

    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"--format is one of {', '.join(EXPORT_FORMATS)}, not {fmt!r}")
    if out is None and fmt == "parquet":
        raise UsageError("--format parquet needs --out FILE")
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if out is None:
        sys.stdout.buffer.write(_encode(table, frame, fmt))
        sys.stdout.flush()
        return None
    from callsort.dataset.writers import atomic_path

    try:
        with atomic_path(Path(out)) as tmp:
            if fmt == "parquet":
                import pyarrow.parquet as pq

                pq.write_table(table, tmp, compression="zstd")
            else:
                tmp.write_bytes(_encode(table, frame, fmt))
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from None
    return Path(out)


def _encode(table, frame: pd.DataFrame, fmt: str) -> bytes:
    if fmt == "json":
        text = frame.to_json(orient="records", date_format="iso", force_ascii=False, indent=1)
        return (text or "[]").encode("utf-8") + b"\n"
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from callsort.dataset.writers import spreadsheet_safe

    # pandas hands strings to Arrow as large_string, which spreadsheet_safe does not look at
    table = table.cast(
        pa.schema(
            [
                f.with_type(pa.string()) if pa.types.is_large_string(f.type) else f
                for f in table.schema
            ]
        )
    )
    sink = pa.BufferOutputStream()
    pacsv.write_csv(spreadsheet_safe(table), sink)
    return sink.getvalue().to_pybytes()
