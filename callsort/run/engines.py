"""Where recordings are analysed: this machine's process pool, or a Dask cluster.

Both engines hand every :class:`~callsort.dataset.tables.RecordingResult` to a callback
as soon as it is ready (in completion order), and keep only a bounded number of
recordings in flight, so the caller can commit results in batches and memory
does not grow with the size of the archive. Both run
:func:`callsort.run.worker.analyse_one` on each recording with the same model,
so they give the same rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from callsort.audio.discover import Recording
from callsort.errors import UsageError
from callsort.run.options import DEFAULT_FILE_TIMEOUT_S
from callsort.settings import AnalysisSettings

ENGINES = ("local", "dask")


class EngineSession:
    """One run's engine, kept open for all of the run's passes over its recordings (the
    archive statistics' sample, then the labelling): one local pool or one Dask client.
    Use as a context manager; :meth:`each` runs a :class:`~callsort.run.worker.Task` on
    recordings, handing every result to ``on_result`` as it completes."""

    def __init__(
        self,
        *,
        engine: str,
        model_dir: Path,
        settings: AnalysisSettings,
        jobs: int,
        most: int,
        model=None,
        scheduler: str | None = None,
        expected_model_sha: str = "",
        file_timeout_s: float | None = DEFAULT_FILE_TIMEOUT_S,
    ) -> None:
        self.file_timeout_s = file_timeout_s
        if engine == "local":
            from callsort.run.pool import LocalSession

            self.local = True
            self.session = LocalSession(model_dir, settings, jobs=jobs, most=most, model=model)
        elif engine == "dask":
            from callsort.run.dask import DaskSession

            self.local = False
            self.session = DaskSession(
                scheduler=scheduler,
                model_dir=model_dir,
                settings=settings,
                jobs=jobs,
                expected_model_sha=expected_model_sha,
            )
        else:
            raise UsageError(f"--engine takes one of {', '.join(ENGINES)}, not {engine!r}")

    def __enter__(self) -> EngineSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.__exit__(*exc)

    def each(self, recordings: Sequence[Recording], *, on_result: Callable, task=None) -> None:
        """``task`` (default: analyse) on every recording; ``file_timeout_s`` limits one
        recording on the local engine (see :func:`callsort.run.pool.analyse_all`); Dask has
        its own task controls."""
        from callsort.run.worker import ANALYSE

        task = task or ANALYSE
        if self.local:
            self.session.each(  # no result is kept here
                recordings,
                record=lambda _, result: on_result(result),
                task=task,
                file_timeout_s=self.file_timeout_s,
            )
        else:
            self.session.each(recordings, on_result=on_result, task=task)


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
    file_timeout_s: float | None = DEFAULT_FILE_TIMEOUT_S,
    task=None,
) -> None:
    """Analyse ``recordings`` on ``engine`` (one :class:`EngineSession` for them);
    ``on_result(result)`` for each as it completes."""
    with EngineSession(
        engine=engine,
        model_dir=model_dir,
        settings=settings,
        jobs=jobs,
        most=len(recordings),
        model=model,
        scheduler=scheduler,
        expected_model_sha=expected_model_sha,
        file_timeout_s=file_timeout_s,
    ) as session:
        session.each(recordings, on_result=on_result, task=task)


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
