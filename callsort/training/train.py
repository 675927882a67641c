"""Train and evaluate models on labelled clips, speaker-independently.

Corpora come from :mod:`callsort.training.corpora`, scores from :mod:`callsort.training.metrics`.
Clips go through the product's own path (decode, segmentation, features);
each speech segment is a training example labelled with its clip's emotion,
and a clip's prediction is the duration-weighted mean of its segments'.

The evaluation protocol: speakers sorted and cut into 6 equal folds (for
RAVDESS, fold k tests actors 4k+1..4k+4); each fold's model never hears its
test speakers.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np

from callsort.errors import DatasetError
from callsort.features.encoder import WHISPER_BASE
from callsort.features.spectral import feature_names
from callsort.settings import (
    DEFAULT_CLASSES,
    AnalysisSettings,
    FeatureSettings,
    identity,
    settings_repr,
)
from callsort.training.corpora import Clip, corpus_folders, default_licence, find_corpora
from callsort.training.metrics import (
    calibration_report,
    fit_temperature,
    predicted_labels,
    scores,
)

CONDITIONS = ("clean", "telephone")
"""Audio conditions: the corpus file as it is, and the clip written as an 8 kHz G.711
mu-law WAV (300-3400 Hz) and read back through ``callsort label``'s decode path."""
CODEC_CONDITIONS = ("alaw", "gsm", "g721")
"""Other telephone files, read the same way: A-law, GSM 06.10 and G.721 ADPCM WAV."""
TEST_CONDITIONS = (*CONDITIONS, *CODEC_CONDITIONS, "noise20", "noise10")
"""Conditions a model can be tested under: also white noise at 20 and 10 dB SNR."""
AUGMENTED = "augmented"
"""A training-only condition: random background noise, half of it written as a telephone
file in one of the four codecs."""
PERTURBED = "perturbed"
"""A training-only condition: another gain, speed and pitch (augment.perturbed); measured
and left out of the default (benchmarks/ACCURACY.md)."""
FEATURE_CACHE_VERSION = 4  # bump when feature code changes without a settings change


@dataclass(frozen=True)
class ClipFeatures:
    """Segment features of one clip under one audio condition."""

    X: np.ndarray  # (segments, features)
    durations_s: np.ndarray  # (segments,)


def speaker_folds(speakers: Sequence[str], n_folds: int = 6) -> list[list[str]]:
    """Sorted speakers cut into ``n_folds`` contiguous groups (RAVDESS: 4k+1..4k+4)."""
    unique = sorted(set(speakers), key=lambda s: (int(s) if s.isdigit() else float("inf"), s))
    if len(unique) < n_folds:
        raise DatasetError(f"{len(unique)} speakers cannot make {n_folds} speaker folds")
    return [list(group) for group in np.array_split(np.array(unique, dtype=object), n_folds)]


# --- features, cached per clip and condition ---------------------------------------------


def clip_features(
    clips: Sequence[Clip],
    *,
    condition: str,
    settings: AnalysisSettings,
    feature_settings: FeatureSettings,
    cache_dir: Path | None,
    jobs: int,
    on_done: Callable[[], None] | None = None,
) -> list[ClipFeatures]:
    """Features of every clip under ``condition``, using all ``jobs`` cores and the cache."""
    tasks = [(c.path, condition, settings, feature_settings, cache_dir) for c in clips]
    if jobs <= 1:
        out = []
        for t in tasks:
            out.append(_clip_features_task(t))
            if on_done:
                on_done()
        return out
    import multiprocessing

    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        out = []
        for result in pool.map(_clip_features_task, tasks, chunksize=8):
            out.append(result)
            if on_done:
                on_done()
        return out


def _clip_features_task(task: tuple) -> ClipFeatures:
    path, condition, settings, feature_settings, cache_dir = task
    cache_file = None
    if cache_dir is not None:
        cache_file = (
            Path(cache_dir) / f"{_cache_key(path, condition, settings, feature_settings)}.npz"
        )
        if cache_file.is_file():
            with np.load(cache_file) as data:
                return ClipFeatures(X=data["X"], durations_s=data["durations_s"])
        if feature_settings.encoder is None:
            # the hand-made features are the first columns of an encoder model's: reuse
            # those when they are cached (same code, same segments)
            with_encoder = replace(feature_settings, encoder=WHISPER_BASE)
            richer = Path(cache_dir) / f"{_cache_key(path, condition, settings, with_encoder)}.npz"
            if richer.is_file():
                n = len(feature_names(feature_settings))
                with np.load(richer) as data:
                    return ClipFeatures(X=data["X"][:, :n], durations_s=data["durations_s"])
    features = _compute_clip_features(path, condition, settings, feature_settings)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, X=features.X, durations_s=features.durations_s)
        os.replace(tmp, cache_file)
    return features


