"""Read a callsort dataset back: the ``segments`` and ``calls`` tables as DataFrames.

Two layouts are understood, found by looking at the folder:

* **flat**, what ``callsort label --out DIR`` writes: ``DIR/segments.parquet``
  and ``DIR/calls.parquet``. There are no dates; reports group by folder.
* **partitioned** (nightly runs): Hive-style folders
  ``DIR/segments/date=YYYY-MM-DD/*.parquet`` and
  ``DIR/calls/date=YYYY-MM-DD/*.parquet``. The partition becomes a ``date``
  column (ISO date string). Anything else in ``DIR`` (a manifest, ``runs/``)
  and any file outside a ``date=`` folder is ignored, as are hidden and
  temporary files.

Partitions written by different model versions may have different
probability columns; the tables are unified and missing cells are null.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Literal

from callsort.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

TABLES = ("segments", "calls")
_DATE_DIR = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")

Layout = Literal["flat", "partitioned", "memory"]


@dataclass(frozen=True)
class Dataset:
    """The two tables of a callsort dataset; unpacks as ``segments, calls``.

    ``segments`` has one row per speech segment and ``calls`` one row per
    recording and channel (columns in the README's output schema). With the
    partitioned layout both have a ``date`` column (``YYYY-MM-DD`` strings).
    """

    segments: pd.DataFrame
    calls: pd.DataFrame
    layout: Layout = "memory"
    path: Path | None = None

    def __iter__(self) -> Iterator[pd.DataFrame]:
        yield self.segments
        yield self.calls

    @property
    def has_dates(self) -> bool:
        """Whether the calls carry a ``date`` (partitioned layout)."""
        return "date" in self.calls.columns and bool(self.calls["date"].notna().any())


def detect_layout(path: Path | str) -> Literal["flat", "partitioned"]:
    """``flat`` or ``partitioned``; :class:`UsageError` if ``path`` is neither."""
    folder = Path(path)
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder (give the --out folder of callsort label)")
    if all((folder / f"{name}.parquet").is_file() for name in TABLES):
        return "flat"
    if all(_partition_files(folder / name) for name in TABLES):
        return "partitioned"
    if (folder / "calls.csv").is_file():
        raise UsageError(
            f"{folder} holds CSV tables only; reading needs the Parquet tables "
            "(callsort label --format parquet,csv)"
        )
    raise UsageError(
        f"{folder} is not a callsort dataset: expected segments.parquet and calls.parquet, "
        "or segments/date=YYYY-MM-DD/ and calls/date=YYYY-MM-DD/ folders of Parquet files"
    )


def read_dataset(path: Path | str) -> Dataset:
    """Read the ``segments`` and ``calls`` tables under ``path`` (either layout)."""
    folder = Path(path)
    layout = detect_layout(folder)
    if layout == "flat":
        tables = [_read_parquet(folder / f"{name}.parquet") for name in TABLES]
    else:
        tables = [read_partitioned(folder / name) for name in TABLES]
    segments, calls = (_to_pandas(t) for t in tables)
    return Dataset(segments=segments, calls=calls, layout=layout, path=folder)


def read_partitioned(root: Path) -> pa.Table:
    """All ``root/date=YYYY-MM-DD/*.parquet`` files as one table with a ``date`` column."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    files = _partition_files(root)
    date_field = pa.field("date", pa.string())
    try:
        schemas = [pq.read_schema(f) for f in files]
        schema = pa.unify_schemas(
            [s.remove(s.get_field_index("date")) if "date" in s.names else s for s in schemas]
            + [pa.schema([date_field])],
            promote_options="permissive",
        )
        dataset = ds.dataset(
            [str(f) for f in files],
            schema=schema,
            format="parquet",
            partitioning=ds.partitioning(pa.schema([date_field]), flavor="hive"),
            partition_base_dir=str(root),
        )
        return dataset.to_table()
    except (OSError, pa.ArrowException) as exc:
        raise UsageError(f"cannot read the partitioned table {root}: {exc}") from None


def _partition_files(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    files = []
    for sub in sorted(root.iterdir()):
        if sub.is_dir() and _DATE_DIR.match(sub.name):
            files += [
                f
                for f in sorted(sub.rglob("*.parquet"))
                if f.is_file()
                and not any(p.startswith((".", "_")) for p in f.relative_to(sub).parts)
            ]
    return files


def _read_parquet(path: Path) -> pa.Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    frame = table.to_pandas()
    if "date" in frame.columns:
        frame["date"] = frame["date"].astype("string")
    return frame


def folder_of(recording: str) -> str:
    """The folder part of a recording path (``(top folder)`` for recordings at the top)."""
    parent = str(PurePosixPath(recording.replace("\\", "/")).parent)
    return parent if parent not in ("", ".") else "(top folder)"


def frames_from_tables(segments: pa.Table, calls: pa.Table) -> Dataset:
    """A :class:`Dataset` of two Arrow tables (what :func:`callsort.run.batch.label` returns)."""
    return Dataset(segments=_to_pandas(segments), calls=_to_pandas(calls), layout="memory")
