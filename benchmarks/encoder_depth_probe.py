"""Issue 20 probe: does the default model need all six of Whisper base's encoder layers?

The encoder is 93 % of the default model's time (benchmarks/results/throughput.json), and
its cost grows with its depth. This probe runs the shipped encoder weights cut after
``--depths`` layers (CTranslate2 builds as many layers as ``model.bin`` holds; the final
layer norm is kept) on the same clips, side by side (each worker process one core):

* **time**: wall seconds of each depth encoding the same 100 clips in this process (one
  thread, nothing else running; rounds alternate between the depths, median of 5), and
  its speed against six layers;
* **what the embedding knows**: a linear probe (standardised mean and standard deviation
  of the last layer's frames, scikit-learn's logistic regression) of calm / happy / sad /
  angry, speaker-independent: RAVDESS's 6 folds (fold k tests actors 4k+1..4k+4), and
  across corpora (trained on one corpus, tested on the other), for clean clips and for
  the same clips as 8 kHz mu-law files read back by ``callsort label``'s decode path.

A probe is not the shipped model (which adds the hand-made features and LightGBM): it
says whether a shallower encoder keeps what the embedding carries, before a retrain.
Needs the corpora (``CALLSORT_DATASETS``, default ../shared/datasets). From the repo root:

    python benchmarks/encoder_depth_probe.py              # about 15 min on 2 cores

Writes ``benchmarks/results/encoder-depth-probe.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATASETS = Path(os.environ.get("CALLSORT_DATASETS", REPO.parent / "shared" / "datasets"))
RESULTS = REPO / "benchmarks" / "results" / "encoder-depth-probe.json"
CLASSES = ("angry", "calm", "happy", "sad")
CONDITIONS = ("clean", "telephone")


def encoders(depths: list[int]) -> dict:
    """CTranslate2 Whispers of the shipped weights, each cut after ``depth`` layers."""
    import json as js

    import ctranslate2

    from callsort.features import encoder as enc
    from callsort.features.ct2_file import read_model_file, write_model_file

    out = {}
    for depth in depths:

        def select(name: str, shape: tuple[int, ...], depth=depth) -> int:
            layer = re.match(r"encoder/layer_(\d+)/", name)
            if layer and int(layer.group(1)) >= depth:
                return 0
            return enc._encoder_and_stub(name, shape)

        files = enc._wheel_files()
        with files["model.bin"] as model_bin:
            weights = read_model_file(model_bin, select=select)
        out[depth] = ctranslate2.models.Whisper(
            enc.WHISPER_BASE,
            device="cpu",
            compute_type=enc.ENCODER_COMPUTE_TYPE,
            intra_threads=1,
            inter_threads=1,
            files={
                "model.bin": write_model_file(weights),
                "config.json": files["config.json"],
                "vocabulary.json": js.dumps(enc.DECODER_TOKENS).encode(),
            },
        )
    return out


def _embed_clips(task: tuple) -> tuple:
    """Embeddings ``{condition: {depth: (clips, 1024)}}`` of the clips ``paths``."""
    import ctranslate2

    from callsort.features.encoder import log_mel_pieces
    from callsort.training.cache import through_telephone_file

    paths, depths = task
    models = encoders(depths)
    out = {c: {d: [] for d in depths} for c in CONDITIONS}
    for path in paths:
        y = _clip(path)
        for condition in CONDITIONS:
            audio = y if condition == "clean" else through_telephone_file(y, codec="mulaw")
            pieces = list(log_mel_pieces(audio))
            for depth, model in models.items():
                pooled, weights = [], []
                for piece in pieces:
                    if piece.shape[1] < 2 and pooled:
                        break
                    hidden = np.asarray(
                        model.encode(ctranslate2.StorageView.from_array(piece[None].copy()))
                    )[0].astype(np.float64)
                    pooled.append(np.concatenate([hidden.mean(axis=0), hidden.std(axis=0)]))
                    weights.append(piece.shape[1])
                out[condition][depth].append(np.average(pooled, axis=0, weights=weights))
    return out


def _clip(path: str) -> np.ndarray:
    import soundfile as sf
    import soxr

    y, sr = sf.read(path, dtype="float32", always_2d=True)
    y = y.mean(axis=1)
    return soxr.resample(y, sr, 16_000).astype(np.float32) if sr != 16_000 else y


def timing(paths: list[str], depths: list[int], rounds: int = 5) -> dict:
    """Wall seconds of each depth encoding the clips ``paths`` (their first 30 s piece),
    in this process, rounds alternating between the depths; the median round."""
    import ctranslate2

    from callsort.features.encoder import log_mel_pieces

    models = encoders(depths)
    pieces = [
        ctranslate2.StorageView.from_array(next(iter(log_mel_pieces(_clip(p))))[None].copy())
        for p in paths
    ]
    seconds: dict[int, list[float]] = {d: [] for d in depths}
    for model in models.values():
        model.encode(pieces[0])  # warm
    for _ in range(rounds):
        for depth, model in models.items():
            started = time.perf_counter()
            for piece in pieces:
                model.encode(piece)
            seconds[depth].append(time.perf_counter() - started)
    wall = {d: float(np.median(v)) for d, v in seconds.items()}
    return {
        "clips": len(paths),
        "wall_s_median": wall,
        "wall_s_rounds": seconds,
        "speed_vs_six_layers": {d: wall[max(depths)] / wall[d] for d in depths},
    }


def macro_f1(train_X, train_y, test_X, test_y) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=2000))
    probe.fit(train_X, train_y)
    return float(f1_score(test_y, probe.predict(test_X), average="macro"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", default="6,5,4,3", help="layers kept (6: the shipped)")
    parser.add_argument("--nemo-per-class", type=int, default=150, help="nEMO clips per class")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--timing-only", action="store_true", help="rerun the timing into --out's results"
    )
    args = parser.parse_args()
    from callsort.training.corpora import find_clips

    ravdess_dir, nemo_dir = DATASETS / "ravdess-speech-16k", DATASETS / "nemo-speech-16k"
    if not (ravdess_dir.is_dir() and nemo_dir.is_dir()):
        print(f"no corpora under {DATASETS}: nothing measured")
        return
    depths = [int(d) for d in args.depths.split(",")]
    ravdess = [c for c in find_clips(ravdess_dir) if c.label in CLASSES]
    rng = np.random.default_rng(20)
    nemo_all = [c for c in find_clips(nemo_dir) if c.label in CLASSES]
    nemo = []
    for label in CLASSES:
        pool = [c for c in nemo_all if c.label == label]
        nemo += [pool[i] for i in sorted(rng.choice(len(pool), args.nemo_per_class, replace=False))]
    clips = ravdess + nemo
    timed = [str(c.path) for c in clips[:: max(1, len(clips) // 100)]][:100]
    if args.timing_only:
        results = json.loads(args.out.read_text())
        for stale in ("cpu_s", "speed_vs_six_layers"):  # an earlier layout's timing
            results.pop(stale, None)
        results["time"] = timing(timed, depths)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
        print(json.dumps(results["time"], indent=1))
        return
    started = time.perf_counter()
    chunks = [clips[i :: args.jobs * 8] for i in range(args.jobs * 8)]
    order = [c for chunk in chunks for c in chunk]
    with ProcessPoolExecutor(args.jobs) as pool:
        parts = list(pool.map(_embed_clips, [([str(c.path) for c in ch], depths) for ch in chunks]))
    X = {
        c: {d: np.concatenate([np.array(p[c][d]) for p in parts]) for d in depths}
        for c in CONDITIONS
    }
    y = np.array([c.label for c in order])
    in_ravdess = {c.path for c in ravdess}
    corpus = np.array(["ravdess" if c.path in in_ravdess else "nemo" for c in order])
    actor = np.array(
        [int(c.path.name.split("-")[6][:2]) if c.path in in_ravdess else 0 for c in order]
    )
    results: dict = {
        "command": "python benchmarks/encoder_depth_probe.py " + " ".join(sys.argv[1:]),
        "clips": {"ravdess": len(ravdess), "nemo": len(nemo)},
        "nemo_speakers": sorted({c.speaker for c in nemo}),
        "probe": {},
        "wall_s": None,
    }
    for condition in CONDITIONS:
        for d in depths:
            Xd = X[condition][d]
            r = corpus == "ravdess"
            folds = []
            for k in range(6):
                test = r & (actor >= 4 * k + 1) & (actor <= 4 * k + 4)
                folds.append(macro_f1(Xd[r & ~test], y[r & ~test], Xd[test], y[test]))
            n = corpus == "nemo"
            results["probe"][f"{condition} depth {d}"] = {
                "ravdess_6_folds_macro_f1": float(np.mean(folds)),
                "ravdess_folds": folds,
                "ravdess_to_nemo_macro_f1": macro_f1(Xd[r], y[r], Xd[n], y[n]),
                "nemo_to_ravdess_macro_f1": macro_f1(Xd[n], y[n], Xd[r], y[r]),
            }
            print(condition, d, json.dumps(results["probe"][f"{condition} depth {d}"]), flush=True)
    results["wall_s"] = time.perf_counter() - started
    results["time"] = timing(timed, depths)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "probe"}, indent=1))


if __name__ == "__main__":
    main()
