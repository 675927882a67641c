"""Throughput benchmark: how fast callsort labels a realistic call archive, with each
of its two models, beside openSMILE run over the same recordings.

Run from the repository root (about 20 minutes on 2 idle cores, two thirds of it
openSMILE; the archive is built once, in under a minute, and cached):

    python benchmarks/throughput.py
    python benchmarks/throughput.py --calls 6 --minutes 1 --repeats 2   # a quick check (minutes)
    python benchmarks/throughput.py --model-dir-default DIR --model-dir-fast DIR  # other models

The models: the shipped ``default`` (hand-made features and Whisper base's
encoder embedding, stacked) and ``fast`` (hand-made features only), or the
model folders ``--model-dir-default`` and ``--model-dir-fast`` name instead;
their versions are recorded with the figures.

The archive: ``--calls`` (60) stereo 8 kHz mu-law WAV calls of ``--minutes``
(3) minutes, agent and customer on separate channels, turns of one to four
RAVDESS sentences alternating between the channels with pauses (and a few
overlaps), so that about half of each channel is speech; band-limited to
300-3400 Hz, with line noise. It is built deterministically from
``../shared/datasets/ravdess-speech-16k`` (or by looping
``sample_recordings/`` when the corpus is missing) into ``benchmarks/cache/``
and reused by later runs.

Measured in one run, so that the ratios between them are free of the
machine's background load (absolute times are not):

* end to end, each a fresh process, in rounds (``--repeats``, 3; best run of
  each kept): ``callsort label ARCHIVE --jobs 1`` and ``--jobs 2`` with the
  default model, then the fast model, then openSMILE eGeMAPSv02 functionals
  over the same files the way a user would run them
  (``benchmarks/opensmile_archive.py``: soundfile decode, soxr to 16 kHz, every
  channel in 4-second chunks, a pool of 2 processes, a CSV written; in the first
  ``--opensmile-repeats`` rounds only, if given): recording-seconds per
  wall-second, CPU seconds of the process tree, peak memory. The ratios:
  openSMILE / default model and openSMILE / fast model on 2 cores (targets
  2x and 10x), default / fast;
* a per-stage breakdown for each model (decode, resample, segment, features,
  encoder when the model has one, predict, the rest of the analysis, write):
  callsort's own ``analyse_recording`` with its steps timed, and
  ``DatasetStore.commit`` in batches, in this process on one core;
* on the same speech segments (the default model's pass): callsort's hand-made
  features, its encoder embedding, openSMILE eGeMAPSv02 functionals and
  notebook-style per-file librosa statistics, plus the floor (soundfile decode
  and resample only);
* labelling one 30-second file from a cold start, with each model.

The machine and the code path each run took are recorded: the CPU model,
the kernels OpenBLAS chose (threadpoolctl), numpy's SIMD dispatch and
CTranslate2's instruction set (from its own log). ``--code-path`` runs the whole
benchmark, every process it starts included, on another code path of the same
CPU (see ``CODE_PATHS``): ``native`` unsets ``OPENBLAS_CORETYPE`` and
``OPENBLAS_L2_SIZE`` (some machines set them for old OpenBLAS builds; they slow a
current numpy); ``avx2``, ``avx`` and ``sse4`` cap OpenBLAS
(``OPENBLAS_CORETYPE``), numpy (``NPY_DISABLE_CPU_FEATURES``) and CTranslate2
(``CT2_FORCE_CPU_ISA``) at that instruction set:

    python benchmarks/throughput.py --code-path avx

Prints a Markdown report and writes the figures to
``benchmarks/results/throughput.json`` (``--json``). openSMILE comes from the
``bench`` extra: ``pip install -e ".[bench]"``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "benchmarks" / "cache"
RESULTS = REPO / "benchmarks" / "results" / "throughput.json"
CORPUS = REPO.parent / "shared" / "datasets" / "ravdess-speech-16k"
SAMPLES = REPO / "sample_recordings"

ARCHIVE_FORMAT = 2  # bump when the archive recipe changes: a new cache folder is built
SEED = 2024
CALL_SR = 8000  # Hz, as stored
ANALYSIS_SR = 16000  # Hz, what callsort, openSMILE and the notebook statistics analyse
COLD_FILE_S = 30.0
TURN_SENTENCES = (1, 4)  # sentences per turn, inclusive
SENTENCE_GAP_S = (0.1, 0.3)  # within a turn
TURN_PAUSE_S = (-0.3, 0.8)  # from one turn's end to the next one's start; below 0, they overlap
OPENSMILE_PROCESSES = 2
OPENSMILE_CHUNK_S = 4.0  # benchmarks/opensmile_archive.py's default
TARGETS = {
    # issue 12: end to end on the same recordings, openSMILE run the way a user would
    "default_jobs2_vs_opensmile_speedup": 2.0,
    "fast_jobs2_vs_opensmile_speedup": 10.0,
    # issue 20: the fast model on one core within 5x of decoding and resampling alone
    "fast_floor_vs_jobs1_end_to_end": 5.0,
    # earlier targets, set for the hand-made features (today's fast model)
    "fast_end_to_end_jobs2_x_realtime": 600.0,
    "features_vs_opensmile_speedup": 10.0,
    "default_jobs2_vs_jobs1_speedup": 1.7,
    "fast_jobs2_vs_jobs1_speedup": 1.7,
    "default_cold_start_30s_wall_s": 2.0,
    "fast_cold_start_30s_wall_s": 2.0,
}
LOWER_IS_BETTER = {
    "fast_floor_vs_jobs1_end_to_end",
    "default_cold_start_30s_wall_s",
    "fast_cold_start_30s_wall_s",
}
DESCRIBED = {
    "fast_floor_vs_jobs1_end_to_end": (
        "fast model, `--jobs 1` end to end, <= 5x the decode + resample floor's time",
        "{:.1f}x",
    ),
    "default_jobs2_vs_opensmile_speedup": (
        "default model, `--jobs 2`, >= 2x faster than openSMILE (2 processes) end to end",
        "{:.1f}x",
    ),
    "fast_jobs2_vs_opensmile_speedup": (
        "fast model, `--jobs 2`, >= 10x faster than openSMILE (2 processes) end to end",
        "{:.1f}x",
    ),
    "fast_end_to_end_jobs2_x_realtime": (
        "fast model, end to end `--jobs 2` >= 600x real time",
        "{:,.0f}x",
    ),
    "features_vs_opensmile_speedup": (
        "hand-made features >= 10x faster than openSMILE eGeMAPSv02 on the same segments",
        "{:.1f}x",
    ),
    "default_jobs2_vs_jobs1_speedup": (
        "default model, `--jobs 2` >= 1.7x faster than `--jobs 1`",
        "{:.2f}x",
    ),
    "fast_jobs2_vs_jobs1_speedup": (
        "fast model, `--jobs 2` >= 1.7x faster than `--jobs 1`",
        "{:.2f}x",
    ),
    "default_cold_start_30s_wall_s": (
        "default model, cold start, 30 s file, < 2 s wall (best of runs)",
        "{:.2f} s",
    ),
    "fast_cold_start_30s_wall_s": (
        "fast model, cold start, 30 s file, < 2 s wall (best of runs)",
        "{:.2f} s",
    ),
}


# --- the code path ------------------------------------------------------------------------

AVX512_DISPATCH = "X86_V4 AVX512_ICL AVX512_SPR"  # numpy's dispatch targets above AVX2
CODE_PATHS: dict[str, dict[str, str | None]] = {
    # environment for this process and every process it starts; None unsets
    "as-is": {},
    "native": {"OPENBLAS_CORETYPE": None, "OPENBLAS_L2_SIZE": None},
    "avx2": {
        "OPENBLAS_CORETYPE": "Haswell",
        "NPY_DISABLE_CPU_FEATURES": AVX512_DISPATCH,
        "CT2_FORCE_CPU_ISA": "AVX2",
    },
    "avx": {
        "OPENBLAS_CORETYPE": "Sandybridge",
        "NPY_DISABLE_CPU_FEATURES": f"X86_V3 {AVX512_DISPATCH}",
        "CT2_FORCE_CPU_ISA": "AVX",
    },
    "sse4": {
        "OPENBLAS_CORETYPE": "Nehalem",
        "NPY_DISABLE_CPU_FEATURES": f"X86_V3 {AVX512_DISPATCH}",
        "CT2_FORCE_CPU_ISA": "GENERIC",
    },
}
CODE_PATH_ENV = "CALLSORT_BENCH_CODE_PATH"  # set once the environment is in place
CODE_PATH_VARIABLES = (
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "NPY_DISABLE_CPU_FEATURES",
    "NPY_ENABLE_CPU_FEATURES",
    "CT2_FORCE_CPU_ISA",
    "CT2_USE_MKL",
)


def enter_code_path(name: str) -> None:
    """Run this script again with the environment of the code path ``name`` (numpy and
    OpenBLAS read it when they load, so it cannot be changed in this process)."""
    if os.environ.get(CODE_PATH_ENV) == name:
        return
    env = dict(os.environ)
    for key, value in CODE_PATHS[name].items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    env[CODE_PATH_ENV] = name
    print(f"code path {name}: {CODE_PATHS[name] or 'the environment as it is'}", flush=True)
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def code_path() -> dict:
    """The CPU and the code path this process (and the processes it starts) runs: CPU
    model and SIMD flags, the BLAS library and the kernels it chose, numpy's SIMD
    baseline and dispatch, CTranslate2's instruction set and GEMM backends."""
    from numpy._core import _multiarray_umath as umath
    from threadpoolctl import threadpool_info

    flags: set[str] = set()
    model = platform.processor() or platform.machine()
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    blas = [
        {k: info.get(k) for k in ("internal_api", "architecture", "version", "num_threads")}
        for info in threadpool_info()
        if info.get("user_api") == "blas"
    ]
    return {
        "name": os.environ.get(CODE_PATH_ENV, "as-is"),
        "cpu_model": model,
        "cpu_simd": sorted(flags & {"sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni"}),
        "blas": blas,
        "numpy_simd": {
            "baseline": list(umath.__cpu_baseline__),
            "dispatch": [f for f in umath.__cpu_dispatch__ if umath.__cpu_features__.get(f)],
        },
        "ctranslate2": _ctranslate2_path(),
        "environment": {k: os.environ[k] for k in CODE_PATH_VARIABLES if k in os.environ},
    }


