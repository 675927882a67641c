"""Where recordings are analysed: this machine's process pool, or a Dask cluster.

Both engines hand every :class:`~callsort.dataset.tables.RecordingResult` to a callback
as soon as it is ready (in completion order), and keep only a bounded number of
recordings in flight, so the caller can commit results in batches and memory
does not grow with the size of the archive. Both run the same function on each
recording (:func:`callsort.run.batch._analyse_one`) with the same model, so they
give the same rows.

Dask needs the ``dask`` extra (``pip install "callsort[dask]"``) on this machine
and on every worker, and every worker must read the recordings at the same
absolute paths as this machine (shared storage).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from callsort.audio.discover import Recording
from callsort.errors import CallsortError, ModelError, UsageError
from callsort.settings import AnalysisSettings

ENGINES = ("local", "dask")


def analyse_stream(
    recordings: Sequence[Recording],
    *,
    engine: str,
    model_dir: Path,
    settings: AnalysisSettings,
    jobs: int,
    on_result: Callable,
    model=None,
    scheduler: str | None = None,
    expected_model_sha: str = "",
    file_timeout_s: float | None = 3600.0,
) -> None:
    """Analyse ``recordings`` on ``engine``; ``on_result(result)`` for each as it completes.

    ``file_timeout_s`` limits one recording on the local engine (see
    :func:`callsort.run.batch.analyse_all`); Dask has its own task controls.
    """
    if engine == "local":
        from callsort.run.batch import analyse_each

        analyse_each(  # one pool for the whole run; no result is kept here
            recordings,
            model_dir=model_dir,
            settings=settings,
            jobs=jobs,
            record=lambda _, result: on_result(result),
            model=model,
            file_timeout_s=file_timeout_s,
        )
    elif engine == "dask":
        _analyse_on_dask(
            recordings,
            scheduler=scheduler,
            model_dir=model_dir,
            settings=settings,
            jobs=jobs,
            on_result=on_result,
            expected_model_sha=expected_model_sha,
        )
    else:
        raise UsageError(f"--engine takes one of {', '.join(ENGINES)}, not {engine!r}")


def check_engine(engine: str, scheduler: str | None) -> None:
    """Refuse a bad engine before any work (and Dask when it is not installed)."""
    if engine not in ENGINES:
        raise UsageError(f"--engine takes one of {', '.join(ENGINES)}, not {engine!r}")
    if scheduler and engine != "dask":
        raise UsageError("--scheduler goes with --engine dask")
    if engine == "dask":
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise UsageError(
                '--engine dask needs Dask distributed: pip install "callsort[dask]"'
            ) from None


def _analyse_on_dask(
    recordings: Sequence[Recording],
    *,
    scheduler: str | None,
    model_dir: Path,
    settings: AnalysisSettings,
    jobs: int,
    on_result: Callable,
    expected_model_sha: str,
) -> None:
    import logging

    from distributed import Client, LocalCluster, as_completed

    from callsort.model.card import default_model_dir
    from callsort.run.batch import _failure

    if not recordings:
        return
    # The shipped model is named as such, so that each worker loads its own installed
    # copy; the checksum proves it is the same model. Another model is read by path.
    shipped = Path(os.path.abspath(model_dir)) == Path(os.path.abspath(default_model_dir()))
    model_arg = None if shipped else str(Path(os.path.abspath(model_dir)))
    cluster = None
    if scheduler:
        try:
            client = Client(scheduler, timeout="30s")
        except (OSError, ValueError) as exc:  # unreachable, refused, or not an address
            raise UsageError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    else:
        cluster = LocalCluster(
            n_workers=jobs,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        client = Client(cluster)
    try:
        n_threads = sum(client.nthreads().values()) or jobs
        limit = max(4 * n_threads, 8)  # bounded submission, as in the local pool
        queue = iter(recordings)
        by_future = {}
        running = as_completed()

        def submit(recording: Recording) -> None:
            absolute = replace(recording, path=Path(os.path.abspath(recording.path)))
            future = client.submit(
                analyse_on_worker,
                absolute,
                model_arg,
                settings,
                expected_model_sha,
                pure=False,
            )
            by_future[future] = recording
            running.add(future)

        for recording in queue:
            submit(recording)
            if len(by_future) >= limit:
                break
        for future in running:
            recording = by_future.pop(future)
            try:
                result = future.result()
            except CallsortError:  # a worker that cannot start (its model): abort, as locally
                raise
            except Exception as exc:  # the task or its worker failed
                result = _failure(recording, f"worker failed: {exc!r}", 0.0)
            future.release()
            on_result(result)
            for recording in queue:
                submit(recording)
                break
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def analyse_on_worker(
    recording: Recording, model_dir: str | None, settings: AnalysisSettings, model_sha: str
):
    """The Dask task: load the model once per worker process, then analyse one recording.

    A worker whose model differs from the client's (``model_sha``) raises
    :class:`~callsort.errors.ModelError`, which aborts the run before its batch
    is committed, as a local worker that cannot load the model does.
    """
    from callsort.model.card import default_model_dir
    from callsort.run import batch as pipeline

    folder = Path(model_dir) if model_dir else default_model_dir()
    state = pipeline._worker_state
    if state.get("key") != (str(folder), settings):
        pipeline._init_worker(folder, settings)
        if model_sha:
            from callsort.model.card import MODEL_FILE, file_sha256

            found = file_sha256(folder / MODEL_FILE)
            if found != model_sha:
                state.clear()
                raise ModelError(
                    f"the worker's model {folder} differs from the client's "
                    f"(checksum {found[:12]} != {model_sha[:12]}): install the same callsort "
                    "on every worker, or pass --model a folder they share"
                )
    return pipeline._analyse_one(recording)
