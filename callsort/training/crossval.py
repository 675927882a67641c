"""The speaker-independent protocol: folds by speaker, pseudo-calls, fitting, scoring.

Each speech segment is a training example labelled with its clip's emotion, and
a clip's prediction is the duration-weighted mean of its segments'. Speakers
are sorted and cut into folds (for RAVDESS's 6, fold k tests actors
4k+1..4k+4); each fold's model never hears its test speakers. With channel
normalisation, test clips are scored inside pseudo-calls of their own speaker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from callsort.errors import DatasetError
from callsort.features.archive import ArchiveStatistics
from callsort.features.normalise import PopulationPrior
from callsort.training.config import (
    CONDITIONS,
    TEST_CONDITIONS,
    ClipFeatures,
    TrainingConfig,
    tuned_fields,
)
from callsort.training.corpora import Clip
from callsort.training.metrics import (
    calibration_report,
    fit_temperature,
    predicted_labels,
    scores,
)
from callsort.training.standardise import archive_standardised

INNER_FOLDS = 4
"""Speaker folds of the nested search inside a fold's training speakers (tuning)."""


def speaker_folds(speakers: Sequence[str], n_folds: int = 6) -> list[list[str]]:
    """Sorted speakers cut into ``n_folds`` contiguous groups (RAVDESS: 4k+1..4k+4)."""
    unique = sorted(set(speakers), key=lambda s: (int(s) if s.isdigit() else float("inf"), s))
    if len(unique) < n_folds:
        raise DatasetError(f"{len(unique)} speakers cannot make {n_folds} speaker folds")
    return [list(group) for group in np.array_split(np.array(unique, dtype=object), n_folds)]


