"""Nightly-run benchmark: memory of long recordings, and the cost of a run with nothing to do.

Run from the repository root (about 10 minutes on 2 cores, most of it the
default model's encoder on the 3-hour file; the audio is built once into
``benchmarks/cache/`` and reused):

    python benchmarks/nightly.py
    python benchmarks/nightly.py --long-minutes 30 --rows 2000 --skip-large   # a quick check
    python benchmarks/nightly.py --model-dir-default DIR --model-dir-fast DIR  # other models

Measured:

* **Peak memory per worker**, for each model of ``--models`` (the shipped
  ``default``, with Whisper base's encoder, and ``fast``, hand-made features
  only; ``--model-dir-default``/``--model-dir-fast`` run other folders in their
  place), for one stereo 8 kHz mu-law call of ``--short-minutes`` (10) and of
  ``--long-minutes`` (180), built by looping the stereo demo calls of
  ``sample_recordings/``: ``callsort label FILE --out DIR --jobs 1 --model M``
  in a fresh process, which analyses the recording itself (one recording is
  never sent to a pool), so its peak resident set size (from ``wait4``) is
  what one worker needs, libraries, model and encoder included. A one-second
  file gives the floor. Targets: under 1 GB for the default model (issue 12),
  under 500 MB for the fast one (the earlier target, set for the hand-made
  features).
* **A run with nothing to do**: an archive of ``--rows`` (10,000) short
  recordings is labelled once for real (``--jobs 2``), then labelled again
  (``--repeats`` times): end-to-end wall time of the whole command, and of the
  planning inside it (walk the archive, stat every file, read the manifest,
  compare). Unless ``--skip-large``, the same for ``--large-rows`` (100,000)
  files whose manifest is copied from the real one's rows (the run cannot tell
  the difference: same schema, same fingerprint, the files' real size and
  mtime), plus the cost of one commit on a manifest that size. These runs use
  the first model of ``--models`` (planning does not depend on it).

Prints the figures and writes them to ``benchmarks/results/<--name>.json``
(default ``nightly``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "benchmarks" / "cache"
RESULTS = REPO / "benchmarks" / "results"
SAMPLES = REPO / "sample_recordings"
CALL_SR = 8000
TARGETS = {
    "peak_rss_mb_per_worker": {"default": 1000.0, "fast": 500.0},
    "noop_rerun_s_per_10k_rows": 1.0,
}
SHIPPED = ("default", "fast")


# --- audio --------------------------------------------------------------------------------


def long_call(minutes: float) -> Path:
    """A stereo 8 kHz mu-law WAV of ``minutes``: the stereo demo calls looped, written block by block."""
    target = CACHE / f"nightly-stereo-{minutes:g}min.wav"
    return demo_loop(target, minutes, CALL_SR, format="WAV", subtype="ULAW")


def demo_loop(target: Path, minutes: float, rate: int, **format_options) -> Path:
    """The stereo demo calls looped to ``minutes`` at ``rate`` into ``target`` (reused when
    it is there), written block by block; ``format_options`` for ``soundfile.SoundFile``."""
    n = round(minutes * 60 * rate)
    if target.is_file() and abs(sf.info(str(target)).frames - n) < rate:
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    demo = [
        sf.read(str(p), dtype="float32", always_2d=True) for p in sorted(SAMPLES.glob("call_*.wav"))
    ]
    assert all(sr == CALL_SR and a.shape[1] == 2 for a, sr in demo), "demo calls are 8 kHz stereo"
    audio = [a for a, _ in demo]
    if rate != CALL_SR:
        import soxr

        audio = [soxr.resample(a, CALL_SR, rate) for a in audio]
    tmp = target.with_name(f"partial-{target.name}")  # the extension tells the format
    written = 0
    with sf.SoundFile(str(tmp), "w", rate, 2, **format_options) as f:
        while written < n:
            for a in audio:
                chunk = a[: n - written]
                f.write(chunk)
                written += len(chunk)
                if written >= n:
                    break
    os.replace(tmp, target)
    return target


def one_second() -> Path:
    target = CACHE / "nightly-stereo-1s.wav"
    if not target.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        audio, _ = sf.read(str(SAMPLES / "call_01_escalation.wav"), frames=CALL_SR, dtype="float32")
        sf.write(str(target), audio, CALL_SR, subtype="ULAW", format="WAV")
    return target


def small_archive(rows: int) -> Path:
    """``rows`` recordings of 0.2 s of quiet noise, 100 per day folder."""
    folder = CACHE / f"nightly-archive-{rows}"
    marker = folder / ".complete"
    if marker.is_file():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(round(0.2 * CALL_SR)) * 1e-3).astype(np.float32)
    template = folder / "template.wav"
    folder.mkdir(parents=True)
    sf.write(str(template), audio, CALL_SR, subtype="PCM_16")
    data = template.read_bytes()
    template.unlink()
    for i in range(rows):
        day = folder / f"day{i // 100:04d}"
        day.mkdir(exist_ok=True)
        (day / f"call_{i:06d}.wav").write_bytes(data)
    marker.write_text("")
    return folder


# --- measuring ----------------------------------------------------------------------------


def callsort(*args: object) -> tuple[int, float, float]:
    """Run ``python -m callsort ARGS``; (exit code, wall seconds, peak RSS in MB of that process)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "callsort", *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise SystemExit(f"callsort {' '.join(map(str, args))} exited {code}:\n{stderr}")
    peak_mb = usage.ru_maxrss / 1024 if sys.platform != "darwin" else usage.ru_maxrss / 2**20
    LAST_CPU_S[0] = usage.ru_utime + usage.ru_stime  # of that process: free of others' load
    return code, wall, peak_mb


