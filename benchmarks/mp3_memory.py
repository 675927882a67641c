"""Peak memory of labelling a 1-hour MP3, beside the same audio as WAV.

Run from the repository root (a few minutes on 2 cores; the audio is encoded
once into ``benchmarks/cache/`` and reused):

    python benchmarks/mp3_memory.py
    python benchmarks/mp3_memory.py --minutes 10    # a quick check

Each file is the stereo demo calls of ``sample_recordings/`` looped to
``--minutes`` (60): as an 8 kHz stereo MP3, as a 44.1 kHz stereo MP3 (music
rate, the largest decode) and, for comparison, as a 44.1 kHz stereo 16-bit WAV
and as the 8 kHz stereo mu-law WAV that ``benchmarks/nightly.py`` measures
(built by its code, into the same cache). Each is labelled by ``callsort label
FILE --out DIR --jobs 1`` in a fresh process, which analyses it itself; its
peak resident set size comes from ``wait4``. ``whole_decode_mb`` is what one
read of the whole file as float32 holds (how MP3 was read before it was read
in blocks): computed, not measured.

Prints the figures and writes them to ``benchmarks/results/mp3_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import soundfile as sf
from nightly import CACHE, CALL_SR, LAST_CPU_S, REPO, callsort, demo_loop, long_call

RESULTS = REPO / "benchmarks" / "results" / "mp3_memory.json"
MP3 = {"format": "MP3", "subtype": "MPEG_LAYER_III"}


def label(path: Path) -> dict:
    """``callsort label PATH --jobs 1`` in a fresh process: its peak RSS and wall time."""
    with tempfile.TemporaryDirectory() as out:
        _, wall, peak_mb = callsort("label", path, "--out", out, "--jobs", 1, "--quiet")
        summary = json.loads(next(Path(out, "runs").glob("*.json")).read_text())
    info = sf.info(str(path))
    return {
        "file": str(path.relative_to(REPO)),
        "format": f"{info.format} {info.subtype}",
        "sample_rate": info.samplerate,
        "channels": info.channels,
        "duration_s": round(info.duration, 1),
        "file_mb": round(path.stat().st_size / 2**20, 1),
        "whole_decode_mb": round(info.frames * info.channels * 4 / 2**20, 1),
        "peak_rss_mb": round(peak_mb, 1),
        "wall_s": round(wall, 1),
        "cpu_s": round(LAST_CPU_S[0], 1),
        "exit_code": summary["exit_code"],
        "audio_hours": summary["audio_hours"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    args = parser.parse_args()
    m = f"{args.minutes:g}min"
    files = {
        f"mp3_8k_stereo_{m}": demo_loop(CACHE / f"demo-8k-{m}.mp3", args.minutes, CALL_SR, **MP3),
        f"mp3_44k_stereo_{m}": demo_loop(CACHE / f"demo-44k-{m}.mp3", args.minutes, 44100, **MP3),
        f"wav_ulaw_8k_stereo_{m}": long_call(args.minutes),
        f"wav_44k_stereo_{m}": demo_loop(
            CACHE / f"demo-44k-{m}.wav", args.minutes, 44100, format="WAV", subtype="PCM_16"
        ),
    }
    results = {}
    for name, path in files.items():
        results[name] = label(path)
        r = results[name]
        print(
            f"  {name:<24} peak RSS {r['peak_rss_mb']:7.1f} MB  (a whole decode would be "
            f"{r['whole_decode_mb']:7.1f} MB)  wall {r['wall_s']:6.1f} s",
            flush=True,
        )
    from callsort import __version__

    RESULTS.write_text(
        json.dumps(
            {
                "command": " ".join(["python benchmarks/mp3_memory.py", *sys.argv[1:]]),
                "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "callsort_version": __version__,
                "libsndfile": sf.__libsndfile_version__,
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                f"load {os.getloadavg()[0]:.1f}",
                "results": results,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
