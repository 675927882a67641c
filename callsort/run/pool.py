"""This machine's engine: a pool of worker processes, each analysing one recording at a time.

Workers fork from a fork server that has imported the analysis libraries
(where there is none, Windows, they are spawned). Each loads the model once
(:func:`callsort.run.worker.init_worker`) and then analyses one recording per
message. A worker that dies or overruns the time limit costs its recording an
error row and is replaced; the others keep working.

Only a process callsort owns (the ``callsort`` command) names what the fork
server preloads (:func:`preload_fork_server`): in a program that imports
callsort, the fork server's settings stay the program's.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from callsort.audio.discover import Recording
from callsort.errors import CallsortError
from callsort.run.options import DEFAULT_FILE_TIMEOUT_S, ProgressCallback
from callsort.run.worker import (
    ANALYSE,
    Task,
    analyse_in_this_process,
    failure,
    init_worker,
    run_task,
    timed_out,
)
from callsort.settings import AnalysisSettings

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from callsort.dataset.tables import RecordingResult
    from callsort.model.folder import Model


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
    task: Task = ANALYSE,
) -> None:
    """:func:`analyse_all` keeping nothing: ``record(index, result)`` as each completes.

    One pool of ``jobs`` workers for all the recordings, each worker loading the
    model once, however many recordings there are.
    """
    with LocalSession(model_dir, settings, jobs=jobs, most=len(recordings), model=model) as session:
        session.each(recordings, record=record, task=task, file_timeout_s=file_timeout_s)


class LocalSession:
    """The workers of one run on this machine: every pass of the run (the archive
    statistics' sample, then the labelling) goes to the same pool of workers, started
    at the first pass that needs more than one; with ``jobs`` 1 (or ``most``, the
    largest pass, 1) everything runs in this process with ``model``."""

    def __init__(
        self,
        model_dir: Path,
        settings: AnalysisSettings,
        *,
        jobs: int,
        most: int,
        model: Model | None = None,
    ) -> None:
        self.model_dir, self.settings, self.model = model_dir, settings, model
        self.size = max(min(jobs, most), 1)
        self.pool: WorkerPool | None = None

    def __enter__(self) -> LocalSession:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None

    def each(
        self,
        recordings: Sequence[Recording],
        *,
        record: Callable[[int, RecordingResult], None],
        task: Task = ANALYSE,
        file_timeout_s: float | None = DEFAULT_FILE_TIMEOUT_S,
    ) -> None:
        """``task`` on every recording; ``record(index, result)`` as each completes."""
        if not recordings:
            return
        timeout = file_timeout_s if file_timeout_s and file_timeout_s > 0 else None
        if self.size <= 1:
            from threadpoolctl import threadpool_limits

            # as in a worker; the caller's limits come back after, OpenMP's too, which
            # CTranslate2 sets to its thread count when the encoder loads (in init_worker)
            with threadpool_limits(limits=1):
                init_worker(self.model_dir, self.settings, pool_worker=False, loaded=self.model)
                for index, recording in enumerate(recordings):
                    record(index, analyse_in_this_process(recording, timeout, task))
            return
        if self.pool is None:
            import threading

            # This process only waits while the workers start and run: meanwhile, import
            # what building and writing the tables will need (pyarrow imports pandas for
            # that, 0.25 s), instead of doing it after the last recording.
            threading.Thread(target=_import_table_writers, daemon=True).start()
            self.pool = WorkerPool(self.model_dir, self.settings, size=self.size)
        self.pool.run(recordings, record=record, timeout_s=timeout, task=task)


@dataclass
class Worker:
    """One worker process and the pipe to it; ``task`` is the recording it is analysing."""

    process: BaseProcess
    conn: Connection
    ready: bool = False
    task: int | None = None
    started: float = 0.0
    spawned: float = 0.0


class WorkerPool:
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
        self.context = pool_context()
        self.model_dir = model_dir
        self.settings = settings
        self.size = size
        self.workers: list[Worker] = []
        self.todo: deque[int] = deque()
        self.task: Task = ANALYSE
        self.start_failures = 0

    def run(
        self,
        recordings: Sequence[Recording],
        *,
        record: Callable[[int, RecordingResult], None],
        timeout_s: float | None,
        task: Task = ANALYSE,
    ) -> None:
        """``task`` on every recording with the pool's workers (started here if there are
        fewer than its size); they stay up for the next call until :meth:`close`."""
        from multiprocessing.connection import wait as wait_for

        todo = self.todo = deque(range(len(recordings)))
        self.task = task
        try:
            while len(self.workers) < self.size:
                self.spawn()
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
                        reason = timed_out(timeout_s)
                        record(worker.task, failure(recordings[worker.task], reason, timeout_s))
                        self._replace(worker)
        except BaseException:
            self.close(kill=True)  # an exception or an interrupt: leave no process behind
            raise

    def close(self, *, kill: bool = False) -> None:
        """Stop every worker (asked to finish, unless ``kill``)."""
        try:
            if not kill:
                self._shut_down()
        finally:
            for worker in self.workers:
                self._stop(worker)
            self.workers = []

    def spawn(self) -> None:
        """Start one more worker process."""
        parent_end, child_end = self.context.Pipe(duplex=True)
        process = self.context.Process(
            target=worker_main,
            args=(child_end, self.model_dir, self.settings),
            name="callsort-worker",
            daemon=True,
        )
        process.start()
        child_end.close()
        self.workers.append(Worker(process, parent_end, spawned=time.monotonic()))

    def _hand_out(self, worker: Worker, todo, recordings: Sequence[Recording]) -> None:
        index = todo.popleft()
        try:
            worker.conn.send((index, recordings[index], self.task))
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

    def _stuck_starting(self, worker: Worker) -> bool:
        return time.monotonic() - worker.spawned >= self.START_TIMEOUT_S

    def _overran(self, worker: Worker, timeout_s: float | None) -> bool:
        return (
            timeout_s is not None
            and worker.task is not None
            and time.monotonic() - worker.started >= timeout_s
        )

    def _receive(self, worker: Worker, record, recordings) -> bool:
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

    def _died(self, worker: Worker, record, recordings) -> None:
        worker.process.join(timeout=5)
        how = death_reason(worker.process.exitcode)
        if worker.task is not None:
            index = worker.task
            seconds = time.monotonic() - worker.started
            reason = f"worker process died while analysing this recording: {how}"
            record(index, failure(recordings[index], reason, seconds))
        elif not worker.ready:
            self._start_failed(worker, how)
            return
        self._replace(worker)

    def _start_failed(self, worker: Worker, reason: str) -> None:
        self.start_failures += 1
        if self.start_failures >= self.MAX_START_FAILURES:
            raise CallsortError(f"worker processes fail to start (the last one: {reason})")
        self._replace(worker)

    def _replace(self, worker: Worker) -> None:
        """Stop ``worker``; start another if recordings are still waiting."""
        self._stop(worker)
        self.workers.remove(worker)
        if self.todo:
            self.spawn()

    def _stop(self, worker: Worker) -> None:
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


def death_reason(exitcode: int | None) -> str:
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


def worker_main(conn: Connection, model_dir: Path, settings: AnalysisSettings) -> None:
    """A worker process: load the model, then analyse one recording per message."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the main process to handle
    try:
        init_worker(model_dir, settings)
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
        index, recording, what = task
        result = run_task(recording, what)
        try:
            conn.send(("result", index, result))
        except OSError:  # the main process is gone
            return


