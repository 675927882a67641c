"""Clips without any speech segment, with and without short utterances (issue 17 item 5).

    python benchmarks/segment_coverage.py

Runs callsort's segmentation alone (decode, frame measures, voice-activity detection;
no features) over every clip of the corpora beside the repository (RAVDESS and nEMO,
the four classes), as the corpus files and as 8 kHz mu-law telephone files read back
through ``callsort label``'s decode path, three ways: with ``short_utterance_s`` at
None (callsort before issue 17), with short utterances judged by the zero-crossing
quartiles of the speech runs (``short_utterance_zcr_percentiles`` at 25 and 75, callsort
before they were the deciles), and with the settings as they are. Counts the clips
without any segment each way, and the clips whose segments differ from before issue 17
(only clips without a segment before may change). Writes
benchmarks/results/segment-coverage.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from callsort.audio.segment import frame_measures, speech_segments  # noqa: E402
from callsort.run.analysis import decode_mono  # noqa: E402
from callsort.settings import ANALYSIS_SAMPLE_RATE, SegmentationSettings  # noqa: E402
from callsort.training.cache import through_telephone_file  # noqa: E402
from callsort.training.corpora import find_corpora  # noqa: E402

CORPORA = [
    REPO.parent / "shared" / "datasets" / "ravdess-speech-16k",
    REPO.parent / "shared" / "datasets" / "nemo-speech-16k",
]
CONDITIONS = ("clean", "telephone")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, nargs="+", default=CORPORA, help="corpus folders")
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks/results/segment-coverage.json"
    )
    args = parser.parse_args()
    folders = [c for c in args.data if c.is_dir()]
    if not folders:
        print("no corpus beside the repository: nothing to measure", file=sys.stderr)
        return 0
    new = SegmentationSettings()
    quartiles = replace(new, short_utterance_zcr_percentiles=(25.0, 75.0))
    old = replace(quartiles, short_utterance_s=None)
    frame_length = round(new.frame_s * ANALYSIS_SAMPLE_RATE)
    clips = find_corpora(folders)
    started = time.perf_counter()
    rows: dict[tuple[str, str], dict] = {}
    for clip in clips:
        clean = decode_mono(clip.path)
        for condition in CONDITIONS:
            y = clean if condition == "clean" else through_telephone_file(clean, codec="mulaw")
            energy, zcr = frame_measures(y, frame_length=frame_length)
            before = speech_segments(energy, zcr, settings=old)
            by_quartiles = speech_segments(energy, zcr, settings=quartiles)
            after = speech_segments(energy, zcr, settings=new)
            row = rows.setdefault(
                (clip.corpus, condition),
                {"clips": 0, "without_segment_before": [], "without_segment_by_quartiles": [],
                 "without_segment_after": [], "changed_with_segments_before": 0,
                 "short_segments_added": 0, "segments_of_clips_without_before": {}},
            )  # fmt: skip
            row["clips"] += 1
            name = clip.path.name
            if not before:
                row["without_segment_before"].append(name)
                row["short_segments_added"] += len(after)
                row["segments_of_clips_without_before"][name] = [
                    [round(a, 3), round(b, 3)] for a, b in after
                ]
            if not by_quartiles:
                row["without_segment_by_quartiles"].append(name)
            if not after:
                row["without_segment_after"].append(name)
            if before and before != after:
                row["changed_with_segments_before"] += 1
    report = {
        "command": "python benchmarks/segment_coverage.py",
        "short_utterance_s": new.short_utterance_s,
        "short_utterance_zcr_percentiles": list(new.short_utterance_zcr_percentiles),
        "min_speech_s": new.min_speech_s,
        "seconds": round(time.perf_counter() - started, 1),
        "rows": [
            {"corpus": corpus, "condition": condition, **row}
            for (corpus, condition), row in sorted(rows.items())
        ],
    }
    for r in report["rows"]:
        print(
            f"{r['corpus']} {r['condition']}: {r['clips']} clips, without a segment "
            f"{len(r['without_segment_before'])} before -> "
            f"{len(r['without_segment_by_quartiles'])} by quartiles -> "
            f"{len(r['without_segment_after'])} now "
            f"({', '.join(r['without_segment_after']) or 'none'}); clips with segments "
            f"before whose segments changed: {r['changed_with_segments_before']}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    os.replace(tmp, args.out)
    print(f"wrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
