"""Label a batch of recordings: plan, analyse in parallel, build the tables (or commit them).

:func:`label` is what ``callsort label`` and the Python API call. Each
recording is analysed in a worker process that loads the model once
(:mod:`callsort.run.pool`, or Dask: :mod:`callsort.run.dask`); any failure of
one recording becomes an ``error`` row and the batch goes on. With an output
folder, the run is a :class:`~callsort.run.dataset_run.DatasetRun`.

Importing this module is cheap (the analysis libraries are imported when
needed), so that the command can start the workers first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from callsort.audio.discover import Recording, find_recordings
from callsort.run.names import absolute_named
from callsort.run.options import (
    DEFAULT_BATCH,
    DEFAULT_BATCH_SECONDS,
    DEFAULT_FILE_TIMEOUT_S,
    LabelOptions,
    LabelRun,
    ProgressCallback,
    default_jobs,
)
from callsort.settings import AnalysisSettings

if TYPE_CHECKING:
    from callsort.dataset.tables import RecordingResult

__all__ = ["LabelRun", "label"]


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
    batch_seconds: float = DEFAULT_BATCH_SECONDS,
    keep_results: bool = True,
    archive_statistics: object | None = None,
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

    A model that standardises features per archive labels with the archive's
    statistics (:mod:`callsort.run.archive`): ``archive_statistics`` if given (a
    file, a dict or :class:`~callsort.features.archive.ArchiveStatistics`), else the
    dataset's ``archive-statistics.json`` if made for the same model and settings,
    else those of a sample of the recordings to analyse (``out=None``: every call).
    """
    from callsort.run.engines import check_engine

    started = time.perf_counter()
    options = LabelOptions(
        formats=tuple(formats),
        model_dir=model_dir,
        settings=settings or AnalysisSettings(),
        include=tuple(include),
        exclude=tuple(exclude),
        jobs=jobs or default_jobs(),
        on_start=on_start,
        on_result=on_result,
        file_timeout_s=file_timeout_s,
        absolute_paths=absolute_paths,
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
        archive_statistics=archive_statistics,
    )
    check_engine(engine, scheduler)
    if out is not None:
        from callsort.run.dataset_run import DatasetRun

        return DatasetRun(paths, Path(out), options, started=started).run()
    return _label_in_memory(paths, options, started=started)


def _label_in_memory(
    paths: Sequence[Path | str], options: LabelOptions, *, started: float
) -> LabelRun:
    """Analyse every recording under ``paths`` and return the tables; nothing is written."""
    from callsort.dataset.tables import calls_table, segments_table
    from callsort.model.folder import load_model
    from callsort.run.archive import (
        ArchiveChoice,
        checked_statistics,
        compute_statistics,
        population_note,
        sampled_results,
    )
    from callsort.run.engines import EngineSession
    from callsort.run.worker import Task

    o = options
    model = load_model(o.model_dir)  # fail fast on a bad model, before any work
    recordings = find_recordings(paths, include=o.include, exclude=o.exclude)
    if o.absolute_paths:
        recordings = [absolute_named(r) for r in recordings]
    if o.on_start:
        o.on_start(recordings)
    order = {r.recording_id: i for i, r in enumerate(recordings)}
    results: list[RecordingResult] = []

    def collect(result: RecordingResult) -> None:
        results.append(result)
        if o.on_result:
            o.on_result(result)

    choice = None
    if o.archive_statistics is not None:  # refused for a model that takes none
        choice = ArchiveChoice(
            checked_statistics(o.archive_statistics, model=model, what="archive_statistics"),
            source="imposed",
        )
    with EngineSession(
        engine=o.engine,
        scheduler=o.scheduler,
        model_dir=model.path,
        settings=o.settings,
        jobs=o.jobs,
        most=len(recordings),
        model=model,
        file_timeout_s=o.file_timeout_s,
        expected_model_sha=_model_sha(model.path) if o.engine == "dask" else "",
    ) as session:
        if model.archive_population is not None and choice is None:
            choice = compute_statistics(
                session, recordings, model=model, n=o.settings.archive_sample_recordings
            )
        archive = choice.statistics if choice is not None else None
        # decoded once, not twice
        for result in sampled_results(choice, model=model, settings=o.settings):
            collect(result)
        rest = [r for r in recordings if choice is None or r.recording_id not in choice.sampled]
        session.each(rest, on_result=collect, task=Task(archive=archive))
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
        archive=choice.summary() if choice is not None else None,
        notes=(population_note(choice),) if choice and choice.source == "population" else (),
    )


def _model_sha(folder: Path) -> str:
    from callsort.model.card import MODEL_FILE, file_sha256

    return file_sha256(Path(folder) / MODEL_FILE)
