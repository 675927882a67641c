"""Profile ``callsort label`` on a few calls of the benchmark archive, in one process.

Run from the repository root after ``benchmarks/throughput.py`` has built the
archive (``pip install pyinstrument`` first):

    python benchmarks/profile_label.py              # the first 10 calls, --jobs 1
    python benchmarks/profile_label.py --calls 4

The command runs in this process (``--jobs 1``, so every stage is sampled,
startup included) under pyinstrument. Prints three Markdown tables: time by
stage (each sample is given to the innermost stage on its stack), import time
by the package first imported, and the functions with the most self time.
Self time includes the C code (numpy loops) a function calls directly.
``benchmarks/PROFILE.md`` keeps a summary.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "benchmarks" / "cache"

# (function name, path fragment) -> stage; the innermost match on the stack wins
STAGES = [
    ("_find_and_load", "importlib", "imports (first use of each library)"),
    ("load", "callsort/model/folder.py", "model load"),
    ("read_blocks", "callsort/audio/decode.py", "decode"),
    ("probe", "callsort/audio/decode.py", "decode"),
    ("resampled_blocks", "callsort/audio/decode.py", "resample"),
    ("_measure", "callsort/run/analysis.py", "segment: frame energy and ZCR"),
    ("speech_segments", "callsort/audio/segment.py", "segment: speech segments"),
    ("segments_features", "callsort/features/spectral.py", "features: glue and level"),
    (
        "_descriptors",
        "callsort/features/spectral.py",
        "features: other spectral descriptors",
    ),
    ("_by_segment", "callsort/features/spectral.py", "features: mel, chroma, slope products"),
    ("_stft_magnitudes", "callsort/features/spectral.py", "features: STFT"),
    ("deltas", "callsort/features/kernels.py", "features: MFCC deltas"),
    ("spectral_contrast", "callsort/features/kernels.py", "features: spectral contrast"),
    ("zero_crossing_rates", "callsort/features/kernels.py", "features: zero-crossing rate"),
    ("spectral_rolloff", "callsort/features/kernels.py", "features: roll-off"),
    ("_prosody", "callsort/features/spectral.py", "features: prosody (slopes, balance)"),
    ("_pitch", "callsort/features/spectral.py", "features: pitch (resample to 8 kHz)"),
    ("yin_frames", "callsort/features/kernels.py", "features: pitch (YIN)"),
    ("harmonicity", "callsort/features/kernels.py", "features: harmonicity"),
    ("grouped_statistics", "callsort/features/kernels.py", "features: statistics"),
    ("predict_proba", "callsort/model/booster.py", "predict"),
    ("channel_normalised", "callsort/features/normalise.py", "predict"),
    ("segments_table", "callsort/dataset/tables.py", "tables"),
    ("calls_table", "callsort/dataset/tables.py", "tables"),
    ("write_table", "callsort/dataset/writers.py", "write"),
]
OTHER = "other (CLI, discovery, glue)"


def stage_of(frame, current: str) -> str:
    for function, fragment, stage in STAGES:
        if frame.function == function and fragment in (frame.file_path or ""):
            return stage
    return current


def walk(
    frame,
    stage: str,
    stages: collections.Counter,
    selfs: collections.Counter,
    imports: collections.Counter,
) -> None:
    outer_import = stage != STAGES[0][2]
    stage = stage_of(frame, stage)
    if outer_import and stage == STAGES[0][2]:
        imports[_package(frame)] += frame.time
    own = frame.time - sum(child.time for child in frame.children)
    if own > 0:
        stages[stage] += own
        if stage != STAGES[0][2]:
            parent = frame.parent if frame.is_synthetic else frame
            function = (
                parent.function.rsplit(".", 1)[-1]
                if "pybind11" in parent.function
                else parent.function
            )
            key = f"`{function}` ({_short(parent.file_path)})"
            selfs[key] += own
    for child in frame.children:
        walk(child, stage, stages, selfs, imports)


def _package(frame) -> str:
    """The top-level package an import frame imports: its first module body's file."""
    queue = [frame]
    while queue:
        f = queue.pop(0)
        if f.function == "<module>" and f.file_path:
            return _short(f.file_path).split("/", 1)[0].removesuffix(".py")
        queue.extend(f.children)
    return "?"


def _short(path: str | None) -> str:
    path = path or "?"
    for marker in ("site-packages/", "/callsort/"):
        if marker in path:
            tail = path.split(marker, 1)[1]
            return ("callsort/" if marker == "/callsort/" else "") + tail
    return path


def main(argv: list[str] | None = None) -> None:
    from pyinstrument import Profiler

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=10, help="calls to label (10)")
    parser.add_argument("--archive", type=Path, help="archive folder (default: the largest cached)")
    parser.add_argument("--model", default="default", help="model name or folder (default)")
    args = parser.parse_args(argv)
    folder = args.archive or max(
        CACHE.glob("archive-*/calls"), key=lambda p: len(list(p.iterdir()))
    )
    calls = sorted(folder.glob("*.wav"))[: args.calls]

    from callsort import cli

    with tempfile.TemporaryDirectory(prefix="callsort-profile-") as out:
        sys.argv = [
            "callsort",
            "label",
            *map(str, calls),
            "--out",
            out,
            "--jobs",
            "1",
            "--quiet",
            "--model",
            args.model,
        ]
        profiler = Profiler(interval=0.001)
        profiler.start()
        try:
            cli.main()
        except SystemExit as exit_:
            if exit_.code:
                raise
        finally:
            profiler.stop()
    session = profiler.last_session
    stages: collections.Counter = collections.Counter()
    selfs: collections.Counter = collections.Counter()
    imports: collections.Counter = collections.Counter()
    walk(session.root_frame(), OTHER, stages, selfs, imports)
    total = sum(stages.values())
    print(
        f"`callsort label` on {len(calls)} calls of {folder.relative_to(REPO)} in one process "
        f"(`--jobs 1`): {session.duration:.2f} s wall, {session.cpu_time:.2f} s CPU, "
        f"{session.sample_count:,} samples."
    )
    print("\n| stage | s | share |\n|---|---|---|")
    for stage, seconds in stages.most_common():
        print(f"| {stage} | {seconds:.2f} | {seconds / total:.1%} |")
    print("\n| imports, by the package first imported | s | share |\n|---|---|---|")
    for package, seconds in [i for i in imports.most_common() if i[0] not in ("", "?")][:8]:
        print(f"| {package} | {seconds:.2f} | {seconds / total:.1%} |")
    print("\n| function (self time, imports left out) | s | share |\n|---|---|---|")
    for key, seconds in selfs.most_common(15):
        print(f"| {key} | {seconds:.2f} | {seconds / total:.1%} |")


if __name__ == "__main__":
    main()
