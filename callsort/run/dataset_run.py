"""``label`` into a dataset folder: lock, recover, plan, analyse, commit in batches, summarise.

One :class:`DatasetRun` per run. It holds the dataset's lock while it writes,
finishes what a killed run left, analyses only what :func:`~callsort.dataset.manifest.plan`
says is new or changed, commits the results in batches
(:class:`~callsort.dataset.store.DatasetStore`), regenerates the CSV files and
writes ``runs/<run_id>.json``, whatever happens.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from callsort.audio.discover import find_recordings
from callsort.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    CallsortError,
    DatasetWriteError,
    UsageError,
)
from callsort.run.names import absolute_named
from callsort.run.options import LabelOptions, LabelRun

if TYPE_CHECKING:
    import pyarrow as pa

    from callsort.dataset.lock import OutputLock
    from callsort.dataset.manifest import Fingerprint, Pending, Plan
    from callsort.dataset.runlog import RunLog
    from callsort.dataset.store import DatasetStore
    from callsort.dataset.tables import RecordingResult
    from callsort.model.folder import Model


@dataclass
class RunTally:
    """What a dataset run has done so far (for the summary, the log and :class:`LabelRun`)."""

    ok: int = 0
    failed: int = 0
    batches: int = 0  # committed
    audio_s: float = 0.0  # of the recordings analysed ok
    failures: list[tuple[str, str]] = field(default_factory=list)  # (recording, reason)
    notes: list[str] = field(default_factory=list)  # recovery and lock takeover, for the user
    plan: Plan | None = None


@dataclass
class KeptRows:
    """The rows a run returns: calls always; segments and results with ``keep_results``."""

    segments: list[pa.Table] = field(default_factory=list)
    calls: list[pa.Table] = field(default_factory=list)
    results: list[RecordingResult] = field(default_factory=list)


class DatasetRun:
    """One run of ``label`` into the dataset at ``root``; :meth:`run` does it once."""

    def __init__(
        self, paths: Sequence[Path | str], root: Path, options: LabelOptions, *, started: float
    ) -> None:
        from callsort.dataset.runlog import new_run_id

        self.paths = list(paths)
        self.root = root
        self.options = options
        self.started = started
        self.run_id = new_run_id()
        self.started_at = datetime.now(timezone.utc)
        self.tally = RunTally()
        self.kept = KeptRows()
        self.imposed = None  # ArchiveChoice of statistics the caller imposes
        self.archive_choice = None  # ArchiveChoice this run labelled with

    def run(self) -> LabelRun:
        """Plan (and, unless a dry run, analyse and commit); see :func:`callsort.run.batch.label`."""
        import pyarrow as pa

        from callsort.dataset import manifest
        from callsort.dataset.store import DatasetStore, empty_table
        from callsort.model.card import model_folder as model_folder_of
        from callsort.schema import arrow_schema, call_columns, segment_columns

        o = self.options
        self.pattern = manifest.compile_date_pattern(o.date_pattern)
        self.since = _since(o.since)
        if o.max_files is not None and o.max_files < 0:
            raise UsageError("--max-files takes a number of files, 0 or more")
        recordings = find_recordings(
            self.paths, include=o.include, exclude=o.exclude, skip=[self.root]
        )
        if o.absolute_paths:
            recordings = [absolute_named(r) for r in recordings]
        self.recordings = recordings
        self.model_folder = model_folder_of(o.model_dir)
        # refuses a folder that is not a model before the output folder is touched
        self.fp: Fingerprint = manifest.fingerprint(self.model_folder, o.settings)
        self.dataset: DatasetStore = DatasetStore(self.root)
        empty_segments = empty_table(arrow_schema(segment_columns(self.fp.classes)))
        empty_calls = empty_table(arrow_schema(call_columns(self.fp.classes)))
        if o.dry_run:  # reads the manifest as it is; takes no lock, writes nothing
            todo = self._plan(self.dataset.manifest_index())
            return self._outcome(
                todo,
                segments=empty_segments,
                calls=empty_calls,
                results=[],
                written=[],
                dry_run=True,
            )

        checked_model = _check_model(self.model_folder)  # the local engine then uses it
        if o.archive_statistics is not None:  # refused before the output folder is touched
            from callsort.run.archive import ArchiveChoice, checked_statistics

            self.imposed = ArchiveChoice(
                checked_statistics(
                    o.archive_statistics, model=checked_model, what="--archive-statistics"
                ),
                source="imposed",
            )
        summary_file, summary_error, written = self._locked(checked_model)
        kept, tally, todo = self.kept, self.tally, self.tally.plan
        segments = pa.concat_tables(kept.segments) if kept.segments else empty_segments
        calls = pa.concat_tables(kept.calls) if kept.calls else empty_calls
        return self._outcome(
            todo,
            segments=segments if o.keep_results else empty_segments,
            calls=calls,
            results=kept.results,
            written=written,
            n_ok=tally.ok,
            failures=tuple(tally.failures),
            audio_s=tally.audio_s,
            summary_file=summary_file,
            summary_error=summary_error,
            notes=tuple(tally.notes),
            archive=self.archive_choice.summary() if self.archive_choice else None,
        )

    def _outcome(self, todo: Plan, **fields) -> LabelRun:
        """The run's :class:`LabelRun`: what every outcome says (model, plan, dataset, run
        id, wall time) and ``fields``."""
        return LabelRun(
            model_version=self.fp.model_version,
            wall_s=time.perf_counter() - self.started,
            skipped=todo.skipped,
            deferred=todo.deferred,
            outside=todo.outside,
            planned=tuple(todo.pending),
            dataset=self.root,
            run_id=self.run_id,
            **fields,
        )

    def _plan(self, index: dict) -> Plan:
        from callsort.dataset.manifest import plan

        o = self.options
        return plan(
            self.recordings,
            index,
            fingerprint=self.fp.value,
            force=o.force,
            verify_hash=o.verify_hash,
            retry_failed=o.retry_failed,
            date_pattern=self.pattern,
            since=self.since,
            max_files=o.max_files,
        )

    def _locked(self, model: Model) -> tuple[Path | None, str, list[Path]]:
        """Everything that writes, under the lock; the summary is written whatever happens.

        Returns ``(summary_file, summary_error, written)``.
        """
        from callsort.dataset.lock import OutputLock
        from callsort.dataset.runlog import RunLog, record_summary

        o = self.options
        log = RunLog(o.log_file, self.run_id)
        lock = OutputLock(self.root, self.run_id, wait=o.wait, on_wait=o.on_wait)
        exit_code, error = EXIT_INTERNAL, ""
        summary_file, summary_error = None, ""
        written: list[Path] = []
        try:
            try:
                with writing_to(self.root):
                    lock.acquire()
            except CallsortError as exc:
                log.event("refused", reason=str(exc), exit_code=exc.exit_code)
                raise
            try:
                written = self._write(lock, log, model)
                exit_code = 1 if self.tally.failures else 0
            except CallsortError as exc:
                exit_code, error = exc.exit_code, str(exc)
                raise
            except KeyboardInterrupt:
                exit_code, error = EXIT_INTERRUPTED, "interrupted (Ctrl-C)"
                raise
            except BaseException as exc:  # a bug, or a system error outside the dataset's files
                error = f"{type(exc).__name__}: {exc}"
                raise
            finally:
                summary = self._summary(exit_code, error)
                if lock.held:  # only a run that held the lock writes into the dataset
                    summary_file, summary_error = record_summary(self.root, self.run_id, summary)
                keys = ("exit_code", "counts", "audio_hours", "wall_s", "error")
                log.event("run_finished", **{k: summary[k] for k in keys})
                lock.release()
        finally:
            log.close()
        return summary_file, summary_error, written

    def _write(self, lock: OutputLock, log: RunLog, model: Model) -> list[Path]:
        """Recover, plan, analyse and commit, regenerate the CSV files; what was written."""
        tally = self.tally
        if lock.stale:
            holder = lock.stale
            tally.notes.append(
                f"took over a stale lock of run {holder.get('run_id', '?')} "
                f"(pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
                f"started {holder.get('started_at', '?')}), which is no longer running"
            )
            log.event("stale_lock_taken_over", holder=holder)
        with writing_to(self.root):
            recovered = self.dataset.prepare()
        for note in recovered:
            tally.notes.append(note)
            log.event("recovered", what=note)
        old = [n for n in ("segments.parquet", "calls.parquet") if (self.root / n).is_file()]
        if old:  # tables of callsort 0.1, which wrote flat files
            tally.notes.append(
                f"{' and '.join(old)} in {self.root} are tables of an older callsort run, left "
                "as they are; this dataset's tables are segments/ and calls/"
            )
            log.event("old_tables_found", files=old)
        index = self.dataset.manifest_index()
        _check_naming(index, absolute=self.options.absolute_paths, root=self.root)
        todo = tally.plan = self._plan(index)
        log.event(
            "run_started",
            dataset=str(self.root),
            paths=[str(p) for p in self.paths],
            discovered=len(self.recordings),
            to_process=len(todo.pending),
            skipped_unchanged=todo.skipped,
            deferred=todo.deferred,
            engine=self.options.engine,
            fingerprint=self.fp.value,
            model_version=self.fp.model_version,
        )
        if self.options.on_start:
            self.options.on_start([p.recording for p in todo.pending])
        if todo.pending:
            BatchCommitter(self, log).analyse(todo.pending, model)
        with writing_to(self.root):
            return self._finish_tables(changed=tally.batches > 0)

    def _finish_tables(self, *, changed: bool) -> list[Path]:
        """Regenerate the CSV files when the dataset changed, or a killed run left them behind."""
        root, o = self.root, self.options
        wanted = ["calls"] if "csv" in o.formats else []
        if o.segments_csv:
            wanted.append("segments")
        for table in wanted:
            if changed or self.dataset.csv_is_stale(table):
                self.dataset.write_csv(table)
        written = [root / f"{t}.csv" for t in wanted]
        return [*written, root / "segments", root / "calls", root / "manifest.parquet"]

    def _summary(self, exit_code: int, error: str) -> dict:
        """What ``runs/<run_id>.json`` says of this run."""
        from callsort.version import __version__

        tally, todo, o = self.tally, self.tally.plan, self.options
        return {
            "run_id": self.run_id,
            "callsort_version": __version__,
            "started_at": self.started_at.isoformat(),
            "finished_at": datetime.now(timezone.utc).isoformat(),
            "wall_s": round(time.perf_counter() - self.started, 3),
            "exit_code": exit_code,
            "error": error,
            "dataset": str(self.root),
            "paths": [str(p) for p in self.paths],
            "engine": o.engine,
            "scheduler": o.scheduler or "",
            "fingerprint": self.fp.value,
            "model_version": self.fp.model_version,
            "counts": {
                "discovered": len(self.recordings),
                "processed_ok": tally.ok,
                "failed": tally.failed,
                "skipped_unchanged": todo.skipped if todo else 0,
                "deferred_by_max_files": todo.deferred if todo else 0,
                "before_since": todo.outside if todo else 0,
            },
            "reasons": dict(Counter(p.reason for p in todo.pending)) if todo else {},
            "audio_hours": round(tally.audio_s / 3600, 4),
            "batches_committed": tally.batches,
            "archive_statistics": (
                self.archive_choice.summary() if self.archive_choice is not None else None
            ),
            "notes": tally.notes,
            "failures": [{"recording": r, "error": e} for r, e in tally.failures[:1000]],
        }


class BatchCommitter:
    """Analyses a run's pending recordings and commits their results in batches."""

    def __init__(self, run: DatasetRun, log: RunLog) -> None:
        self.run = run
        self.log = log
        self.batch: list[tuple[Pending, RecordingResult]] = []
        self.by_id: dict[str, Pending] = {}
        self.last_commit = time.monotonic()

    def analyse(self, pending: list[Pending], model: Model) -> None:
        """Analyse ``pending`` on the run's engine (locally with ``model``, already loaded
        from the run's model folder) and commit every result. A model that standardises
        per archive first gets the archive's statistics (:meth:`archive_statistics`), in
        the same workers."""
        from callsort.run.archive import sample_size, sampled_results
        from callsort.run.engines import EngineSession
        from callsort.run.pool import start_workers
        from callsort.run.worker import Task

        run, o = self.run, self.run.options
        n = o.settings.archive_sample_recordings
        self.by_id = {p.recording.recording_id: p for p in pending}
        if o.engine == "local" and o.jobs > 1 and len(pending) > 1:
            start_workers(o.jobs)  # the workers' imports overlap loading the model here
        recordings = [p.recording for p in pending]
        sampling = sample_size(run.root, run.fp, model, run.imposed, run.recordings, n)
        with EngineSession(
            engine=o.engine,
            scheduler=o.scheduler,
            model_dir=run.model_folder,
            settings=o.settings,
            jobs=o.jobs,
            most=max(len(recordings), sampling),
            model=model if o.engine == "local" else None,
            expected_model_sha=run.fp.model_sha256,
            file_timeout_s=o.file_timeout_s,
        ) as session:
            archive = self.archive_statistics(session, model)
            choice = run.archive_choice
            # decoded once, not twice
            for result in sampled_results(choice, model=model, settings=o.settings):
                self.take(result)
            if choice is not None and choice.sampled:
                recordings = [r for r in recordings if r.recording_id not in choice.sampled]
            session.each(recordings, on_result=self.take, task=Task(archive=archive))
        self.commit()

    def archive_statistics(self, session, model: Model):
        """The statistics this run labels with (None for a model that takes none), see
        :func:`callsort.run.archive.dataset_choice`; written before any row."""
        from callsort.run import archive

        run = self.run
        if model.archive_population is None:
            return None
        choice = run.archive_choice = archive.dataset_choice(
            session,
            run.recordings,
            root=run.root,
            fp=run.fp,
            model=model,
            imposed=run.imposed,
            n=run.options.settings.archive_sample_recordings,
            labelled=archive.labelled_under(run.dataset.manifest_table(), run.fp),
            force=run.options.force,
            keep=self.by_id,
        )
        self.log.event("archive_statistics", **choice.summary())
        run.tally.notes.extend(choice.notes)
        return choice.statistics

    def take(self, result: RecordingResult) -> None:
        """One result: counted, logged, reported, and committed with its batch when full."""
        tally, o = self.run.tally, self.run.options
        item = self.by_id[result.recording_id]
        self.batch.append((item, result))
        if result.ok:
            tally.ok += 1
            tally.audio_s += result.analysis.duration_s
        else:
            tally.failed += 1
            tally.failures.append((result.recording, result.error))
        self.log.event(
            "recording",
            recording=result.recording,
            status="ok" if result.ok else "error",
            error=result.error,
            reason=item.reason,
            date=item.date,
            duration_s=round(result.analysis.duration_s, 3) if result.ok else None,
            processing_s=round(result.processing_s, 3),
        )
        if o.on_result:
            o.on_result(result)
        full = len(self.batch) >= o.batch_size
        if full or time.monotonic() - self.last_commit >= o.batch_seconds:
            self.commit()

    def commit(self) -> None:
        """Commit the results taken since the last commit, if any."""
        if not self.batch:
            return
        run, tally = self.run, self.run.tally
        with writing_to(run.root):
            segments, calls = run.dataset.commit(
                self.batch,
                classes=run.fp.classes,
                model_version=run.fp.model_version,
                fingerprint=run.fp.value,
                run_id=run.run_id,
                sequence=tally.batches,
            )
        tally.batches += 1
        self.log.event(
            "batch_committed",
            sequence=tally.batches - 1,
            recordings=len(self.batch),
            segments=segments.num_rows,
            calls=calls.num_rows,
        )
        if run.options.keep_results:
            run.kept.segments.append(segments)
            run.kept.results.extend(r for _, r in self.batch)
        run.kept.calls.append(calls)
        self.batch.clear()
        self.last_commit = time.monotonic()


