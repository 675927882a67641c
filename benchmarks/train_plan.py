"""The rates behind ``callsort train``'s estimate (callsort.training.plan.PlanRates).

Run from the repository root (a few minutes on 2 cores; needs RAVDESS, and its
clean, telephone and augmented features in the cache for the fit figures):

    python benchmarks/train_plan.py
    python benchmarks/train_plan.py --clips 3   # fewer clips extracted

Measured on ``../shared/datasets/ravdess-speech-16k`` (or in ``$CALLSORT_DATA``, or
``--data``), for the
fast model (hand-made features) and the default one (with the encoder):

* extraction: ``--clips`` clips computed under each condition a run computes
  (clean, telephone, augmented, alaw, gsm, g721), without the cache, in this
  process: seconds of one core per clip and condition;
* the cache: every clip's clean features read back, in this process;
* fitting and scoring: fold 1 of RAVDESS's 6 folds by speaker (640 training
  clips, 128 test clips) run as the protocol runs it with ``--jobs`` threads (1:
  on a busy machine two OpenMP threads wait for each other at every barrier),
  tested on clean and telephone audio (the others cost the same per clip), and
  the same training clips fitted alone: the fit per training clip and condition,
  the rest per test clip, condition and pseudo-call kind.

Every rate is CPU seconds of this process (all its threads), which a busy
shared machine inflates far less than wall time; an estimate divides them by
the run's ``--jobs`` (as if each process had a core of its own). Wall times and
the machine's load average are recorded beside them.

And end to end (``--part end-to-end``; ``all`` runs both parts):
``callsort train DATA --fast -j JOBS`` with its protocols, then with
``--no-evaluate``, each a fresh process: wall and CPU seconds beside the
estimate its plan shows.

Prints the figures and writes them to ``benchmarks/results/train-plan.json``
(a part run alone replaces only its own figures there).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from callsort.features.encoder import WHISPER_BASE  # noqa: E402
from callsort.settings import AnalysisSettings, FeatureSettings  # noqa: E402
from callsort.training.cache import clip_features, default_cache_dir  # noqa: E402
from callsort.training.config import (  # noqa: E402
    AUGMENTED,
    CODEC_CONDITIONS,
    CONDITIONS,
    TrainingConfig,
)
from callsort.training.corpora import find_clips  # noqa: E402
from callsort.training.crossval import (  # noqa: E402
    MIX_KINDS,
    cross_validate,
    fit_final,
    make_classifier,
    speaker_folds,
)
from callsort.training.protocol import extract  # noqa: E402

DATA = Path(os.environ.get("CALLSORT_DATA", REPO.parent / "shared" / "datasets"))
DATA /= "ravdess-speech-16k"
EXTRACTED = (*CONDITIONS, AUGMENTED, *CODEC_CONDITIONS)


def extraction_rate(clips, feature_settings, n: int) -> dict:
    """Seconds of one core per clip and condition, computed without the cache."""
    settings = AnalysisSettings()
    sample = clips[:: max(1, len(clips) // n)][:n]
    clip_features(  # warm-up: imports, the encoder's weights
        sample[:1],
        condition="clean",
        settings=settings,
        feature_settings=feature_settings,
        cache_dir=None,
        jobs=1,
    )
    per_condition, wall = {}, {}
    for cond in EXTRACTED:
        start, cpu = time.perf_counter(), time.process_time()
        clip_features(
            sample,
            condition=cond,
            settings=settings,
            feature_settings=feature_settings,
            cache_dir=None,
            jobs=1,
        )
        per_condition[cond] = round((time.process_time() - cpu) / len(sample), 4)
        wall[cond] = round((time.perf_counter() - start) / len(sample), 4)
    mean = sum(per_condition.values()) / len(per_condition)
    return {
        "clips": len(sample),
        "cpu_s_per_clip": per_condition,
        "wall_s_per_clip": wall,
        "mean": round(mean, 4),
    }


def cached_rate(clips, feature_settings, cache_dir) -> float:
    start = time.process_time()
    clip_features(
        clips,
        condition="clean",
        settings=AnalysisSettings(),
        feature_settings=feature_settings,
        cache_dir=cache_dir,
        jobs=1,
    )
    return round((time.process_time() - start) / len(clips), 5)


def fit_rates(clips, feature_settings, cache_dir, jobs: int) -> dict:
    """Fold 1 of RAVDESS's protocol and the same training clips fitted alone."""
    config = TrainingConfig()
    run = extract(
        (), config, jobs=jobs, cache_dir=cache_dir, feature_settings=feature_settings, clips=clips
    )
    features, names = run.features, run.feature_names
    make_model = partial(make_classifier, jobs=jobs)
    fold = speaker_folds([c.speaker for c in clips], config.n_folds)[0]
    train = [i for i, c in enumerate(clips) if c.speaker not in fold]
    start, cpu = time.perf_counter(), time.process_time()
    cross_validate(
        clips,
        features,
        classes=config.classes,
        config=config,
        make_model=make_model,
        feature_names=names,
        folds=[fold],
    )
    protocol_s, protocol_cpu = time.perf_counter() - start, time.process_time() - cpu
    start, cpu = time.perf_counter(), time.process_time()
    fit_final(
        [clips[i] for i in train],
        {c: [f[i] for i in train] for c, f in features.items()},
        config=config,
        make_model=make_model,
        feature_names=names,
    )
    fit_s, fit_cpu = time.perf_counter() - start, time.process_time() - cpu
    n_train, n_test = len(train), len(clips) - len(train)
    kinds = len(MIX_KINDS) + 1
    return {
        "fold": fold,
        "train_clips": n_train,
        "test_clips": n_test,
        "protocol_fold_wall_s": round(protocol_s, 1),
        "protocol_fold_cpu_s": round(protocol_cpu, 1),
        "fit_wall_s": round(fit_s, 1),
        "fit_cpu_s": round(fit_cpu, 1),
        "fit": round(fit_cpu / (n_train * len(config.train_conditions)), 5),
        "score": round(max(protocol_cpu - fit_cpu, 0.0) / (n_test * len(CONDITIONS) * kinds), 5),
    }


