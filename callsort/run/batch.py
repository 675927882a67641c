"""Label a batch of recordings: discover, analyse in parallel, build and write tables.

:func:`label` is what ``callsort label`` and the Python API call. Each
recording is analysed in a worker process that loads the model once; any
failure of one recording becomes an ``error`` row and the batch goes on.

Importing this module is cheap (the analysis libraries are imported when
needed), so that the command can start the workers first.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from callsort.audio.discover import Recording, find_recordings, table_name
from callsort.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    CallsortError,
    DatasetWriteError,
)
from callsort.errors import UsageError as CallsortUsage
from callsort.settings import AnalysisSettings

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    import pyarrow as pa

    from callsort.dataset.store import Pending
    from callsort.dataset.tables import RecordingResult
    from callsort.model.folder import Model

ProgressCallback = Callable[["RecordingResult"], None]

DEFAULT_FILE_TIMEOUT_S = 3600.0
"""Per-recording time limit by default: generous (labelling runs far faster than real time)."""


@dataclass(frozen=True)
class LabelRun:
    """The outcome of one batch: the tables, where they went, and the results.

    Without an output folder, ``segments`` and ``calls`` hold every recording's
    rows. With one (a dataset), they hold the rows of the recordings this run
    analysed, not those it skipped as unchanged (read the dataset for those);
    ``segments`` and ``results`` are empty when the run was asked not to keep
    them (``keep_results=False``, as the command does).
    """

    segments: pa.Table
    calls: pa.Table
    results: list[RecordingResult]
    written: list[Path]
    model_version: str
    wall_s: float
    n_ok: int = 0
    failures: tuple[tuple[str, str], ...] = ()  # (recording, reason)
    audio_s: float = 0.0  # of the recordings analysed ok
    skipped: int = 0  # unchanged since the last run
    deferred: int = 0  # left for a later run by max_files
    outside: int = 0  # dated before `since`
    planned: tuple[Pending, ...] = ()  # what this run analysed (or, dry run, would)
    dataset: Path | None = None
    run_id: str = ""
    summary_file: Path | None = None
    dry_run: bool = False
    notes: tuple[str, ...] = ()  # recovery and lock takeover, for the user
    summary_error: str = ""  # why runs/<run_id>.json could not be written, if it could not

    @property
    def n_failed(self) -> int:
        return len(self.failures)

    @property
    def exit_code(self) -> int:
        if self.summary_error:  # the tables are committed, but cron must hear of it
            return DatasetWriteError.exit_code
        return 1 if self.failures else 0


DEFAULT_BATCH = 200
"""Recordings per commit to a dataset (a commit also happens every ``batch_seconds``)."""


def default_jobs() -> int:
    """All the cores this process may use."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def label(
    paths: Sequence[Path | str],
    *,
    out: Path | str | None = None,
    formats: Sequence[str] = ("parquet", "csv"),
    model_dir: Path | str | None = None,
    settings: AnalysisSettings | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    jobs: int | None = None,
    on_start: Callable[[list[Recording]], None] | None = None,
    on_result: ProgressCallback | None = None,
    file_timeout_s: float | None = DEFAULT_FILE_TIMEOUT_S,
    absolute_paths: bool = False,
    engine: str = "local",
    scheduler: str | None = None,
    force: bool = False,
    verify_hash: bool = False,
    retry_failed: bool = False,
    date_pattern: str | None = None,
    since: date | str | None = None,
    max_files: int | None = None,
    dry_run: bool = False,
    segments_csv: bool = False,
    wait: bool = False,
    on_wait: Callable[[dict], None] | None = None,
    log_file: Path | str | None = None,
    batch_size: int = DEFAULT_BATCH,
    batch_seconds: float = 60.0,
    keep_results: bool = True,
) -> LabelRun:
    """Label every recording under ``paths``; with ``out``, bring the dataset there up to date.

    With ``out=None`` nothing is written and every recording is analysed; the
    tables are returned. With ``out``, that folder is a dataset (see
    :mod:`callsort.dataset.store`): only recordings that are new or changed since the
    last run, or whose model or settings changed, are analysed (all with
    ``force``); results are committed in batches; ``calls.csv`` is regenerated
    when ``formats`` includes csv (``segments.csv`` too with ``segments_csv``);
    a summary goes to ``out/runs/<run_id>.json``. ``dry_run`` only plans.
    Raises :class:`~callsort.dataset.lock.LockedError` (exit code 3) when another run
    holds the folder, unless ``wait``. Recordings are named by their path
    relative to the input root, or by their absolute path with
    ``absolute_paths``; ``file_timeout_s`` bounds the analysis of one recording.
    """
    from callsort.run.engines import analyse_stream, check_engine

    started = time.perf_counter()
    settings = settings or AnalysisSettings()
    jobs = jobs or default_jobs()
    check_engine(engine, scheduler)
    if out is not None:
        return _label_dataset(
            paths,
            Path(out),
            started=started,
            formats=formats,
            model_dir=model_dir,
            settings=settings,
            include=include,
            exclude=exclude,
            jobs=jobs,
            on_start=on_start,
            on_result=on_result,
            engine=engine,
            scheduler=scheduler,
            force=force,
            verify_hash=verify_hash,
            retry_failed=retry_failed,
            date_pattern=date_pattern,
            since=since,
            max_files=max_files,
            dry_run=dry_run,
            segments_csv=segments_csv,
            wait=wait,
            on_wait=on_wait,
            log_file=log_file,
            batch_size=batch_size,
            batch_seconds=batch_seconds,
            keep_results=keep_results,
            file_timeout_s=file_timeout_s,
            absolute_paths=absolute_paths,
        )

    from callsort.dataset.tables import calls_table, segments_table
    from callsort.model.folder import load_model

    model = load_model(model_dir)  # fail fast on a bad model, before any work
    recordings = find_recordings(paths, include=include, exclude=exclude)
    if absolute_paths:
        recordings = [_absolute(r) for r in recordings]
    if on_start:
        on_start(recordings)
    order = {r.recording_id: i for i, r in enumerate(recordings)}
    results: list[RecordingResult] = []

    def collect(result: RecordingResult) -> None:
        results.append(result)
        if on_result:
            on_result(result)

    analyse_stream(
        recordings,
        engine=engine,
        scheduler=scheduler,
        model_dir=model.path,
        settings=settings,
        jobs=jobs,
        on_result=collect,
        model=model,
        file_timeout_s=file_timeout_s,
        expected_model_sha=_model_sha(model.path) if engine == "dask" else "",
    )
    results.sort(key=lambda r: order[r.recording_id])
    classes, version = model.classes, model.version
    segments = segments_table(results, classes=classes, model_version=version)
    calls = calls_table(results, classes=classes, model_version=version)
    return LabelRun(
        segments=segments,
        calls=calls,
        results=results,
        written=[],
        model_version=version,
        wall_s=time.perf_counter() - started,
        n_ok=sum(r.ok for r in results),
        failures=tuple((r.recording, r.error) for r in results if not r.ok),
        audio_s=sum(r.analysis.duration_s for r in results if r.analysis is not None),
    )