def stack_segments(
    clips: Sequence[Clip], features: Sequence[ClipFeatures]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Segment-level ``X``, labels and clip index for a list of clips."""
    X = np.concatenate([f.X for f in features])
    y = np.repeat([c.label for c in clips], [len(f.X) for f in features])
    owner = np.repeat(np.arange(len(features)), [len(f.X) for f in features])
    return X, y, owner


MIX_KINDS = ("one", "mostly", "minority", "two")
"""Pseudo-calls a test clip is placed in (see :func:`pseudo_call`)."""
CALL_CLIPS = 8
"""Clips in a pseudo-call: a RAVDESS actor has 8 clips of each of the four emotions."""
WHOLE_SPEAKER = "speaker"
"""All of a speaker's test clips as one context (balanced across emotions, so optimistic):
reported beside the pseudo-call kinds, never pooled with them."""


def pseudo_call(i: int, clips: Sequence[Clip], *, kind: str, rng: np.random.Generator) -> list[int]:
    """Indices of a pseudo-call of clip ``i``'s speaker that contains clip ``i``.

    ``one``: all 8 clips of one emotion (the clip's own). ``mostly``: 6 of the
    clip's emotion and 2 of others (75 %). ``minority``: 2 of the clip's emotion
    among 6 of one other (the clip is the odd one out, like an outburst in a
    calm call). ``two``: 4 and 4 of two emotions. Other clips are drawn from the
    same speaker only; when a speaker has too few, with replacement.
    """
    me = clips[i]
    same = [j for j, c in enumerate(clips) if c.speaker == me.speaker and j != i]
    own = [j for j in same if clips[j].label == me.label]
    other_labels = sorted({clips[j].label for j in same} - {me.label})
    n_own = {"one": CALL_CLIPS - 1, "mostly": 5, "minority": 1, "two": 3}[kind]

    def draw(pool: list[int], n: int) -> list[int]:
        if n <= 0 or not pool:
            return []
        return [int(j) for j in rng.choice(pool, size=n, replace=n > len(pool))]

    picked = [i, *draw(own, n_own)]
    rest = CALL_CLIPS - len(picked)
    if rest and other_labels:
        if kind == "mostly":
            pool = [j for j in same if clips[j].label != me.label]
        else:
            other = other_labels[int(rng.integers(len(other_labels)))]
            pool = [j for j in same if clips[j].label == other]
        picked += draw(pool, rest)
    return picked


def in_context(
    features: Sequence[ClipFeatures], i: int, context: Sequence[int], *, prior
) -> ClipFeatures:
    """Clip ``i``'s features normalised against the segments of the clips in ``context``."""
    from callsort.features.normalise import channel_normalised

    X = np.concatenate([features[j].X for j in context])
    return ClipFeatures(
        X=channel_normalised(features[i].X, prior=prior, context=X),
        durations_s=features[i].durations_s,
    )


def cross_validate(
    clips: Sequence[Clip],
    features: dict[str, list[ClipFeatures]],
    *,
    classes: Sequence[str],
    config: TrainingConfig,
    make_model: Callable[[TrainingConfig], object],
    feature_names: Sequence[str],
    on_fold: Callable[[int, dict], None] | None = None,
    choose_config: Callable[[np.ndarray], tuple[TrainingConfig, list[dict]]] | None = None,
    folds: Sequence[Sequence[str]] | None = None,
    on_model: Callable[[int, FoldModel], None] | None = None,
) -> dict:
    """The speaker-independent protocol: per-fold and pooled figures per test condition.

    ``features`` maps a condition to the features of every clip under it.
    Models train on the training speakers' clips under ``config.train_conditions``
    and are tested on the test speakers' clips under every condition. With
    channel normalisation, each test clip is scored inside pseudo-calls of its
    speaker (:data:`MIX_KINDS`), normalised within that pseudo-call only; the
    figures are pooled over the kinds, and each kind is reported too.
    Probabilities are calibrated by a temperature fitted, for each fold, on the
    out-of-fold segment predictions of the other folds. ``choose_config``, given
    a fold's training clip indices, returns the config to fit that fold with and
    the search behind the choice (nested tuning, see :func:`tuned_config`).
    ``folds`` (lists of test speakers) default to ``config.n_folds`` folds of all
    speakers; only the clips of their speakers are scored, every other clip
    only ever trains (a second corpus, or the held-out corpus's complement).
    ``on_model`` gets each fold's model once it is fitted (:class:`FoldModel`), for
    measurements of its own.
    """
    if folds is None:
        folds = speaker_folds([c.speaker for c in clips], config.n_folds)
    folds = [list(f) for f in folds]
    speakers = np.array([c.speaker for c in clips])
    labels = np.array([c.label for c in clips])
    kinds = MIX_KINDS if config.channel_normalisation else ("clip",)
    # reported beside the pooled kinds, never in them: normalised over all of the
    # speaker's test clips, balanced across emotions (the optimistic protocol)
    extra_kinds = (WHOLE_SPEAKER,) if config.channel_normalisation else ()
    features_all, features = features, {c: f for c, f in features.items() if c in TEST_CONDITIONS}
    # out-of-fold clip probabilities per condition and kind, and segment probabilities
    clip_proba = {
        (c, k): np.full((len(clips), len(classes)), np.nan)
        for c in features
        for k in (*kinds, *extra_kinds)
    }
    segment_proba: dict[str, list] = {c: [None] * len(folds) for c in features}
    segment_truth: dict[str, list] = {c: [None] * len(folds) for c in features}
    tuning: list[dict] = []
    for k, test_speakers in enumerate(folds):
        test = np.flatnonzero(np.isin(speakers, test_speakers))
        train = np.flatnonzero(~np.isin(speakers, test_speakers))
        fold_config = config
        if choose_config is not None:
            fold_config, search = choose_config(train)
            tuning.append({"chosen": tuned_fields(fold_config), "search": search})
        fold_all, fold_test = features_all, features
        if config.archive_standardisation:
            fold_all, _ = archive_standardised(
                clips,
                features_all,
                train,
                test,
                sample=config.archive_sample,
                seed=config.seed,
                make=ClipFeatures,
                train_conditions=config.train_conditions,
            )
            fold_test = {c: f for c, f in fold_all.items() if c in TEST_CONDITIONS}
        model, prior = _fit(clips, fold_all, train, fold_config, make_model, feature_names)
        if on_model:
            on_model(k, FoldModel(model=model, prior=prior, test=test, features=fold_test))
        for cond, feats in fold_test.items():
            seg_p, seg_y = [], []
            for kind in kinds:
                test_feats = _test_features(clips, feats, test, kind, prior, config.seed)
                proba, segs = _clip_and_segment_proba(model, test_feats)
                clip_proba[cond, kind][test] = proba
                seg_p.append(segs)
                seg_y.append(np.repeat(labels[test], [len(f.X) for f in test_feats]))
            segment_proba[cond][k] = np.concatenate(seg_p)
            segment_truth[cond][k] = np.concatenate(seg_y)
            for kind in extra_kinds:
                test_feats = _test_features(clips, feats, test, kind, prior, config.seed)
                clip_proba[cond, kind][test] = _clip_and_segment_proba(model, test_feats)[0]
        if on_fold:
            fold_report: dict = {"test_speakers": list(test_speakers)}
            for cond in features:
                predicted = np.concatenate(
                    [predicted_labels(clip_proba[cond, kind][test], classes) for kind in kinds]
                )
                fold_report[cond] = scores(
                    np.concatenate([labels[test]] * len(kinds)), predicted, classes
                )
            on_fold(k, fold_report)

    result = {
        "protocol": f"{config.n_folds} folds by speaker; fold k tests speakers {folds_text(folds)}",
        "n_clips": len(clips),
        "train_conditions": list(config.train_conditions),
        "channel_normalisation": (
            {
                "prior_weight": config.prior_weight,
                "pseudo_calls": list(MIX_KINDS),
                "clips_per_call": CALL_CLIPS,
            }
            if config.channel_normalisation
            else None
        ),
    }
    if tuning:
        result["tuning"] = {"inner_folds": INNER_FOLDS, "per_fold": tuning}
    fold_of = np.full(len(clips), -1)
    for k, test_speakers in enumerate(folds):
        fold_of[np.isin(speakers, test_speakers)] = k
    tested = np.flatnonzero(fold_of >= 0)
    result["n_clips"] = len(tested)
    result["n_training_only_clips"] = len(clips) - len(tested)
    labels, fold_of = labels[tested], fold_of[tested]
    clip_proba = {key: p[tested] for key, p in clip_proba.items()}
    for cond in features:
        truth = np.concatenate([labels] * len(kinds))
        fold = np.concatenate([fold_of] * len(kinds))
        predicted = np.concatenate(
            [predicted_labels(clip_proba[cond, kind], classes) for kind in kinds]
        )
        per_fold = [
            scores(truth[fold == k], predicted[fold == k], classes) for k in range(len(folds))
        ]
        pooled = scores(truth, predicted, classes)
        entry = {
            "accuracy": round(float(np.mean([f["accuracy"] for f in per_fold])), 4),
            "macro_f1": round(float(np.mean([f["macro_f1"] for f in per_fold])), 4),
            "per_class_f1": pooled["per_class_f1"],
            "confusion": pooled["confusion"],
            "no_speech_clips": int(np.isnan(clip_proba[cond, kinds[0]]).any(axis=1).sum()),
            "per_fold": [{"accuracy": f["accuracy"], "macro_f1": f["macro_f1"]} for f in per_fold],
        }
        if len(kinds) > 1:
            entry["per_kind"] = {
                kind: {
                    "macro_f1": round(
                        float(
                            np.mean(
                                [
                                    scores(
                                        labels[fold_of == k],
                                        predicted_labels(clip_proba[cond, kind], classes)[
                                            fold_of == k
                                        ],
                                        classes,
                                    )["macro_f1"]
                                    for k in range(len(folds))
                                ]
                            )
                        ),
                        4,
                    )
                }
                for kind in (*kinds, *extra_kinds)
            }
        entry["calibration"] = calibration_report(segment_proba[cond], segment_truth[cond], classes)
        result[cond] = entry
    # for the shipped model: fitted on clean and telephone test predictions alike
    result["temperature"] = fit_temperature(
        np.concatenate([p for c in CONDITIONS for p in segment_proba[c]]),
        np.concatenate([t for c in CONDITIONS for t in segment_truth[c]]),
        classes,
    )
    return result


@dataclass(frozen=True)
class FoldModel:
    """One fold's fitted model and what it is tested on."""

    model: object  # EmotionClassifier, uncalibrated (temperature 1)
    prior: PopulationPrior | None  # channel normalisation's prior; None: not normalised
    test: np.ndarray  # indices of the test clips
    features: dict[str, list[ClipFeatures]]  # every clip's features per test condition


def _test_features(clips, feats, test, kind, prior, seed) -> list[ClipFeatures]:
    if kind == "clip":
        return [feats[i] for i in test]
    if kind == WHOLE_SPEAKER:
        return [
            in_context(
                feats,
                int(i),
                [int(j) for j in test if clips[j].speaker == clips[i].speaker],
                prior=prior,
            )
            for i in test
        ]
    test_clips = [clips[i] for i in test]
    out = []
    for n, i in enumerate(test):
        rng = np.random.default_rng([seed, int(i), MIX_KINDS.index(kind)])
        context = [int(test[j]) for j in pseudo_call(n, test_clips, kind=kind, rng=rng)]
        out.append(in_context(feats, int(i), context, prior=prior))
    return out


def _clip_and_segment_proba(model, feats: Sequence[ClipFeatures]):
    X = np.concatenate([f.X for f in feats])
    proba = model.predict_proba(X) if len(X) else np.zeros((0, len(model.classes_)))
    clip_rows, start = [], 0
    for f in feats:
        part = proba[start : start + len(f.X)]
        start += len(f.X)
        clip_rows.append(
            np.average(part, axis=0, weights=np.maximum(f.durations_s, 1e-3))
            if len(part)
            else np.full(proba.shape[1], np.nan)
        )
    return np.array(clip_rows), proba


def fit_final(
    clips: Sequence[Clip],
    features: dict[str, list[ClipFeatures]],
    *,
    config: TrainingConfig,
    make_model: Callable[[TrainingConfig], object],
    feature_names: Sequence[str],
) -> FinalFit:
    """Fit one model on every clip given (each corpus standardised over its own clips
    first when ``config.archive_standardisation``)."""
    index = np.arange(len(clips))
    population = None
    if config.archive_standardisation:
        features, population = archive_standardised(
            clips,
            features,
            index,
            np.arange(0),
            sample=config.archive_sample,
            seed=config.seed,
            make=ClipFeatures,
            train_conditions=config.train_conditions,
        )
    model, prior = _fit(clips, features, index, config, make_model, feature_names)
    return FinalFit(model=model, prior=prior, archive_population=population)


@dataclass(frozen=True)
class FinalFit:
    """The final model, its channel-normalisation prior and its archive population."""

    model: object  # EmotionClassifier
    prior: PopulationPrior | None  # None: trained without channel normalisation
    # statistics of all the training segments before per-corpus standardisation (the
    # population an archive's own statistics are shrunk toward); None: not standardised
    archive_population: ArchiveStatistics | None


def _fit(clips, features, index, config, make_model, feature_names):
    """Fit on the clips at ``index`` under the config's training conditions.

    With channel normalisation each training clip is normalised inside one
    pseudo-call of its speaker, of a kind drawn at random, so the model learns
    from the same mixes it is tested on.
    """
    from callsort.features.normalise import normalised_names, population_prior

    prior = None
    if config.channel_normalisation:
        pooled = np.concatenate([features[c][i].X for c in config.train_conditions for i in index])
        prior = population_prior(pooled, weight=config.prior_weight)
        feature_names = normalised_names(feature_names)
    subset = [clips[i] for i in index]
    X_parts, y_parts, group_parts, corpus_parts = [], [], [], []
    for n_cond, cond in enumerate(config.train_conditions):
        feats = [features[cond][i] for i in index]
        clips_here = subset
        if prior is not None:
            rng = np.random.default_rng([config.seed, n_cond])
            raw, feats, clips_here = feats, [], []
            for _ in range(config.contexts_per_clip):
                for n in range(len(subset)):
                    if config.train_context == WHOLE_SPEAKER:
                        me = subset[n].speaker
                        context = [j for j, c in enumerate(subset) if c.speaker == me]
                    else:
                        kind = MIX_KINDS[rng.integers(len(MIX_KINDS))]
                        context = pseudo_call(n, subset, kind=kind, rng=rng)
                    feats.append(in_context(raw, n, context, prior=prior))
                    clips_here.append(subset[n])
        X, y, owner = stack_segments(clips_here, feats)
        X_parts.append(X)
        y_parts.append(y)
        group_parts.append(np.array([clips_here[i].speaker for i in owner], dtype=object))
        corpus_parts.append(np.array([clips_here[i].corpus for i in owner], dtype=object))
    corpora = np.concatenate(corpus_parts)
    weight = None
    if config.balance_corpora:
        names, counts = np.unique(corpora, return_counts=True)
        per_corpus = dict(
            zip(names.tolist(), (len(corpora) / (len(names) * counts)).tolist(), strict=True)
        )
        weight = np.array([per_corpus[c] for c in corpora])
    model = make_model(config)
    model.fit(
        np.concatenate(X_parts),
        np.concatenate(y_parts),
        feature_names=feature_names,
        groups=np.concatenate(group_parts),
        sample_weight=weight,
    )
    return model, prior


# Candidates of the nested search (TrainingConfig fields over the config searched
# around); the config's own settings come first and win ties. Few on purpose: seeds
# alone move a protocol run by up to 2.5 points, so a large search would mostly pick


def folds_text(folds: Sequence[Sequence[str]]) -> str:
    return "; ".join(f"{k}: {','.join(f)}" for k, f in enumerate(folds))


def make_classifier(config: TrainingConfig, *, jobs: int):
    """The unfitted classifier of ``config`` (LightGBM with its linear head)."""
    from callsort.model.classifier import EmotionClassifier

    return EmotionClassifier(
        n_estimators=config.n_estimators,
        params=config.model_params,
        max_features=config.max_features,
        classes=config.classes,
        random_state=config.seed,
        n_jobs=jobs,
    )
