"""callsort's promise across machines, on the code paths of another CPU.

Two demo recordings are labelled by ``callsort label`` in fresh processes: once as this
CPU runs it, once told to run as a CPU without AVX2 would (CTranslate2's generic
kernels, NumPy's SSE4.2 baseline, OpenBLAS's Sandy Bridge kernels). Between the two,
and against the README's examples (made on some machine), the output must keep the
promise of the README ("Across machines", ``MACHINE_TOLERANCE`` in
scripts/readme_examples.py). benchmarks/cpu_paths.py measures more paths.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import readme_examples as examples  # noqa: E402

pytestmark = pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"),
    reason="simulates another x86-64 CPU (CTranslate2's, NumPy's and OpenBLAS's x86 paths)",
)
RECORDINGS = ("call_01_escalation.wav", "voicemail_05_mono.flac")
ANOTHER_CPU = {
    "CT2_FORCE_CPU_ISA": "GENERIC",
    "NPY_DISABLE_CPU_FEATURES": "X86_V3",
    "OPENBLAS_CORETYPE": "Sandybridge",
}
PROBABILITIES = ["p_angry", "p_calm", "p_happy", "p_sad"]


def label(folder: Path, out: Path, env: dict[str, str], *extra: str) -> dict:
    """``callsort label folder --out out`` in a fresh process with ``env`` added: its tables."""
    proc = subprocess.run(
        [sys.executable, "-m", "callsort", "label", str(folder), "--out", str(out)]
        + ["--quiet", "--jobs", "1", *extra],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    tables = {}
    for table, keys in (("segments", ["segment_index"]), ("calls", [])):
        frame = ds.dataset(out / table, partitioning="hive").to_table().to_pandas()
        tables[table] = frame.sort_values(["recording", "channel", *keys]).reset_index(drop=True)
    return tables


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    for name in RECORDINGS:
        shutil.copy(REPO / "sample_recordings" / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def runs(demo, tmp_path_factory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("runs")
    return {
        "this CPU": label(demo, out / "here", {}),
        "another CPU": label(demo, out / "there", ANOTHER_CPU),
    }


def test_another_cpu_is_really_another_code_path(demo, tmp_path):
    """The variables take effect: CTranslate2 refuses an instruction set it does not know,
    NumPy runs without its AVX2 loops, OpenBLAS with Sandy Bridge's kernels."""
    probe = (
        "import threadpoolctl, numpy\n"
        "from numpy._core._multiarray_umath import __cpu_features__ as f\n"
        "print(f['X86_V3'], [i.get('architecture') for i in threadpoolctl.threadpool_info()])"
    )
    env = {**os.environ, **ANOTHER_CPU}
    seen = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert seen.stdout.split(None, 1) == ["False", "['Sandybridge']\n"]
    refused = subprocess.run(
        [sys.executable, "-m", "callsort", "label", str(demo / RECORDINGS[1])]
        + ["--out", str(tmp_path / "out"), "--quiet", "--jobs", "1"],
        env={**os.environ, "CT2_FORCE_CPU_ISA": "NOT_AN_ISA"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Invalid CPU ISA" in refused.stderr


def test_probabilities_and_labels_keep_the_promise_between_cpu_paths(runs):
    here, there = runs["this CPU"]["segments"], runs["another CPU"]["segments"]
    assert len(here) > 20
    key = ["recording", "channel", "segment_index", "start_s", "end_s"]
    assert here[key].equals(there[key])
    x = examples.MACHINE_TOLERANCE
    difference = np.abs(here[PROBABILITIES].to_numpy() - there[PROBABILITIES].to_numpy())
    print(f"\nlargest probability difference between the paths: {difference.max():.2e}")
    assert difference.max() <= x
    close = examples.close_calls(here) | examples.close_calls(there)
    assert (here["label"] == there["label"])[~close].all()
    calls_here, calls_there = runs["this CPU"]["calls"], runs["another CPU"]["calls"]
    assert calls_here[["recording", "channel", "speech_s", "n_segments"]].equals(
        calls_there[["recording", "channel", "speech_s", "n_segments"]]
    )
    for i, row in calls_here.iterrows():
        mine = (here["recording"] == row["recording"]) & (here["channel"] == row["channel"])
        if not close[mine].any():  # no close call: the same labels, so the same figures
            for column in ("dominant_label", "escalated", "share_angry", "share_sad"):
                assert calls_there.loc[i, column] == row[column], (row["recording"], column)


def test_both_paths_keep_the_promise_against_the_readme(runs):
    """The README's examples, restricted to these recordings, against either path's tables."""
    readme = examples.sections_in((REPO / "README.md").read_text(encoding="utf-8"))
    calls_in_readme = _rows_of(readme["calls-example"], RECORDINGS)
    for name, tables in runs.items():
        segments = tables["segments"]
        differences = examples.section_differences(
            "segments-example",
            readme["segments-example"],
            examples.segments_example(segments),
            segments,
        ) + examples.section_differences(
            "calls-example", calls_in_readme, examples.calls_example(tables["calls"]), segments
        )
        assert not differences, f"{name}:\n" + "\n".join(differences)


def test_fast_model_is_the_same_on_both_paths(demo, tmp_path):
    """Without the encoder, NumPy's and OpenBLAS's paths leave every probability as it was."""
    here = label(demo, tmp_path / "here", {}, "--model", "fast")["segments"]
    there = label(demo, tmp_path / "there", ANOTHER_CPU, "--model", "fast")["segments"]
    assert here.drop(columns="processed_at", errors="ignore").equals(
        there.drop(columns="processed_at", errors="ignore")
    )


def _rows_of(table: str, recordings: tuple[str, ...]) -> str:
    lines = table.splitlines()
    return "\n".join(
        lines[:2] + [line for line in lines[2:] if line.split("|")[1].strip() in recordings]
    )