def _ctranslate2_path() -> dict | None:
    """CTranslate2's version, compute types and the CPU facts it logs when it loads a
    model (asked in a child process, with a model folder that does not exist)."""
    try:
        import ctranslate2
    except ImportError:
        return None
    probe = (
        "import ctranslate2\n"
        "try:\n"
        "    ctranslate2.Encoder('/nonexistent-callsort-probe', device='cpu')\n"
        "except Exception:\n"
        "    pass\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, "CT2_VERBOSE": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    logged = {}
    for line in result.stderr.splitlines():
        fact = line.split("[info]", 1)[-1].strip().lstrip("- ")
        key, _, value = fact.partition(":")
        if key in ("CPU", "Selected ISA", "Use Intel MKL", "SGEMM backend", "GEMM_S8 backend"):
            logged[key.lower().replace(" ", "_")] = value.strip()
    return {
        "version": ctranslate2.__version__,
        "compute_types": sorted(ctranslate2.get_supported_compute_types("cpu")),
        **logged,
    }


def describe_code_path(path: dict) -> str:
    """One line: the CPU and the kernels each library runs on it."""
    blas = ", ".join(f"{b['internal_api']} {b['architecture']}" for b in path["blas"]) or "none"
    simd = "/".join(path["numpy_simd"]["dispatch"]) or "baseline only"
    ct2 = path["ctranslate2"]
    ct2_text = f"CTranslate2 {ct2.get('selected_isa', '?')}" if ct2 else "no CTranslate2"
    return (
        f"{path['cpu_model']} ({', '.join(path['cpu_simd'])}); code path `{path['name']}`: "
        f"BLAS {blas}, numpy SIMD {'+'.join(path['numpy_simd']['baseline'])} "
        f"dispatching {simd}, {ct2_text}"
    )


# --- the archive --------------------------------------------------------------------------


@dataclass(frozen=True)
class Archive:
    folder: Path  # holds calls/, cold/ and manifest.json
    calls: list[Path]
    cold_file: Path
    manifest: dict

    @property
    def calls_dir(self) -> Path:
        return self.folder / "calls"

    @property
    def duration_s(self) -> float:
        return float(self.manifest["total_duration_s"])


def archive(calls: int, minutes: float, corpus: Path) -> Archive:
    """The cached archive for these settings, built (deterministically) if missing."""
    source = "ravdess" if corpus.is_dir() else "sample_recordings"
    folder = CACHE / f"archive-v{ARCHIVE_FORMAT}-{source}-{calls}x{minutes:g}min"
    wanted = {"format": ARCHIVE_FORMAT, "source": source, "calls": calls, "minutes": minutes}
    manifest_file = folder / "manifest.json"
    if manifest_file.is_file():
        manifest = json.loads(manifest_file.read_text())
        found = _archive(folder, manifest)
        if {k: manifest.get(k) for k in wanted} == wanted and all(
            p.is_file() for p in [*found.calls, found.cold_file]
        ):
            return found
    print(f"building the benchmark archive in {_rel(folder)} (once) ...", flush=True)
    started = time.perf_counter()
    (folder / "calls").mkdir(parents=True, exist_ok=True)
    (folder / "cold").mkdir(parents=True, exist_ok=True)
    if source == "ravdess":
        stats = _build_from_corpus(folder / "calls", calls, minutes, corpus)
    else:
        stats = _build_from_samples(folder / "calls", calls, minutes)
    first = sorted((folder / "calls").glob("*.wav"))[0]
    audio, sr = sf.read(first, frames=round(COLD_FILE_S * CALL_SR), dtype="float64")
    sf.write(folder / "cold" / "call_30s.wav", audio, sr, format="WAV", subtype="ULAW")
    manifest = {
        **wanted,
        "seed": SEED,
        "sample_rate": CALL_SR,
        "channels": 2,
        "subtype": "ULAW",
        "total_duration_s": calls * round(minutes * 60 * CALL_SR) / CALL_SR,
        "cold_file": "cold/call_30s.wav",
        **stats,
    }
    manifest_file.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"built {calls} calls in {time.perf_counter() - started:.0f} s", flush=True)
    return _archive(folder, manifest)