def _absolute(recording: Recording) -> Recording:
    return Recording(path=recording.path, name=Path(os.path.abspath(recording.path)).as_posix())


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
        raise CallsortUsage(
            f"the dataset in {root} names recordings by {how}; "
            + ("add --absolute-paths" if named_absolute else "drop --absolute-paths")
            + " or write to a new output folder"
        )


def _model_sha(folder: Path) -> str:
    from callsort.model.card import MODEL_FILE, file_sha256

    return file_sha256(Path(folder) / MODEL_FILE)


def _label_dataset(paths, root: Path, *, started: float, **o) -> LabelRun:
    """``label`` into a dataset folder: plan, lock, recover, analyse, commit, summarise."""
    import pyarrow as pa

    from callsort.dataset.lock import OutputLock
    from callsort.dataset.runlog import RunLog, new_run_id, write_summary
    from callsort.dataset.store import (
        DatasetStore,
        _empty,
        compile_date_pattern,
        fingerprint,
        parse_date,
        plan,
    )
    from callsort.model.card import model_folder as model_folder_of
    from callsort.run.engines import analyse_stream
    from callsort.schema import arrow_schema, call_columns, segment_columns

    run_id = new_run_id()
    started_at = datetime.now(timezone.utc)
    pattern = compile_date_pattern(o["date_pattern"])
    since = o["since"]
    if isinstance(since, str):
        parsed = parse_date(since)
        if parsed is None:
            raise CallsortUsage(f"--since takes a date like 2026-11-25, not {since!r}")
        since = parsed
    if o["max_files"] is not None and o["max_files"] < 0:
        raise CallsortUsage("--max-files takes a number of files, 0 or more")
    recordings = find_recordings(paths, include=o["include"], exclude=o["exclude"], skip=[root])
    if o["absolute_paths"]:
        recordings = [_absolute(r) for r in recordings]
    model_folder = model_folder_of(o["model_dir"])
    fp = fingerprint(model_folder, o["settings"])  # refuses a folder that is not a model
    # before the output folder is touched; the local engine then uses this model
    checked_model = None if o["dry_run"] else _check_model(model_folder)
    dataset = DatasetStore(root)
    plan_options = dict(
        fingerprint=fp.value,
        force=o["force"],
        verify_hash=o["verify_hash"],
        retry_failed=o["retry_failed"],
        date_pattern=pattern,
        since=since,
        max_files=o["max_files"],
    )
    empty_segments = _empty(arrow_schema(segment_columns(fp.classes)))
    empty_calls = _empty(arrow_schema(call_columns(fp.classes)))
    if o["dry_run"]:  # reads the manifest as it is; takes no lock, writes nothing
        todo = plan(recordings, dataset.manifest_index(), **plan_options)
        return LabelRun(
            segments=empty_segments,
            calls=empty_calls,
            results=[],
            written=[],
            model_version=fp.model_version,
            wall_s=time.perf_counter() - started,
            skipped=todo.skipped,
            deferred=todo.deferred,
            outside=todo.outside,
            planned=tuple(todo.pending),
            dataset=root,
            run_id=run_id,
            dry_run=True,
        )

    log = RunLog(o["log_file"], run_id)
    lock = OutputLock(root, run_id, wait=o["wait"], on_wait=o["on_wait"])
    counts = {"ok": 0, "failed": 0, "batches": 0}
    state: dict = {"audio_s": 0.0, "failures": [], "notes": [], "todo": None}
    kept_segments: list[pa.Table] = []
    kept_calls: list[pa.Table] = []
    kept_results: list[RecordingResult] = []
    exit_code = EXIT_INTERNAL
    error = ""
    summary_file = None
    summary_error = ""
    written: list[Path] = []
    try:
        try:
            with _writing(root):
                lock.acquire()
        except CallsortError as exc:
            log.event("refused", reason=str(exc), exit_code=exc.exit_code)
            raise
        try:
            if lock.stale:
                note = (
                    f"took over a stale lock of run {lock.stale.get('run_id', '?')} "
                    f"(pid {lock.stale.get('pid', '?')} on {lock.stale.get('host', '?')}, "
                    f"started {lock.stale.get('started_at', '?')}), which is no longer running"
                )
                state["notes"].append(note)
                log.event("stale_lock_taken_over", holder=lock.stale)
            with _writing(root):
                notes = dataset.prepare()
            for note in notes:
                state["notes"].append(note)
                log.event("recovered", what=note)
            old = [n for n in ("segments.parquet", "calls.parquet") if (root / n).is_file()]
            if old:  # tables of callsort 0.1, which wrote flat files
                note = (
                    f"{' and '.join(old)} in {root} are tables of an older callsort run, left as "
                    "they are; this dataset's tables are segments/ and calls/"
                )
                state["notes"].append(note)
                log.event("old_tables_found", files=old)
            index = dataset.manifest_index()
            _check_naming(index, absolute=o["absolute_paths"], root=root)
            todo = plan(recordings, index, **plan_options)
            state["todo"] = todo
            log.event(
                "run_started",
                dataset=str(root),
                paths=[str(p) for p in paths],
                discovered=len(recordings),
                to_process=len(todo.pending),
                skipped_unchanged=todo.skipped,
                deferred=todo.deferred,
                engine=o["engine"],
                fingerprint=fp.value,
                model_version=fp.model_version,
            )
            pending = [p.recording for p in todo.pending]
            if o["on_start"]:
                o["on_start"](pending)
            if pending:
                _analyse_into(
                    dataset,
                    todo.pending,
                    fp=fp,
                    run_id=run_id,
                    model_folder=model_folder,
                    o=o,
                    log=log,
                    counts=counts,
                    state=state,
                    kept=(kept_segments, kept_calls, kept_results),
                    analyse_stream=analyse_stream,
                    model=checked_model,
                )
            with _writing(root):
                written = _finish_tables(dataset, o, changed=counts["batches"] > 0)
            exit_code = 1 if state["failures"] else 0
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
            todo = state["todo"]
            summary = {
                "run_id": run_id,
                "callsort_version": _version(),
                "started_at": started_at.isoformat(),
                "finished_at": datetime.now(timezone.utc).isoformat(),
                "wall_s": round(time.perf_counter() - started, 3),
                "exit_code": exit_code,
                "error": error,
                "dataset": str(root),
                "paths": [str(p) for p in paths],
                "engine": o["engine"],
                "scheduler": o["scheduler"] or "",
                "fingerprint": fp.value,
                "model_version": fp.model_version,
                "counts": {
                    "discovered": len(recordings),
                    "processed_ok": counts["ok"],
                    "failed": counts["failed"],
                    "skipped_unchanged": todo.skipped if todo else 0,
                    "deferred_by_max_files": todo.deferred if todo else 0,
                    "before_since": todo.outside if todo else 0,
                },
                "reasons": _reasons(todo.pending) if todo else {},
                "audio_hours": round(state["audio_s"] / 3600, 4),
                "batches_committed": counts["batches"],
                "notes": state["notes"],
                "failures": [{"recording": r, "error": e} for r, e in state["failures"][:1000]],
            }
            if lock._fd is not None:  # only a run that held the lock writes into the dataset
                try:
                    summary_file = write_summary(root, run_id, summary)
                except OSError as exc:
                    summary_error = (
                        f"cannot write the run summary {root / 'runs' / (run_id + '.json')}: "
                        f"{exc.strerror or exc}"
                    )
                    summary["error"] = "; ".join(e for e in (error, summary_error) if e)
                    if exit_code in (0, 1):
                        summary["exit_code"] = DatasetWriteError.exit_code
            log.event(
                "run_finished",
                **{
                    k: summary[k] for k in ("exit_code", "counts", "audio_hours", "wall_s", "error")
                },
            )
            lock.release()
    finally:
        log.close()

    segments = pa.concat_tables(kept_segments) if kept_segments else empty_segments
    calls = pa.concat_tables(kept_calls) if kept_calls else empty_calls
    return LabelRun(
        segments=segments if o["keep_results"] else empty_segments,
        calls=calls,
        results=kept_results,
        written=written,
        model_version=fp.model_version,
        wall_s=time.perf_counter() - started,
        n_ok=counts["ok"],
        failures=tuple(state["failures"]),
        audio_s=state["audio_s"],
        skipped=state["todo"].skipped,
        deferred=state["todo"].deferred,
        outside=state["todo"].outside,
        planned=tuple(state["todo"].pending),
        dataset=root,
        run_id=run_id,
        summary_file=summary_file,
        summary_error=summary_error,
        notes=tuple(state["notes"]),
    )


