"""The output dataset: Hive-partitioned Parquet tables, a manifest and crash-safe commits.

A dataset folder (``callsort label ARCHIVE --out DATASET``) holds::

    segments/date=YYYY-MM-DD/part-<run>-<batch>.parquet   one row per speech segment
    calls/date=YYYY-MM-DD/part-<run>-<batch>.parquet      one row per recording and channel
    manifest.parquet      one row per recording: identity, fingerprint, status, where its rows live
    calls.csv             the whole calls table, regenerated after every run that changed it
    segments.csv          the same for segments, only when asked for (it can be huge)
    runs/<run>.json       a summary of every run
    callsort.lock         held by the run writing to the dataset (see :mod:`callsort.dataset.lock`)
    .callsort/            staging area and commit journal (internal)

**The manifest is one Parquet file**, not SQLite: it is replaced by an atomic
rename in the same commit as the data files it points to, so one mechanism (the
journal below) makes data and manifest change together; analysts query it with the
same tools as the tables (``SELECT * FROM 'DATASET/manifest.parquet' WHERE status =
'error'``); and it needs no database locking, which SQLite does not guarantee on
the network shares archives often live on. The price is rewriting it on each
commit (tens of milliseconds per 100,000 rows), paid once per batch.

**Commits.** Results are committed in batches. A commit writes the batch's new
partition files, a copy of every older file that loses rows (a reprocessed
recording's old rows) and the new manifest into ``.callsort/staging``, then
writes ``.callsort/journal.json`` listing the renames and deletions, and renames
it into place: that rename is the commit point. The journal is then applied
(old rows removed, new files renamed into their partitions, manifest replaced)
and deleted. A run that starts finds any journal left by a killed run and
finishes applying it (every step can be repeated), and throws away the staging
area, so a run killed at any moment and then rerun leaves every recording's rows
in the dataset exactly once. New batches only add files; an older file is
rewritten only when one of its recordings is reprocessed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from callsort.audio.discover import Recording
from callsort.errors import CallsortError, ModelError, UsageError
from callsort.schema import PARTITION_COLUMN, arrow_schema, manifest_columns
from callsort.settings import AnalysisSettings

MANIFEST = "manifest.parquet"
INTERNAL = ".callsort"
JOURNAL = "journal.json"
TABLES = ("segments", "calls")
FINGERPRINT_VERSION = 1
"""Part of every fingerprint: bump it when a code change alters results for the same
model and settings, so that datasets are reprocessed."""

_DATE_FORMATS = ("%Y-%m-%d", "%Y%m%d", "%Y/%m/%d", "%Y_%m_%d", "%Y.%m.%d")


# --- what changes results -----------------------------------------------------------------


@dataclass(frozen=True)
class Fingerprint:
    value: str  # 16 hex digits
    model_version: str
    classes: list[str]
    model_sha256: str


def fingerprint(model_dir: Path, settings: AnalysisSettings) -> Fingerprint:
    """The fingerprint of a model folder and analysis settings, with the card's facts.

    Covers what decides the rows: the booster's bytes (their SHA-256, checked
    against the card), the card's classes and feature settings, every analysis
    setting and :data:`FINGERPRINT_VERSION`. Not output options (formats, CSV,
    partitioning). Reads the model folder without loading LightGBM, so a run with
    nothing to do stays cheap; a folder that is not a model is refused here.
    """
    from callsort.model.card import file_sha256, model_files

    model_file, card_file = model_files(model_dir)
    try:
        card = json.loads(card_file.read_text(encoding="utf-8"))
        classes, feature_settings = card["classes"], card["feature_settings"]
        version = str(card["version"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"unreadable model card {card_file}: {exc}") from None
    booster_sha = file_sha256(model_file)
    if card.get("model_sha256") and card["model_sha256"] != booster_sha:
        raise ModelError(
            f"{model_file} does not match its card (checksum differs): truncated or replaced?"
        )
    described = {
        "fingerprint_version": FINGERPRINT_VERSION,
        "booster_sha256": booster_sha,
        "head_sha256": card.get("head_sha256", ""),
        "classes": classes,
        "feature_settings": feature_settings,
        "feature_names": hashlib.sha256(
            "\n".join(card.get("feature_names", [])).encode()
        ).hexdigest(),
        "analysis": settings.to_dict(),
    }
    text = json.dumps(described, sort_keys=True, default=str)
    value = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    return Fingerprint(value, version, list(classes), booster_sha)


# --- dates --------------------------------------------------------------------------------


def compile_date_pattern(pattern: str | None) -> re.Pattern | None:
    if not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise UsageError(f"--date-pattern is not a valid regular expression: {exc}") from None


def recording_date(name: str, mtime_ns: int, pattern: re.Pattern | None) -> tuple[str, bool]:
    """``(YYYY-MM-DD, from_path)``: the date in ``name`` by ``pattern``, else the mtime's (UTC).

    The pattern is searched in the path relative to the archive root. Named groups
    ``year``, ``month``, ``day`` are used when present; otherwise the first group
    (or the whole match) is read as ``2026-11-25``, ``20261125``, ``2026/11/25``,
    ``2026_11_25`` or ``2026.11.25``.
    """
    if pattern is not None:
        found = _date_in(name, pattern)
        if found is not None:
            return found.isoformat(), True
    moment = datetime.fromtimestamp(mtime_ns / 1e9, tz=timezone.utc)
    return moment.date().isoformat(), False


def _date_in(name: str, pattern: re.Pattern) -> date | None:
    match = pattern.search(name)
    if match is None:
        return None
    groups = match.groupdict()
    try:
        if {"year", "month", "day"} <= set(groups) and all(
            groups[k] for k in ("year", "month", "day")
        ):
            return date(int(groups["year"]), int(groups["month"]), int(groups["day"]))
    except ValueError:
        return None
    text = match.group(1) if match.re.groups else match.group(0)
    return parse_date(text or "")


def parse_date(text: str) -> date | None:
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text.strip(), fmt).date()
        except ValueError:
            continue
    return None


# --- planning -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pending:
    """A recording this run analyses, and what the manifest will record about it."""

    recording: Recording
    size_bytes: int
    mtime_ns: int
    content_sha256: str
    date: str
    reason: str  # new, changed, content, settings, forced, retry


@dataclass(frozen=True)
class Plan:
    pending: list[Pending]
    skipped: int  # unchanged since the last run
    deferred: int  # left for a later run by max_files
    outside: int  # before --since
    dates_from_mtime: int


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def plan(
    recordings: Sequence[Recording],
    manifest: dict[str, tuple],
    *,
    fingerprint: str,
    force: bool = False,
    verify_hash: bool = False,
    retry_failed: bool = False,
    date_pattern: re.Pattern | None = None,
    since: date | None = None,
    max_files: int | None = None,
) -> Plan:
    """Which recordings to analyse, oldest date first, and how many are left alone.

    A recording is analysed when it is new, its size or modification time
    changed (with ``verify_hash``, also when its bytes' hash differs or was never
    taken), the fingerprint of model and settings changed, or ``force``. An
    unchanged recording that failed is tried again only with ``retry_failed``,
    unless callsort itself failed on it (status ``internal_error``): that one
    is tried again by every run.
    """
    pending: list[Pending] = []
    skipped = outside = from_mtime = 0
    since_text = since.isoformat() if since else None
    for recording in recordings:
        try:
            st = os.stat(recording.path)
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime = -1, 0  # vanished or unreadable: analysed, and reported as failed
        day, from_path = recording_date(recording.name, mtime, date_pattern)
        if since_text and day < since_text:
            outside += 1
            continue
        from_mtime += not from_path
        known = manifest.get(recording.name)
        sha = ""
        if force:
            reason = "forced"
        elif known is None:
            reason = "new"
        elif (known[0], known[1]) != (size, mtime):
            reason = "changed"
        elif known[3] != fingerprint:
            reason = "settings"
        else:
            reason = ""
            if verify_hash:
                sha = _try_sha(recording.path)
                if not known[2] or known[2] != sha:
                    reason = "content"
            if not reason and known[4] == INTERNAL_ERROR_STATUS:
                reason = "retry"  # callsort failed on it, not the file: always tried again
            if not reason and known[4] != "ok" and retry_failed:
                reason = "retry"
            if not reason:
                skipped += 1
                continue
        if verify_hash and not sha:
            sha = _try_sha(recording.path)
        pending.append(Pending(recording, size, mtime, sha, day, reason))
    pending.sort(key=lambda p: (p.date, p.recording.name))
    deferred = 0
    if max_files is not None and len(pending) > max_files:
        deferred = len(pending) - max_files
        pending = pending[:max_files]
    return Plan(pending, skipped, deferred, outside, from_mtime)


def _try_sha(path: Path) -> str:
    try:
        return file_sha256(path)
    except OSError:
        return ""


INTERNAL_ERROR_STATUS = "internal_error"
"""Manifest status of a recording callsort itself failed on (a bug): retried by every run."""


def _status(result) -> str:
    if result.analysis is not None:
        return "ok"
    return INTERNAL_ERROR_STATUS if getattr(result, "internal", False) else "error"


# --- the dataset --------------------------------------------------------------------------


class DatasetStore:
    """A dataset folder as the writing run sees it: manifest, recovery, batch commits.

    Internal to ``callsort label``; analysts and the Python API read datasets with
    pyarrow, pandas, DuckDB or :func:`callsort.read_dataset`.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.internal = self.root / INTERNAL
        self.staging = self.internal / "staging"
        self.journal = self.internal / JOURNAL
        self.manifest_path = self.root / MANIFEST
        self._manifest: pa.Table | None = None

    # reading

    def manifest_table(self) -> pa.Table:
        if self._manifest is None:
            if self.manifest_path.is_file():
                # ParquetFile, not read_table: that imports pyarrow.dataset and pandas (0.15 s)
                self._manifest = pq.ParquetFile(self.manifest_path).read()
            else:
                self._manifest = _empty(arrow_schema(manifest_columns()))
        return self._manifest

    def manifest_index(self) -> dict[str, tuple]:
        """``recording -> (size, mtime_ns, sha, fingerprint, status)`` for planning."""
        table = self.manifest_table()
        cols = ["recording", "size_bytes", "mtime_ns", "content_sha256", "fingerprint", "status"]
        data = table.select(cols).to_pydict()
        return {name: values for name, *values in zip(*(data[c] for c in cols), strict=True)}

    # crash recovery

    def prepare(self) -> list[str]:
        """Create the folders, finish a commit a killed run left, drop its staging files.

        Call with the dataset's lock held. Returns what was done, for the log.
        """
        done = []
        for table in TABLES:
            (self.root / table).mkdir(parents=True, exist_ok=True)
        if self.journal.is_file():
            self._apply(json.loads(self.journal.read_text(encoding="utf-8")))
            done.append("finished the commit of a run that was stopped")
        if self.staging.exists():
            if any(self.staging.iterdir()):
                done.append("removed the staging files of a run that was stopped")
            shutil.rmtree(self.staging, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.internal.rmdir()  # when empty
        for leftover in [*self.root.glob(".*.csv.*.tmp"), *self.root.glob("runs/.*.json.*.tmp")]:
            leftover.unlink(missing_ok=True)  # a CSV or summary being written when killed
        self._manifest = None
        return done

    def csv_is_stale(self, table: str) -> bool:
        """``<table>.csv`` is missing or older than the last commit (a run killed before
        it regenerated the CSV files)."""
        csv = self.root / f"{table}.csv"
        if not csv.is_file():
            return True
        if not self.manifest_path.is_file():
            return False
        return csv.stat().st_mtime_ns < self.manifest_path.stat().st_mtime_ns

    # committing

    def commit(
        self,
        batch: Sequence[tuple[Pending, object]],
        *,
        classes: Sequence[str],
        model_version: str,
        fingerprint: str,
        run_id: str,
        sequence: int,
    ) -> tuple[pa.Table, pa.Table]:
        """Commit one batch of ``(Pending, RecordingResult)``; returns its segments and calls rows."""
        from callsort.dataset.tables import calls_table, segments_table

        batch = sorted(batch, key=lambda item: item[0].recording.name)
        results = [r for _, r in batch]
        segments = segments_table(results, classes=classes, model_version=model_version)
        calls = calls_table(results, classes=classes, model_version=model_version)
        names = [p.recording.name for p, _ in batch]
        dates = {p.recording.name: p.date for p, _ in batch}

        staging = self.staging / f"{run_id}-{sequence:05d}"
        staging.mkdir(parents=True, exist_ok=True)
        renames: list[tuple[str, str]] = []
        deletes: list[str] = []
        part = f"part-{run_id}-{sequence:05d}.parquet"

        # 1. new partition files
        files: dict[tuple[str, str], str] = {}  # (table, date) -> relative path
        for table_name, table in (("segments", segments), ("calls", calls)):
            day_of_row = pa.array(
                [dates[n] for n in table.column("recording").to_pylist()], pa.string()
            )
            for day in sorted(set(dates.values())):
                rows = table.filter(pc.equal(day_of_row, day))
                if not rows.num_rows:
                    continue
                rel = f"{table_name}/{PARTITION_COLUMN.name}={day}/{part}"
                self._stage(rows, staging, rel, renames)
                files[(table_name, day)] = rel

        # 2. older files that lose the rows of reprocessed recordings
        manifest = self.manifest_table()
        previous = manifest.filter(
            pc.is_in(manifest.column("recording"), pa.array(names, pa.string()))
        )
        old_files = sorted(
            {
                f
                for col in ("segments_file", "calls_file")
                for f in previous.column(col).to_pylist()
                if f
            }
        )
        removals: list[tuple[str, str]] = []
        for rel in old_files:
            path = self.root / rel
            if not path.is_file():
                continue
            table = pq.read_table(path, partitioning=None)
            kept = table.filter(
                pc.invert(pc.is_in(table.column("recording"), pa.array(names, pa.string())))
            )
            if kept.num_rows == table.num_rows:
                continue
            if kept.num_rows:
                self._stage(kept, staging, rel, removals)
            else:
                deletes.append(rel)

        # 3. the new manifest
        counts = _count_by(segments.column("recording").to_pylist())
        rows = []
        for pending, result in batch:
            name = pending.recording.name
            analysis = result.analysis
            rows.append(
                {
                    "recording": name,
                    "recording_id": pending.recording.recording_id,
                    "size_bytes": pending.size_bytes,
                    "mtime_ns": pending.mtime_ns,
                    "content_sha256": pending.content_sha256,
                    "fingerprint": fingerprint,
                    "status": _status(result),
                    "error": result.error,
                    "date": pending.date,
                    "duration_s": round(analysis.duration_s, 3) if analysis is not None else None,
                    "n_segments": counts.get(name, 0),
                    "segments_file": files.get(("segments", pending.date), "")
                    if counts.get(name)
                    else "",
                    "calls_file": files[("calls", pending.date)],
                    "model_version": model_version,
                    "run_id": run_id,
                    "processed_at": result.processed_at,
                }
            )
        schema = arrow_schema(manifest_columns())
        added = pa.Table.from_pylist(rows, schema=schema)
        untouched = manifest.filter(
            pc.invert(pc.is_in(manifest.column("recording"), pa.array(names, pa.string())))
        )
        new_manifest = pa.concat_tables([untouched.cast(schema), added]).sort_by("recording")
        manifest_renames: list[tuple[str, str]] = []
        self._stage(new_manifest, staging, MANIFEST, manifest_renames)

        # 4. the commit point: the journal, then carrying it out. Old rows go first, then
        # new files come in, then the manifest: a reader never sees a recording twice.
        steps = [
            *(["rename", a, b] for a, b in removals),
            *(["delete", rel] for rel in deletes),
            *(["rename", a, b] for a, b in renames),
            *(["rename", a, b] for a, b in manifest_renames),
        ]
        journal = {"run_id": run_id, "sequence": sequence, "steps": steps, "staging": staging.name}
        _reached("staged")
        tmp = self.internal / f".{JOURNAL}.{uuid.uuid4().hex}.tmp"
        _write_durably(tmp, json.dumps(journal, indent=1).encode("utf-8"))
        os.replace(tmp, self.journal)
        _reached("journal")
        self._apply(journal)
        self._manifest = new_manifest
        return segments, calls

    def _stage(self, table: pa.Table, staging: Path, rel: str, renames: list) -> None:
        staged = staging / f"{uuid.uuid4().hex}.parquet"
        pq.write_table(table, staged, compression="zstd")
        _fsync(staged)
        renames.append((str(staged.relative_to(self.root).as_posix()), rel))

    def _apply(self, journal: dict) -> None:
        """Carry out a journal; safe to repeat after being stopped at any point."""
        for n, step in enumerate(journal["steps"]):
            if step[0] == "rename":
                source, target = self.root / step[1], self.root / step[2]
                if source.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(source, target)
            else:
                target = self.root / step[1]
                target.unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    target.parent.rmdir()  # a partition left empty
            if n == 0:
                _reached("applying")
        _reached("applied")
        self.journal.unlink(missing_ok=True)
        shutil.rmtree(self.staging / journal.get("staging", "-"), ignore_errors=True)
        with contextlib.suppress(OSError):
            self.staging.rmdir()
            self.internal.rmdir()

    # reading the tables back (internal; the public reader is elsewhere)

    def read(self, table: str, columns: Sequence[str] | None = None) -> pa.Table:
        """One table of the dataset with its ``date`` column."""
        import pyarrow.dataset as ds

        folder = self.root / table
        if not folder.is_dir() or not any(folder.rglob("*.parquet")):
            return pa.table({})
        dataset = ds.dataset(folder, format="parquet", partitioning=hive_partitioning())
        return dataset.to_table(columns=list(columns) if columns else None)

    def write_csv(self, table: str) -> Path:
        """Regenerate ``<table>.csv`` at the top of the dataset from the Parquet files.

        Written one date partition at a time (sorted by date, recording, channel),
        so memory holds one day of rows, not the whole table.
        """
        import pyarrow.csv as pacsv
        import pyarrow.dataset as ds

        from callsort.dataset.writers import atomic_path, spreadsheet_safe

        folder = self.root / table
        days = sorted(p for p in folder.glob(f"{PARTITION_COLUMN.name}=*") if p.is_dir())
        keys = [("recording", "ascending"), ("channel", "ascending")]
        if table == "segments":
            keys.append(("segment_index", "ascending"))
        target = self.root / f"{table}.csv"
        try:
            with atomic_path(target) as tmp:
                writer = None
                for day in days:
                    files = sorted(day.glob("*.parquet"))
                    if not files:
                        continue
                    rows = ds.dataset(files, format="parquet").to_table().sort_by(keys)
                    value = day.name.split("=", 1)[1]
                    rows = rows.append_column(
                        pa.field(PARTITION_COLUMN.name, PARTITION_COLUMN.type),
                        pa.array([value] * rows.num_rows, PARTITION_COLUMN.type),
                    )
                    rows = spreadsheet_safe(rows)
                    if writer is None:
                        writer = pacsv.CSVWriter(str(tmp), rows.schema)
                    writer.write_table(rows)
                    _reached("csv")
                if writer is not None:
                    writer.close()
        except OSError as exc:
            raise CallsortError(f"cannot write {target}: {exc.strerror or exc}") from None
        return target


def _empty(schema: pa.Schema) -> pa.Table:
    """An empty table (``Schema.empty_table`` imports pandas: 0.15 s a run with nothing to do)."""
    return pa.Table.from_batches([], schema=schema)


def hive_partitioning():
    """The dataset's partitioning, with ``date`` read as an ISO date string."""
    import pyarrow.dataset as ds

    return ds.partitioning(
        pa.schema([(PARTITION_COLUMN.name, PARTITION_COLUMN.type)]), flavor="hive"
    )


def empty_csv_header(columns: Iterable[str]) -> str:
    return ",".join(f'"{c}"' for c in columns) + "\n"


def _count_by(values: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return counts


def _write_durably(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _reached(step: str) -> None:
    """A named step of the commit protocol (``staged``, ``journal``, ``applying``,
    ``applied``, ``csv``); does nothing. The crash-safety tests replace it in the
    process they run (tests/crash_run.py) to kill that process at a chosen step."""