def end_to_end(data: Path, jobs: int) -> list[dict]:
    """``callsort train DATA --fast`` with the protocols and with ``--no-evaluate``, each a
    fresh process: wall and CPU seconds (the process and its children), beside the
    estimate of the plan it shows (from :data:`callsort.training.plan.RATES`)."""
    import resource
    import subprocess
    import tempfile

    from callsort.training.plan import plan_training

    out = []
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for flags in ([], ["--no-evaluate"]):
        plan = plan_training(
            [data],
            TrainingConfig(),
            evaluate=not flags,
            final=True,
            jobs=jobs,
            cache_dir=default_cache_dir(),
            feature_settings=FeatureSettings(encoder=None),
        )
        with tempfile.TemporaryDirectory() as folder:
            command = ["train", str(data), "--fast", "-j", str(jobs), *flags]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "callsort", *command, "--out", f"{folder}/model"],
                check=True,
                capture_output=True,
                env=env,
            )
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        row = {
            "command": "callsort train " + " ".join([data.name, *command[2:]]),
            "fits": len(plan.fits),
            "clip_features": plan.n_features,
            "cached_before": plan.n_cached,
            "estimate_s": round(plan.features_s + plan.fits_s, 1),
            "cpu_s": round(cpu, 1),
            "wall_s": round(wall, 1),
            "load_average": os.getloadavg(),
        }
        print(row, flush=True)
        out.append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--clips", type=int, default=6, help="clips extracted per condition")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--part", choices=("rates", "end-to-end", "all"), default="all")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks/results/train-plan.json")
    args = parser.parse_args()
    report = json.loads(args.json.read_text()) if args.json.is_file() else {}
    if args.part in ("rates", "all"):
        report.update(measured_rates(args))
    if args.part in ("end-to-end", "all"):
        report["end_to_end"] = {
            "command": "python benchmarks/train_plan.py " + " ".join(sys.argv[1:]),
            "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "runs": end_to_end(args.data, args.jobs),
        }
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"written to {args.json}")


def measured_rates(args) -> dict:
    clips = find_clips(args.data)
    cache_dir = default_cache_dir()
    report = {
        "command": "python benchmarks/train_plan.py " + " ".join(sys.argv[1:]),
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()},
        "corpus": args.data.name,
        "clips": len(clips),
        "jobs": args.jobs,
    }
    for model, fs in (
        ("fast", FeatureSettings(encoder=None)),
        ("encoder", FeatureSettings(encoder=WHISPER_BASE)),
    ):
        extraction = extraction_rate(clips, fs, args.clips)
        print(f"{model}: extraction {extraction}", flush=True)
        cached = cached_rate(clips, fs, cache_dir)
        print(f"{model}: cached read {cached} s per clip-condition", flush=True)
        fits = fit_rates(clips, fs, cache_dir, args.jobs)
        print(f"{model}: {fits}", flush=True)
        report[model] = {"extraction": extraction, "cached": cached, "fits": fits}
    report["machine"]["load_average_at_end"] = os.getloadavg()
    report["rates"] = {
        "extract_fast": report["fast"]["extraction"]["mean"],
        "extract_encoder": report["encoder"]["extraction"]["mean"],
        "cached": max(report["fast"]["cached"], report["encoder"]["cached"]),
        "fit_fast": report["fast"]["fits"]["fit"],
        "fit_encoder": report["encoder"]["fits"]["fit"],
        "score_fast": report["fast"]["fits"]["score"],
        "score_encoder": report["encoder"]["fits"]["score"],
    }
    print("PlanRates:", json.dumps(report["rates"]))
    return report


if __name__ == "__main__":
    main()
