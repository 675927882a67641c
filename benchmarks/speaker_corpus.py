"""Corpus clips by speaker, for the diarisation benchmark (benchmarks/diarisation.py).

Speakers are split in two halves: the FIT half chooses the one-speaker threshold, the
TEST half gives every published figure (so each figure is speaker-independent). RAVDESS actors 23 and 24 (the demo calls) are in
neither: they are unseen by every fit.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

DATASETS = Path(
    os.environ.get(
        "CALLSORT_DATASETS", Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
    )
)
RAVDESS = "ravdess-speech-16k"
NEMO = "nemo-speech-16k"
SR = 16_000
TELEPHONE_SR = 8_000

# RAVDESS emotion codes used (neutral stands in for calm as elsewhere in callsort)
RAVDESS_EMOTIONS = {"01": "calm", "02": "calm", "03": "happy", "04": "sad", "05": "angry"}
FIT_SPEAKERS = (
    *(f"ravdess-{a:02d}" for a in range(1, 13)),
    "nemo-EB0",
    "nemo-KS0",
    "nemo-MK0",
    "nemo-SM0",
)
TEST_SPEAKERS = (
    *(f"ravdess-{a:02d}" for a in range(13, 23)),
    "nemo-IC0",
    "nemo-KD0",
    "nemo-MP0",
    "nemo-TP0",
    "nemo-WR0",
)


@dataclass(frozen=True)
class Clip:
    path: Path
    speaker: str  # "ravdess-07", "nemo-EB0"
    sex: str  # "female" / "male"
    emotion: str  # callsort label


def corpus_clips(datasets: Path = DATASETS) -> list[Clip]:
    """Every usable clip of both corpora (empty when neither is there)."""
    clips = []
    ravdess = datasets / RAVDESS
    for path in sorted(ravdess.glob("Actor_*/03-01-*.flac")):
        fields = path.stem.split("-")
        if fields[2] in RAVDESS_EMOTIONS:
            actor = int(fields[6])
            sex = "male" if actor % 2 else "female"
            clips.append(Clip(path, f"ravdess-{actor:02d}", sex, RAVDESS_EMOTIONS[fields[2]]))
    labels = datasets / NEMO / "labels.csv"
    if labels.exists():
        with labels.open(encoding="utf-8") as f:
            for row in csv.DictReader(f):
                label = "calm" if row["label"] == "neutral" else row["label"]
                clips.append(
                    Clip(
                        datasets / NEMO / row["path"],
                        f"nemo-{row['speaker']}",
                        row["gender"],
                        label,
                    )
                )
    return clips


def clips_by_speaker(speakers: tuple[str, ...]) -> dict[str, list[Clip]]:
    """The clips of each of ``speakers``, in :func:`corpus_clips` order."""
    out: dict[str, list[Clip]] = {}
    for c in corpus_clips():
        if c.speaker in speakers:
            out.setdefault(c.speaker, []).append(c)
    return out


def trimmed(path: Path, *, top_db: float = 35.0) -> np.ndarray:
    """A clip's 16 kHz samples without its leading and trailing silence."""
    import librosa

    y, sr = sf.read(path, dtype="float32", always_2d=False)
    if y.ndim > 1:
        y = y.mean(axis=1)
    if sr != SR:
        y = soxr.resample(y, sr, SR).astype(np.float32)
    y, _ = librosa.effects.trim(y, top_db=top_db)
    return y


def mu_law(y: np.ndarray, mu: float = 255.0) -> np.ndarray:
    """``y`` through a G.711 mu-law quantiser (8 bits) and back."""
    y = np.clip(y, -1.0, 1.0)
    code = np.round((np.sign(y) * np.log1p(mu * np.abs(y)) / np.log1p(mu) + 1) / 2 * 255)
    x = code / 255 * 2 - 1
    return (np.sign(x) * ((1 + mu) ** np.abs(x) - 1) / mu).astype(np.float32)


def telephone(y: np.ndarray) -> np.ndarray:
    """16 kHz ``y`` as a telephone line hands it over: 8 kHz, mu-law, then back to 16 kHz."""
    narrow = soxr.resample(y, SR, TELEPHONE_SR)
    return soxr.resample(mu_law(narrow), TELEPHONE_SR, SR).astype(np.float32)


def clip_embedding(y: np.ndarray, condition: str, *, settings) -> np.ndarray | None:
    """The mean of callsort's speaker-window embeddings (``settings``: its
    DiarisationSettings) of the 16 kHz clip ``y`` as recorded (``"clean"``) or through a
    telephone line (``"telephone"``), as diarisation sees a segment; None when the clip
    is too short for a window."""
    from callsort.audio.diarise import speaker_windows

    audio = telephone(y) if condition == "telephone" else y
    features = speaker_windows([audio], settings=settings)[0].features
    return features.mean(axis=0) if len(features) else None
