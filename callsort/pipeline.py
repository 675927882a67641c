"""Label a batch of recordings: discover, analyse in parallel, build and write tables.

:func:`label` is what ``callsort label`` and the Python API call. Each
recording is analysed in a worker process that loads the model once; any
failure of one recording becomes an ``error`` row and the batch goes on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa

from callsort.discover import Recording, find_recordings
from callsort.errors import CallsortError
from callsort.settings import AnalysisSettings
from callsort.tables import RecordingResult, calls_table, segments_table

ProgressCallback = Callable[[RecordingResult], None]


@dataclass(frozen=True)
class LabelRun:
    """The outcome of one batch: the tables, where they went, and the results."""

    segments: pa.Table
    calls: pa.Table
    results: list[RecordingResult]
    written: list[Path]
    model_version: str
    wall_s: float

    @property
    def n_failed(self) -> int:
        return sum(not r.ok for r in self.results)


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
) -> LabelRun:
    """Label every recording under ``paths`` and write the tables to ``out``.

    With ``out=None`` nothing is written; the tables are returned either way.
    """
    from callsort.model import load_model

    started = time.perf_counter()
    settings = settings or AnalysisSettings()
    model = load_model(model_dir)  # fail fast on a bad model, before any work
    skip = [out] if out is not None else []
    recordings = find_recordings(paths, include=include, exclude=exclude, skip=skip)
    if on_start:
        on_start(recordings)
    results = analyse_all(
        recordings,
        model_dir=model.path,
        settings=settings,
        jobs=jobs or default_jobs(),
        on_result=on_result,
    )
    classes, version = model.classes, model.version
    segments = segments_table(results, classes=classes, model_version=version)
    calls = calls_table(results, classes=classes, model_version=version)
    written: list[Path] = []
    if out is not None:
        from callsort.writers import write_table

        folder = Path(out)
        written += write_table(segments, folder, "segments", formats=formats)
        written += write_table(calls, folder, "calls", formats=formats)
    return LabelRun(
        segments=segments,
        calls=calls,
        results=results,
        written=written,
        model_version=version,
        wall_s=time.perf_counter() - started,
    )


def analyse_all(
    recordings: Sequence[Recording],
    *,
    model_dir: Path,
    settings: AnalysisSettings,
    jobs: int,
    on_result: ProgressCallback | None = None,
) -> list[RecordingResult]:
    """Analyse ``recordings`` with ``jobs`` processes; results in input order."""
    results: list[RecordingResult | None] = [None] * len(recordings)

    def record(index: int, result: RecordingResult) -> None:
        results[index] = result
        if on_result:
            on_result(result)

    if jobs <= 1 or len(recordings) <= 1:
        _init_worker(model_dir, settings)
        for index, recording in enumerate(recordings):
            record(index, _analyse_one(recording))
        return results  # type: ignore[return-value]

    import multiprocessing

    context = multiprocessing.get_context("spawn")  # no fork after OpenMP threads exist
    with ProcessPoolExecutor(
        max_workers=min(jobs, len(recordings)),
        mp_context=context,
        initializer=_init_worker,
        initargs=(model_dir, settings),
    ) as pool:
        pending: dict[Future, int] = {}
        queue = iter(enumerate(recordings))
        limit = jobs * 4  # bounded submission: memory stays flat for huge archives
        while True:
            for index, recording in queue:
                pending[pool.submit(_analyse_one, recording)] = index
                if len(pending) >= limit:
                    break
            if not pending:
                break
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                index = pending.pop(future)
                try:
                    result = future.result()
                except Exception as exc:  # the worker itself died
                    result = _failure(recordings[index], f"worker failed: {exc!r}", 0.0)
                record(index, result)
    return results  # type: ignore[return-value]


_worker_state: dict[str, object] = {}


def _init_worker(model_dir: Path, settings: AnalysisSettings) -> None:
    """Load the model once per worker process."""
    from callsort.model import load_model

    key = (str(model_dir), settings)
    if _worker_state.get("key") != key:
        model = load_model(model_dir)
        _warm_up(model)
        _worker_state.update(key=key, model=model, settings=settings)


def _warm_up(model) -> None:
    """Run the feature code once so lazy imports are not billed to the first recording."""
    import numpy as np

    from callsort.features import segment_features
    from callsort.settings import FeatureSettings

    noise = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    features = segment_features(noise, settings=FeatureSettings(**model.card.feature_settings))
    model.classifier.predict_proba(features[np.newaxis, :])


def _analyse_one(recording: Recording) -> RecordingResult:
    from callsort.analysis import analyse_recording

    started = time.perf_counter()
    try:
        analysis = analyse_recording(
            recording.path, model=_worker_state["model"], settings=_worker_state["settings"]
        )
    except CallsortError as exc:
        return _failure(recording, str(exc), time.perf_counter() - started)
    except MemoryError:
        return _failure(recording, "out of memory", time.perf_counter() - started)
    except Exception as exc:  # a bug or a library failure: report it, keep the batch going
        reason = f"unexpected error: {type(exc).__name__}: {exc}"
        return _failure(recording, reason, time.perf_counter() - started)
    return RecordingResult(
        recording=recording.name,
        recording_id=recording.recording_id,
        analysis=analysis,
        error="",
        processing_s=time.perf_counter() - started,
        processed_at=datetime.now(timezone.utc),
    )


def _failure(recording: Recording, reason: str, seconds: float) -> RecordingResult:
    return RecordingResult(
        recording=recording.name,
        recording_id=recording.recording_id,
        analysis=None,
        error=reason,
        processing_s=seconds,
        processed_at=datetime.now(timezone.utc),
    )