LAST_CPU_S = [0.0]


def model_facts(key: str, override: Path | None) -> tuple[str, dict]:
    """What ``--model`` gets for the model playing ``key``, and its card's facts."""
    from callsort.model.card import CARD_FILE, model_folder

    argument = key if override is None else str(override.resolve())
    card_file = model_folder(argument) / CARD_FILE
    if not card_file.is_file():
        raise SystemExit(
            f"no model card for the {key} model ({card_file.name} missing): train one "
            f"(callsort train ... --out DIR) and pass --model-dir-{key} DIR"
        )
    card = json.loads(card_file.read_text())
    facts = {
        "model": argument if override is None else f".../{override.resolve().name}",
        "shipped": override is None,
        "version": card.get("version"),
        "encoder": card.get("feature_settings", {}).get("encoder"),
    }
    return argument, facts


def memory(short_minutes: float, long_minutes: float, model: str = "default") -> dict:
    results = {}
    for name, path in (
        ("floor_1s", one_second()),
        (f"stereo_{short_minutes:g}min", long_call(short_minutes)),
        (f"stereo_{long_minutes:g}min", long_call(long_minutes)),
    ):
        with tempfile.TemporaryDirectory() as out:
            code, wall, peak = callsort(
                "label", path, "--out", out, "--jobs", 1, "--model", model, "--quiet"
            )
            calls = json.loads(next(Path(out, "runs").glob("*.json")).read_text())
        info = sf.info(str(path))
        results[name] = {
            "file": str(path.relative_to(REPO)),
            "duration_s": round(info.duration, 1),
            "channels": info.channels,
            "file_mb": round(path.stat().st_size / 2**20, 1),
            "peak_rss_mb": round(peak, 1),
            "wall_s": round(wall, 2),
            "cpu_s": round(LAST_CPU_S[0], 2),
            "exit_code": code,
            "processed_ok": calls["counts"]["processed_ok"],
        }
        print(
            f"  {name:<16} {info.duration / 60:7.1f} min  peak RSS {peak:7.1f} MB  "
            f"wall {wall:6.1f} s",
            flush=True,
        )
    return results


def plan_seconds(archive: Path, dataset: Path, model: str = "default") -> float:
    """Planning alone, in this process: walk, stat, read the manifest, compare."""
    from callsort.audio.discover import find_recordings
    from callsort.dataset.manifest import fingerprint, plan
    from callsort.dataset.store import DatasetStore
    from callsort.model.card import model_folder
    from callsort.settings import AnalysisSettings

    started = time.perf_counter()
    recordings = find_recordings([archive], skip=[dataset])
    fp = fingerprint(model_folder(model), AnalysisSettings())
    todo = plan(recordings, DatasetStore(dataset).manifest_index(), fingerprint=fp.value)
    elapsed = time.perf_counter() - started
    assert not todo.pending, f"{len(todo.pending)} recordings would be processed"
    return elapsed