def _compute_clip_features(
    path: Path, condition: str, settings: AnalysisSettings, feature_settings: FeatureSettings
) -> ClipFeatures:
    from callsort.run.analysis import decode_mono, waveform_segments
    from callsort.training.augment import add_noise

    y = decode_mono(path)
    if condition == "telephone":
        y = through_telephone_file(y, codec="mulaw")
    elif condition in CODEC_CONDITIONS:
        y = through_telephone_file(y, codec=condition)
    elif condition == AUGMENTED:
        from callsort.training.augment import TELEPHONE_CODECS, augmented

        seed = _name_seed(path) ^ 0x5EED
        y = augmented(y, seed=seed, telephone_chain=False)
        rng = np.random.default_rng([seed, 1])
        if rng.random() < 0.5:
            codecs = sorted(TELEPHONE_CODECS)
            y = through_telephone_file(y, codec=codecs[int(rng.integers(len(codecs)))])
    elif condition == PERTURBED:
        from callsort.training.augment import perturbed

        y = perturbed(y, seed=_name_seed(path) ^ 0x5BEED)
    elif condition.startswith("noise") and condition in TEST_CONDITIONS:
        # the same noise for a clip every time: a stable seed from its file name
        y = add_noise(y, snr_db=float(condition[len("noise") :]), seed=_name_seed(path))
    elif condition != "clean":
        raise ValueError(f"unknown condition {condition!r}")
    # A clip in which no speech is found gives no rows, as `callsort label` would:
    # it trains nothing and counts as wrong when tested (see NO_SPEECH).
    segments, X = waveform_segments(y, settings=settings, feature_settings=feature_settings)
    durations = np.array([end - start for start, end in segments], dtype=np.float32)
    return ClipFeatures(X=X.astype(np.float32), durations_s=durations)


def through_telephone_file(y: np.ndarray, *, codec: str) -> np.ndarray:
    """16 kHz ``y`` written as an 8 kHz telephone WAV in ``codec`` and decoded again by
    ``callsort label``'s own path (what an archive's file gives the model)."""
    import tempfile

    from callsort.run.analysis import decode_mono
    from callsort.training.augment import write_telephone_file

    with tempfile.TemporaryDirectory(prefix="callsort-telephone-") as folder:
        path = write_telephone_file(y, Path(folder) / f"{codec}.wav", codec=codec)
        return decode_mono(path)


def _name_seed(path: Path) -> int:
    """A seed that is stable for a clip across runs and machines."""
    return int(hashlib.sha1(Path(path).name.encode()).hexdigest()[:8], 16)


def _cache_key(path: Path, condition: str, settings: AnalysisSettings, fs: FeatureSettings) -> str:
    st = os.stat(path)
    ident = json.dumps(
        [
            str(Path(path).resolve()),
            st.st_size,
            st.st_mtime_ns,
            condition,
            settings_repr(settings.segmentation),
            identity(fs),
            FEATURE_CACHE_VERSION,
        ],
        sort_keys=True,
    )
    return hashlib.sha1(ident.encode()).hexdigest()


def default_cache_dir() -> Path:
    base = os.environ.get("CALLSORT_CACHE") or os.environ.get("XDG_CACHE_HOME")
    return Path(base) / "callsort" if base else Path.home() / ".cache" / "callsort"


# --- fitting and scoring -------------------------------------------------------------------


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
            tuning.append({"chosen": _tuned_fields(fold_config), "search": search})
        model, prior = _fit(clips, features_all, train, fold_config, make_model, feature_names)
        for cond, feats in features.items():
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


# --- calibration -------------------------------------------------------------------------


