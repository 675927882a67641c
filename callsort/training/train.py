"""``callsort train`` end to end: the plan, the protocols' figures, then the final fit
and its card.

The pieces: :mod:`~callsort.training.corpora` (reading corpora),
:mod:`~callsort.training.cache` (features per clip and condition),
:mod:`~callsort.training.crossval` (folds, pseudo-calls, fitting, scoring),
:mod:`~callsort.training.tuning` (the nested search),
:mod:`~callsort.training.protocol` (corpus protocols, leave-one-corpus-out),
:mod:`~callsort.training.plan` (what a run will do, checked and estimated first),
:mod:`~callsort.training.metrics`. The names the CLI calls on this module
are re-exported here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path

import numpy as np

from callsort.settings import ANALYSIS_SAMPLE_RATE, FAST_SAMPLE_RATE
from callsort.training.cache import default_cache_dir
from callsort.training.config import CODEC_CONDITIONS, CONDITIONS, TrainingConfig
from callsort.training.corpora import corpus_folders, default_licence
from callsort.training.crossval import fit_final, make_classifier
from callsort.training.plan import TrainingPlan, plan_training
from callsort.training.protocol import ProtocolRun, corpus_protocols, evaluate_protocol, extract
from callsort.training.tuning import tuned_config

__all__ = [
    "CODEC_CONDITIONS",
    "CONDITIONS",
    "ProtocolRun",
    "TrainingConfig",
    "TrainingPlan",
    "corpus_protocols",
    "default_cache_dir",
    "evaluate_protocol",
    "extract",
    "library_versions",
    "not_evaluated",
    "plan_training",
    "train_model",
]


def not_evaluated() -> dict:
    """The card's ``metrics`` of a model fitted without the protocols (``--no-evaluate``)."""
    return {
        "evaluated": False,
        "note": "fitted without the speaker-independent protocols (callsort train "
        "--no-evaluate): no figures, and probabilities not calibrated (temperature 1); "
        "callsort evaluate on the same folders measures them",
    }


def train_model(
    run: ProtocolRun,
    config: TrainingConfig,
    *,
    data_dir: Path | str | Sequence[Path | str],
    metrics: dict,
    jobs: int,
    licence: str,
):
    """Fit the final model on every speaker except the held-out ones; return it and its card."""
    from datetime import datetime, timezone

    import callsort
    from callsort.model.card import ModelCard

    held_out = set(config.holdout_speakers)
    keep = [i for i, c in enumerate(run.clips) if c.speaker not in held_out]
    clips = [run.clips[i] for i in keep]
    features = {cond: [f[i] for i in keep] for cond, f in run.features.items()}
    search = None
    if config.tune:
        config, search = tuned_config(
            clips,
            features,
            np.arange(len(clips)),
            config,
            make_model=partial(make_classifier, jobs=jobs),
            feature_names=run.feature_names,
        )
    fitted = fit_final(
        clips,
        features,
        config=config,
        make_model=partial(make_classifier, jobs=jobs),
        feature_names=run.feature_names,
    )
    classifier, prior = fitted.model, fitted.prior
    if config.calibrate:
        # the temperature the cross-validation fitted on all its out-of-fold predictions
        # (none without the protocols: 1, uncalibrated)
        classifier.temperature = metrics.get("temperature", 1.0)
    digest = hashlib.sha1(classifier.booster_.model_to_string().encode()).hexdigest()[:8]
    speakers = sorted({c.speaker for c in clips})
    card = ModelCard(
        version=f"{callsort.__version__}+{digest}",
        classes=list(config.classes),
        feature_names=list(classifier.feature_names_in_),
        feature_settings=asdict(run.feature_settings),
        normalisation=prior.to_dict() if prior is not None else None,
        temperature=classifier.temperature,
        segmentation_settings=asdict(run.settings.segmentation),
        training={
            "data": ", ".join(Path(d).name for d in corpus_folders(data_dir)),
            "corpora": [
                {
                    "name": Path(d).resolve().name,
                    "n_clips": sum(c.corpus == Path(d).resolve().name for c in clips),
                    "licence": default_licence(d),
                }
                for d in corpus_folders(data_dir)
            ],
            "n_clips": len(clips),
            "n_segments": int(sum(len(f.X) for f in features[CONDITIONS[0]])),
            "speakers": speakers,
            "held_out_speakers": sorted(held_out),
            "label_counts": {c: sum(x.label == c for x in clips) for c in config.classes},
            "config": asdict(config),
            **({"tuning": search} if search is not None else {}),
            **archive_card(fitted.archive_population, config),
            "command": "callsort train "
            + " ".join(Path(d).name for d in corpus_folders(data_dir))
            + " --out MODEL_DIR"
            + ("" if run.feature_settings.encoder else " --fast")
            + _rate_flag(run.feature_settings)
            + (f" --holdout-speakers {','.join(sorted(held_out))}" if held_out else "")
            + (" --no-evaluate" if metrics.get("evaluated") is False else "")
            + (f" --seed {config.seed}" if config.seed else ""),
        },
        metrics=metrics,
        library_versions=library_versions(),
        licence=licence,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    return classifier, card


def _rate_flag(features) -> str:
    """``--sample-rate`` in a card's command where the rate is not the recipe's own."""
    own = ANALYSIS_SAMPLE_RATE if features.encoder else FAST_SAMPLE_RATE
    return "" if features.sample_rate == own else f" --sample-rate {features.sample_rate}"


def archive_card(population, config: TrainingConfig) -> dict:
    """The card's ``archive_standardisation`` entry (empty without it): the training
    population's statistics of the raw features (:mod:`callsort.features.archive`) and
    the weight an archive's own statistics are shrunk toward them with."""
    if population is None:
        return {}
    return {
        "archive_standardisation": {
            "population": population.to_dict(),
            "prior_weight": config.archive_sample.prior_weight,
        }
    }


def library_versions() -> dict[str, str]:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("numpy", "scipy", "librosa", "soundfile", "soxr", "lightgbm", "scikit-learn"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out
