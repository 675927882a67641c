"""Worker faults and time limits: one recording's trouble never takes the batch down.

The workers are real processes running the real analysis. A test finds the
worker that has a slow recording open (through /proc) and kills it with a
real signal: SIGKILL as the out-of-memory killer sends, SIGSEGV as a crash in
native code ends a process. Nothing in callsort knows it is being tested.
"""

from __future__ import annotations

import inspect
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import bursts_in_noise
from test_cli import RECORDINGS, SAMPLES, assert_same_segments, read_tables, shown

from callsort.audio.discover import find_recordings
from callsort.model.folder import load_model
from callsort.run.batch import label
from callsort.run.pool import analyse_all
from callsort.settings import AnalysisSettings

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc")

SHORT = RECORDINGS[-1]  # the voicemail: 17 s, analysed in well under a second


@pytest.fixture(scope="module")
def slow_call(tmp_path_factory) -> Path:
    """30 minutes of continuous talk at 8 kHz: several seconds of analysis, file open throughout."""
    path = tmp_path_factory.mktemp("slow") / "long_talk.wav"
    chunk = bursts_in_noise([(0.5, 4.5), (5.5, 9.5)], 10.0, sr=8000)
    with sf.SoundFile(path, "w", 8000, 1, "PCM_16") as f:
        for _ in range(180):
            f.write(chunk)
    return path


@pytest.fixture(scope="module")
def clean_short():
    return label([SAMPLES / SHORT], out=None, jobs=1).segments.to_pandas()


def holders_of(path: Path) -> list[int]:
    """Processes that have ``path`` open, from /proc."""
    target = os.path.realpath(path)
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == target for fd in fds):
                found.append(int(pid))
        except OSError:
            continue
    return found


