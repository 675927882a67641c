"""Write tables as Parquet and CSV, atomically.

Every file is written to a temporary name in its destination folder and then
renamed over the target, so a killed run never leaves a half-written table.
CSV cells that a spreadsheet would run as a formula are neutralised; Parquet
keeps the raw values.
"""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
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
    tmp = _temporary_beside(target)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_table(table: pa.Table, folder: Path, name: str, *, formats: Sequence[str]) -> list[Path]:
    """Write ``table`` as ``folder/name.<format>`` for each format; return the paths."""
    return write_tables({name: table}, folder, formats=formats)


def write_tables(
    tables: Mapping[str, pa.Table], folder: Path, *, formats: Sequence[str]
) -> list[Path]:
    """Write each table as ``folder/<name>.<format>``, all or nothing; return the paths.

    Every file is written to a temporary name first; only when all of them
    are complete are they renamed over the previous tables. A failure (disk
    full, permission denied) leaves the previous tables as they were and no
    temporary file behind, and is raised as a :class:`CallsortError`.
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise CallsortError(f"unknown output format {unknown[0]!r}; use {FORMATS}")
    folder = Path(folder)
    staged: list[tuple[Path, Path]] = []
    try:
        try:
            for name, table in tables.items():
                for fmt in formats:
                    target = folder / f"{name}.{fmt}"
                    tmp = _temporary_beside(target)
                    staged.append((tmp, target))
                    if fmt == "parquet":
                        pq.write_table(table, tmp, compression="zstd")
                    else:
                        pacsv.write_csv(spreadsheet_safe(table), tmp)
            for tmp, target in staged:
                os.replace(tmp, target)
        except BaseException:
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        names = " and ".join(tables)
        raise CallsortError(
            f"cannot write the {names} tables to {folder}: {_os_reason(exc)}; "
            "the previous tables there are unchanged"
        ) from None
    return [target for _, target in staged]


def _temporary_beside(target: Path) -> Path:
    """A new empty file beside ``target``, with the mode a plain ``open`` would give it.

    Created with mode 0666, which the system masks with the process umask (mkstemp's
    0600 would hide the tables from the group); the umask itself is never read or
    changed, which would race with other threads creating files.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(target.parent))


def _os_reason(exc: OSError) -> str:
    """The system's reason (``No space left on device``), from pyarrow's wrapped errors too."""
    if exc.strerror:
        return exc.strerror
    text = str(exc)
    for code, words in (
        (errno.ENOSPC, "No space left on device"),
        (errno.EACCES, "Permission denied"),
    ):
        if words in text or f"errno {code}" in text.lower():
            return words
    return text


def spreadsheet_safe(table: pa.Table) -> pa.Table:
    """Prefix string cells that start like a formula with a quote (CSV only)."""
    columns = []
    for column in table.columns:
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            risky = pc.fill_null(pc.starts_with(column, _FORMULA_START[0]), False)
            for prefix in _FORMULA_START[1:]:
                risky = pc.or_(risky, pc.fill_null(pc.starts_with(column, prefix), False))
            quote = pa.scalar("'", type=column.type)  # string or large_string alike
            empty = pa.scalar("", type=column.type)
            column = pc.if_else(risky, pc.binary_join_element_wise(quote, column, empty), column)
        columns.append(column)
    return pa.table(columns, schema=table.schema)