def _analyse_into(
    dataset,
    pending,
    *,
    fp,
    run_id,
    model_folder,
    o,
    log,
    counts,
    state,
    kept,
    analyse_stream,
    model=None,
):
    """Analyse ``pending`` on the chosen engine and commit the results in batches.

    ``model``: the model in ``model_folder``, already loaded (else loaded here).
    """
    kept_segments, kept_calls, kept_results = kept
    by_id = {p.recording.recording_id: p for p in pending}
    batch: list = []
    last_commit = [time.monotonic()]
    if o["engine"] == "local":
        from callsort.model.folder import load_model

        if o["jobs"] > 1 and len(pending) > 1:
            start_workers(o["jobs"])  # the workers' imports overlap loading the model here
        model = model or load_model(model_folder)
    else:
        model = None

    def commit() -> None:
        if not batch:
            return
        with _writing(dataset.root):
            segments, calls = dataset.commit(
                batch,
                classes=fp.classes,
                model_version=fp.model_version,
                fingerprint=fp.value,
                run_id=run_id,
                sequence=counts["batches"],
            )
        counts["batches"] += 1
        log.event(
            "batch_committed",
            sequence=counts["batches"] - 1,
            recordings=len(batch),
            segments=segments.num_rows,
            calls=calls.num_rows,
        )
        if o["keep_results"]:
            kept_segments.append(segments)
            kept_results.extend(r for _, r in batch)
        kept_calls.append(calls)
        batch.clear()
        last_commit[0] = time.monotonic()

    def take(result: RecordingResult) -> None:
        item = by_id[result.recording_id]
        batch.append((item, result))
        if result.ok:
            counts["ok"] += 1
            state["audio_s"] += result.analysis.duration_s
        else:
            counts["failed"] += 1
            state["failures"].append((result.recording, result.error))
        log.event(
            "recording",
            recording=result.recording,
            status="ok" if result.ok else "error",
            error=result.error,
            reason=item.reason,
            date=item.date,
            duration_s=round(result.analysis.duration_s, 3) if result.ok else None,
            processing_s=round(result.processing_s, 3),
        )
        if o["on_result"]:
            o["on_result"](result)
        if len(batch) >= o["batch_size"] or time.monotonic() - last_commit[0] >= o["batch_seconds"]:
            commit()

    analyse_stream(
        [p.recording for p in pending],
        engine=o["engine"],
        scheduler=o["scheduler"],
        model_dir=model_folder,
        settings=o["settings"],
        jobs=o["jobs"],
        on_result=take,
        model=model,
        expected_model_sha=fp.model_sha256,
        file_timeout_s=o["file_timeout_s"],
    )
    commit()