def fit_final(
    clips: Sequence[Clip],
    features: dict[str, list[ClipFeatures]],
    *,
    config: TrainingConfig,
    make_model: Callable[[TrainingConfig], object],
    feature_names: Sequence[str],
):
    """Fit one model on every clip given; returns it and its population prior (or None)."""
    index = np.arange(len(clips))
    return _fit(clips, features, index, config, make_model, feature_names)


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
INNER_FOLDS = 4


def _tuned_fields(config: TrainingConfig) -> dict:
    return {
        "n_estimators": config.n_estimators,
        "model_params": config.model_params,
        "max_features": config.max_features,
    }


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


def folds_text(folds: Sequence[Sequence[str]]) -> str:
    return "; ".join(f"{k}: {','.join(f)}" for k, f in enumerate(folds))


# --- the train and evaluate commands ------------------------------------------------------


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that decides what ``callsort train`` produces from a folder."""

    classes: tuple[str, ...] = DEFAULT_CLASSES
    # clean clips, their telephone copies and a noisy copy of each (augment.augmented);
    # PERTURBED copies (augment.perturbed) were measured and left out (ACCURACY.md)
    train_conditions: tuple[str, ...] = (*CONDITIONS, AUGMENTED)
    calm_from_neutral: bool = False
    n_estimators: int = 300
    n_folds: int = 6
    holdout_speakers: tuple[str, ...] = ()
    seed: int = 0
    # features also z-scored within each channel (see callsort.features.normalise)
    channel_normalisation: bool = True
    prior_weight: float = 5.0  # segments the population prior counts as
    contexts_per_clip: int = 1  # pseudo-calls each training clip is normalised in
    # weigh training segments so that every corpus counts alike (nEMO has 4x RAVDESS's
    # clips and, unweighted, pulls RAVDESS's folds down: ACCURACY.md)
    balance_corpora: bool = True
    # a corpus without calm clips (nEMO) trains calm on its neutral ones
    neutral_for_missing_calm: bool = True
    # "pseudo-call", or WHOLE_SPEAKER: each training clip normalised over all of its
    # speaker's clips (the optimistic protocol of the accuracy issue's anchors)
    train_context: str = "pseudo-call"
    calibrate: bool = True  # temperature-scale the probabilities
    model_params: dict | None = None  # LightGBM parameters over model.DEFAULT_PARAMS
    max_features: int | None = None  # feature selection inside each fit (EmotionClassifier)
    # choose n_estimators / model_params / max_features by a search inside the
    # training speakers (tuned_config); the evaluation nests it in every fold
    tune: bool = False


@dataclass(frozen=True)
class ProtocolRun:
    """Clips, their features per condition, and the settings they were made with."""

    clips: list[Clip]
    features: dict[str, list[ClipFeatures]]
    settings: AnalysisSettings
    feature_settings: FeatureSettings
    feature_names: list[str]


def extract(
    data_dir: Path | str | Sequence[Path | str],
    config: TrainingConfig,
    *,
    jobs: int,
    cache_dir: Path | None,
    on_done: Callable[[], None] | None = None,
    conditions: Sequence[str] = CONDITIONS,
    feature_settings: FeatureSettings | None = None,
) -> ProtocolRun:
    """Find the clips of one or more corpus folders and compute their features under
    every condition (cached)."""

    settings, feature_settings = AnalysisSettings(), feature_settings or FeatureSettings()
    conditions = tuple(dict.fromkeys([*conditions, *config.train_conditions]))
    folders = [data_dir] if isinstance(data_dir, (str, Path)) else list(data_dir)
    clips = find_corpora(
        folders,
        classes=config.classes,
        calm_from_neutral=config.calm_from_neutral,
        neutral_for_missing_calm=config.neutral_for_missing_calm,
    )
    features = {
        cond: clip_features(
            clips,
            condition=cond,
            settings=settings,
            feature_settings=feature_settings,
            cache_dir=cache_dir,
            jobs=jobs,
            on_done=on_done,
        )
        for cond in conditions
    }
    return ProtocolRun(clips, features, settings, feature_settings, feature_names(feature_settings))


def evaluate_protocol(
    run: ProtocolRun,
    config: TrainingConfig,
    *,
    jobs: int,
    on_fold: Callable[[int, dict], None] | None = None,
    on_candidate: Callable[[dict], None] | None = None,
    folds: Sequence[Sequence[str]] | None = None,
) -> dict:
    """Cross-validated figures of ``config`` on every speaker of the run (or on the
    test speakers of ``folds``; see :func:`cross_validate`).

    With ``config.tune`` the search of :func:`tuned_config` is nested in every
    fold: it sees that fold's training speakers only.
    """
    make_model = partial(_classifier, jobs=jobs)
    choose = None
    if config.tune:

        def choose(train_index: np.ndarray):
            return tuned_config(
                run.clips,
                run.features,
                train_index,
                config,
                make_model=make_model,
                feature_names=run.feature_names,
                on_candidate=on_candidate,
            )

    return cross_validate(
        run.clips,
        run.features,
        classes=config.classes,
        config=config,
        make_model=make_model,
        feature_names=run.feature_names,
        on_fold=on_fold,
        choose_config=choose,
        folds=folds,
    )


def corpus_folds(clips: Sequence[Clip], corpus: str, *, n_folds: int) -> list[list[str]]:
    """Speaker folds inside one corpus: ``n_folds`` when it is the only corpus; beside
    others, fewer if need be so that each fold tests at least 3 speakers (nEMO's 9
    speakers: 3 folds, each trained on the other 6 and every speaker of the others)."""
    speakers = sorted({c.speaker for c in clips if c.corpus == corpus})
    if len({c.corpus for c in clips}) > 1:
        n_folds = max(2, min(n_folds, len(speakers) // 3))
    return speaker_folds(speakers, n_folds)


def corpus_protocols(
    run: ProtocolRun,
    config: TrainingConfig,
    *,
    jobs: int,
    headline_only: bool = False,
    on_fold: Callable[[str, int, dict], None] | None = None,
) -> dict:
    """The protocols of a run over one or more corpora.

    For each corpus: folds by speaker inside it (every other speaker, of every
    corpus, trains), and, with several corpora, leave-one-corpus-out (the other
    corpora train, every clip of this one tests). The first corpus's folds are the
    headline: their figures stand at the top level, as with one corpus; the rest
    are under ``other_protocols``.
    """
    corpora = list(dict.fromkeys(c.corpus for c in run.clips))
    runs: dict[str, dict] = {}
    for corpus in corpora[:1] if headline_only else corpora:
        folds = corpus_folds(run.clips, corpus, n_folds=config.n_folds)
        name = f"{corpus}: {len(folds)} folds by speaker"
        runs[name] = evaluate_protocol(
            run,
            config,
            jobs=jobs,
            folds=folds,
            on_fold=(lambda k, r, n=name: on_fold(n, k, r)) if on_fold else None,
        )
    if not headline_only and len(corpora) > 1:
        for corpus in corpora:
            speakers = sorted({c.speaker for c in run.clips if c.corpus == corpus})
            name = f"{corpus}: trained without it"
            runs[name] = evaluate_protocol(
                run,
                config,
                jobs=jobs,
                folds=[speakers],
                on_fold=(lambda k, r, n=name: on_fold(n, k, r)) if on_fold else None,
            )
    headline, *others = runs
    metrics = dict(runs[headline])
    metrics["headline"] = headline
    metrics["n_folds"] = len(metrics["clean"]["per_fold"])
    metrics["other_protocols"] = {name: runs[name] for name in others}
    return metrics


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
            make_model=partial(_classifier, jobs=jobs),
            feature_names=run.feature_names,
        )
    classifier, prior = fit_final(
        clips,
        features,
        config=config,
        make_model=partial(_classifier, jobs=jobs),
        feature_names=run.feature_names,
    )
    if config.calibrate:
        # the temperature the cross-validation fitted on all its out-of-fold predictions
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
            "command": "callsort train "
            + " ".join(Path(d).name for d in corpus_folders(data_dir))
            + " --out MODEL_DIR"
            + ("" if run.feature_settings.encoder else " --model fast")
            + (f" --holdout-speakers {','.join(sorted(held_out))}" if held_out else ""),
        },
        metrics=metrics,
        library_versions=library_versions(),
        licence=licence,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    return classifier, card


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


def _classifier(config: TrainingConfig, *, jobs: int):
    from callsort.model.classifier import EmotionClassifier

    return EmotionClassifier(
        n_estimators=config.n_estimators,
        params=config.model_params,
        max_features=config.max_features,
        classes=config.classes,
        random_state=config.seed,
        n_jobs=jobs,
    )
