"""Nested search of LightGBM settings inside a fold's training speakers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from callsort.training.config import CONDITIONS, ClipFeatures, TrainingConfig
from callsort.training.corpora import Clip
from callsort.training.crossval import INNER_FOLDS, cross_validate

__all__ = ["INNER_FOLDS", "TUNING_CANDIDATES", "tuned_config"]

# Candidates of the nested search (TrainingConfig fields over the config searched
# around); the config's own settings come first and win ties. Few on purpose: seeds
# alone move a protocol run by up to 2.5 points, so a large search would mostly pick
# noise. The `tuned` row of ACCURACY.md ran when the defaults were 400 ordinary trees
# and the seventh candidate was today's default, 600 extremely randomised trees.
TUNING_CANDIDATES: tuple[dict, ...] = (
    {},
    {"n_estimators": 600, "model_params": {"num_leaves": 7, "min_data_in_leaf": 20}},
    {"model_params": {"num_leaves": 31, "min_data_in_leaf": 5}},
    {"model_params": {"feature_fraction": 0.1}},
    {"model_params": {"lambda_l2": 10.0, "min_data_in_leaf": 30}},
    {"n_estimators": 800, "model_params": {"learning_rate": 0.025}},
    {"n_estimators": 400, "model_params": {"extra_trees": False}},
    {"max_features": 300},
)


def tuned_config(
    clips: Sequence[Clip],
    features: dict[str, list[ClipFeatures]],
    index: np.ndarray,
    config: TrainingConfig,
    *,
    make_model: Callable[[TrainingConfig], object],
    feature_names: Sequence[str],
    on_candidate: Callable[[dict], None] | None = None,
) -> tuple[TrainingConfig, list[dict]]:
    """The candidate of :data:`TUNING_CANDIDATES` that scores best inside ``index``.

    Only the clips at ``index`` are used: they are cut into :data:`INNER_FOLDS`
    speaker folds and each candidate runs the whole protocol on them (pseudo-calls
    and all); the score is the mean of clean and telephone macro-F1. Returns the
    config with the winning fields, and every candidate's inner figures.
    """
    subset = [clips[i] for i in index]
    keep = {*CONDITIONS, *config.train_conditions}
    sub_features = {c: [f[i] for i in index] for c, f in features.items() if c in keep}
    search = []
    for candidate in TUNING_CANDIDATES:
        inner = replace(config, tune=False, n_folds=INNER_FOLDS, calibrate=False, **candidate)
        metrics = cross_validate(
            subset,
            sub_features,
            classes=config.classes,
            config=inner,
            make_model=make_model,
            feature_names=feature_names,
        )
        row = {
            "candidate": candidate,
            **{c: metrics[c]["macro_f1"] for c in CONDITIONS},
            "score": round(float(np.mean([metrics[c]["macro_f1"] for c in CONDITIONS])), 4),
        }
        search.append(row)
        if on_candidate:
            on_candidate(row)
    best = max(range(len(search)), key=lambda i: (search[i]["score"], -i))
    return replace(config, **TUNING_CANDIDATES[best]), search