def _archive(folder: Path, manifest: dict) -> Archive:
    calls = [folder / "calls" / f"call_{i:03d}.wav" for i in range(manifest["calls"])]
    return Archive(folder, calls, folder / manifest.get("cold_file", "cold/call_30s.wav"), manifest)


def _build_from_corpus(out: Path, calls: int, minutes: float, corpus: Path) -> dict:
    """Two-party calls from RAVDESS sentences, in the manner of the demo calls."""
    demo = _demo_script()
    actors: dict[int, list] = {}
    for path in sorted(corpus.glob("Actor_*/03-01-*.flac")):
        _, _, emotion, intensity, statement, repetition, actor = path.stem.split("-")
        clip = demo.Clip(path, int(actor), emotion, int(intensity), int(statement), int(repetition))
        actors.setdefault(int(actor), []).append(clip)
    if len(actors) < 2:
        raise SystemExit(f"too few RAVDESS actors in {corpus}")
    rendered: dict[Path, np.ndarray] = {}

    def sentence(clip) -> np.ndarray:
        if clip.path not in rendered:
            rendered[clip.path] = demo.render_turn(clip, CALL_SR)
        return rendered[clip.path]

    n = round(minutes * 60 * CALL_SR)
    speech_samples = 0
    for index in range(calls):
        rng = np.random.default_rng([SEED, index])
        speakers = rng.choice(sorted(actors), size=2, replace=False)
        audio = np.zeros((n, 2))
        cursor = round(rng.uniform(0.3, 1.0) * CALL_SR)
        channel = 0  # the agent (left) opens
        while True:
            parts = []
            for k in range(rng.integers(TURN_SENTENCES[0], TURN_SENTENCES[1] + 1)):
                if k:
                    parts.append(np.zeros(round(rng.uniform(*SENTENCE_GAP_S) * CALL_SR)))
                pool = actors[int(speakers[channel])]
                parts.append(sentence(pool[rng.integers(len(pool))]))
            turn = np.concatenate(parts)
            if cursor + len(turn) > n - round(0.3 * CALL_SR):
                break
            audio[cursor : cursor + len(turn), channel] += turn
            speech_samples += len(turn)
            cursor += len(turn) + round(rng.uniform(*TURN_PAUSE_S) * CALL_SR)
            channel = 1 - channel
        speech = demo.bandpass(audio, CALL_SR, demo.TELEPHONE_BAND_HZ)
        noise_dbfs = [float(rng.uniform(*demo.LINE_NOISE_DBFS_RANGE)) for _ in range(2)]
        mixed = demo.add_noise_and_normalise(
            speech, noise_dbfs, rng, CALL_SR, demo.TELEPHONE_BAND_HZ
        )
        sf.write(out / f"call_{index:03d}.wav", mixed, CALL_SR, format="WAV", subtype="ULAW")
    return {"turn_speech_share_per_channel": round(speech_samples / (2 * n * calls), 3)}


def _build_from_samples(out: Path, calls: int, minutes: float) -> dict:
    """Without the corpus: the stereo demo calls, looped in a seeded order (the mono
    demo call is left out: the archive is stereo)."""
    stereo = [p for p in sorted(SAMPLES.glob("call_*.wav")) if sf.info(p).channels == 2]
    sources = [sf.read(p, dtype="float64")[0] for p in stereo]
    if not sources:
        raise SystemExit(f"neither the corpus nor stereo demo calls in {_rel(SAMPLES)}")
    n = round(minutes * 60 * CALL_SR)
    for index in range(calls):
        rng = np.random.default_rng([SEED, index])
        parts, length = [], 0
        while length < n:
            parts.append(sources[rng.integers(len(sources))])
            length += len(parts[-1])
        audio = np.concatenate(parts)[:n]
        sf.write(out / f"call_{index:03d}.wav", audio, CALL_SR, format="WAV", subtype="ULAW")
    return {"looped_from": [p.name for p in stereo]}


def _demo_script():
    """scripts/make_sample_recordings.py, whose call-building helpers are reused."""
    spec = importlib.util.spec_from_file_location(
        "make_sample_recordings", REPO / "scripts" / "make_sample_recordings.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# --- end to end: the real command in a fresh process ----------------------------------------


def callsort_command() -> list[str]:
    script = Path(sys.executable).parent / "callsort"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "callsort"]


def run_command(args: list[str], *, program: list[str] | None = None) -> dict:
    """Run ``callsort ARGS`` (or ``PROGRAM ARGS``); wall time, CPU time and peak memory
    of its process tree.

    ``cpu_reaped_s`` comes from ``wait4``: the process and every descendant
    reaped within its tree. The rest is sampled (see ``_TreeSampler``), so it
    also sees descendants never reaped within the tree (a fork server's workers):
    ``cpu_sampled_s``; ``max_rss_mb``, the peak of the largest single process;
    ``tree_rss_mb`` and ``tree_pss_mb``, peaks of the sum over the whole tree
    (RSS counts pages that forked workers share once per process, PSS splits
    them between the sharers). ``cpu_s`` is the larger of the two CPU figures.
    """
    command = [*(callsort_command() if program is None else program), *args]
    with tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        sampler = _TreeSampler(process.pid)
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        sampler.stop()
        stderr.seek(0)
        errors = stderr.read().decode(errors="replace")
    if process.returncode not in (0, 1):
        raise SystemExit(f"{shlex.join(command)} exited {process.returncode}:\n{errors}")
    reaped = usage.ru_utime + usage.ru_stime
    return {
        "wall_s": wall,
        "cpu_s": max(reaped, sampler.cpu_s),
        "cpu_reaped_s": reaped,
        "cpu_sampled_s": sampler.cpu_s,
        "max_rss_mb": max(sampler.hwm_kb.values(), default=0) / 1024,
        "tree_rss_mb": sampler.peak / 2**20,
        "tree_pss_mb": sampler.peak_pss / 2**20,
        "exit_code": process.returncode,
    }


