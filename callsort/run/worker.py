"""One process's share of a run: its loaded model, and one recording analysed into a result row.

Every engine runs :func:`analyse_one` on each recording with the model
:func:`init_worker` loaded into this process, so all give the same rows: the
local pool's worker processes (:mod:`callsort.run.pool`), the caller's own
process with ``jobs=1``, and Dask workers (:mod:`callsort.run.dask`). Any
failure of one recording becomes an error row (:func:`failure`), never an
exception.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from callsort.audio.discover import Recording
from callsort.errors import CallsortError
from callsort.run.names import without_paths
from callsort.settings import AnalysisSettings

if TYPE_CHECKING:
    import numpy as np

    from callsort.dataset.tables import RecordingResult
    from callsort.features.archive import ArchiveStatistics
    from callsort.model.folder import Model
    from callsort.run.analysis import RecordingFeatures

INTERNAL_ERROR = "internal error in callsort, not a fault of the file (the next run tries it again)"
"""How an error row starts when callsort itself failed on the recording (a bug)."""


@dataclass(frozen=True)
class Task:
    """What a worker does with one recording: ``"analyse"`` it into a result row (its
    segments standardised with ``archive``, see :meth:`Model.channel_proba`), or return its
    ``"features"`` (:class:`SampledFeatures`, the raw features the archive statistics
    are computed from)."""

    kind: str = "analyse"
    archive: ArchiveStatistics | None = None


ANALYSE = Task()


@dataclass(frozen=True)
class SampledFeatures:
    """One recording decoded, segmented and featured as labelling does it
    (:class:`~callsort.run.analysis.RecordingFeatures`), not yet labelled."""

    recording: str
    recording_id: str
    raw: RecordingFeatures
    processing_s: float = 0.0

    ok = True

    @property
    def features(self) -> list[np.ndarray]:
        """Each analysis channel's raw features, ``(segments, features)`` float32."""
        return self.raw.features


@dataclass
class WorkerState:
    """The model this process analyses with, and the settings it was loaded for."""

    key: tuple[str, AnalysisSettings] | None = None
    model: Model | None = None
    settings: AnalysisSettings | None = None
    warm: bool = False  # the feature code has run once (its lazy imports are done)


state = WorkerState()
"""This process's worker state (one per process: each worker loads the model once)."""


def model_loaded() -> bool:
    """Whether this process has loaded a model to analyse with."""
    return state.model is not None


def is_ready_for(model_dir: Path, settings: AnalysisSettings) -> bool:
    """Whether this process already analyses with the model in ``model_dir`` and ``settings``."""
    return state.key == (str(model_dir), settings)


def forget_model() -> None:
    """Drop the loaded model (the next task loads it again)."""
    state.key = state.model = state.settings = None


def init_worker(
    model_dir: Path,
    settings: AnalysisSettings,
    *,
    pool_worker: bool = True,
    loaded: Model | None = None,
) -> None:
    """Load the model once per process (``loaded``: the caller has loaded it already).

    A ``pool_worker`` is a process callsort started for itself (see
    :mod:`callsort.run.pool`): LightGBM is imported without its scikit-learn and
    pandas glue, and BLAS and OpenMP pools are limited to one thread for the
    rest of the process, since a worker is one core. Their default (a thread
    per core) makes every worker fight the others, and any other work on the
    machine, for the small matrix products of the features; measured, that is
    up to 6 times slower. Any other process is left as it is.
    """
    from callsort.model.booster import lean_lightgbm_import
    from callsort.model.folder import load_model

    if pool_worker:  # a process of its own that gives LightGBM numpy arrays only
        lean_lightgbm_import()
    key = (str(model_dir), settings)
    if loaded is not None:
        model = loaded
    elif state.key == key and state.model is not None:
        model = state.model
    else:
        model = load_model(model_dir)
    from callsort.features.spectral import feature_names

    model.check_feature_layout(feature_names(model.feature_settings))
    if not state.warm:
        warm_up(model)  # also loads every library whose thread pool is limited below
        state.warm = True
    state.key, state.model, state.settings = key, model, settings
    if pool_worker:
        one_thread_for_good()


def warm_up(model: Model) -> None:
    """Run the feature code once so lazy imports are not billed to the first recording."""
    import numpy as np

    from callsort.features.spectral import segment_features

    noise = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    features = segment_features(noise, settings=model.feature_settings)
    model.channel_proba(features[np.newaxis, :])


def run_task(recording: Recording, task: Task = ANALYSE) -> RecordingResult | SampledFeatures:
    """:func:`analyse_one` or :func:`features_one`, as ``task`` says."""
    if task.kind == "features":
        return features_one(recording)
    return analyse_one(recording, archive=task.archive)


def features_one(recording: Recording) -> SampledFeatures | RecordingResult:
    """The raw features of ``recording`` with this process's model's feature settings;
    an error row (:func:`failure`) when it cannot be analysed, never an exception."""
    from callsort.run.analysis import recording_features

    if state.model is None or state.settings is None:
        raise RuntimeError("init_worker() first: this process has no model loaded")
    started = time.perf_counter()
    try:
        raw = recording_features(
            recording.path, feature_settings=state.model.feature_settings, settings=state.settings
        )
    except CallsortError as exc:
        return failure(recording, str(exc), time.perf_counter() - started)
    except MemoryError:
        return failure(recording, "out of memory", time.perf_counter() - started)
    except Exception as exc:  # callsort failed, not the file
        reason = f"{INTERNAL_ERROR}: {type(exc).__name__}: {exc}"
        return failure(recording, reason, time.perf_counter() - started, internal=True)
    return SampledFeatures(
        recording=recording.name,
        recording_id=recording.recording_id,
        raw=raw,
        processing_s=time.perf_counter() - started,
    )


