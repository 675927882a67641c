"""openSMILE eGeMAPSv02 functionals over an archive, the way a user would write it.

The baseline that ``benchmarks/throughput.py`` times end to end beside ``callsort
label``, in a fresh process of its own:

    python benchmarks/opensmile_archive.py ARCHIVE --out DIR [--processes 2] [--chunk-s 4]

Walks ``ARCHIVE`` for audio files, and in a pool of ``--processes`` worker
processes, one file at a time each: decodes it with soundfile, resamples it to
16 kHz with soxr (what ``librosa.load(sr=16000)`` does), cuts every channel into
``--chunk-s`` second chunks (the last one shorter) and runs
``opensmile.Smile(eGeMAPSv02, Functionals).process_signal`` on each chunk. The 88
functionals per chunk, with file, channel, start and end, are written to
``DIR/features.csv``. Needs the ``bench`` extra (``pip install -e ".[bench]"``).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
from pathlib import Path

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3"}
SR = 16_000

_smile = None


def _start_worker() -> None:
    global _smile
    import opensmile

    _smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02,
        feature_level=opensmile.FeatureLevel.Functionals,
    )


def _one_file(job: tuple[str, float]):
    import numpy as np
    import pandas as pd
    import soundfile as sf
    import soxr

    path, chunk_s = job
    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    if sr != SR:
        audio = soxr.resample(audio, sr, SR)
    step = round(chunk_s * SR)
    frames = []
    for channel in range(audio.shape[1]):
        y = np.ascontiguousarray(audio[:, channel])
        for start in range(0, len(y), step):
            features = _smile.process_signal(y[start : start + step], SR)
            features = features.reset_index(drop=True)
            features.insert(0, "end_s", min(start + step, len(y)) / SR)
            features.insert(0, "start_s", start / SR)
            features.insert(0, "channel", channel)
            features.insert(0, "file", path)
            frames.append(features)
    return pd.concat(frames, ignore_index=True) if frames else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("archive", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--chunk-s", type=float, default=4.0)
    args = parser.parse_args(argv)

    import pandas as pd

    files = sorted(
        str(p)
        for p in args.archive.rglob("*")
        if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()
    )
    with multiprocessing.Pool(args.processes, initializer=_start_worker) as pool:
        tables = [
            t
            for t in pool.imap(_one_file, [(f, args.chunk_s) for f in files], chunksize=1)
            if t is not None
        ]
    args.out.mkdir(parents=True, exist_ok=True)
    table = pd.concat(tables, ignore_index=True)
    table.to_csv(args.out / "features.csv", index=False)
    print(f"{len(files)} files, {len(table)} chunks -> {os.path.join(args.out, 'features.csv')}")


if __name__ == "__main__":
    main()