@contextlib.contextmanager
def _writing(root: Path):
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


def _finish_tables(dataset, o, *, changed: bool) -> list[Path]:
    """Regenerate the CSV files when the dataset changed, or a killed run left them behind."""
    root = dataset.root
    wanted = ["calls"] if "csv" in o["formats"] else []
    if o["segments_csv"]:
        wanted.append("segments")
    for table in wanted:
        if changed or dataset.csv_is_stale(table):
            dataset.write_csv(table)
    written = [root / f"{t}.csv" for t in wanted]
    return [*written, root / "segments", root / "calls", root / "manifest.parquet"]


def _reasons(pending) -> dict[str, int]:
    reasons: dict[str, int] = {}
    for p in pending:
        reasons[p.reason] = reasons.get(p.reason, 0) + 1
    return reasons


def _version() -> str:
    from callsort import __version__

    return __version__


def analyse_all(
    recordings: Sequence[Recording],
    *,
    model_dir: Path,
    settings: AnalysisSettings,
    jobs: int,
    on_result: ProgressCallback | None = None,
    model: Model | None = None,
    file_timeout_s: float | None = DEFAULT_FILE_TIMEOUT_S,
) -> list[RecordingResult]:
    """Analyse ``recordings`` with ``jobs`` processes; results in input order.

    ``model``, the model in ``model_dir`` if the caller has loaded it already,
    is used as it is when the recordings are analysed in this process.

    Every recording gets a result: a recording that fails, that takes longer
    than ``file_timeout_s`` (``None`` or 0: no limit), or whose worker process
    dies (killed, out of memory, a crash in native code) becomes an error
    result with the reason; the worker is replaced and the others go on.
    """
    results: list[RecordingResult | None] = [None] * len(recordings)

    def keep(index: int, result: RecordingResult) -> None:
        results[index] = result
        if on_result:
            on_result(result)

    analyse_each(
        recordings,
        model_dir=model_dir,
        settings=settings,
        jobs=jobs,
        record=keep,
        model=model,
        file_timeout_s=file_timeout_s,
    )
    return results  # type: ignore[return-value]


