"""How far callsort's output moves between the code paths of different CPUs.

Run from the repository root (about 10 minutes on 2 cores):

    python benchmarks/cpu_paths.py

CTranslate2 picks its kernels by CPU: an instruction set (``CT2_FORCE_CPU_ISA``:
GENERIC, AVX, AVX2, AVX512 where the CPU has it) and, for int8, a GEMM library
(Intel MKL on Intel CPUs, oneDNN elsewhere; ``CT2_USE_MKL=1`` takes MKL anywhere).
NumPy (``NPY_DISABLE_CPU_FEATURES``) and OpenBLAS (``OPENBLAS_CORETYPE``) choose
theirs too. Each path below is one fresh process with those variables set, labelling
the five demo calls in ``sample_recordings/`` with the default model through
``callsort.label(..., jobs=1)`` (the label pipeline in that process), embedding
:func:`callsort.features.encoder.reference_signal`, and predicting the synthetic
recording of ``tests/shipped_predictions.py``. ``--compute int8`` paths run the
encoder as callsort did before (int8), for comparison.

Figures, each path against ``baseline`` (float32, the CPU's own choices): the
largest difference of a segment probability, the segments whose label differs (with
the larger of their two top-two margins), the largest difference of a calls-table
figure (shares, ``angry_share_last_third``, ``peak_p_angry``, ``escalation_score``);
and the reference embedding's distance from ``callsort/models/encoder/reference.npy``
(a fraction of its norm). ``embedding_differences``: how far each float32 path's
reference embedding is from the baseline's, value by value. ``sensitivity``: how far
the demo calls' probabilities move (largest over 30 draws) when the encoder's embedding,
and nothing else, is perturbed by Gaussian noise of a given size relative to each
value's magnitude: the margin of the README's promise (``scripts/readme_examples.py``:
``MACHINE_TOLERANCE``) against float32 differences larger than those measured here.
``encoder_cpu``: the CPU time of the encoder in int8 and in float32, side by side.
``--skip-paths`` remeasures these three and rewrites them in the results file.

Prints the figures and writes them to ``benchmarks/results/cpu-paths.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "cpu-paths.json"
SAMPLES = REPO / "sample_recordings"
PROBABILITIES = ["p_angry", "p_calm", "p_happy", "p_sad"]
CALL_FIGURES = [
    "share_angry", "share_calm", "share_happy", "share_sad", "angry_share_last_third",
    "peak_p_angry", "escalation_score",
]  # fmt: skip
OLD_MACHINE = {
    "CT2_FORCE_CPU_ISA": "GENERIC",
    "NPY_DISABLE_CPU_FEATURES": "X86_V3",
    "OPENBLAS_CORETYPE": "Sandybridge",
}
"""A CPU without AVX2 as far as CTranslate2, NumPy and OpenBLAS can be told so."""
PATHS: dict[str, tuple[str, dict[str, str]]] = {
    "baseline": ("float32", {}),
    "ct2-generic": ("float32", {"CT2_FORCE_CPU_ISA": "GENERIC"}),
    "ct2-avx": ("float32", {"CT2_FORCE_CPU_ISA": "AVX"}),
    "ct2-avx2": ("float32", {"CT2_FORCE_CPU_ISA": "AVX2"}),
    "mkl": ("float32", {"CT2_USE_MKL": "1"}),
    "mkl-generic": ("float32", {"CT2_USE_MKL": "1", "CT2_FORCE_CPU_ISA": "GENERIC"}),
    "old-machine": ("float32", OLD_MACHINE),
    "int8": ("int8", {}),
    "int8-ct2-generic": ("int8", {"CT2_FORCE_CPU_ISA": "GENERIC"}),
    "int8-ct2-avx": ("int8", {"CT2_FORCE_CPU_ISA": "AVX"}),
    "int8-mkl": ("int8", {"CT2_USE_MKL": "1"}),
    "int8-mkl-generic": ("int8", {"CT2_USE_MKL": "1", "CT2_FORCE_CPU_ISA": "GENERIC"}),
    "int8-mkl-avx": ("int8", {"CT2_USE_MKL": "1", "CT2_FORCE_CPU_ISA": "AVX"}),
}
NOISE = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 1e-2)
"""Relative sizes of the perturbations of ``sensitivity`` (``embedding_differences``: the
float32 paths' embeddings differ by about 1e-6 of a value, 1e-4 for the 1 % nearest 0)."""


def one_path(compute: str) -> dict:
    """This process's output (run by :func:`measure` with a path's environment)."""
    import callsort.settings

    callsort.settings.ENCODER_COMPUTE_TYPE = compute  # before the encoder module is imported
    import callsort
    from callsort.features.encoder import Encoder, reference_embedding, reference_signal

    sys.path.insert(0, str(REPO / "tests"))
    from shipped_predictions import predictions

    start = time.process_time()
    segments, calls = callsort.label([SAMPLES], model="default", jobs=1)
    label_cpu_s = time.process_time() - start
    expected = reference_embedding()
    got = Encoder().embed([reference_signal()])[0]
    segments = segments.sort_values(["recording", "channel", "segment_index"])
    calls = calls.sort_values(["recording", "channel"])
    return {
        "label_cpu_s": round(label_cpu_s, 2),
        "reference_distance": float(np.linalg.norm(got - expected) / np.linalg.norm(expected)),
        "segments": segments[["recording", "channel", "start_s", "end_s", "label", *PROBABILITIES]]
        .astype({"start_s": float, "end_s": float})
        .to_dict("list"),
        "calls": calls[["recording", "channel", "dominant_label", "escalated", *CALL_FIGURES]]
        .astype({"escalated": bool})
        .to_dict("list"),
        "shipped": predictions("default")["proba"],
    }


def measure(name: str) -> dict:
    compute, env = PATHS[name]
    with tempfile.TemporaryDirectory() as numba_cache:
        proc = subprocess.run(
            [sys.executable, __file__, "--one", compute],
            env={
                **os.environ,
                "PYTHONPATH": str(REPO),
                "NUMBA_CACHE_DIR": numba_cache,
                **env,
            },
            capture_output=True,
            text=True,
            check=False,
        )
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(a: dict, b: dict) -> dict:
    """How far output ``b`` is from output ``a``."""
    key = ("recording", "channel", "start_s", "end_s")
    rows_a = list(zip(*(a["segments"][k] for k in key), strict=True))
    assert rows_a == list(zip(*(b["segments"][k] for k in key), strict=True)), "segments differ"
    pa = np.array([a["segments"][p] for p in PROBABILITIES]).T
    pb = np.array([b["segments"][p] for p in PROBABILITIES]).T
    flipped = np.flatnonzero(np.array(a["segments"]["label"]) != np.array(b["segments"]["label"]))

    def margin(p: np.ndarray) -> np.ndarray:
        top = np.sort(p, axis=1)
        return top[:, -1] - top[:, -2]

    ca = np.array([a["calls"][f] for f in CALL_FIGURES], dtype=float)
    cb = np.array([b["calls"][f] for f in CALL_FIGURES], dtype=float)
    return {
        "max_probability_difference": round(float(np.abs(pa - pb).max()), 5),
        "labels_differ": len(flipped),
        "their_top_two_margin": [
            round(float(max(margin(pa)[i], margin(pb)[i])), 4) for i in flipped
        ],
        "max_call_figure_difference": round(float(np.nanmax(np.abs(ca - cb))), 5),
        "dominant_labels_differ": _differ(a["calls"], b["calls"], "dominant_label"),
        "escalated_differ": _differ(a["calls"], b["calls"], "escalated"),
        "shipped_max_probability_difference": round(
            float(np.abs(np.array(a["shipped"]) - np.array(b["shipped"])).max()), 5
        ),
    }


EMBED = """
import json
from callsort.features.encoder import Encoder, reference_signal
print(json.dumps(Encoder().embed([reference_signal()])[0].tolist()))
"""


def embedding_differences() -> dict:
    """Per value, how far each float32 path's reference embedding is from the baseline's:
    ``|a - b| / |a|`` (median, 99th percentile, largest) and ``|a - b|`` (largest)."""
    embeddings = {}
    for name, (compute, env) in PATHS.items():
        if compute != "float32":
            continue
        proc = subprocess.run(
            [sys.executable, "-c", EMBED],
            env={**os.environ, "PYTHONPATH": str(REPO), **env},
            capture_output=True,
            text=True,
            check=True,
        )
        embeddings[name] = np.array(json.loads(proc.stdout.strip().splitlines()[-1]))
    base = embeddings.pop("baseline")
    out = {}
    for name, other in embeddings.items():
        relative = np.abs(other - base) / np.maximum(np.abs(base), 1e-12)
        out[name] = {
            "median_relative": float(f"{np.median(relative):.2g}"),
            "p99_relative": float(f"{np.percentile(relative, 99):.2g}"),
            "max_relative": float(f"{relative.max():.2g}"),
            "max_absolute": float(f"{np.abs(other - base).max():.2g}"),
        }
    return out


def encoder_cpu(rounds: int = 3, segments: int = 40) -> dict:
    """CPU seconds of embedding ``segments`` 3 s segments (variants of the reference
    signal) with the encoder in int8 and in float32, alternately in this process, one
    thread each: the best of ``rounds`` for each."""
    import time

    from callsort.features import encoder

    rng = np.random.default_rng(0)
    signal = encoder.reference_signal()
    batch = [
        (signal * (0.3 + i / segments) + 0.01 * rng.standard_normal(len(signal))).astype(np.float32)
        for i in range(segments)
    ]
    models = {}
    for compute in ("int8", "float32"):
        encoder.ENCODER_COMPUTE_TYPE = compute  # read when the encoder is loaded
        models[compute] = encoder.Encoder()
    encoder.ENCODER_COMPUTE_TYPE = "float32"
    best = {compute: float("inf") for compute in models}
    for _ in range(rounds):
        for compute, model in models.items():
            start = time.process_time()
            model.embed(batch)
            best[compute] = min(best[compute], time.process_time() - start)
    return {
        "segments": f"{segments} of 3 s",
        **{f"{compute}_cpu_s": round(t, 2) for compute, t in best.items()},
        "float32_over_int8": round(best["float32"] / best["int8"], 2),
    }


def _differ(a: dict, b: dict, column: str) -> int:
    return int(sum(x != y for x, y in zip(a[column], b[column], strict=True)))


def sensitivity(draws: int = 30) -> dict:
    """Largest probability change on the demo calls when the embedding is perturbed."""
    from callsort.features.encoder import embedding_names
    from callsort.model.folder import load_model
    from callsort.run.analysis import recording_features
    from callsort.run.options import analysis_settings

    model = load_model()
    settings = analysis_settings()
    names = set(embedding_names())
    columns = [i for i, n in enumerate(model.card.feature_names) if n in names]
    channels = []
    for path in sorted(p for p in SAMPLES.iterdir() if p.suffix in (".wav", ".flac")):
        raw = recording_features(path, feature_settings=model.feature_settings, settings=settings)
        channels.extend(X for X in raw.features if len(X))
    base = [model.channel_proba(X) for X in channels]
    rng = np.random.default_rng(0)
    out = {}
    for size in NOISE:
        worst, flips = 0.0, 0
        for _ in range(draws):
            for X, p in zip(channels, base, strict=True):
                noisy = X.copy()
                values = noisy[:, columns]
                noisy[:, columns] = values + size * np.abs(values) * rng.standard_normal(
                    values.shape
                ).astype(np.float32)
                q = model.channel_proba(noisy)
                worst = max(worst, float(np.abs(q - p).max()))
                flips += int((q.argmax(1) != p.argmax(1)).sum())
        out[f"{size:g}"] = {
            "max_probability_difference": round(worst, 5),
            "label_changes_per_draw": flips / draws,
        }
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--paths", default=",".join(PATHS), help="comma-separated")
    parser.add_argument(
        "--skip-paths",
        action="store_true",
        help="measure only what needs no label run per path (embedding differences, "
        "sensitivity, encoder CPU) and rewrite those entries of the results file",
    )
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one_path(args.one)))
        return 0
    if args.skip_paths:
        results = json.loads(RESULTS.read_text(encoding="utf-8"))
        results["embedding_differences"] = embedding_differences()
        results["sensitivity"] = sensitivity()
        results["encoder_cpu"] = encoder_cpu()
        results["skip_paths_when"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        print(json.dumps({k: results[k] for k in ("sensitivity", "encoder_cpu")}))
        RESULTS.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {RESULTS.relative_to(REPO)}")
        return 0
    import ctranslate2

    outputs = {}
    for name in args.paths.split(","):
        outputs[name] = measure(name)
        print(f"{name}: measured", flush=True)
    base = outputs["baseline"]
    paths = {}
    for name, out in outputs.items():
        compute, env = PATHS[name]
        paths[name] = {
            "compute_type": compute,
            "environment": env,
            "label_cpu_s": out["label_cpu_s"],
            "reference_distance": round(out["reference_distance"], 7),
            **({} if name == "baseline" else compare(base, out)),
        }
        print(name, json.dumps(paths[name]))
    int8 = [n for n in outputs if PATHS[n][0] == "int8"]
    spread = {
        f"{a} vs {b}": compare(outputs[a], outputs[b])
        for i, a in enumerate(int8)
        for b in int8[i + 1 :]
    }
    differences = embedding_differences()
    noise = sensitivity()
    print("sensitivity", json.dumps(noise))
    speed = encoder_cpu()
    print("encoder CPU", json.dumps(speed))
    results = {
        "command": "python benchmarks/cpu_paths.py",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.1f}, {_cpu_name()}",
        "ctranslate2": ctranslate2.__version__,
        "numpy": np.__version__,
        "n_segments": len(base["segments"]["label"]),
        "paths": paths,
        "int8_between_paths": spread,
        "embedding_differences": differences,
        "sensitivity": noise,
        "encoder_cpu": speed,
    }
    RESULTS.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS.relative_to(REPO)}")
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                flags = Path("/proc/cpuinfo").read_text()
                isa = "AVX-512" if " avx512f" in flags else "AVX2" if " avx2" in flags else "AVX"
                return f"{line.split(':', 1)[1].strip()} ({isa})"
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