def noop(rows: int, repeats: int, dataset: Path, archive: Path, model: str = "default") -> dict:
    walls, cpus = [], []
    for _ in range(repeats):
        code, wall, _ = callsort("label", archive, "--out", dataset, "--model", model, "--quiet")
        cpus.append(LAST_CPU_S[0])
        summary = json.loads(sorted((dataset / "runs").glob("*.json"))[-1].read_text())
        assert summary["counts"]["skipped_unchanged"] == rows, summary["counts"]
        assert summary["counts"]["processed_ok"] + summary["counts"]["failed"] == 0
        walls.append(wall)
    planning = [plan_seconds(archive, dataset, model) for _ in range(repeats)]
    startup = [callsort("--version")[1] for _ in range(repeats)]
    result = {
        "rows": rows,
        "end_to_end_wall_s": {
            "best": round(min(walls), 3),
            "median": round(statistics.median(walls), 3),
        },
        "end_to_end_cpu_s": {
            "best": round(min(cpus), 3),
            "median": round(statistics.median(cpus), 3),
        },
        "planning_s": {
            "best": round(min(planning), 3),
            "median": round(statistics.median(planning), 3),
        },
        "python_startup_s": round(min(startup), 3),
        "end_to_end_s_per_10k_rows": round(statistics.median(walls) / rows * 10_000, 3),
        "planning_s_per_10k_rows": round(statistics.median(planning) / rows * 10_000, 3),
    }
    print(
        f"  {rows:>7} rows: no-op run {statistics.median(walls):.2f} s end to end "
        f"(CPU {statistics.median(cpus):.2f} s) "
        f"({result['end_to_end_s_per_10k_rows']:.3f} s per 10k rows), planning "
        f"{statistics.median(planning):.3f} s, bare `callsort --version` {min(startup):.2f} s",
        flush=True,
    )
    return result


