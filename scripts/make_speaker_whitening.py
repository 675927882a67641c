"""Build callsort/models/speakers/whitening.npz, the within-speaker whitening of the
speaker embeddings that :mod:`callsort.audio.diarise` clusters in
(:func:`callsort.audio.voices.voice_whitening`).

Every clip of the FIT speakers of benchmarks/diarisation.py (RAVDESS actors 1-12, nEMO
EB0, KS0, MK0, SM0; benchmarks/speaker_corpus.py) goes through a telephone line (8 kHz
mu-law and back to 16 kHz) and callsort's speaker windows; a clip's embedding is the mean
of its windows' (a segment's, as diarisation clusters them). The within-speaker
covariance ``S`` of those clip embeddings (each speaker's clips centred on their mean, as
diarisation centres a channel) is shrunk toward the identity, ``(1 - a) S + a tr(S) / 256
I`` with ``a`` = ``SHRINKAGE``, and the whitening is its inverse square root. The TEST
speakers of benchmarks/diarisation.py are not used, so that its TEST figures are of
speakers the whitening never heard.

Derived from RAVDESS and nEMO: CC BY-NC-SA 4.0, as callsort/models/speakers/LICENSE says.
Needs the corpora (``CALLSORT_DATASETS``, default ../shared/datasets). From the repo root:

    python scripts/make_speaker_whitening.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.speaker_corpus import (  # noqa: E402
    FIT_SPEAKERS,
    clip_embedding,
    corpus_clips,
    trimmed,
)
from callsort.audio.voices import (  # noqa: E402
    EMBEDDING_DIMS,
    WHITENING,
    within_speaker_whitening,
)
from callsort.run.worker import map_on_one_thread  # noqa: E402

SHRINKAGE = 0.5  # halfway to the identity (0.2 did worse on the FIT speakers' calls)
CONDITIONS = ("telephone",)  # also "clean" (16 kHz): benchmarks/speaker_space_trial.py


def clip_embeddings(path: str) -> list[np.ndarray | None]:
    """The mean speaker embedding of one clip's windows in each of ``CONDITIONS``."""
    from callsort.settings import DiarisationSettings

    y = trimmed(Path(path))
    return [clip_embedding(y, c, settings=DiarisationSettings()) for c in CONDITIONS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=WHITENING)
    parser.add_argument("--jobs", type=int, default=2, help="processes (2)")
    args = parser.parse_args()
    clips = [c for c in corpus_clips() if c.speaker in FIT_SPEAKERS]
    if not clips:
        sys.exit("no corpora: set CALLSORT_DATASETS")
    started = time.perf_counter()
    paths = [str(c.path) for c in clips]
    found = map_on_one_thread(clip_embeddings, paths, jobs=args.jobs, chunksize=16)
    kept = [
        (f"{c.speaker} {condition}", e)
        for c, per_condition in zip(clips, found, strict=True)
        for condition, e in zip(CONDITIONS, per_condition, strict=True)
        if e is not None
    ]
    groups = np.array([g for g, _ in kept])
    embeddings = np.stack([e for _, e in kept]).astype(np.float64)
    assert embeddings.shape[1] == EMBEDDING_DIMS
    matrix = within_speaker_whitening(embeddings, groups, shrinkage=SHRINKAGE)
    speakers = {g.split()[0] for g in groups}
    np.savez(
        args.out,
        whitening=matrix,
        shrinkage=np.float64(SHRINKAGE),
        speakers=np.array(sorted(speakers)),
        conditions=np.array(CONDITIONS),
        n_embeddings=np.int64(len(kept)),
    )
    print(
        f"{len(kept)} clip embeddings of {len(speakers)} speakers "
        f"({time.perf_counter() - started:.0f} s) -> {args.out}"
    )


if __name__ == "__main__":
    main()
