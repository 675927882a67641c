"""CPU seconds per stage of the hand-made features, this checkout against another revision.

Run from the repository root:

    python benchmarks/feature_profile.py --against f26806a    # main before issue 20
    python benchmarks/feature_profile.py --against f26806a --calls 6 --rounds 5

The segments: those ``callsort label`` cuts from the demo recordings
(``sample_recordings/``) and from the first ``--calls`` calls of the
benchmark archive (``benchmarks/throughput.py`` builds it), at 16 kHz as the
features receive them. The other revision's ``callsort/features/spectral.py``
is loaded from git beside this one, with that revision's ``kernels.py`` where it
has one (so the comparison is old code against new, kernels included). A
revision before issue 20 computes each segment on its own, as it always did; a
later one, and this checkout, compute them as labelling does
(``segments_features``, in batches). Rounds alternate between the two in one
process on one core (BLAS limited to one thread), so that a loaded machine
slows both alike; CPU time of this thread (``time.thread_time``), each stage
billed exclusive of the stages it calls. Also checks that both give the same
values. Prints Markdown tables; writes ``benchmarks/results/feature_profile.json``
(``--json``).
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "benchmarks" / "cache"
RESULTS = REPO / "benchmarks" / "results" / "feature_profile.json"

# (module attribute, stage); a stage called from another is billed to itself only
OLD_STAGES = {
    "segment_features": "glue",
    "_spectral_descriptors": "other spectral descriptors",
    "prosody_features": "other prosody",
    "_stft_magnitude": "STFT",
    "_deltas": "MFCC deltas",
    "_rolloff": "roll-off",
    "_zero_crossing_rate": "ZCR",
    "_harmonicity": "harmonicity",
    "_pitch": "pitch: resample to 8 kHz",
    "summarise": "statistics",
    "_summarise_row": "statistics",
    "_at_level": "level",
    "_peak_rate": "other prosody",
    "_band_slope": "other prosody",
}
OLD_LIBROSA = {
    ("feature", "spectral_contrast"): "spectral contrast",
    ("feature", "mfcc"): "other spectral descriptors",
    (None, "power_to_db"): "other spectral descriptors",
    (None, "yin"): "pitch: YIN",
}
NEW_STAGES = {
    "segments_features": "glue",
    "_handmade": "glue",
    "_descriptors": "other spectral descriptors",
    "_by_segment": "other spectral descriptors",
    "_prosody": "other prosody",
    "_stft_magnitudes": "STFT",
    "deltas": "MFCC deltas",
    "spectral_rolloff": "roll-off",
    "zero_crossing_rates": "ZCR",
    "harmonicity": "harmonicity",
    "_pitch": "pitch: resample to 8 kHz",
    "yin_frames": "pitch: YIN",
    "_statistics": "statistics",
    "_at_level": "level",
    "_peak_rate": "other prosody",
    "spectral_contrast": "spectral contrast",
}


class Stages:
    """Exclusive CPU seconds of this thread per named stage."""

    def __init__(self) -> None:
        self.cpu: collections.Counter = collections.Counter()
        self._stack: list[list] = []

    def _bill(self, frame: list) -> None:
        now = time.thread_time()
        self.cpu[frame[0]] += now - frame[1]
        frame[1] = now

    def wrap(self, name: str, function):
        def timed(*args, **kwargs):
            if self._stack:
                self._bill(self._stack[-1])
            self._stack.append([name, time.thread_time()])
            try:
                return function(*args, **kwargs)
            finally:
                self._bill(self._stack.pop())
                if self._stack:
                    self._stack[-1][1] = time.thread_time()

        return timed


def old_module(revision: str):
    """``callsort/features/spectral.py`` as it was at ``revision``, as a module; it
    imports ``callsort/features/kernels.py`` of that revision too, where there is one
    (the module's ``kernels`` attribute, else None)."""
    folder = CACHE / "feature-profile"
    folder.mkdir(parents=True, exist_ok=True)
    kernels_source = _show(revision, "callsort/features/kernels.py")
    kernels = None
    if kernels_source is not None:
        kernels = _load(folder / "kernels_old.py", "kernels_old", kernels_source)
    source = _show(revision, "callsort/features/spectral.py")
    if kernels is not None:
        source = source.replace("from callsort.features.kernels import", "from kernels_old import")
    module = _load(folder / "spectral_old.py", "spectral_old", source)
    module.kernels = kernels
    return module


def _show(revision: str, path: str) -> str | None:
    done = subprocess.run(
        ["git", "show", f"{revision}:{path}"], cwd=REPO, capture_output=True, text=True
    )
    return done.stdout if done.returncode == 0 else None


def _load(path: Path, name: str, source: str):
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def segments(calls: int) -> list[np.ndarray]:
    """The segments labelling cuts from the demo recordings and the first archive calls."""
    from callsort.run import analysis
    from callsort.settings import AnalysisSettings, FeatureSettings

    files = sorted(
        p for p in (REPO / "sample_recordings").iterdir() if p.suffix in {".wav", ".flac"}
    )
    archives = sorted(CACHE.glob("archive-*/calls"), key=lambda p: len(list(p.iterdir())))
    if calls and archives:
        files += sorted(archives[-1].glob("*.wav"))[:calls]
    found: list[np.ndarray] = []
    real = analysis.segments_features

    def capture(batch, settings):
        found.extend(np.array(y, dtype=np.float32) for y in batch)
        return np.zeros((len(batch), len(analysis.feature_names(settings))), np.float32)

    analysis.segments_features = capture
    try:
        for path in files:
            analysis.recording_features(
                path, feature_settings=FeatureSettings(), settings=AnalysisSettings()
            )
    finally:
        analysis.segments_features = real
    return found


def profiled(owners: list[tuple[object, str, str]], run) -> tuple[dict, float, np.ndarray]:
    stages = Stages()
    saved = []
    for owner, attribute, name in owners:
        saved.append((owner, attribute, getattr(owner, attribute)))
        setattr(owner, attribute, stages.wrap(name, getattr(owner, attribute)))
    try:
        started = time.thread_time()
        values = run()
        total = time.thread_time() - started
    finally:
        for owner, attribute, function in reversed(saved):
            setattr(owner, attribute, function)
    return dict(stages.cpu), total, values


def main(argv: list[str] | None = None) -> None:
    import librosa
    from threadpoolctl import threadpool_limits

    import callsort.features.kernels as kernels
    import callsort.features.spectral as new
    from callsort.settings import FeatureSettings

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--against", required=True, help="git revision to compare with")
    parser.add_argument("--calls", type=int, default=6, help="archive calls to add (6)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (3)")
    parser.add_argument("--json", type=Path, default=RESULTS, help="where to write the figures")
    args = parser.parse_args(argv)

    old = old_module(args.against)
    found = segments(args.calls)
    speech_s = sum(len(y) for y in found) / 16000
    settings = FeatureSettings()
    batched_before = hasattr(old, "segments_features")
    if batched_before:
        old_owners = [
            (old if hasattr(old, a) else old.kernels, a, n)
            for a, n in NEW_STAGES.items()
            if hasattr(old, a) or hasattr(old.kernels, a)
        ]
        old_run = lambda: old.segments_features(found, settings=settings)  # noqa: E731
    else:
        old_owners = [(old, a, n) for a, n in OLD_STAGES.items() if hasattr(old, a)]
        for (sub, attribute), name in OLD_LIBROSA.items():
            old_owners.append((librosa.feature if sub else librosa, attribute, name))
        old_run = lambda: np.stack([old.segment_features(y, settings=settings) for y in found])  # noqa: E731
    new_owners = [
        (new if hasattr(new, a) else kernels, a, n)
        for a, n in NEW_STAGES.items()
        if hasattr(new, a) or hasattr(kernels, a)
    ]
    jobs = {
        f"{args.against} ({'batched' if batched_before else 'per segment'})": (old_owners, old_run),
        "this checkout (batched)": (
            new_owners,
            lambda: new.segments_features(found, settings=settings),
        ),
    }
    runs: dict[str, list] = {key: [] for key in jobs}
    with threadpool_limits(limits=1):
        for _, run in jobs.values():  # warm: lazy imports, caches, numba
            run()
        for _ in range(args.rounds):
            for key, (owners, run) in jobs.items():
                runs[key].append(profiled(owners, run))
    values = [r[0][2] for r in runs.values()]
    before, after = values[0].astype(np.float64), values[1].astype(np.float64)
    difference = float(np.abs(before - after).max())
    # relative to the value where it is not near zero (skew, kurtosis, slopes can be)
    sizable = np.abs(before) >= 1e-3
    relative = float((np.abs(before - after)[sizable] / np.abs(before[sizable])).max(initial=0.0))
    stages = sorted(
        {name for r in runs.values() for cpu, _, _ in r for name in cpu},
        key=lambda n: -np.median([cpu.get(n, 0.0) for cpu, _, _ in runs[next(iter(runs))]]),
    )
    table = {
        key: {
            "stages_cpu_s": {n: float(np.median([c.get(n, 0.0) for c, _, _ in r])) for n in stages},
            "total_cpu_s": float(np.median([t for _, t, _ in r])),
            "rounds_cpu_s": [t for _, t, _ in r],
        }
        for key, r in runs.items()
    }
    keys = list(table)
    lines = [
        f"{len(found)} segments, {speech_s:.0f} s of speech; exclusive CPU s per stage, median "
        f"of {args.rounds} alternating rounds; load average {os.getloadavg()[0]:.1f}; "
        f"largest difference between the two: {difference:g} "
        f"(relative, where a value is 1e-3 or more: {relative:g})",
        "",
        "| stage | " + " | ".join(keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    for name in stages:
        cells = " | ".join(f"{table[k]['stages_cpu_s'][name]:.3f}" for k in keys)
        lines.append(f"| {name} | {cells} |")
    totals = " | ".join(f"**{table[k]['total_cpu_s']:.3f}**" for k in keys)
    lines.append(f"| all | {totals} |")
    ratio = table[keys[0]]["total_cpu_s"] / table[keys[1]]["total_cpu_s"]
    lines += ["", f"{keys[1]} takes 1/{ratio:.2f} of the CPU time of {keys[0]}."]
    report = "\n".join(lines)
    print(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        "command": " ".join(["python", "benchmarks/feature_profile.py", *sys.argv[1:]]),
        "segments": len(found),
        "speech_s": speech_s,
        "load_average": list(os.getloadavg()),
        "max_abs_difference": difference,
        "max_relative_difference": relative,
        "runs": table,
        "markdown": report,
    }
    args.json.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nfigures written to {os.path.relpath(args.json, REPO)}")


if __name__ == "__main__":
    main()
