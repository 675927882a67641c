"""The Dask engine: recordings analysed on a Dask cluster, one task per recording.

Results reach a callback as soon as they are ready (in completion order), with
only a bounded number of recordings in flight, as on the local engine. Each
task runs the same function as a local worker
(:func:`callsort.run.worker.analyse_one`) with the same model, so both give the
same rows.

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
from callsort.run.worker import (
    ANALYSE,
    Task,
    failure,
    forget_model,
    init_worker,
    is_ready_for,
    one_thread_while_analysing,
    run_task,
)
from callsort.settings import AnalysisSettings


def analyse_on_dask(
    recordings: Sequence[Recording],
    *,
    scheduler: str | None,
    model_dir: Path,
    settings: AnalysisSettings,
    jobs: int,
    on_result: Callable,
    expected_model_sha: str,
    task: Task = ANALYSE,
) -> None:
    """Analyse ``recordings`` on the cluster at ``scheduler`` (default: a local cluster of
    ``jobs`` processes); ``on_result(result)`` for each as it completes."""
    if not recordings:
        return
    with DaskSession(
        scheduler=scheduler,
        model_dir=model_dir,
        settings=settings,
        jobs=jobs,
        expected_model_sha=expected_model_sha,
    ) as session:
        session.each(recordings, on_result=on_result, task=task)


class DaskSession:
    """One run's connection to a Dask cluster (a local one of ``jobs`` processes without
    ``scheduler``), opened at the first pass and kept for the run's later passes."""

    def __init__(
        self,
        *,
        scheduler: str | None,
        model_dir: Path,
        settings: AnalysisSettings,
        jobs: int,
        expected_model_sha: str,
    ) -> None:
        from callsort.model.card import default_model_dir

        self.scheduler, self.settings, self.jobs = scheduler, settings, jobs
        self.expected_model_sha = expected_model_sha
        # The shipped model is named as such, so that each worker loads its own installed
        # copy; the checksum proves it is the same model. Another model is read by path.
        shipped = Path(os.path.abspath(model_dir)) == Path(os.path.abspath(default_model_dir()))
        self.model_arg = None if shipped else str(Path(os.path.abspath(model_dir)))
        self.client = self.cluster = None
        self.host_environ: dict[str, str] | None = None  # before a local cluster started

    def __enter__(self) -> DaskSession:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.client is not None:
                self.client.close()
            if self.cluster is not None:
                self.cluster.close()
        finally:
            if self.host_environ is not None:  # a nanny that restarted a worker set them again
                restore_environ(self.host_environ)
        self.client = self.cluster = None
        self.host_environ = None

    def _connect(self):
        import logging

        from distributed import Client, LocalCluster

        if self.client is not None:
            return self.client
        if self.scheduler:
            try:
                self.client = Client(self.scheduler, timeout="30s")
            except (OSError, ValueError) as exc:  # unreachable, refused, or not an address
                raise UsageError(
                    f"cannot reach the Dask scheduler at {self.scheduler}: {exc}"
                ) from None
        else:
            self.host_environ = dict(os.environ)
            try:
                self.cluster = LocalCluster(
                    n_workers=self.jobs,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                )
                self.client = Client(self.cluster)
            finally:
                # distributed's nannies set their workers' variables (OPENBLAS_NUM_THREADS=1,
                # PYTHONHASHSEED, ...) in this process's environment before spawning them and
                # leave them there, where every later subprocess of the host would inherit them
                restore_environ(self.host_environ)
        return self.client

    def each(
        self, recordings: Sequence[Recording], *, on_result: Callable, task: Task = ANALYSE
    ) -> None:
        """``task`` on every recording; ``on_result(result)`` for each as it completes."""
        from distributed import as_completed

        if not recordings:
            return
        client = self._connect()
        n_threads = sum(client.nthreads().values()) or self.jobs
        limit = max(4 * n_threads, 8)  # bounded submission, as in the local pool
        queue = iter(recordings)
        by_future = {}
        running = as_completed()

        def submit(recording: Recording) -> None:
            absolute = replace(recording, path=Path(os.path.abspath(recording.path)))
            future = client.submit(
                analyse_on_worker,
                absolute,
                self.model_arg,
                self.settings,
                self.expected_model_sha,
                task,
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
                result = failure(recording, f"worker failed: {exc!r}", 0.0)
            future.release()
            on_result(result)
            for recording in queue:
                submit(recording)
                break


def analyse_on_worker(
    recording: Recording,
    model_dir: str | None,
    settings: AnalysisSettings,
    model_sha: str,
    task: Task = ANALYSE,
):
    """The Dask task: load the model once per worker process, then ``task`` on one recording
    (analyse it, with the run's archive statistics, or return its raw features).

    A worker whose model differs from the client's (``model_sha``) raises
    :class:`~callsort.errors.ModelError`, which aborts the run before its batch
    is committed, as a local worker that cannot load the model does.

    The worker process is not callsort's: LightGBM is imported as usual, and its
    thread pools are limited to one thread only while callsort's tasks run.
    """
    from callsort.model.card import default_model_dir

    folder = Path(model_dir) if model_dir else default_model_dir()
    if not is_ready_for(folder, settings):
        init_worker(folder, settings, pool_worker=False)
        if model_sha:
            from callsort.model.card import MODEL_FILE, file_sha256

            found = file_sha256(folder / MODEL_FILE)
            if found != model_sha:
                forget_model()
                raise ModelError(
                    f"the worker's model {folder} differs from the client's "
                    f"(checksum {found[:12]} != {model_sha[:12]}): install the same callsort "
                    "on every worker, or pass --model a folder they share"
                )
    with one_thread_while_analysing:
        return run_task(recording, task)


def restore_environ(saved: dict[str, str]) -> None:
    """Make ``os.environ`` equal to ``saved`` again (variables added since are removed)."""
    for name in set(os.environ) - set(saved):
        del os.environ[name]
    for name, value in saved.items():
        if os.environ.get(name) != value:
            os.environ[name] = value
