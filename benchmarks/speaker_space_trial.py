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

``--set projection`` measures instead the shipped space against the same with its main
emotion directions projected out as well (a nuisance attribute projection: the principal
directions along which each FIT speaker's clips of one emotion and intensity sit from the
speaker's mean, in the whitened space; 2 or 8 of them), the one-emotion files included;
writes ``benchmarks/results/speaker-space-projection.json``.
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
    clip_embedding,
    corpus_clips,
    trimmed,
)

RESULTS = REPO / "benchmarks" / "results" / "speaker-space-trial.json"
PROJECTION_RESULTS = RESULTS.with_name("speaker-space-projection.json")
VARIANTS = {  # name: (windows, whitening learnt from, emotion directions projected out)
    "fixed, centred (before)": ("fixed", None, 0),
    "equal, centred": ("equal", None, 0),
    "fixed, whitened (tel)": ("fixed", ("telephone",), 0),
    "equal, whitened (tel)": ("equal", ("telephone",), 0),
    "equal, whitened (both)": ("equal", ("clean", "telephone"), 0),
}
PROJECTION_VARIANTS = {  # --set projection: the shipped space, then emotion projected out
    "fixed, whitened (tel)": ("fixed", ("telephone",), 0),
    "fixed, whitened (tel), 2 emotion directions out": ("fixed", ("telephone",), 2),
    "fixed, whitened (tel), 8 emotion directions out": ("fixed", ("telephone",), 8),
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


def fit_clip_embeddings(conditions: tuple[str, ...], settings) -> tuple[np.ndarray, list]:
    """The FIT speakers' clips under ``conditions`` with the windows now in force: each
    clip's mean window embedding ``(clips, 256)``, and its ``(speaker, condition,
    emotion, intensity)`` (RAVDESS intensity "01" normal, "02" strong; nEMO "-")."""
    rows, tags = [], []
    for clip in (c for c in corpus_clips() if c.speaker in FIT_SPEAKERS):
        y = trimmed(clip.path)
        intensity = clip.path.stem.split("-")[3] if clip.speaker.startswith("ravdess") else "-"
        for condition in conditions:
            embedding = clip_embedding(y, condition, settings=settings)
            if embedding is not None:
                rows.append(embedding)
                tags.append((clip.speaker, condition, clip.emotion, intensity))
    return np.array(rows), tags


def whitening(rows: np.ndarray, tags: list) -> np.ndarray:
    """The within-speaker whitening of the clip embeddings ``rows`` (one group per
    speaker and condition), shrunk as much as the shipped whitening is."""
    from callsort.audio.voices import WHITENING, within_speaker_whitening

    with np.load(WHITENING) as shipped:
        shrinkage = float(shipped["shrinkage"])
    groups = np.array([f"{speaker} {condition}" for speaker, condition, _, _ in tags])
    return within_speaker_whitening(rows, groups, shrinkage=shrinkage)


def emotion_projection(rows: np.ndarray, tags: list, W: np.ndarray, k: int) -> np.ndarray:
    """``(256, 256)``: the whitened space with its ``k`` main emotion directions projected
    out (a nuisance attribute projection): the principal directions of each FIT
    speaker's mean clip per emotion and intensity less the speaker's mean, whitened by
    ``W``."""
    Z = rows @ W
    speaker = np.array([f"{s} {c}" for s, c, _, _ in tags])
    mood = np.array([f"{e} {i}" for _, _, e, i in tags])
    offsets = [
        Z[(speaker == s) & (mood == m)].mean(axis=0) - Z[speaker == s].mean(axis=0)
        for s in np.unique(speaker)
        for m in np.unique(mood[speaker == s])
    ]
    directions = np.linalg.svd(np.array(offsets), full_matrices=False)[2][:k].T
    return np.eye(len(W)) - directions @ directions.T


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
    parser.add_argument(
        "--set",
        choices=("whitening", "projection"),
        default="whitening",
        help="the variants: the windows and whitening ones (default), or the shipped space "
        "with emotion projected out",
    )
    parser.add_argument("--out", type=Path, help="default: by --set")
    args = parser.parse_args()
    variants = VARIANTS if args.set == "whitening" else PROJECTION_VARIANTS
    # the whitening set as published (before the one-emotion files were built)
    groups = ("calls", "single") if args.set == "whitening" else tuple(bench.GROUPS)
    out = args.out or (RESULTS if args.set == "whitening" else PROJECTION_RESULTS)
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
        "command": "python benchmarks/speaker_space_trial.py --work DIR"
        + ("" if args.set == "whitening" else " --set projection"),
        "variants": {},
    }
    started = time.perf_counter()
    embedded: dict = {}  # (windows, conditions): the FIT clips' embeddings
    for name, (windows, learnt_from, projected) in variants.items():
        diarise._windows = equal_windows if windows == "equal" else shipped[0]
        diarise.centred = shipped[1]
        entry: dict = {}
        if learnt_from:
            if (windows, learnt_from) not in embedded:
                embedded[windows, learnt_from] = fit_clip_embeddings(
                    learnt_from, settings.diarisation
                )
            clips, tags = embedded[windows, learnt_from]
            W = whitening(clips, tags)
            if projected:
                W = W @ emotion_projection(clips, tags, W, projected)
            diarise.centred = lambda X, W=W: shipped[1](X) @ W
            entry["whitening_clip_embeddings"] = len(clips)
        rows = {
            h: bench.diarisation_figures(args.work / h, truths[h], settings, groups=groups)
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
            f"kept whole {t['one_speaker_files_kept_whole']:.0%}"
            + (
                f" (one emotion {t['one_emotion_files_kept_whole']:.0%})"
                if t.get("n_one_emotion_files")
                else ""
            )
            + f"; FIT DER two "
            f"{entry['fit']['der_two_imposed_mean']:.1%}; demo {entry['demo_der_two_mean']:.1%}; "
            f"voicemail {'whole' if entry['voicemail_kept_whole'] else 'split'} "
            f"({voicemail.separation:.3f}); encoder {entry['encoded_s_per_speech_s']:.2f} s "
            f"per speech s ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    diarise._windows, diarise.centred = shipped
    results["wall_s"] = time.perf_counter() - started
    out.write_text(json.dumps(results, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
