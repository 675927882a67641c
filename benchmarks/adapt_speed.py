"""How long ``callsort adapt`` takes with about 400 labelled segments, and whether the
adapted model labels as fast as the model it came from.

Run from the repository root (a few minutes on 2 cores):

    python benchmarks/adapt_speed.py [--model default|fast] [--segments 400]

An archive of calls is made from RAVDESS clips (``$CALLSORT_DATASETS`` or
``../shared/datasets/ravdess-speech-16k``) in a temporary folder outside the
repository: mono 8 kHz mu-law WAV files (as a call recorder stores them), each one
actor's clips one after another with 0.6 s pauses, and a labels file with one span per
clip and its emotion. Then, each a fresh process on the same files:

* ``callsort adapt LABELS --recordings ARCHIVE --model MODEL --jobs 2``, feature
  extraction included: wall time, CPU time (its workers included: on a machine
  shared with other work, CPU / 2 is what two idle cores would take), labelled
  segments learned from;
* ``callsort label ARCHIVE --jobs 2 --model MODEL`` and ``--model ADAPTED``, alternately
  ``--repeats`` times (best of each kept): recording-seconds per wall-second.

Writes ``benchmarks/results/adapt-speed[-fast].json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

DATASETS = Path(os.environ.get("CALLSORT_DATASETS", REPO.parent / "shared" / "datasets"))
RAVDESS = DATASETS / "ravdess-speech-16k"
PAUSE_S = 0.6
TARGET_S = 300.0  # the issue: under 5 minutes on a 2-core machine


def build_archive(folder: Path, *, n_clips: int, per_call: int, seed: int = 0) -> tuple[Path, int]:
    """Calls of ``per_call`` clips of one actor each; returns the labels file and the
    recordings' total duration in seconds."""
    from callsort.run.analysis import decode_mono
    from callsort.training.augment import write_telephone_file
    from callsort.training.config import TrainingConfig
    from callsort.training.corpora import find_corpora

    clips = find_corpora([RAVDESS], classes=TrainingConfig().classes)
    rng = np.random.default_rng(seed)
    chosen = [clips[i] for i in rng.permutation(len(clips))[:n_clips]]
    by_actor: dict[str, list] = {}
    for c in chosen:
        by_actor.setdefault(c.speaker, []).append(c)
    archive = folder / "archive"
    archive.mkdir()
    rows, total_s, n = [], 0.0, 0
    for _, group in sorted(by_actor.items()):
        for start in range(0, len(group), per_call):
            parts, t = [np.zeros(int(0.5 * 16000), np.float32)], 0.5
            for clip in group[start : start + per_call]:
                y = decode_mono(clip.path)
                rows.append((f"call_{n:03d}.wav", "mono", t, t + len(y) / 16000, clip.label))
                parts += [y, np.zeros(int(PAUSE_S * 16000), np.float32)]
                t += len(y) / 16000 + PAUSE_S
            write_telephone_file(
                np.concatenate(parts), archive / f"call_{n:03d}.wav", codec="mulaw"
            )
            total_s += t
            n += 1
    labels = folder / "labels.csv"
    with labels.open("w") as f:
        f.write("recording,channel,start_s,end_s,label\n")
        for name, channel, a, b, label in rows:
            f.write(f"{name},{channel},{a:.3f},{b:.3f},{label}\n")
    return labels, total_s


def timed(*args: object, cpu: list | None = None) -> float:
    """Wall seconds of ``callsort ARGS`` in a fresh process; its CPU seconds (user +
    system, its worker processes included) are appended to ``cpu``."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "callsort", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if cpu is not None:
        cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    if result.returncode:
        raise SystemExit(f"callsort {' '.join(map(str, args))} failed:\n{result.stderr}")
    return wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default", choices=("default", "fast"))
    parser.add_argument("--clips", type=int, default=240, help="corpus clips in the archive")
    parser.add_argument("--per-call", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--label-files", type=int, default=12, help="recordings the label runs read (0: all)"
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if not RAVDESS.is_dir():
        print(f"no corpus at {RAVDESS}: nothing to measure", file=sys.stderr)
        return 0
    with tempfile.TemporaryDirectory(prefix="callsort-adapt-speed-") as tmp:
        folder = Path(tmp)
        labels, audio_s = build_archive(folder, n_clips=args.clips, per_call=args.per_call)
        archive, adapted = folder / "archive", folder / "adapted"
        adapt_cpu: list[float] = []
        adapt_s = timed(
            "adapt", labels, "--recordings", archive, "--model", args.model,
            "--out", adapted, "--jobs", 2, cpu=adapt_cpu,
        )  # fmt: skip
        card = json.loads((adapted / "card.json").read_text())
        some = folder / "some"  # the first recordings, for the label runs
        some.mkdir()
        calls = sorted(archive.glob("*.wav"))
        calls = calls[: args.label_files] if args.label_files else calls
        for f in calls:
            (some / f.name).symlink_to(f)
        import soundfile as sf

        some_s = sum(sf.info(str(f)).duration for f in calls)
        walls: dict[str, list[float]] = {"base": [], "adapted": []}
        for r in range(args.repeats):
            for name, model in (("base", args.model), ("adapted", adapted)):
                out = folder / f"labels-{name}-{r}"
                walls[name].append(
                    timed("label", some, "--out", out, "--jobs", 2, "--model", model, "-q")
                )
    data = card["adaptation"]["data"]
    best = {k: min(v) for k, v in walls.items()}
    report = {
        "command": f"python benchmarks/adapt_speed.py --model {args.model} --clips {args.clips}",
        "machine": {"cpus": len(os.sched_getaffinity(0)), "load_1min": os.getloadavg()[0]},
        "model": args.model,
        "archive": {
            "audio_s": round(audio_s, 1),
            "labelled_segments": data["n_segments"],
            "segments_per_class": data["segments_per_class"],
            "n_recordings": data["n_recordings"],
        },
        "adapt_wall_s": round(adapt_s, 1),
        "adapt_cpu_s": round(adapt_cpu[0], 1),
        "adapt_target_s": TARGET_S,
        "adapt_under_target": adapt_s < TARGET_S,
        "label_wall_s": {k: [round(x, 2) for x in v] for k, v in walls.items()},
        "label_files": len(calls),
        "label_audio_s": round(some_s, 1),
        "label_audio_s_per_s": {k: round(some_s / v, 1) for k, v in best.items()},
        "adapted_over_base_wall": round(best["adapted"] / best["base"], 3),
        "figures": card["adaptation"]["figures"],
    }
    out = args.out or REPO / "benchmarks" / "results" / (
        "adapt-speed.json" if args.model == "default" else f"adapt-speed-{args.model}.json"
    )
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