def build_large(rows: int, small_dataset: Path, workdir: Path) -> tuple[Path, Path]:
    """An archive of ``rows`` files and a dataset whose manifest lists them all as done."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from callsort.audio.discover import find_recordings, recording_id

    archive = small_archive(rows)
    dataset = workdir / "large-dataset"
    shutil.copytree(small_dataset, dataset)
    template = pq.read_table(small_dataset / "manifest.parquet").to_pylist()
    recordings = find_recordings([archive], skip=[dataset])
    rows_out = []
    for i, rec in enumerate(recordings):
        st = os.stat(rec.path)
        row = dict(template[i % len(template)])
        row.update(
            recording=rec.name,
            recording_id=recording_id(rec.name),
            size_bytes=st.st_size,
            mtime_ns=st.st_mtime_ns,
        )
        rows_out.append(row)
    schema = pq.read_schema(small_dataset / "manifest.parquet")
    pq.write_table(pa.Table.from_pylist(rows_out, schema=schema), dataset / "manifest.parquet")
    (dataset / "runs").mkdir(exist_ok=True)
    for old in (dataset / "runs").glob("*.json"):
        old.unlink()
    return archive, dataset


def commit_cost(dataset: Path, archive: Path, batch: int = 200, model: str = "default") -> dict:
    """One commit of ``batch`` (failed) recordings into a dataset with a large manifest."""
    from callsort.audio.discover import Recording
    from callsort.dataset.manifest import Pending, fingerprint
    from callsort.dataset.store import DatasetStore
    from callsort.model.card import model_folder
    from callsort.run.worker import failure
    from callsort.settings import AnalysisSettings

    fp = fingerprint(model_folder(model), AnalysisSettings())
    data = DatasetStore(dataset)
    data.prepare()
    started = time.perf_counter()
    n = len(data.manifest_table())
    read_s = time.perf_counter() - started
    items = []
    for i in range(batch):
        rec = Recording(path=archive / f"new_{i}.wav", name=f"bench-new/new_{i}.wav")
        items.append(
            (Pending(rec, 1, 1, "", "2026-12-31", "new"), failure(rec, "benchmark row", 0.0))
        )
    started = time.perf_counter()
    data.commit(
        items,
        classes=fp.classes,
        model_version=fp.model_version,
        fingerprint=fp.value,
        run_id="bench",
        sequence=0,
    )
    commit_s = time.perf_counter() - started
    print(
        f"  commit of {batch} recordings on a {n}-row manifest: {commit_s:.3f} s "
        f"(reading the manifest {read_s:.3f} s)",
        flush=True,
    )
    return {
        "manifest_rows": n,
        "batch": batch,
        "commit_s": round(commit_s, 3),
        "read_s": round(read_s, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--short-minutes", type=float, default=10)
    parser.add_argument("--long-minutes", type=float, default=180)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--large-rows", type=int, default=100_000)
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--models",
        default="default,fast",
        help="models whose memory is measured, comma-separated (default,fast)",
    )
    for key in SHIPPED:
        parser.add_argument(
            f"--model-dir-{key}",
            type=Path,
            metavar="DIR",
            help=f"a model folder to run as the {key} model (default: the shipped {key!r})",
        )
    parser.add_argument("--name", default="nightly")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONPATH", str(REPO))
    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    if not keys or not set(keys) <= set(SHIPPED):
        raise SystemExit(f"--models: choose among {', '.join(SHIPPED)}")
    overrides = {"default": args.model_dir_default, "fast": args.model_dir_fast}
    models = {key: model_facts(key, overrides[key]) for key in keys}

    # no machine's paths in the results
    shown_args = [f".../{Path(a).name}" if a.startswith("/") else a for a in sys.argv[1:]]
    figures: dict = {
        "command": " ".join(["python", "benchmarks/nightly.py", *shown_args]),
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "models": {key: facts for key, (_, facts) in models.items()},
        "targets": {
            "peak_rss_mb_per_worker": {
                k: v for k, v in TARGETS["peak_rss_mb_per_worker"].items() if k in models
            },
            "noop_rerun_s_per_10k_rows": TARGETS["noop_rerun_s_per_10k_rows"],
        },
        "memory": {},
    }
    for key, (argument, facts) in models.items():
        encoder = f"{facts['encoder']} encoder" if facts["encoder"] else "no encoder"
        print(
            f"peak memory of the process analysing one recording (--jobs 1), {key} model "
            f"{facts['version']} ({encoder}):",
            flush=True,
        )
        figures["memory"][key] = memory(args.short_minutes, args.long_minutes, argument)

    first = models[keys[0]][0]
    print(f"a run with nothing to do ({keys[0]} model):", flush=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as work:
        archive = small_archive(args.rows)
        dataset = Path(work) / "dataset"
        code, wall, _ = callsort(
            "label", archive, "--out", dataset, "--quiet", "--jobs", 2, "--model", first
        )
        print(f"  first run over {args.rows} recordings: {wall:.1f} s (exit {code})", flush=True)
        figures["first_run"] = {"rows": args.rows, "model": keys[0], "wall_s": round(wall, 1)}
        figures["noop"] = [noop(args.rows, args.repeats, dataset, archive, first)]
        if not args.skip_large:
            big_archive, big_dataset = build_large(args.large_rows, dataset, Path(work))
            figures["noop"].append(
                noop(args.large_rows, args.repeats, big_dataset, big_archive, first)
            )
            figures["commit_on_large_manifest"] = commit_cost(big_dataset, big_archive, model=first)

    peak_per_worker = {}
    for key, found in figures["memory"].items():
        peaks = [v["peak_rss_mb"] for k, v in found.items() if k != "floor_1s"]
        target = TARGETS["peak_rss_mb_per_worker"][key]
        peak_per_worker[key] = {
            "peak_rss_mb": max(peaks),
            "target_mb": target,
            "under_target": max(peaks) < target,
            "long_vs_short_peak_mb": round(peaks[1] - peaks[0], 1),
        }
    figures["verdict"] = {
        "peak_rss_per_worker": peak_per_worker,
        "peak_rss_under_target": all(p["under_target"] for p in peak_per_worker.values()),
        "noop_wall_under_target": all(
            n["end_to_end_s_per_10k_rows"] < TARGETS["noop_rerun_s_per_10k_rows"]
            for n in figures["noop"]
        ),
        "noop_cpu_under_target": all(
            n["end_to_end_cpu_s"]["median"] / n["rows"] * 10_000
            < TARGETS["noop_rerun_s_per_10k_rows"]
            for n in figures["noop"]
        ),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    target = RESULTS / f"{args.name}.json"
    target.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures["verdict"]))
    print(f"written to {target.relative_to(REPO)}")


if __name__ == "__main__":
    main()