@contextlib.contextmanager
def writing_to(root: Path):
    """Writing into the dataset: an ``OSError`` here is the dataset's, exit code 2.

    Only these steps are wrapped; an ``OSError`` anywhere else (the worker pool,
    the analysis) is not a dataset that cannot be written, and stays what it is.
    """
    try:
        yield
    except OSError as exc:
        raise DatasetWriteError(
            f"cannot write to the dataset {root}: {exc.strerror or exc}; "
            "what was committed before stays as it was"
        ) from None


def _since(since: date | str | None) -> date | None:
    if not isinstance(since, str):
        return since
    from callsort.dataset.manifest import parse_date

    parsed = parse_date(since)
    if parsed is None:
        raise UsageError(f"--since takes a date like 2026-11-25, not {since!r}")
    return parsed


def _check_model(folder: Path) -> Model:
    """The model in ``folder``, refused before any work if this callsort cannot use it:
    a card that does not match its booster, or features of another layout."""
    from callsort.features.spectral import feature_names
    from callsort.model.folder import load_model

    model = load_model(folder)
    model.check_feature_layout(feature_names(model.feature_settings))
    return model


def _check_naming(index: dict, *, absolute: bool, root: Path) -> None:
    """Refuse to mix relative and absolute recording names in one dataset: the same
    recording would be there twice, once under each name."""
    name = next(iter(index), None)
    if name is None:
        return
    named_absolute = name.startswith("/")
    if named_absolute != absolute:
        how = "absolute paths" if named_absolute else "paths relative to the input root"
        raise UsageError(
            f"the dataset in {root} names recordings by {how}; "
            + ("add --absolute-paths" if named_absolute else "drop --absolute-paths")
            + " or write to a new output folder"
        )