def analyse_one(
    recording: Recording, *, archive: ArchiveStatistics | None = None
) -> RecordingResult:
    """The result row of ``recording``, analysed with this process's model (its segments
    standardised with ``archive``, see :meth:`Model.channel_proba`); never raises for a
    fault of the recording or of callsort (an error row says what went wrong)."""
    from callsort.dataset.tables import RecordingResult
    from callsort.run.analysis import analyse_recording

    if state.model is None or state.settings is None:
        raise RuntimeError("init_worker() first: this process has no model loaded")
    started = time.perf_counter()
    try:
        analysis = analyse_recording(
            recording.path, model=state.model, settings=state.settings, archive=archive
        )
    except CallsortError as exc:
        return failure(recording, str(exc), time.perf_counter() - started)
    except MemoryError:
        return failure(recording, "out of memory", time.perf_counter() - started)
    except Exception as exc:  # callsort failed, not the file: report it, keep the batch going
        reason = f"{INTERNAL_ERROR}: {type(exc).__name__}: {exc}"
        return failure(recording, reason, time.perf_counter() - started, internal=True)
    return RecordingResult(
        recording=recording.name,
        recording_id=recording.recording_id,
        analysis=analysis,
        error="",
        processing_s=time.perf_counter() - started,
        processed_at=datetime.now(timezone.utc),
    )


def failure(
    recording: Recording, reason: str, seconds: float, *, internal: bool = False
) -> RecordingResult:
    """The error row of ``recording``: ``reason`` (never naming its full path), after
    ``seconds``; ``internal`` when callsort failed, not the file."""
    from callsort.dataset.tables import RecordingResult

    return RecordingResult(
        recording=recording.name,
        recording_id=recording.recording_id,
        analysis=None,
        error=without_paths(reason, recording),
        processing_s=seconds,
        processed_at=datetime.now(timezone.utc),
        internal=internal,
    )


def timed_out(timeout_s: float) -> str:
    """The reason of a recording stopped by the per-recording time limit."""
    return (
        f"timed out: still being analysed after {timeout_s:g} s "
        "(the per-recording limit, --file-timeout)"
    )


class _TimedOut(BaseException):
    """Raised by the alarm in this process; a BaseException so no library swallows it."""


def analyse_in_this_process(
    recording: Recording, timeout_s: float | None, task: Task = ANALYSE
) -> RecordingResult | SampledFeatures:
    """:func:`run_task` under a best-effort time limit (SIGALRM, main thread only).

    Without a worker process there is nothing to kill: the alarm interrupts
    Python code between two bytecodes, so a long loop or a long read is
    stopped, a single native call that never returns is not.
    """
    import signal

    if (
        timeout_s is None
        or not hasattr(signal, "setitimer")
        or threading.current_thread() is not threading.main_thread()
    ):
        return run_task(recording, task)

    def alarm(signum, frame):
        raise _TimedOut

    started = time.perf_counter()
    previous = signal.signal(signal.SIGALRM, alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
        try:
            return run_task(recording, task)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _TimedOut:
        return failure(recording, timed_out(timeout_s), time.perf_counter() - started)
    finally:
        signal.signal(signal.SIGALRM, previous)


def one_thread_for_good() -> None:
    """Limit this process's BLAS and OpenMP pools to one thread, as every process that
    computes features runs: OpenBLAS's results depend on its thread count (by float32
    rounding), so a worker's features equal the label path's to the bit whatever the
    host's ``OPENBLAS_NUM_THREADS``. For processes callsort owns (its workers)."""
    from threadpoolctl import threadpool_limits

    _load_feature_libraries()
    threadpool_limits(limits=1)


def map_on_one_thread(
    function: Callable[[Any], Any],
    tasks: Sequence[Any],
    *,
    jobs: int,
    on_done: Callable[[], None] | None = None,
    chunksize: int = 1,
) -> list:
    """``[function(t) for t in tasks]``, in this process with its BLAS and OpenMP pools on
    one thread (given back after) or in up to ``jobs`` spawned processes limited for good:
    features computed so equal the label path's to the bit. ``on_done()`` after each task;
    ``function`` must be importable by the spawned processes."""
    if jobs <= 1 or len(tasks) <= 1:
        out = []
        with one_thread_while_analysing:
            for task in tasks:
                out.append(function(task))
                if on_done:
                    on_done()
        return out
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    size = min(jobs, len(tasks))
    with ProcessPoolExecutor(size, mp_context=context, initializer=one_thread_for_good) as pool:
        out = []
        for result in pool.map(function, tasks, chunksize=chunksize):
            out.append(result)
            if on_done:
                on_done()
        return out


def _load_feature_libraries() -> None:
    """Import the feature code, which loads NumPy's and SciPy's BLAS: a thread limit
    reaches only the libraries loaded when it is set."""
    import callsort.run.analysis  # noqa: F401


class SharedThreadLimit:
    """BLAS and OpenMP pools limited to one thread while any task of callsort runs.

    For a process callsort does not own (a Dask worker), which may run several
    of callsort's tasks at once in its threads: the first task to enter limits
    the pools, the last to leave gives back the limits it found.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._limiter = None

    def __enter__(self) -> None:
        with self._lock:
            if self._users == 0:
                from threadpoolctl import threadpool_limits

                _load_feature_libraries()
                self._limiter = threadpool_limits(limits=1)
            self._users += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0 and self._limiter is not None:
                self._limiter.restore_original_limits()
                self._limiter = None


one_thread_while_analysing = SharedThreadLimit()
"""This process's :class:`SharedThreadLimit`."""