PRELOAD = (
    "callsort.run.analysis",
    "callsort.dataset.tables",
    "threadpoolctl",
)
"""What the fork server of the ``callsort`` command imports once, so that workers start with
them loaded (the analysis imports numpy, scipy.fft, scipy.ndimage, soundfile and soxr; not
librosa: see :mod:`callsort.audio.filters`)."""


def preload_fork_server() -> None:
    """Have the fork server import the analysis libraries (:data:`PRELOAD`) before it forks.

    Spawned workers would each import them again (about 1.5 s of CPU apiece).
    The preload list belongs to the whole process: call this only in a process
    callsort owns (the ``callsort`` command), before the fork server starts.
    """
    context = pool_context()
    if context.get_start_method() == "forkserver":
        context.set_forkserver_preload(list(PRELOAD))


def start_workers(jobs: int) -> None:
    """Start what the workers fork from now, so that its imports overlap this process's.

    For a caller that expects a batch of recordings with ``jobs`` > 1; without
    a fork server (Windows) it does nothing. Wasted, not wrong, if the batch
    turns out to be a single recording.
    """
    if jobs > 1 and pool_context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def _import_table_writers() -> None:
    import pandas  # noqa: F401
    import pyarrow.compute  # noqa: F401
    import pyarrow.csv  # noqa: F401
    import pyarrow.parquet  # noqa: F401


def pool_context():
    """The multiprocessing context workers start in: a fork server where there is one.

    Forking this process is unsafe: loading the model ran LightGBM's OpenMP
    threads here. The fork server is a fresh process that never runs OpenMP
    code; where there is none (Windows), workers are spawned.
    """
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    return multiprocessing.get_context("forkserver")