def analyse_each(
    recordings: Sequence[Recording],
    *,
    model_dir: Path,
    settings: AnalysisSettings,
    jobs: int,
    record: Callable[[int, RecordingResult], None],
    model: Model | None = None,
    file_timeout_s: float | None = DEFAULT_FILE_TIMEOUT_S,
) -> None:
    """:func:`analyse_all` keeping nothing: ``record(index, result)`` as each completes.

    One pool of ``jobs`` workers for all the recordings, each worker loading the
    model once, however many recordings there are.
    """
    if not recordings:
        return
    timeout = file_timeout_s if file_timeout_s and file_timeout_s > 0 else None
    if jobs <= 1 or len(recordings) <= 1:
        from threadpoolctl import threadpool_limits

        _init_worker(model_dir, settings, pool_worker=False, loaded=model)
        with threadpool_limits(limits=1):  # as in a worker; the caller's limits come back after
            for index, recording in enumerate(recordings):
                record(index, _analyse_in_this_process(recording, timeout))
        return

    import threading

    # This process only waits while the workers start and run: meanwhile, import what
    # building and writing the tables will need (pyarrow imports pandas for that, 0.25 s),
    # instead of doing it after the last recording.
    threading.Thread(target=_import_table_writers, daemon=True).start()
    _WorkerPool(model_dir, settings, size=min(jobs, len(recordings))).run(
        recordings, record=record, timeout_s=timeout
    )