class _TreeSampler(threading.Thread):
    """Every 50 ms, for a process and its descendants: the summed resident
    memory (RSS; its peak is kept), and each one's CPU time and peak resident
    memory (``VmHWM``; the last value seen is kept); every second, the summed
    proportional memory (PSS; its peak is kept).

    The sampled CPU counts the processes that ``wait4`` misses: those the
    command never reaps itself, such as a multiprocessing fork server and the
    workers forked from it. ``VmHWM`` is used because ``ru_maxrss`` of a
    process started from this one includes the pages of this (large) process
    that its fork briefly held before ``exec``.
    """

    # smaps_rollup walks the page tables under the process's memory-map lock: read every
    # 50 ms, it slowed `--jobs 2` on the full archive from 14.3 to 16 s. Every second it
    # costs nothing measurable and finds the same peak.
    PSS_EVERY = 20

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.peak_pss = pid, 0, 0
        self.cpu_ticks: dict[int, int] = {}
        self.hwm_kb: dict[int, int] = {}
        self._done = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")

    @property
    def cpu_s(self) -> float:
        return sum(self.cpu_ticks.values()) / os.sysconf("SC_CLK_TCK")

    def run(self) -> None:
        rounds = -1
        while not self._done.wait(0.05):
            rounds += 1
            total = pss = 0
            for pid in self._tree(self.pid):
                try:
                    with open(f"/proc/{pid}/statm") as f:
                        total += int(f.read().split()[1]) * self._page
                    if rounds % self.PSS_EVERY == 0:
                        with open(f"/proc/{pid}/smaps_rollup") as f:
                            for line in f:
                                if line.startswith("Pss:"):
                                    pss += int(line.split()[1]) * 1024
                                    break
                    with open(f"/proc/{pid}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                    self.cpu_ticks[pid] = int(fields[11]) + int(fields[12])  # utime + stime
                    with open(f"/proc/{pid}/status") as f:
                        for line in f:
                            if line.startswith("VmHWM:"):
                                self.hwm_kb[pid] = int(line.split()[1])
                except (OSError, IndexError, ValueError):
                    pass
            self.peak = max(self.peak, total)
            self.peak_pss = max(self.peak_pss, pss)

    def _tree(self, pid: int) -> Iterator[int]:
        yield pid
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    children = f.read().split()
            except OSError:
                continue
            for child in children:
                yield from self._tree(int(child))

    def stop(self) -> None:
        self._done.set()
        self.join()


@dataclass(frozen=True)
class ModelUnderTest:
    """One of the models the benchmark runs: what ``--model`` gets, and its card's facts."""

    key: str  # "default" or "fast": the role it plays in the comparison
    argument: str  # what `callsort label --model` is given: a shipped name or a folder
    folder: Path
    version: str
    encoder: str | None  # the card's feature_settings.encoder

    def describe(self) -> dict:
        shipped = self.argument in ("default", "fast")
        return {
            "model": self.argument if shipped else _shown(self.folder),
            "shipped": shipped,
            "version": self.version,
            "encoder": self.encoder,
        }


def models_under_test(overrides: dict[str, Path | None]) -> dict[str, ModelUnderTest]:
    """The shipped ``default`` and ``fast`` models, or the folders given instead."""
    from callsort.model.card import CARD_FILE, model_folder

    found = {}
    for key, override in overrides.items():
        argument = key if override is None else str(override.resolve())
        folder = model_folder(argument)
        card_file = folder / CARD_FILE
        if not card_file.is_file():
            raise SystemExit(
                f"no model card {_shown(card_file)} for the {key} model: train one "
                f"(callsort train ... {'--fast ' if key == 'fast' else ''}--out DIR) and pass "
                f"--model-dir-{key} DIR"
            )
        card = json.loads(card_file.read_text())
        encoder = card.get("feature_settings", {}).get("encoder")
        if (encoder is None) != (key == "fast"):
            print(
                f"warning: the {key} model {_shown(folder)} "
                f"{'has the' if encoder else 'has no'} encoder",
                file=sys.stderr,
            )
        found[key] = ModelUnderTest(key, argument, folder, str(card.get("version")), encoder)
    return found


def opensmile_program() -> list[str]:
    return [sys.executable, str(REPO / "benchmarks" / "opensmile_archive.py")]


def end_to_end(
    archive: Archive,
    repeats: int,
    models: dict[str, ModelUnderTest],
    *,
    opensmile_repeats: int,
    processes: int = 2,
) -> dict:
    """Fresh processes, one after the other in each round, ``repeats`` rounds; best kept.

    Each round: ``callsort label --jobs 1`` and ``--jobs 2`` with each model, then (for
    the first ``opensmile_repeats`` rounds) openSMILE over the same files the way a
    user would (``benchmarks/opensmile_archive.py``, ``processes`` processes).
    """
    runs: dict[tuple[str, str], list[dict]] = {}
    for repeat in range(repeats):
        for key, model in models.items():
            for jobs in ("1", "2"):
                with tempfile.TemporaryDirectory(prefix="callsort-bench-") as out:
                    log = Path(out) / "run.jsonl"
                    args = [
                        "label",
                        str(archive.calls_dir),
                        "--out",
                        out,
                        "--jobs",
                        jobs,
                        "--model",
                        model.argument,
                        "--quiet",
                    ]
                    run = run_command([*args, "--log-file", str(log)])
                    run.update(_tables_summary(Path(out)))
                    run["analysis_s"] = _analysis_span(log)
                run["x_realtime"] = archive.duration_s / run["wall_s"]
                runs.setdefault((key, f"jobs{jobs}"), []).append(run)
                print(
                    f"  {key} model, --jobs {jobs} (round {repeat + 1}/{repeats}): "
                    f"{run['wall_s']:.1f} s wall, {run['cpu_s']:.1f} s CPU, "
                    f"{run['x_realtime']:.0f}x real time",
                    flush=True,
                )
        if repeat < opensmile_repeats:
            with tempfile.TemporaryDirectory(prefix="callsort-bench-") as out:
                run = run_command(
                    [str(archive.calls_dir), "--out", out, "--processes", str(processes)],
                    program=opensmile_program(),
                )
                with open(Path(out) / "features.csv") as table:
                    run["chunks"] = sum(1 for _ in table) - 1
            run["x_realtime"] = archive.duration_s / run["wall_s"]
            runs.setdefault(("opensmile", f"processes{processes}"), []).append(run)
            print(
                f"  openSMILE eGeMAPSv02, 4 s chunks, {processes} processes (round "
                f"{repeat + 1}/{repeats}): {run['wall_s']:.1f} s wall, {run['cpu_s']:.1f} s CPU, "
                f"{run['x_realtime']:.0f}x real time",
                flush=True,
            )
    result: dict[str, dict] = {}
    for (key, setting), found in runs.items():
        best = min(found, key=lambda r: r["wall_s"])
        result.setdefault(key, {})[setting] = {**best, "runs": found}
    return result


def _analysis_span(log: Path) -> float:
    """Seconds from the run's ``run_started`` event to its last ``recording`` event: the
    analysis itself, without the start (imports, workers loading the model) or the end."""
    from datetime import datetime

    events = [json.loads(line) for line in log.read_text().splitlines()]
    started = next(e["time"] for e in events if e["event"] == "run_started")
    last = [e["time"] for e in events if e["event"] == "recording"][-1]
    return (datetime.fromisoformat(last) - datetime.fromisoformat(started)).total_seconds()


def _tables_summary(out: Path) -> dict:
    """Rows the run wrote into its dataset (``segments/`` and ``calls/``, by date)."""
    import pyarrow.dataset as ds

    def table(name: str):
        return ds.dataset(out / name, format="parquet", partitioning="hive")

    statuses = table("calls").to_table(columns=["status"]).column(0).to_pylist()
    return {"recordings_ok": statuses.count("ok"), "segments": table("segments").count_rows()}


def cold_start(archive: Archive, repeats: int, models: dict[str, ModelUnderTest]) -> dict:
    """A fresh ``callsort label FILE --model M`` (default jobs) on one 30-second call, for
    each model, alternately."""
    runs: dict[str, list[dict]] = {key: [] for key in models}
    for _ in range(repeats):
        for key, model in models.items():
            with tempfile.TemporaryDirectory(prefix="callsort-bench-") as out:
                args = ["label", str(archive.cold_file), "--out", out, "--quiet"]
                runs[key].append(run_command([*args, "--model", model.argument]))
    helps = [run_command(["--help"])["wall_s"] for _ in range(repeats)]
    result: dict = {"file": _rel(archive.cold_file), "file_s": COLD_FILE_S}
    for key, found in runs.items():
        walls = [r["wall_s"] for r in found]
        result[key] = {
            "best_wall_s": min(walls),
            "median_wall_s": statistics.median(walls),
            "median_cpu_s": statistics.median(r["cpu_s"] for r in found),
            "max_rss_mb": max(r["max_rss_mb"] for r in found),
            "runs": found,
        }
    result["help_best_wall_s"] = min(helps)
    return result


# --- in-process: stages and the comparison on the same segments -----------------------------


class Stopwatch:
    """Wall and CPU seconds per named stage."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - wall
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - cpu


def notebook_features(y: np.ndarray, sr: int) -> np.ndarray:
    """The classic notebook recipe: each feature from the signal, mean over frames.

    Every call recomputes its own spectrogram (mfcc, chroma, mel, contrast) or
    constant-Q transform (tonnetz); that is the point of the comparison.
    """
    import librosa

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.concatenate(
            [
                np.mean(librosa.feature.mfcc(y=y, sr=sr, n_mfcc=40), axis=1),
                np.mean(librosa.feature.chroma_stft(y=y, sr=sr), axis=1),
                np.mean(librosa.feature.melspectrogram(y=y, sr=sr), axis=1),
                np.mean(librosa.feature.spectral_contrast(y=y, sr=sr), axis=1),
                np.mean(librosa.feature.tonnetz(y=y, sr=sr), axis=1),
            ]
        )


def opensmile_extractor() -> Callable[[np.ndarray, int], np.ndarray] | None:
    try:
        import opensmile
    except ImportError:
        return None
    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02,
        feature_level=opensmile.FeatureLevel.Functionals,
    )
    return lambda y, sr: smile.process_signal(y, sr).to_numpy()[0]


class Stages:
    """Exclusive wall and CPU seconds per stage, timed around callsort's own functions.

    ``wrap`` times a function, ``wrap_iter`` each step of the generator a function
    returns (decoding happens as resampling pulls blocks); time in a stage called
    from inside another is billed to the inner one only.
    """

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._stack: list[list] = []

    def _bill(self, frame: list) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        self.wall[frame[0]] = self.wall.get(frame[0], 0.0) + wall - frame[1]
        self.cpu[frame[0]] = self.cpu.get(frame[0], 0.0) + cpu - frame[2]
        frame[1], frame[2] = wall, cpu

    def _enter(self, name: str) -> None:
        if self._stack:
            self._bill(self._stack[-1])
        self._stack.append([name, time.perf_counter(), time.process_time()])

    def _exit(self) -> None:
        self._bill(self._stack.pop())
        if self._stack:  # the outer stage resumes now
            self._stack[-1][1:] = [time.perf_counter(), time.process_time()]

    def wrap(self, name: str, function: Callable) -> Callable:
        def timed(*args, **kwargs):
            self._enter(name)
            try:
                return function(*args, **kwargs)
            finally:
                self._exit()

        return timed

    def wrap_iter(self, name: str, function: Callable) -> Callable:
        def timed(*args, **kwargs):
            iterator = iter(function(*args, **kwargs))
            while True:
                self._enter(name)
                try:
                    item = next(iterator)
                except StopIteration:
                    return
                finally:
                    self._exit()
                yield item

        return timed


@contextmanager
def _timing_the_product(stages: Stages, seen: Callable[[np.ndarray], None]) -> Iterator[None]:
    """callsort's analysis, each step timed as a stage, in this process; ``seen(y)`` for
    every segment's audio, so that the other extractors get the very same segments."""
    from callsort.features.encoder import Encoder
    from callsort.model.folder import Model
    from callsort.run import analysis

    def features(segments, **options):
        for y in segments:
            seen(y)
        return analysis_features(segments, **options)

    analysis_features = stages.wrap("features", analysis.segments_features)
    patches = {
        (analysis, "probe"): stages.wrap("decode", analysis.probe),
        (analysis, "read_blocks"): stages.wrap_iter("decode", analysis.read_blocks),
        (analysis, "resampled_blocks"): stages.wrap_iter("resample", analysis.resampled_blocks),
        (analysis, "frame_measures"): stages.wrap("segment", analysis.frame_measures),
        (analysis, "speech_segments"): stages.wrap("segment", analysis.speech_segments),
        (analysis, "segments_features"): features,
        (Model, "channel_proba"): stages.wrap("predict", Model.channel_proba),
        # the encoder runs inside segments_features: its time is billed to it alone
        (Encoder, "embed"): stages.wrap("encoder", Encoder.embed),
    }
    originals = {key: getattr(*key) for key in patches}
    for (owner, name), timed in patches.items():
        setattr(owner, name, timed)
    try:
        yield
    finally:
        for (owner, name), original in originals.items():
            setattr(owner, name, original)


def in_process(
    archive: Archive, model_under_test: ModelUnderTest, *, compare_calls: int, smile
) -> dict:
    """Per-stage times over the whole archive, and the extractors on the same segments.

    Runs on one core with BLAS and OpenMP pools limited to one thread, as in
    callsort's workers. Each call goes through callsort's own
    ``analyse_recording``, with its steps timed where it calls them (see
    :class:`Stages`; what it does between them is ``other``), and the results are
    committed to a dataset by ``DatasetStore.commit`` in batches, as ``callsort
    label`` does, with ``calls.csv`` regenerated at the end (``write``). The
    openSMILE and notebook extractors run on the segments of the first
    ``compare_calls`` calls, interleaved call by call with callsort's features on
    the same segments, so load changes hit all alike. With a model that has the
    encoder, its embedding of each segment is a stage of its own (``encoder``),
    and the encoder's load is timed apart from the model's.
    """
    import soxr
    from threadpoolctl import threadpool_limits

    from callsort.audio.discover import Recording
    from callsort.dataset.manifest import Pending, fingerprint, recording_date
    from callsort.dataset.store import DatasetStore
    from callsort.dataset.tables import RecordingResult
    from callsort.features.encoder import load_encoder
    from callsort.features.spectral import segment_features
    from callsort.model.folder import load_model
    from callsort.run.analysis import analyse_recording
    from callsort.run.options import DEFAULT_BATCH
    from callsort.settings import AnalysisSettings

    watch = Stopwatch()
    with watch("model load"):
        model = load_model(model_under_test.folder)
    if model.feature_settings.encoder is not None:
        with watch("encoder load"):
            load_encoder(layers=model.feature_settings.encoder_layers)
    settings = AnalysisSettings()
    fp = fingerprint(model_under_test.folder, settings)
    warm = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    segment_features(warm, settings=model.feature_settings)  # lazy imports, as the workers do
    extractors = {"notebook": notebook_features} if compare_calls else {}
    if smile is not None and compare_calls:
        extractors["opensmile"] = smile
        smile(warm, ANALYSIS_SR)
    if compare_calls:
        notebook_features(warm, ANALYSIS_SR)
    compare = {name: Stopwatch() for name in extractors}
    own = ("features", "encoder")  # callsort's extractors: hand-made, and the embedding
    callsort_compared = {name: {"wall_s": 0.0, "cpu_s": 0.0} for name in own}
    compared = {"segments": 0, "speech_s": 0.0, "calls": 0}
    floor = Stopwatch()
    stages = Stages()
    segments_now: list[np.ndarray] = []

    batch: list[tuple] = []
    n_segments = 0
    speech_s = 0.0
    with (
        threadpool_limits(limits=1),
        tempfile.TemporaryDirectory(prefix="callsort-bench-") as out,
    ):
        store = DatasetStore(Path(out))
        store.prepare()
        sequence = 0
        with _timing_the_product(stages, segments_now.append):
            for index, path in enumerate(archive.calls):
                with floor("decode + resample"):
                    with floor("decode"):
                        y, sr = sf.read(path, dtype="float32")
                    soxr.resample(y, sr, ANALYSIS_SR)
                del y
                segments_now.clear()
                before = {n: (stages.wall.get(n, 0.0), stages.cpu.get(n, 0.0)) for n in own}
                with watch("analysis"):
                    started = time.perf_counter()
                    analysis = analyse_recording(path, model=model, settings=settings)
                recording = Recording(path=path, name=path.name)
                st = path.stat()
                pending = Pending(
                    recording=recording,
                    size_bytes=st.st_size,
                    mtime_ns=st.st_mtime_ns,
                    content_sha256="",
                    date=recording_date(recording.name, st.st_mtime_ns, None)[0],
                    reason="new",
                )
                result = RecordingResult(
                    recording=recording.name,
                    recording_id=recording.recording_id,
                    analysis=analysis,
                    error="",
                    processing_s=time.perf_counter() - started,
                    processed_at=_now(),
                )
                batch.append((pending, result))
                if len(batch) >= DEFAULT_BATCH or index + 1 == len(archive.calls):
                    with watch("write"):
                        store.commit(
                            batch,
                            classes=model.classes,
                            model_version=model.version,
                            fingerprint=fp.value,
                            run_id="benchmark",
                            sequence=sequence,
                        )
                    batch, sequence = [], sequence + 1
                n_segments += len(segments_now)
                speech_s += sum(len(y) for y in segments_now) / model.feature_settings.sample_rate
                if index < compare_calls:
                    for n in own:
                        callsort_compared[n]["wall_s"] += stages.wall.get(n, 0.0) - before[n][0]
                        callsort_compared[n]["cpu_s"] += stages.cpu.get(n, 0.0) - before[n][1]
                    for name, extract in extractors.items():
                        with compare[name]("features"):
                            for y in segments_now:
                                extract(y, ANALYSIS_SR)
                    compared["segments"] += len(segments_now)
                    compared["speech_s"] += sum(len(y) for y in segments_now) / ANALYSIS_SR
                    compared["calls"] += 1
                if (index + 1) % 10 == 0 or index + 1 == len(archive.calls):
                    print(
                        f"  in-process, {model_under_test.key} model: "
                        f"{index + 1}/{len(archive.calls)} calls",
                        flush=True,
                    )
        with watch("write"):
            store.write_csv("calls")

    timed = ("decode", "resample", "segment", "features", "encoder", "predict")
    if model.feature_settings.encoder is None:
        timed = tuple(t for t in timed if t != "encoder")
    measured = {
        s: {"wall_s": stages.wall.get(s, 0.0), "cpu_s": stages.cpu.get(s, 0.0)} for s in timed
    }
    other = {
        "wall_s": watch.wall["analysis"] - sum(m["wall_s"] for m in measured.values()),
        "cpu_s": watch.cpu["analysis"] - sum(m["cpu_s"] for m in measured.values()),
    }
    return {
        "model": model_under_test.describe(),
        "model_load_s": watch.wall["model load"],
        "encoder_load_s": watch.wall.get("encoder load"),
        "stages": {
            **measured,
            "other": other,
            "write": {"wall_s": watch.wall["write"], "cpu_s": watch.cpu["write"]},
        },
        "segments": n_segments,
        "speech_s": speech_s,
        "floor": {
            "wall_s": floor.wall["decode + resample"],
            "cpu_s": floor.cpu["decode + resample"],
            "decode_wall_s": floor.wall["decode"],
        },
        "compared": compared,
        "extractors": {
            "callsort": callsort_compared["features"],
            **(
                {"callsort_encoder": callsort_compared["encoder"]}
                if model.feature_settings.encoder is not None
                else {}
            ),
            **{
                name: {"wall_s": w.wall.get("features", 0.0), "cpu_s": w.cpu.get("features", 0.0)}
                for name, w in compare.items()
            },
        },
    }


def _now():
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)


