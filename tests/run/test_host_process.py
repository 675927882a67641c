"""A program that imports callsort keeps its process as it was.

Importing callsort and calling ``callsort.label(...)`` (in this process with
``jobs=1``, with worker processes with ``jobs=2``, on a local Dask cluster) must not
change the fork server's preload list, the BLAS/OpenMP thread limits, the garbage
collector's settings or the environment, or patch ``sys.modules``: such tuning is for
processes callsort owns (the ``callsort`` command and the workers it starts). Each check
runs in a fresh interpreter, the host program, which records those five things before
and after.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]

HOST = r"""
import gc, json, os, sys
import multiprocessing.forkserver as forkserver

import numpy  # a host that uses BLAS already, so thread limits apply to something
import sklearn  # and OpenMP, in the library CTranslate2's wheel loads too
from threadpoolctl import threadpool_info


def snapshot():
    return {
        "preload": list(getattr(forkserver._forkserver, "_preload_modules", [])),
        "threads": sorted(
            (p["internal_api"], p["filepath"], p["num_threads"]) for p in threadpool_info()
        ),
        "gc": [gc.isenabled(), list(gc.get_threshold()), gc.get_freeze_count()],
        "none_modules": sorted(k for k, v in sys.modules.items() if v is None),
        "environ": dict(os.environ),
    }


before = snapshot()
import callsort

callsort.label  # the API name, imported on first use
after_import = snapshot()
CALL
after_label = snapshot()
# a library loaded by the run is reported from then on: compare what was there before
loaded_before = {(api, path) for api, path, _ in before["threads"]}
after_label["threads"] = [t for t in after_label["threads"] if (t[0], t[1]) in loaded_before]
print(json.dumps({"before": before, "after_import": after_import, "after_label": after_label}))
"""


def _host(call: str) -> dict:
    code = HOST.replace("CALL", call)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    """Two seconds of a voiced tone, in noise, at 8 kHz: a small synthetic call."""
    sr = 8000
    t = np.arange(2 * sr) / sr
    voice = 0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 2 * t) > 0)
    noise = 0.01 * np.random.default_rng(0).standard_normal(len(t))
    path = tmp_path_factory.mktemp("host") / "call.wav"
    sf.write(path, (voice + noise).astype(np.float32), sr, subtype="PCM_16")
    return path


def test_importing_callsort_changes_nothing_in_the_host_process():
    seen = _host("")
    assert seen["after_import"] == seen["before"]


@pytest.mark.parametrize("jobs", [1, 2])
def test_labelling_changes_nothing_in_the_host_process(recording, jobs):
    folder = recording.parent
    (folder / "call_copy.wav").write_bytes(recording.read_bytes())  # two recordings: a pool
    call = (
        f"segments, calls = callsort.label([{str(folder)!r}], jobs={jobs})\n"
        "assert len(calls) == 2 and (calls['status'] == 'ok').all(), calls\n"
    )
    seen = _host(call)
    assert seen["after_import"] == seen["before"]
    assert seen["after_label"] == seen["before"]


def test_labelling_on_a_local_dask_cluster_leaves_the_environment_as_it_was(recording, tmp_path):
    """distributed's nannies set their workers' variables (``OPENBLAS_NUM_THREADS=1``,
    ``PYTHONHASHSEED``...) in the host's environment and leave them there, where every later
    subprocess inherits them (training's feature workers computed other features under
    them): the Dask engine gives the host its environment back."""
    pytest.importorskip("distributed", reason="the Dask engine needs callsort[dask]")
    folder = recording.parent
    (folder / "call_copy.wav").write_bytes(recording.read_bytes())
    call = (
        "from callsort.run.batch import label\n"
        f"result = label([{str(folder)!r}], out={str(tmp_path / 'out')!r}, engine='dask', "
        "jobs=2)\n"
        "assert result.n_ok == 2, result\n"
    )
    seen = _host(call)
    assert seen["after_label"]["environ"] == seen["before"]["environ"]
    assert seen["after_label"] == seen["before"]