@dataclass
class _Worker:
    """One worker process and the pipe to it; ``task`` is the recording it is analysing."""

    process: BaseProcess
    conn: Connection
    ready: bool = False
    task: int | None = None
    started: float = 0.0
    spawned: float = 0.0


class _WorkerPool:
    """Worker processes that each analyse one recording at a time.

    Unlike :class:`concurrent.futures.ProcessPoolExecutor`, which fails every
    pending future when one worker dies, each worker here has exactly one
    recording in hand, so a worker that dies or overruns the time limit names
    its recording and only that one: the worker is replaced and the others
    keep working undisturbed.
    """

    MAX_START_FAILURES = 3
    START_TIMEOUT_S = 600.0  # loading the model takes seconds; a worker never ready is stuck

    def __init__(self, model_dir: Path, settings: AnalysisSettings, *, size: int) -> None:
        self.context = _pool_context()
        self.model_dir = model_dir
        self.settings = settings
        self.size = size
        self.workers: list[_Worker] = []
        self.todo: deque[int] = deque()
        self.start_failures = 0

    def run(
        self,
        recordings: Sequence[Recording],
        *,
        record: Callable[[int, RecordingResult], None],
        timeout_s: float | None,
    ) -> None:
        from multiprocessing.connection import wait as wait_for

        todo = self.todo = deque(range(len(recordings)))
        try:
            for _ in range(self.size):
                self._spawn()
            while todo or any(w.task is not None for w in self.workers):
                for worker in self.workers:
                    if worker.ready and worker.task is None and todo:
                        self._hand_out(worker, todo, recordings)
                waits = [w.conn for w in self.workers] + [w.process.sentinel for w in self.workers]
                ready = set(wait_for(waits, timeout=self._next_deadline(timeout_s)))
                for worker in list(self.workers):
                    if worker.conn in ready and self._receive(worker, record, recordings):
                        continue
                    if worker.conn in ready or worker.process.sentinel in ready:
                        self._died(worker, record, recordings)
                    elif not worker.ready and self._stuck_starting(worker):
                        self._start_failed(worker, f"not ready within {self.START_TIMEOUT_S:g} s")
                    elif self._overran(worker, timeout_s):
                        self._stop(worker)
                        reason = (
                            f"timed out: still being analysed after {timeout_s:g} s "
                            "(the per-recording limit, --file-timeout)"
                        )
                        record(worker.task, _failure(recordings[worker.task], reason, timeout_s))
                        self._replace(worker)
            self._shut_down()
        finally:
            for worker in self.workers:  # an exception or an interrupt: leave no process behind
                self._stop(worker)

    def _spawn(self) -> None:
        parent_end, child_end = self.context.Pipe(duplex=True)
        process = self.context.Process(
            target=_worker_main,
            args=(child_end, self.model_dir, self.settings),
            name="callsort-worker",
            daemon=True,
        )
        process.start()
        child_end.close()
        self.workers.append(_Worker(process, parent_end, spawned=time.monotonic()))

    def _hand_out(self, worker: _Worker, todo, recordings: Sequence[Recording]) -> None:
        index = todo.popleft()
        try:
            worker.conn.send((index, recordings[index]))
        except OSError:  # the worker died while idle: not this recording's fault
            todo.appendleft(index)
            return
        worker.task, worker.started = index, time.monotonic()

    def _next_deadline(self, timeout_s: float | None) -> float | None:
        deadlines = [w.spawned + self.START_TIMEOUT_S for w in self.workers if not w.ready]
        if timeout_s is not None:
            deadlines += [w.started + timeout_s for w in self.workers if w.task is not None]
        if not deadlines:
            return None
        return max(min(deadlines) - time.monotonic(), 0.0)

    def _stuck_starting(self, worker: _Worker) -> bool:
        return time.monotonic() - worker.spawned >= self.START_TIMEOUT_S

    def _overran(self, worker: _Worker, timeout_s: float | None) -> bool:
        return (
            timeout_s is not None
            and worker.task is not None
            and time.monotonic() - worker.started >= timeout_s
        )

    def _receive(self, worker: _Worker, record, recordings) -> bool:
        """Handle one message from ``worker``; False if its pipe is closed (it died)."""
        try:
            message = worker.conn.recv()
        except (EOFError, OSError):
            return False
        kind = message[0]
        if kind == "ready":
            worker.ready = True
            self.start_failures = 0
        elif kind == "result":
            _, index, result = message
            worker.task = None
            record(index, result)
        elif kind == "failed":  # the worker could not start: the same for every worker
            _, text, is_user_error = message
            raise (CallsortError if is_user_error else RuntimeError)(text)
        return True

    def _died(self, worker: _Worker, record, recordings) -> None:
        worker.process.join(timeout=5)
        how = _death_reason(worker.process.exitcode)
        if worker.task is not None:
            index = worker.task
            seconds = time.monotonic() - worker.started
            reason = f"worker process died while analysing this recording: {how}"
            record(index, _failure(recordings[index], reason, seconds))
        elif not worker.ready:
            self._start_failed(worker, how)
            return
        self._replace(worker)

    def _start_failed(self, worker: _Worker, reason: str) -> None:
        self.start_failures += 1
        if self.start_failures >= self.MAX_START_FAILURES:
            raise CallsortError(f"worker processes fail to start (the last one: {reason})")
        self._replace(worker)

    def _replace(self, worker: _Worker) -> None:
        """Stop ``worker``; start another if recordings are still waiting."""
        self._stop(worker)
        self.workers.remove(worker)
        if self.todo:
            self._spawn()

    def _stop(self, worker: _Worker) -> None:
        if worker.process.exitcode is None:
            worker.process.kill()
        worker.process.join(timeout=5)
        worker.conn.close()

    def _shut_down(self) -> None:
        for worker in self.workers:
            with contextlib.suppress(OSError):  # already gone
                worker.conn.send(None)
        deadline = time.monotonic() + 5
        for worker in self.workers:
            worker.process.join(timeout=max(deadline - time.monotonic(), 0.1))