def kill_reader_of(path: Path, sig: signal.Signals, *, within_s: float = 120) -> int:
    """Wait until a process opens ``path``, send it ``sig``; its pid."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        pids = [p for p in holders_of(path) if p != os.getpid()]
        if pids:
            os.kill(pids[0], sig)
            return pids[0]
        time.sleep(0.01)
    raise AssertionError(f"no process opened {path} within {within_s} s")


def batch_with(folder: Path, slow_call: Path) -> Path:
    folder.mkdir()
    (folder / slow_call.name).symlink_to(slow_call)
    for name in (SHORT, RECORDINGS[0]):
        (folder / name).symlink_to(SAMPLES / name)
    return folder


def test_killed_worker_fails_only_its_recording(tmp_path, slow_call):
    """SIGKILL, as the out-of-memory killer sends it, on the worker reading the slow call."""
    batch = batch_with(tmp_path / "batch", slow_call)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "callsort", "label", batch, "--out", out, "-j", "2", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        victim = kill_reader_of(slow_call, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    result = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert victim != proc.pid
    assert proc.returncode == 1, shown(result)
    assert "Traceback" not in stderr, shown(result)
    calls = read_tables(out).calls.set_index("recording")
    assert calls.loc[slow_call.name, "status"] == "error"
    assert calls.loc[slow_call.name, "error"] == (
        "worker process died while analysing this recording: killed by SIGKILL (out of memory?)"
    )
    for name in (SHORT, RECORDINGS[0]):
        assert (calls.loc[[name], "status"] == "ok").all(), name
    segments = read_tables(out).segments
    assert set(segments["recording"]) == {SHORT, RECORDINGS[0]}


def test_crashed_worker_is_replaced_and_the_rest_go_on(tmp_path, slow_call, clean_short):
    """SIGSEGV, as a crash in native code ends a worker; more recordings than workers."""
    batch = batch_with(tmp_path / "batch", slow_call)
    for i in range(3):  # recordings still waiting when the worker dies
        (batch / f"more_{i}_{SHORT}").symlink_to(SAMPLES / SHORT)
    recordings = find_recordings([batch])
    model = load_model()
    killer = threading.Thread(target=kill_reader_of, args=(slow_call, signal.SIGSEGV))
    killer.start()
    results = analyse_all(
        recordings, model_dir=model.path, settings=AnalysisSettings(), jobs=2, model=model
    )
    killer.join()
    assert multiprocessing.active_children() == []  # every worker, replaced or not, has ended
    by_name = {r.recording: r for r in results}
    assert [r.recording for r in results] == [r.name for r in recordings]  # input order
    assert by_name[slow_call.name].error == (
        "worker process died while analysing this recording: crash in native code (SIGSEGV)"
    )
    others = [r for r in results if r.recording != slow_call.name]
    assert len(others) == 5 and all(r.ok for r in others), [r.error for r in others]
    short = by_name[SHORT].analysis.channels[0]
    expected = clean_short[clean_short["channel"] == "mono"]
    np.testing.assert_allclose(short.probabilities, expected.filter(regex="^p_").to_numpy())


def short_recording_seconds() -> float:
    """How long the short recording takes here and now (warm), to scale the time limit."""
    from callsort.run.analysis import analyse_recording

    model = load_model()
    analyse_recording(SAMPLES / SHORT, model=model, settings=AnalysisSettings())
    started = time.perf_counter()
    analyse_recording(SAMPLES / SHORT, model=model, settings=AnalysisSettings())
    return time.perf_counter() - started


def test_time_limit_in_the_pool(tmp_path, slow_call, clean_short):
    # the slow call is about 100 times the short recording's work: a limit of 10 times the
    # short one's time stops the slow call and spares the short one, however busy the machine
    limit = round(max(2.0, 10 * short_recording_seconds()), 1)
    batch = tmp_path / "batch"
    batch.mkdir()
    (batch / slow_call.name).symlink_to(slow_call)
    (batch / SHORT).symlink_to(SAMPLES / SHORT)
    run = label([batch], out=tmp_path / "out", jobs=2, file_timeout_s=limit)
    calls = run.calls.to_pandas().set_index("recording")
    assert calls.loc[slow_call.name, "error"] == (
        f"timed out: still being analysed after {limit:g} s "
        "(the per-recording limit, --file-timeout)"
    )
    assert calls.loc[SHORT, "status"] == "ok"
    assert run.n_failed == 1
    assert_same_segments(run.segments.to_pandas(), clean_short, load_model().classes)


def test_time_limit_in_this_process(slow_call):
    run = label([slow_call], out=None, jobs=1, file_timeout_s=1.0)
    (row,) = run.calls.to_pylist()
    assert row["error"].startswith("timed out: still being analysed after 1 s")
    assert row["processing_s"] < 10  # stopped at the alarm, not at the end of the file


def test_cli_file_timeout_option(tmp_path, slow_call):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "callsort", "label", slow_call, "--out", out, "-q"]
        + ["--file-timeout", "0.5"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 1, shown(proc)
    calls = read_tables(out).calls
    assert calls["error"].iloc[0].startswith("timed out: still being analysed after 0.5 s")


def test_cli_default_file_timeout_is_the_pipelines():
    from callsort.cli import label as label_command
    from callsort.run.options import DEFAULT_FILE_TIMEOUT_S

    parameters = inspect.signature(label_command).parameters
    assert parameters["file_timeout"].default == DEFAULT_FILE_TIMEOUT_S


def test_workers_that_cannot_load_the_model_stop_the_batch_with_the_reason(tmp_path):
    """The model folder vanishes after the main process loaded it: every worker would fail."""
    import shutil

    from callsort.errors import CallsortError

    model = tmp_path / "model"
    shutil.copytree(load_model().path, model)
    with pytest.raises(CallsortError, match="not a callsort model folder"):
        label(
            [SAMPLES],
            out=tmp_path / "out",
            model_dir=model,
            jobs=2,
            on_start=lambda recordings: shutil.rmtree(model),
        )
    assert not list((tmp_path / "out").rglob("date=*"))  # nothing committed
    assert multiprocessing.active_children() == []


def test_one_pool_for_a_whole_run_each_worker_loading_the_model_once(tmp_path, monkeypatch):
    """More recordings than the pool ever took at a time before (500): still two workers."""
    from callsort.run import pool

    folder = tmp_path / "many"
    folder.mkdir()
    blip = bursts_in_noise([(0.02, 0.12)], 0.15, sr=8000)
    for i in range(520):
        sf.write(folder / f"call_{i:04d}.wav", blip, 8000, subtype="PCM_16")
    spawned = []
    real_spawn = pool.WorkerPool.spawn

    def counted(self):
        spawned.append(1)
        real_spawn(self)

    monkeypatch.setattr(pool.WorkerPool, "spawn", counted)
    run = label([folder], out=tmp_path / "dataset", jobs=2, batch_size=1000)
    assert run.n_ok == 520 and not run.failures
    assert len(spawned) == 2
