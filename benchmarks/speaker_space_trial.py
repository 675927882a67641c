"""Issue 19 trial: windows that cover each second once, and a within-speaker whitening.

Runs the diarisation figures of ``benchmarks/diarisation.py`` (the same built calls,
segmentation, encoder, clustering and scoring; the one-or-two threshold chosen on the
FIT half, every figure of the TEST half at it) for variants of two steps of
:mod:`callsort.audio.diarise`, patched in this process only:

- **windows**: ``fixed`` (as shipped: 1.6 s windows back to back, the last one ending with
  its segment, so that a 2 s segment is encoded as 3.2 s) or ``equal`` (each segment cut
  into as many equal windows of at least 1.6 s as fit: every second encoded once);
- **space**: ``centred`` (the embeddings centred on the channel's mean, as shipped before
  the whitening) or ``whitened``: then multiplied by the inverse square root of the within-speaker
  covariance of FIT speakers' clips (each clip's mean window embedding, each speaker's
  clips of one audio condition centred on their mean; shrunk halfway toward the identity),
  learnt from their telephone copies (``tel``) or from their 16 kHz and telephone copies
  (``both``). The TEST speakers are never seen. ``fixed, whitened (tel)`` is what callsort
  ships since (``DiarisationSettings.whiten``, ``scripts/make_speaker_whitening.py``); the
  trial turns that off and whitens in its own way, the same computation.

Also per variant: the mono demo calls' DER, whether the one-speaker demo voicemail
(``sample_recordings/voicemail_05_mono.flac``, 16 kHz) stays whole, and how many seconds
the encoder hears per second of speech (its cost). Needs the corpora. From the repo root:

    python benchmarks/speaker_space_trial.py --work DIR

``--work``: the folder ``benchmarks/diarisation.py --work`` built the calls in (built here
when empty). Writes ``benchmarks/results/speaker-space-trial.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import diarisation as bench  # noqa: E402
from benchmarks.speaker_corpus import (  # noqa: E402
    FIT_SPEAKERS,
    corpus_clips,
    telephone,
    trimmed,
)

RESULTS = REPO / "benchmarks" / "results" / "speaker-space-trial.json"
SHRINKAGE = 0.5
VARIANTS = {  # name: (windows, whitening learnt from)
    "fixed, centred (before)": ("fixed", None),
    "equal, centred": ("equal", None),
    "fixed, whitened (tel)": ("fixed", ("telephone",)),
    "equal, whitened (tel)": ("equal", ("telephone",)),
    "equal, whitened (both)": ("equal", ("clean", "telephone")),
}


def equal_windows(y: np.ndarray, *, settings) -> tuple[np.ndarray, list]:
    """``diarise._windows`` with every second in one window: the segment cut into as many
    equal windows of at least ``settings.window_s`` as fit."""
    from callsort.audio.diarise import SR
    from callsort.audio.voices import FRAMES_PER_S, MIN_SAMPLES, voice_mel

    duration = y.size / SR
    if duration < settings.min_window_s or y.size < MIN_SAMPLES:
        return np.zeros((0, 2)), []
    mel = voice_mel(y, level_dbfs=settings.level_dbfs)
    n = max(1, mel.shape[0] // round(settings.window_s * FRAMES_PER_S))
    edges = np.linspace(0, mel.shape[0], n + 1).round().astype(int)
    offsets = [(a / FRAMES_PER_S, min(b / FRAMES_PER_S, duration)) for a, b in pairwise(edges)]
    return np.array(offsets), [mel[a:b] for a, b in pairwise(edges)]


def whitening(conditions: tuple[str, ...], settings) -> tuple[np.ndarray, int]:
    """The whitening learnt from the FIT speakers' clips under ``conditions`` with the
    windows now in force; and how many clip embeddings it saw."""
    from callsort.audio.diarise import speaker_windows

    rows, groups = [], []
    for clip in (c for c in corpus_clips() if c.speaker in FIT_SPEAKERS):
        y = trimmed(clip.path)
        for condition in conditions:
            audio = telephone(y) if condition == "telephone" else y
            features = speaker_windows([audio], settings=settings)[0].features
            if len(features):
                rows.append(features.mean(axis=0))
                groups.append(f"{clip.speaker} {condition}")
    from callsort.audio.voices import within_speaker_whitening

    matrix = within_speaker_whitening(np.array(rows), np.array(groups), shrinkage=SHRINKAGE)
    return matrix, len(rows)


def encoded_per_speech_s(work: Path, truths: dict, settings) -> float:
    """Seconds of audio the encoder hears per second of speech over the TEST calls."""
    from callsort.audio.diarise import _windows
    from callsort.audio.segment import frame_measures, speech_segments
    from callsort.run.analysis import decode_mono

    speech = heard = 0.0
    for name in truths["test"]["calls"]:
        y = decode_mono(work / "test" / "mono" / name)
        frame = round(settings.segmentation.frame_s * bench.SR)
        segments = speech_segments(
            *frame_measures(y, frame_length=frame), settings=settings.segmentation
        )
        for a, b in segments:
            offsets, _ = _windows(
                y[round(a * bench.SR) : round(b * bench.SR)], settings=settings.diarisation
            )
            speech += b - a
            heard += float((offsets[:, 1] - offsets[:, 0]).sum()) if len(offsets) else 0.0
    return heard / speech


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--work", type=Path, required=True, help="built calls (diarisation.py --work)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if not corpus_clips():
        print(f"no corpora under {bench.DATASETS}: nothing measured")
        return
    import callsort.audio.diarise as diarise
    from callsort.audio.diarise import diarisation_error
    from callsort.run.options import analysis_settings

    settings = analysis_settings()
    settings = replace(settings, diarisation=replace(settings.diarisation, whiten=False))
    truths = bench.built_halves(args.work)
    demo_truth = bench.demo_mono(args.work / "demo")
    shipped = (diarise._windows, diarise.centred)
    results: dict = {
        "command": "python benchmarks/speaker_space_trial.py --work DIR",
        "variants": {},
    }
    started = time.perf_counter()
    for name, (windows, learnt_from) in VARIANTS.items():
        diarise._windows = equal_windows if windows == "equal" else shipped[0]
        diarise.centred = shipped[1]
        entry: dict = {}
        if learnt_from:
            W, n = whitening(learnt_from, settings.diarisation)
            diarise.centred = lambda X, W=W: shipped[1](X) @ W
            entry["whitening_clip_embeddings"] = n
        rows = {
            h: bench.diarisation_figures(
                args.work / h, truths[h], settings, groups=("calls", "single")
            )
            for h in truths
        }
        chosen = bench.threshold(rows["fit"])
        at = replace(settings, diarisation=replace(settings.diarisation, min_separation=chosen))
        two = replace(settings, diarisation=replace(settings.diarisation, speakers=2))
        demo = {
            n: diarisation_error(
                t["turns"], bench.turns_of(bench.speakers_of(args.work / "demo" / n, two).segments)
            )
            for n, t in demo_truth.items()
        }
        voicemail = bench.speakers_of(bench.SAMPLES / "voicemail_05_mono.flac", at)
        entry.update(
            threshold_chosen_on_fit=chosen,
            fit=bench.summarise(rows["fit"], chosen),
            test=bench.summarise(rows["test"], chosen),
            demo_der_two_mean=float(np.mean(list(demo.values()))),
            voicemail_kept_whole=voicemail.n_speakers == 1,
            voicemail_separation=voicemail.separation,
            encoded_s_per_speech_s=encoded_per_speech_s(args.work, truths, settings),
            files=rows,
        )
        results["variants"][name] = entry
        t = entry["test"]
        print(
            f"{name}: threshold {chosen:.3f}; TEST DER two {t['der_two_imposed_mean']:.1%}, "
            f"auto {t['der_auto_mean']:.1%}, found two {t['two_speaker_files_found_two']:.0%}, "
            f"kept whole {t['one_speaker_files_kept_whole']:.0%}; FIT DER two "
            f"{entry['fit']['der_two_imposed_mean']:.1%}; demo {entry['demo_der_two_mean']:.1%}; "
            f"voicemail {'whole' if entry['voicemail_kept_whole'] else 'split'} "
            f"({voicemail.separation:.3f}); encoder {entry['encoded_s_per_speech_s']:.2f} s "
            f"per speech s ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    diarise._windows, diarise.centred = shipped
    results["wall_s"] = time.perf_counter() - started
    args.out.write_text(json.dumps(results, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