def _death_reason(exitcode: int | None) -> str:
    """How a worker process ended: ``killed by SIGKILL (out of memory?)``."""
    import signal

    if exitcode is None:
        return "it stopped responding"
    if exitcode >= 0:
        return f"it exited with code {exitcode}"
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        name = f"signal {-exitcode}"
    if name == "SIGKILL":
        return "killed by SIGKILL (out of memory?)"
    if name in ("SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE", "SIGABRT"):
        return f"crash in native code ({name})"
    return f"ended by {name}"


def _worker_main(conn: Connection, model_dir: Path, settings: AnalysisSettings) -> None:
    """A worker process: load the model, then analyse one recording per message."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the main process to handle
    try:
        _init_worker(model_dir, settings)
    except Exception as exc:
        conn.send(("failed", str(exc), isinstance(exc, CallsortError)))
        return
    conn.send(("ready",))
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):  # the main process is gone
            return
        if task is None:
            return
        index, recording = task
        result = _analyse_one(recording)
        try:
            conn.send(("result", index, result))
        except OSError:  # the main process is gone
            return


# Imported once by the fork server, so that workers start with them loaded; names that
# do not exist (another librosa layout) are skipped by multiprocessing.
_PRELOAD = (
    "callsort.run.analysis",
    "callsort.dataset.tables",
    "librosa.core.spectrum",
    "librosa.feature.spectral",
    "librosa.feature.utils",
    "librosa.filters",
    "scipy.signal",
    "threadpoolctl",
)


def start_workers(jobs: int) -> None:
    """Start what the workers fork from now, so that its imports overlap this process's.

    For a caller that expects a batch of recordings with ``jobs`` > 1; without
    a fork server (Windows) it does nothing. Wasted, not wrong, if the batch
    turns out to be a single recording.
    """
    if jobs > 1 and _pool_context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def _import_table_writers() -> None:
    import pandas  # noqa: F401
    import pyarrow.compute  # noqa: F401
    import pyarrow.csv  # noqa: F401
    import pyarrow.parquet  # noqa: F401


def _pool_context():
    """Workers fork from a fork server that has imported the analysis libraries.

    Spawned workers would each import them again (about 1.5 s of CPU apiece),
    and forking this process is unsafe: loading the model ran LightGBM's OpenMP
    threads here. The fork server is a fresh process that never runs OpenMP
    code; where there is none (Windows), workers are spawned.
    """
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(_PRELOAD))
    return context


_worker_state: dict[str, object] = {}


def _init_worker(
    model_dir: Path,
    settings: AnalysisSettings,
    *,
    pool_worker: bool = True,
    loaded: Model | None = None,
) -> None:
    """Load the model once per worker process.

    In a ``pool_worker``, BLAS and OpenMP pools are limited to one thread for the
    rest of the process: a worker is one core. Their default (a thread per core)
    makes every worker fight the others, and any other work on the machine, for
    the small matrix products of the features; measured, that is up to 6 times
    slower.
    """
    from callsort.model.booster import lean_lightgbm_import
    from callsort.model.folder import load_model

    if pool_worker:  # a process of its own that gives LightGBM numpy arrays only
        lean_lightgbm_import()
    key = (str(model_dir), settings)
    if loaded is not None:
        model = loaded
    elif _worker_state.get("key") == key:
        model = _worker_state["model"]
    else:
        model = load_model(model_dir)
    from callsort.features.spectral import feature_names

    model.check_feature_layout(feature_names(model.feature_settings))
    if not _worker_state.get("warm"):
        _warm_up(model)  # also loads every library whose thread pool is limited below
        _worker_state["warm"] = True
    _worker_state.update(key=key, model=model, settings=settings)
    if pool_worker:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1)


def _warm_up(model) -> None:
    """Run the feature code once so lazy imports are not billed to the first recording."""
    import numpy as np

    from callsort.features.spectral import segment_features

    noise = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    features = segment_features(noise, settings=model.feature_settings)
    model.channel_proba(features[np.newaxis, :])


class _TimedOut(BaseException):
    """Raised by the alarm in this process; a BaseException so no library swallows it."""


def _analyse_in_this_process(recording: Recording, timeout_s: float | None) -> RecordingResult:
    """:func:`_analyse_one` under a best-effort time limit (SIGALRM, main thread only).

    Without a worker process there is nothing to kill: the alarm interrupts
    Python code between two bytecodes, so a long loop or a long read is
    stopped, a single native call that never returns is not.
    """
    import signal
    import threading

    if (
        timeout_s is None
        or not hasattr(signal, "setitimer")
        or threading.current_thread() is not threading.main_thread()
    ):
        return _analyse_one(recording)

    def alarm(signum, frame):
        raise _TimedOut

    started = time.perf_counter()
    previous = signal.signal(signal.SIGALRM, alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
        try:
            return _analyse_one(recording)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _TimedOut:
        reason = f"timed out: still being analysed after {timeout_s:g} s (the per-recording limit, --file-timeout)"
        return _failure(recording, reason, time.perf_counter() - started)
    finally:
        signal.signal(signal.SIGALRM, previous)


def _analyse_one(recording: Recording) -> RecordingResult:
    from callsort.dataset.tables import RecordingResult
    from callsort.run.analysis import analyse_recording

    started = time.perf_counter()
    try:
        analysis = analyse_recording(
            recording.path, model=_worker_state["model"], settings=_worker_state["settings"]
        )
    except CallsortError as exc:
        return _failure(recording, str(exc), time.perf_counter() - started)
    except MemoryError:
        return _failure(recording, "out of memory", time.perf_counter() - started)
    except Exception as exc:  # callsort failed, not the file: report it, keep the batch going
        reason = f"{INTERNAL_ERROR}: {type(exc).__name__}: {exc}"
        return _failure(recording, reason, time.perf_counter() - started, internal=True)
    return RecordingResult(
        recording=recording.name,
        recording_id=recording.recording_id,
        analysis=analysis,
        error="",
        processing_s=time.perf_counter() - started,
        processed_at=datetime.now(timezone.utc),
    )


INTERNAL_ERROR = "internal error in callsort, not a fault of the file (the next run tries it again)"
"""How an error row starts when callsort itself failed on the recording (a bug)."""


def _failure(
    recording: Recording, reason: str, seconds: float, *, internal: bool = False
) -> RecordingResult:
    from callsort.dataset.tables import RecordingResult

    return RecordingResult(
        recording=recording.name,
        recording_id=recording.recording_id,
        analysis=None,
        error=_without_paths(reason, recording),
        processing_s=seconds,
        processed_at=datetime.now(timezone.utc),
        internal=internal,
    )


def _without_paths(reason: str, recording: Recording) -> str:
    """An error reason that names the recording as the tables do, never by its full path."""
    full = [os.path.abspath(recording.path), str(recording.path)]
    for path in sorted(set(full), key=len, reverse=True):
        if path and path != ".":
            reason = reason.replace(path, recording.name)
    return table_name(reason)