# --- report ---------------------------------------------------------------------------------


def collect_summary(
    archive: Archive,
    models: dict[str, ModelUnderTest],
    e2e: dict,
    stages: dict[str, dict],
    cold: dict,
    args,
) -> dict:
    duration = archive.duration_s
    base = stages["default"]  # the pass with the extractors on the same segments
    ex = base["extractors"]
    handmade = ex["callsort"]["wall_s"]
    embedding = ex.get("callsort_encoder", {}).get("wall_s", 0.0)
    smile_e2e = e2e.get("opensmile", {}).get(f"processes{OPENSMILE_PROCESSES}")
    ratios: dict[str, float | None] = {}
    for key in models:
        j1, j2 = e2e[key]["jobs1"], e2e[key]["jobs2"]
        ratios[f"{key}_jobs2_vs_opensmile_speedup"] = (
            smile_e2e["wall_s"] / j2["wall_s"] if smile_e2e else None
        )
        ratios[f"{key}_jobs1_vs_opensmile_speedup"] = (
            smile_e2e["wall_s"] / j1["wall_s"] if smile_e2e else None
        )
        ratios[f"{key}_jobs2_vs_jobs1_speedup"] = j1["wall_s"] / j2["wall_s"]
        ratios[f"{key}_analysis_jobs2_vs_jobs1_speedup"] = j1["analysis_s"] / j2["analysis_s"]
        ratios[f"{key}_end_to_end_jobs2_x_realtime"] = j2["x_realtime"]
        ratios[f"{key}_floor_vs_jobs1_end_to_end"] = (
            duration / stages[key]["floor"]["wall_s"]
        ) / j1["x_realtime"]
        # the fast model hears 8 kHz and resamples nothing on 8 kHz calls: its time
        # beside the decode alone too
        ratios[f"{key}_decode_floor_vs_jobs1_end_to_end"] = (
            duration / stages[key]["floor"]["decode_wall_s"]
        ) / j1["x_realtime"]
        ratios[f"{key}_cold_start_30s_wall_s"] = cold[key]["best_wall_s"]
    if "default" in models and "fast" in models:
        ratios["fast_vs_default_jobs2_speedup"] = (
            e2e["default"]["jobs2"]["wall_s"] / e2e["fast"]["jobs2"]["wall_s"]
        )
        ratios["fast_vs_default_jobs1_speedup"] = (
            e2e["default"]["jobs1"]["wall_s"] / e2e["fast"]["jobs1"]["wall_s"]
        )
    ratios["features_vs_opensmile_speedup"] = (
        ex["opensmile"]["wall_s"] / handmade if "opensmile" in ex else None
    )
    ratios["features_and_encoder_vs_opensmile_speedup"] = (
        ex["opensmile"]["wall_s"] / (handmade + embedding)
        if "opensmile" in ex and embedding
        else None
    )
    ratios["encoder_vs_features_cost"] = embedding / handmade if embedding else None
    ratios["features_vs_notebook_speedup"] = ex["notebook"]["wall_s"] / handmade
    e2e_segments = {
        r["segments"] for key in models for j in ("jobs1", "jobs2") for r in e2e[key][j]["runs"]
    }
    cut = {s["segments"] for s in stages.values()}
    if len(e2e_segments | cut) != 1:
        print(
            f"warning: the command wrote {sorted(e2e_segments)} segments, the in-process "
            f"stages cut {sorted(cut)}: they no longer measure the same work",
            file=sys.stderr,
        )
    checks = {}
    for key, target in TARGETS.items():
        value = ratios.get(key)
        holds = (
            None
            if value is None
            else (value <= target if key in LOWER_IS_BETTER else value >= target)
        )
        checks[key] = {"target": target, "measured": value, "holds": holds}
    return {
        "command": shlex.join(["python", "benchmarks/throughput.py", *map(_shown_arg, args.argv)]),
        "measured_at": _now().isoformat(timespec="seconds"),
        "machine": _machine(),
        "models": {key: model.describe() for key, model in models.items()},
        "archive": {
            "folder": _rel(archive.folder),
            **{k: v for k, v in archive.manifest.items() if k != "cold_file"},
            "speech_s": base["speech_s"],
            "segments": base["segments"],
            "segments_written_end_to_end": sorted(e2e_segments),
        },
        "opensmile_run": {
            "program": "benchmarks/opensmile_archive.py",
            "processes": OPENSMILE_PROCESSES,
            "chunk_s": OPENSMILE_CHUNK_S,
            "feature_set": "eGeMAPSv02 functionals",
        },
        "end_to_end": e2e,
        "in_process": stages,
        "cold_start": cold,
        "ratios": ratios,
        "targets": checks,
    }


