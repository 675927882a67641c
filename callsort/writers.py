"""Write tables as Parquet and CSV, atomically.

Every file is written to a temporary name in its destination folder and then
renamed over the target, so a killed run never leaves a half-written table.
CSV cells that a spreadsheet would run as a formula are neutralised; Parquet
keeps the raw values.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from callsort.errors import CallsortError

FORMATS = ("parquet", "csv")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target`` that replaces it on success."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; tables are for sharing
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_table(table: pa.Table, folder: Path, name: str, *, formats: Sequence[str]) -> list[Path]:
    """Write ``table`` as ``folder/name.<format>`` for each format; return the paths."""
    written = []
    try:
        for fmt in formats:
            target = folder / f"{name}.{fmt}"
            with atomic_path(target) as tmp:
                if fmt == "parquet":
                    pq.write_table(table, tmp, compression="zstd")
                elif fmt == "csv":
                    pacsv.write_csv(spreadsheet_safe(table), tmp)
                else:
                    raise CallsortError(f"unknown output format {fmt!r}; use {FORMATS}")
            written.append(target)
    except OSError as exc:
        raise CallsortError(
            f"cannot write {name} tables to {folder}: {exc.strerror or exc}"
        ) from None
    return written


def spreadsheet_safe(table: pa.Table) -> pa.Table:
    """Prefix string cells that start like a formula with a quote (CSV only)."""
    columns = []
    for column in table.columns:
        if pa.types.is_string(column.type):
            risky = pc.fill_null(pc.starts_with(column, _FORMULA_START[0]), False)
            for prefix in _FORMULA_START[1:]:
                risky = pc.or_(risky, pc.fill_null(pc.starts_with(column, prefix), False))
            column = pc.if_else(risky, pc.binary_join_element_wise("'", column, ""), column)
        columns.append(column)
    return pa.table(columns, schema=table.schema)
