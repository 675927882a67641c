"""Label a batch of recordings: discover, analyse in parallel, build and write tables.

:func:`label` is what ``callsort label`` and the Python API call. Each
recording is analysed in a worker process that loads the model once; any
failure of one recording becomes an ``error`` row and the batch goes on.

Importing this module is cheap (the analysis libraries are imported when
needed), so that the command can start the workers first.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from callsort.discover import Recording, find_recordings
from callsort.errors import CallsortError
from callsort.settings import AnalysisSettings

if TYPE_CHECKING:
    import pyarrow as pa

    from callsort.model import Model
    from callsort.tables import RecordingResult

ProgressCallback = Callable[["RecordingResult"], None]


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
    from callsort.tables import calls_table, segments_table

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
        model=model,
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
    model: Model | None = None,
) -> list[RecordingResult]:
    """Analyse ``recordings`` with ``jobs`` processes; results in input order.

    ``model``, the model in ``model_dir`` if the caller has loaded it already,
    is used as it is when the recordings are analysed in this process.
    """
    results: list[RecordingResult | None] = [None] * len(recordings)
    if not recordings:
        return []

    def record(index: int, result: RecordingResult) -> None:
        results[index] = result
        if on_result:
            on_result(result)

    if jobs <= 1 or len(recordings) <= 1:
        from threadpoolctl import threadpool_limits

        _init_worker(model_dir, settings, pool_worker=False, loaded=model)
        with threadpool_limits(limits=1):  # as in a worker; the caller's limits come back after
            for index, recording in enumerate(recordings):
                record(index, _analyse_one(recording))
        return results  # type: ignore[return-value]

    import threading

    # This process only waits while the workers start and run: meanwhile, import what
    # building and writing the tables will need (pyarrow imports pandas for that, 0.25 s),
    # instead of doing it after the last recording.
    threading.Thread(target=_import_table_writers, daemon=True).start()
    with ProcessPoolExecutor(
        max_workers=min(jobs, len(recordings)),
        mp_context=_pool_context(),
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


# Imported once by the fork server, so that workers start with them loaded; names that
# do not exist (another librosa layout) are skipped by multiprocessing.
_PRELOAD = (
    "callsort.analysis",
    "callsort.tables",
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
    from callsort.model import lean_lightgbm_import, load_model

    if pool_worker:  # a process of its own that gives LightGBM numpy arrays only
        lean_lightgbm_import()
    key = (str(model_dir), settings)
    if loaded is not None:
        model = loaded
    elif _worker_state.get("key") == key:
        model = _worker_state["model"]
    else:
        model = load_model(model_dir)
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

    from callsort.features import segment_features

    noise = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    features = segment_features(noise, settings=model.feature_settings)
    model.channel_proba(features[np.newaxis, :])


def _analyse_one(recording: Recording) -> RecordingResult:
    from callsort.analysis import analyse_recording
    from callsort.tables import RecordingResult

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
    from callsort.tables import RecordingResult

    return RecordingResult(
        recording=recording.name,
        recording_id=recording.recording_id,
        analysis=None,
        error=reason,
        processing_s=seconds,
        processed_at=datetime.now(timezone.utc),
    )
