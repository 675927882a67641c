"""callsort.run.worker: what a Dask task may do to a worker process that is not callsort's."""

from __future__ import annotations

import numpy  # noqa: F401  (loads a BLAS whose thread pool can be limited)
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from callsort.run.worker import SharedThreadLimit


def _threads() -> list[int]:
    return [p["num_threads"] for p in threadpool_info()]


def test_limits_hold_while_any_task_runs_and_come_back_after_the_last():
    """Two tasks overlap (as in a Dask worker with two threads): the first to leave must not
    lift the limit under the other, the last gives back the limits it found."""
    if not threadpool_info():
        pytest.skip("no thread pool to limit")
    limit = SharedThreadLimit()
    with threadpool_limits(limits=2):  # the worker's own setting, above 1
        before = _threads()
        limit.__enter__()  # the first task starts
        limit.__enter__()  # a second one starts while it runs
        assert set(_threads()) == {1}
        limit.__exit__(None, None, None)  # the first ends
        assert set(_threads()) == {1}
        limit.__exit__(None, None, None)  # the last ends
        assert _threads() == before