def _machine() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    import callsort

    versions = {}
    for name in (
        "numpy",
        "scipy",
        "librosa",
        "soundfile",
        "soxr",
        "lightgbm",
        "ctranslate2",
        "opensmile",
    ):
        with suppress(PackageNotFoundError):
            versions[name] = version(name)
    return {
        "cpu_model": code_path()["cpu_model"],
        "cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "callsort": callsort.__version__,
        "libraries": versions,
    }


MODEL_NAMES = {"default": "default", "fast": "fast"}


def markdown(summary: dict, *, repeats: int) -> str:
    a = summary["archive"]
    e2e, ip, cold = summary["end_to_end"], summary["in_process"], summary["cold_start"]
    models = summary["models"]
    base = ip["default"]
    duration = a["total_duration_s"]
    hours = f"{duration / 3600:.2f} h of calls"
    described = []
    for key, m in models.items():
        what = f"{m['encoder']} encoder + hand-made features" if m["encoder"] else "hand-made only"
        where = "shipped" if m["shipped"] else f"from {m['model']}"
        described.append(f"{key} `{m['version']}` ({what}; {where})")
    lines = [
        f"{a['calls']} stereo 8 kHz mu-law calls of {a['minutes']:g} min ({hours}; "
        f"{base['speech_s'] / 3600:.2f} h of speech in {base['segments']:,} segments, "
        f"{base['speech_s'] / (2 * duration):.0%} of each channel); "
        f"{summary['machine']['usable_cpus']} cores, load average "
        f"{summary['machine']['load_average_at_start'][0]:.1f} at the start, "
        f"{summary['machine']['load_average'][0]:.1f} at the end. "
        f"Models: {', '.join(described)}.",
        "",
        f"CPU: {describe_code_path(summary['code_path'])}.",
        "",
        "| run | audio | wall s | CPU s | x real time | peak memory |",
        "|---|---|---|---|---|---|",
    ]
    for key in models:
        for jobs in ("1", "2"):
            r = e2e[key][f"jobs{jobs}"]
            memory = (
                f"{r['max_rss_mb']:.0f} MB largest process, "
                f"{r['tree_pss_mb']:.0f} MB all processes (PSS)"
            )
            lines.append(
                f"| `callsort label --jobs {jobs} --model {key}` (best of {len(r['runs'])}) "
                f"| {hours} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['x_realtime']:,.0f} "
                f"| {memory} |"
            )
    smile = e2e.get("opensmile", {}).get(f"processes{OPENSMILE_PROCESSES}")
    if smile:
        o = summary["opensmile_run"]
        lines.append(
            f"| openSMILE eGeMAPSv02 functionals, every channel in {o['chunk_s']:g} s chunks, "
            f"{o['processes']} processes (`{o['program']}`, best of {len(smile['runs'])}) "
            f"| {hours} | {smile['wall_s']:.1f} | {smile['cpu_s']:.1f} "
            f"| {smile['x_realtime']:,.0f} | {smile['max_rss_mb']:.0f} MB largest process, "
            f"{smile['tree_pss_mb']:.0f} MB all processes (PSS) |"
        )
    floor = base["floor"]
    lines.append(
        f"| floor: soundfile decode + soxr resample, one core | {hours} | {floor['wall_s']:.1f} | "
        f"{floor['cpu_s']:.1f} | {duration / floor['wall_s']:,.0f} | |"
    )
    c = base["compared"]
    same = f"{c['speech_s'] / 60:.0f} min speech, {c['segments']:,} segments of {c['calls']} calls"
    names = {
        "callsort": "callsort hand-made features, one core",
        "callsort_encoder": "callsort Whisper base encoder embedding, one core",
        "opensmile": "openSMILE eGeMAPSv02 functionals, one core",
        "notebook": "notebook librosa statistics, one core",
    }
    for name, label in names.items():
        if name in base["extractors"]:
            r = base["extractors"][name]
            lines.append(
                f"| {label} | {same} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
                f"{c['speech_s'] / r['wall_s']:,.0f} (of speech) | |"
            )
    for key in models:
        k = cold[key]
        lines.append(
            f"| cold start: `callsort label --model {key}` one {cold['file_s']:.0f} s call "
            f"| {cold['file_s']:.0f} s | {k['best_wall_s']:.2f} (median {k['median_wall_s']:.2f}) "
            f"| {k['median_cpu_s']:.2f} | {cold['file_s'] / k['best_wall_s']:,.0f} "
            f"| {k['max_rss_mb']:.0f} MB |"
        )
    # stages: one column group per model
    header = "| stage (in-process, one core) |"
    rule = "|---|"
    for key in models:
        header += f" {key}: wall s | CPU s | share |"
        rule += "---|---|---|"
    lines += ["", header, rule]
    stage_names = list(dict.fromkeys(n for key in models for n in ip[key]["stages"]))
    totals = {key: sum(s["wall_s"] for s in ip[key]["stages"].values()) for key in models}
    for name in stage_names:
        row = f"| {name} |"
        for key in models:
            st = ip[key]["stages"].get(name)
            row += (
                " - | - | - |"
                if st is None
                else f" {st['wall_s']:.2f} | {st['cpu_s']:.2f} | {st['wall_s'] / totals[key]:.0%} |"
            )
        lines.append(row)
    row = "| all stages (x real time) |"
    for key in models:
        row += f" {totals[key]:.2f} | ({duration / totals[key]:,.0f}x) | 100% |"
    lines.append(row)
    r = summary["ratios"]
    lines += ["", "| ratio, measured side by side in this run | |", "|---|---|"]
    shown = [
        ("default_jobs2_vs_opensmile_speedup", "openSMILE / default model, both on 2 cores"),
        ("fast_jobs2_vs_opensmile_speedup", "openSMILE / fast model, both on 2 cores"),
        (
            "fast_floor_vs_jobs1_end_to_end",
            "fast model `--jobs 1` / the decode + resample floor (one core)",
        ),
        (
            "default_floor_vs_jobs1_end_to_end",
            "default model `--jobs 1` / the decode + resample floor (one core)",
        ),
        (
            "fast_decode_floor_vs_jobs1_end_to_end",
            "fast model `--jobs 1` / the decode alone, no resampling (one core)",
        ),
        ("fast_vs_default_jobs2_speedup", "default model / fast model, `--jobs 2`"),
        ("fast_vs_default_jobs1_speedup", "default model / fast model, `--jobs 1`"),
        ("default_jobs1_vs_opensmile_speedup", "openSMILE (2 cores) / default model on 1 core"),
        (
            "features_and_encoder_vs_opensmile_speedup",
            "openSMILE / hand-made features + encoder, same segments, one core",
        ),
        ("encoder_vs_features_cost", "encoder embedding / hand-made features, same segments"),
    ]
    for key, text in shown:
        if r.get(key) is not None:
            lines.append(f"| {text} | {r[key]:.2f}x |")
    lines += ["", "| target | measured | holds |", "|---|---|---|"]
    for key, check in summary["targets"].items():
        text, fmt = DESCRIBED[key]
        value = "not measured" if check["measured"] is None else fmt.format(check["measured"])
        holds = {True: "yes", False: "**no**", None: "-"}[check["holds"]]
        lines.append(f"| {text} | {value} | {holds} |")
    analysis = ", ".join(
        f"{r[f'{key}_analysis_jobs2_vs_jobs1_speedup']:.2f} times ({key} model)" for key in models
    )
    floors = ", ".join(f"{r[f'{key}_floor_vs_jobs1_end_to_end']:.0f}x ({key})" for key in models)
    lines += [
        "",
        f"callsort's hand-made features are {r['features_vs_notebook_speedup']:.1f}x faster than "
        f"the notebook statistics on the same segments; the decode + resample floor alone runs "
        f"faster than `--jobs 1` end to end by {floors}. "
        f"The analysis alone (from the run's `run_started` event to its last `recording` "
        f"event in `--log-file`) goes {analysis} faster on two workers than on one.",
    ]
    return "\n".join(lines)


