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
) -> None:
    """Analyse ``recordings`` on ``engine``; ``on_result(result)`` for each as it completes.

    ``file_timeout_s`` limits one recording on the local engine (see
    :func:`callsort.run.pool.analyse_all`); Dask has its own task controls.
    """
    if engine == "local":
        from callsort.run.pool import analyse_each

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
        from callsort.run.dask import analyse_on_dask

        analyse_on_dask(
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
