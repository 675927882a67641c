"""The default model's speed at four, five and six encoder layers, beside openSMILE.

The shipped default model runs the first four of Whisper base's six encoder layers
(``feature_settings.encoder_layers`` in its card). This times ``callsort label --jobs 2``
with the shipped model and with two copies of it whose cards name five and six layers,
and openSMILE eGeMAPSv02 over the same calls with two processes
(``benchmarks/opensmile_archive.py``), alternating, round after round; the ratios are
of the medians. The copies are for timing only: they compute the deeper embedding the
card names (the encoder's work, which is the cost) and feed it to the four-layer head, so
their labels mean nothing and are not looked at. What a deeper model would be worth in
accuracy is in benchmarks/ACCURACY.md.

Run from the repository root, after ``python benchmarks/throughput.py --calls 20`` has
built its 20-call archive:

    python benchmarks/encoder_depth_speed.py --rounds 2

Prints the figures and writes ``benchmarks/results/encoder-depth-speed.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.floor_ratio import label_s  # noqa: E402

ARCHIVE = REPO / "benchmarks" / "cache" / "archive-v2-ravdess-20x3min" / "calls"
RESULTS = REPO / "benchmarks" / "results" / "encoder-depth-speed.json"
SHIPPED = REPO / "callsort" / "models" / "default"
DEPTHS = (4, 5, 6)


def timing_copy(depth: int, folder: Path) -> Path:
    """The shipped default model with ``encoder_layers: depth`` in its card, under
    ``folder`` (for timing only)."""
    out = folder / f"default-{depth}-layers"
    shutil.copytree(SHIPPED, out)
    card = json.loads((out / "card.json").read_text(encoding="utf-8"))
    card["feature_settings"]["encoder_layers"] = depth
    (out / "card.json").write_text(json.dumps(card, indent=2), encoding="utf-8")
    return out


def wall_s(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def opensmile_s(archive: Path) -> float:
    """Wall seconds of openSMILE over the archive with two processes."""
    program = REPO / "benchmarks" / "opensmile_archive.py"
    with tempfile.TemporaryDirectory(prefix="callsort-depth-") as out:
        return wall_s(
            [sys.executable, str(program), str(archive), "--out", out, "--processes", "2"]
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (2)")
    parser.add_argument("--archive", type=Path, default=ARCHIVE, help="folder of calls")
    parser.add_argument("--json", type=Path, default=RESULTS, help="where to write the figures")
    args = parser.parse_args(argv)
    if not sorted(args.archive.glob("*.wav")):
        sys.exit(f"no calls in {args.archive}: run benchmarks/throughput.py --calls 20 first")
    runs: dict[str, list[float]] = {"opensmile": [], **{f"layers{d}": [] for d in DEPTHS}}
    with tempfile.TemporaryDirectory(prefix="callsort-depth-models-") as folder:
        models = {d: timing_copy(d, Path(folder)) for d in DEPTHS}
        for round_ in range(args.rounds):
            runs["opensmile"].append(opensmile_s(args.archive))
            for depth, model in models.items():
                runs[f"layers{depth}"].append(label_s(args.archive, str(model), jobs=2))
            print(
                f"round {round_ + 1}: "
                + ", ".join(f"{key} {times[-1]:.1f} s" for key, times in runs.items()),
                flush=True,
            )
    median = {key: statistics.median(times) for key, times in runs.items()}
    summary = {
        f"layers{d}": {
            "median_wall_s": round(median[f"layers{d}"], 3),
            "vs_opensmile": round(median["opensmile"] / median[f"layers{d}"], 3),
            "slower_than_four_layers": round(median[f"layers{d}"] / median["layers4"], 3),
        }
        for d in DEPTHS
    }
    for key, s in summary.items():
        print(
            f"{key}: --jobs 2 median {s['median_wall_s']:.1f} s, {s['vs_opensmile']:.2f}x "
            f"openSMILE, {s['slower_than_four_layers']:.2f}x the time of four layers"
        )
    results = {
        "command": "python benchmarks/encoder_depth_speed.py " + " ".join(argv or sys.argv[1:]),
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "calls": len(sorted(args.archive.glob("*.wav"))),
        "opensmile": {
            "median_wall_s": round(median["opensmile"], 3),
            "runs_s": [round(t, 3) for t in runs["opensmile"]],
        },
        "models": {
            key: {**summary[key], "runs_s": [round(t, 3) for t in runs[key]]} for key in summary
        },
    }
    args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    shown = args.json.relative_to(REPO) if args.json.is_relative_to(REPO) else args.json
    print(f"figures written to {shown}")


if __name__ == "__main__":
    main()