def _rounded(value):
    """Floats to 4 significant decimals, so that the JSON file diffs readably."""
    if isinstance(value, float):
        return float(f"{value:.4g}") if abs(value) < 1000 else round(value, 1)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def _rel(path: Path) -> str:
    return os.path.relpath(path, REPO)


def _shown(path: Path) -> str:
    """A path as the results files name it: relative to the repository when inside it,
    else by its last part (no machine's paths in the files)."""
    path = Path(path).resolve()
    if path.is_relative_to(REPO):
        return _rel(path)
    return str(Path("...", path.name))


def _shown_arg(arg: str) -> str:
    return _shown(Path(arg)) if arg.startswith(("/", "~")) else arg


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--calls", type=int, default=60, help="calls in the archive (60)")
    parser.add_argument("--minutes", type=float, default=3.0, help="minutes per call (3)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="end-to-end rounds (3): each model, --jobs 1 and 2"
    )
    parser.add_argument(
        "--opensmile-repeats",
        type=int,
        help="openSMILE archive runs, in the first rounds (default: --repeats)",
    )
    parser.add_argument("--cold-repeats", type=int, default=3, help="cold-start runs (3)")
    parser.add_argument(
        "--compare-calls",
        type=int,
        help="run the openSMILE and notebook extractors on the segments of the first N calls "
        "only (default: all)",
    )
    parser.add_argument("--skip-opensmile", action="store_true", help="leave openSMILE out")
    for key in ("default", "fast"):
        parser.add_argument(
            f"--model-dir-{key}",
            type=Path,
            metavar="DIR",
            help=f"a model folder to run as the {key} model (default: the shipped {key!r})",
        )
    parser.add_argument(
        "--code-path",
        choices=sorted(CODE_PATHS),
        help="run everything on this code path of the CPU (default: the environment as it "
        "is; see CODE_PATHS)",
    )
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="RAVDESS 16 kHz corpus")
    parser.add_argument("--json", type=Path, default=RESULTS, help="where to write the figures")
    args = parser.parse_args(argv)
    if args.code_path:
        enter_code_path(args.code_path)
    args.argv = sys.argv[1:] if argv is None else argv
    opensmile_repeats = args.repeats if args.opensmile_repeats is None else args.opensmile_repeats
    if args.skip_opensmile:
        opensmile_repeats = 0

    load_at_start = [round(x, 2) for x in os.getloadavg()]
    path = code_path()
    print(describe_code_path(path), flush=True)
    models = models_under_test({"default": args.model_dir_default, "fast": args.model_dir_fast})
    for key, model in models.items():
        print(f"{key} model: {model.describe()}", flush=True)
    smile = None
    if not args.skip_opensmile:
        smile = opensmile_extractor()
        if smile is None:
            raise SystemExit(
                'openSMILE is not installed: pip install -e ".[bench]" (or pip install opensmile), '
                "or run with --skip-opensmile"
            )
    data = archive(args.calls, args.minutes, args.corpus)
    print(f"archive: {_rel(data.calls_dir)}, {len(data.calls)} calls", flush=True)
    print("end to end:", flush=True)
    e2e = end_to_end(
        data,
        args.repeats,
        models,
        opensmile_repeats=opensmile_repeats,
        processes=OPENSMILE_PROCESSES,
    )
    print("in-process stages and extractors:", flush=True)
    compare_calls = len(data.calls) if args.compare_calls is None else args.compare_calls
    stages = {
        key: in_process(
            data,
            model,
            compare_calls=compare_calls if key == "default" else 0,
            smile=smile,
        )
        for key, model in models.items()
    }
    print("cold start:", flush=True)
    cold = cold_start(data, args.cold_repeats, models)
    summary = collect_summary(data, models, e2e, stages, cold, args)
    summary["machine"]["load_average_at_start"] = load_at_start
    summary["code_path"] = path
    report = markdown(summary, repeats=args.repeats)
    summary["markdown"] = report
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(_rounded(summary), indent=2) + "\n")
    print()
    print(report)
    print(f"\nfigures written to {_shown(args.json)}")


if __name__ == "__main__":
    main()
