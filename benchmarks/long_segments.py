"""Memory of long speech segments: Whisper's log-mel, and a worker at each ``--max-segment``.

Run from the repository root (a few minutes on 2 cores; the audio is written once
into ``benchmarks/cache/`` and reused):

    python benchmarks/long_segments.py

1. ``log_mel``: the peak of NumPy's allocations (``tracemalloc``) while the log-mel
   spectrogram of one 10-minute segment is computed, at once (as callsort did before:
   the whole segment's STFT in memory) and in 30 s pieces
   (:func:`callsort.features.encoder.log_mel_pieces`, what the encoder consumes now).
2. ``label``: the peak resident set size of ``callsort label FILE --jobs 1
   --max-segment S`` (one process, which analyses the file itself; ``wait4``) on
   10 minutes of continuous synthetic speech (no pause long enough to end a segment,
   so every segment is ``S`` long), for each ``S`` up to the largest callsort accepts,
   with the default model. The target is under 1 GB per worker.

Prints the figures and writes them to ``benchmarks/results/long-segments.json``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import tracemalloc
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import soundfile as sf
from nightly import CACHE, LAST_CPU_S, REPO, callsort

RESULTS = REPO / "benchmarks" / "results" / "long-segments.json"
SR = 16_000
MINUTES = 10
MAX_SEGMENTS_S = (4.0, 30.0, 60.0, 120.0)
"""``--max-segment`` values measured: the default, Whisper's window, and up to callsort's
limit (:data:`callsort.settings.MAX_SEGMENT_LIMIT_S`)."""


def continuous_speech(seconds: float, *, seed: int = 0) -> np.ndarray:
    """A voice that never pauses: a gliding harmonic complex with 4 Hz syllables, 16 kHz."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 110 + 50 * np.sin(2 * np.pi * 0.9 * t) + 20 * np.sin(2 * np.pi * 0.13 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voiced = sum(np.sin(k * phase) / k for k in range(1, 25))
    envelope = 0.35 + 0.65 * np.sin(np.pi * 4.0 * t) ** 2
    y = 0.1 * voiced * envelope + 0.002 * rng.standard_normal(len(t))
    return (y / np.max(np.abs(y)) * 0.5).astype(np.float32)


def speech_file() -> Path:
    """``MINUTES`` of audio: 40 s of line noise, then speech without a pause to 40 s before
    the end (callsort's voice detector measures speech against the channel's quiet frames)."""
    target = CACHE / f"continuous-speech-{MINUTES}min.flac"
    if not target.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        quiet = 40 * SR
        y = 0.002 * np.random.default_rng(2).standard_normal(MINUTES * 60 * SR)
        y[quiet:-quiet] += continuous_speech(MINUTES * 60 - 80)
        sf.write(str(target), y.astype(np.float32), SR, subtype="PCM_16")
    return target


def log_mel_peaks() -> dict:
    from callsort.features import encoder

    y = continuous_speech(MINUTES * 60, seed=1)
    encoder.log_mel(y[:SR])  # filters and window built outside the measurement
    out = {"segment_mb": round(y.nbytes / 1e6, 1)}
    for name, compute in (
        ("at_once_mb", lambda: encoder._log_mel_at_once(y)),
        ("in_pieces_mb", lambda: [piece.shape for piece in encoder.log_mel_pieces(y)]),
    ):
        tracemalloc.start()
        compute()
        out[name] = round(tracemalloc.get_traced_memory()[1] / 1e6, 1)
        tracemalloc.stop()
    return out


def label_peaks(path: Path) -> dict:
    import pyarrow.dataset as ds

    out = {}
    for max_segment in MAX_SEGMENTS_S:
        with tempfile.TemporaryDirectory() as folder:
            code, wall, peak_mb = callsort(
                "label", path, "--out", folder, "--jobs", 1, "--quiet",
                "--max-segment", max_segment,
            )  # fmt: skip
            segments = ds.dataset(Path(folder) / "segments", partitioning="hive").to_table()
            durations = np.asarray(segments["duration_s"])
        out[f"{max_segment:g}"] = {
            "exit_code": code,
            "segments": len(durations),
            "longest_segment_s": round(float(durations.max()), 2),
            "peak_rss_mb": round(peak_mb, 1),
            "wall_s": round(wall, 1),
            "cpu_s": round(LAST_CPU_S[0], 1),
        }
        print(f"--max-segment {max_segment:g}: {json.dumps(out[f'{max_segment:g}'])}", flush=True)
    return out


def main() -> int:
    from callsort.settings import MAX_SEGMENT_LIMIT_S

    assert max(MAX_SEGMENTS_S) == MAX_SEGMENT_LIMIT_S, "measure up to the limit"
    # the label runs first: a child's peak RSS on Linux counts the parent's at the fork
    label = label_peaks(speech_file())
    mel = log_mel_peaks()
    print(f"log-mel of a {MINUTES}-minute segment: {json.dumps(mel)}", flush=True)
    results = {
        "command": "python benchmarks/long_segments.py",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
        "log_mel_10_minute_segment": mel,
        "label_10_minutes_continuous_speech": label,
    }
    RESULTS.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
