"""The fast model's ``--jobs 1`` run against the decode + resample floor, in alternating rounds.

Run from the repository root, after ``benchmarks/throughput.py`` has built its archive:

    python benchmarks/floor_ratio.py
    python benchmarks/floor_ratio.py --models fast,benchmarks/cache/fast-8khz --rounds 5

``throughput.py`` times the floor once per in-process pass, between analyses, where it
moved from 1.6 to 2.3 s between passes. Here the floor (soundfile decode + soxr to
16 kHz, one core, every call of the archive) runs before each ``callsort label --jobs 1``
of each model, round after round; the ratio is of the medians. Prints the figures and
writes ``benchmarks/results/floor-ratio.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = REPO / "benchmarks" / "cache" / "archive-v2-ravdess-60x3min" / "calls"
RESULTS = REPO / "benchmarks" / "results" / "floor-ratio.json"


def floor_s(calls: list[Path]) -> float:
    """Wall seconds to decode every call and resample it to 16 kHz, one core."""
    import soundfile as sf
    import soxr

    started = time.perf_counter()
    for path in calls:
        y, rate = sf.read(path, dtype="float32")
        soxr.resample(y, rate, 16_000)
    return time.perf_counter() - started


def label_s(archive: Path, model: str, *, jobs: int = 1) -> float:
    """Wall seconds of ``callsort label --jobs JOBS`` over the archive, into a fresh folder."""
    with tempfile.TemporaryDirectory(prefix="callsort-floor-") as out:
        started = time.perf_counter()
        command = ["label", str(archive), "--model", model, "--jobs", str(jobs), "--out", out, "-q"]
        subprocess.run([sys.executable, "-m", "callsort", *command], check=True)
        return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="fast", help="comma-separated (fast)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (5)")
    parser.add_argument("--archive", type=Path, default=ARCHIVE, help="folder of calls")
    parser.add_argument("--json", type=Path, default=RESULTS, help="where to write the figures")
    args = parser.parse_args(argv)
    calls = sorted(args.archive.glob("*.wav"))
    if not calls:
        sys.exit(f"no calls in {args.archive}: run benchmarks/throughput.py first")
    models = args.models.split(",")
    floors: list[float] = []
    runs: dict[str, list[float]] = {m: [] for m in models}
    for _ in range(args.rounds):
        for model in models:
            floors.append(floor_s(calls))
            runs[model].append(label_s(args.archive, model))
    floor = statistics.median(floors)
    summary = {
        model: {
            "median_wall_s": round(statistics.median(times), 3),
            "runs_s": [round(t, 3) for t in times],
            "vs_floor": round(statistics.median(times) / floor, 3),
        }
        for model, times in runs.items()
    }
    print(f"floor: median {floor:.2f} s of {len(floors)} ({min(floors):.2f}-{max(floors):.2f})")
    for model, s in summary.items():
        print(
            f"{model}: --jobs 1 median {s['median_wall_s']:.2f} s, {s['vs_floor']:.2f}x the floor"
        )
    results = {
        "command": "python benchmarks/floor_ratio.py " + " ".join(argv or sys.argv[1:]),
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "calls": len(calls),
        "floor": {"median_wall_s": round(floor, 3), "runs_s": [round(f, 3) for f in floors]},
        "models": summary,
    }
    args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(
        f"figures written to {args.json.relative_to(REPO) if args.json.is_relative_to(REPO) else args.json}"
    )


if __name__ == "__main__":
    main()
