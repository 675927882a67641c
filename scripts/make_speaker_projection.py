"""Build callsort/models/speakers/projection.npz: the linear projection of the speaker
features (:func:`callsort.audio.diarise.speaker_windows`) in which diarisation clusters.

A linear discriminant analysis over the FIT speakers of benchmarks/speaker_corpus.py
(RAVDESS actors 1-12, nEMO EB0, KS0, MK0, SM0), every clip passed through a telephone
line (8 kHz mu-law) first: it keeps the directions in which speakers differ and drops
those in which one speaker's emotions differ (an angry customer and the same customer
calm are one speaker). The projected coordinates have unit within-speaker variance.
Seeded and deterministic; from the repo root, with the corpora in ../shared/datasets:

    python scripts/make_speaker_projection.py
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.speaker_corpus import (  # noqa: E402
    DATASETS,
    FIT_SPEAKERS,
    corpus_clips,
    telephone,
    trimmed,
)
from callsort.audio.diarise import speaker_windows  # noqa: E402
from callsort.settings import DiarisationSettings  # noqa: E402

OUT = REPO_ROOT / "callsort" / "models" / "speakers" / "projection.npz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=DATASETS)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    clips = [c for c in corpus_clips(args.datasets) if c.speaker in FIT_SPEAKERS]
    if not clips:
        raise SystemExit(f"no corpus clips under {args.datasets}")
    settings = DiarisationSettings(projection=None)
    rows, speakers = [], []
    for i, clip in enumerate(clips):
        w = speaker_windows(telephone(trimmed(clip.path)), settings=settings)
        rows.append(w.features)
        speakers += [clip.speaker] * len(w.features)
        if i % 500 == 0:
            print(f"{i}/{len(clips)} clips", flush=True)
    X = np.concatenate(rows)
    y = np.array(speakers)
    fit = fit_projection(X, y)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **fit)
    print(json.dumps({"windows": len(X), "speakers": len(set(speakers)), "dims": fit["W"].shape}))


def fit_projection(X: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """``mean``, ``scale`` and ``W`` such that ``((X - mean) / scale) @ W`` are the
    discriminant coordinates of ``X``, each of unit within-speaker variance."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    mean, scale = X.mean(axis=0), X.std(axis=0)
    Z = (X - mean) / scale
    lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage="auto").fit(Z, y)
    n = min(len(set(y)) - 1, Z.shape[1])
    W = lda.scalings_[:, :n]
    P = Z @ W
    within = np.concatenate([P[y == s] - P[y == s].mean(axis=0) for s in np.unique(y)])
    W = W / within.std(axis=0)
    return {"mean": mean, "scale": scale, "W": W}


if __name__ == "__main__":
    main()
