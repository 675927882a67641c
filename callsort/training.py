"""Train and evaluate models on labelled clips, speaker-independently.

A training folder is either in the RAVDESS layout (seven-field file names,
``Actor_NN`` folders) or any folder with a ``labels.csv`` (``path,label[,speaker]``).
Clips go through the product's own path (decode, segmentation, features);
each speech segment is a training example labelled with its clip's emotion,
and a clip's prediction is the duration-weighted mean of its segments'.

The evaluation protocol: speakers sorted and cut into 6 equal folds (for
RAVDESS, fold k tests actors 4k+1..4k+4); each fold's model never hears its
test speakers.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from callsort.errors import DatasetError
from callsort.settings import DEFAULT_CLASSES, AnalysisSettings, FeatureSettings

RAVDESS_EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
_RAVDESS_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
CONDITIONS = ("clean", "telephone")
"""Audio conditions: as recorded, and through the telephone chain."""
FEATURE_CACHE_VERSION = 1  # bump when feature code changes without a settings change


@dataclass(frozen=True)
class Clip:
    """One labelled recording of one speaker."""

    path: Path
    label: str
    speaker: str


@dataclass(frozen=True)
class ClipFeatures:
    """Segment features of one clip under one audio condition."""

    X: np.ndarray  # (segments, features)
    durations_s: np.ndarray  # (segments,)


def find_clips(
    folder: Path | str, *, classes: Sequence[str] = DEFAULT_CLASSES, calm_from_neutral: bool = False
) -> list[Clip]:
    """Labelled clips in ``folder`` whose label is one of ``classes``, sorted by path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"not a folder: {folder}")
    labels_csv = folder / "labels.csv"
    clips = (
        _labels_csv_clips(labels_csv)
        if labels_csv.is_file()
        else _ravdess_clips(folder, calm_from_neutral=calm_from_neutral)
    )
    clips = sorted((c for c in clips if c.label in classes), key=lambda c: str(c.path))
    if not clips:
        raise DatasetError(
            f"no labelled clips of classes {list(classes)} in {folder} "
            "(expected RAVDESS file names or a labels.csv with path,label[,speaker])"
        )
    return clips


def _ravdess_clips(folder: Path, *, calm_from_neutral: bool) -> list[Clip]:
    clips = []
    for path in folder.rglob("*"):
        match = _RAVDESS_NAME.match(path.stem)
        if not match or not path.is_file():
            continue
        emotion = RAVDESS_EMOTIONS.get(match.group(3), "")
        if emotion == "neutral" and calm_from_neutral:
            emotion = "calm"
        clips.append(Clip(path=path, label=emotion, speaker=match.group(7)))
    return clips


def _labels_csv_clips(labels_csv: Path) -> list[Clip]:
    with labels_csv.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
            raise DatasetError(f"{labels_csv} needs the columns path,label[,speaker]")
        return [
            Clip(
                path=labels_csv.parent / row["path"],
                label=row["label"].strip(),
                speaker=(row.get("speaker") or "").strip() or "unknown",
            )
            for row in reader
        ]


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
    from callsort.analysis import decode_mono, waveform_segments
    from callsort.augment import telephone

    y = decode_mono(path)
    if condition == "telephone":
        y = telephone(y)
    elif condition != "clean":
        raise ValueError(f"unknown condition {condition!r}")
    segments, X = waveform_segments(y, settings=settings, feature_settings=feature_settings)
    if not segments:  # no speech found: describe the whole clip rather than drop it
        from callsort.features import segment_features

        X = segment_features(y, settings=feature_settings)[np.newaxis, :]
        durations = np.array([len(y) / feature_settings.sample_rate])
    else:
        durations = np.array([end - start for start, end in segments])
    return ClipFeatures(X=X.astype(np.float32), durations_s=durations.astype(np.float32))


def _cache_key(path: Path, condition: str, settings: AnalysisSettings, fs: FeatureSettings) -> str:
    st = os.stat(path)
    ident = json.dumps(
        [
            str(Path(path).resolve()),
            st.st_size,
            st.st_mtime_ns,
            condition,
            settings.segmentation.__repr__(),
            asdict(fs),
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
    y = np.concatenate([[c.label] * len(f.X) for c, f in zip(clips, features)])
    owner = np.concatenate([[i] * len(f.X) for i, f in enumerate(features)])
    return X, y, owner


def clip_probabilities(model, features: Sequence[ClipFeatures]) -> np.ndarray:
    """Duration-weighted mean of each clip's segment probabilities, ``(clips, classes)``."""
    X = np.concatenate([f.X for f in features])
    proba = model.predict_proba(X)
    out, start = [], 0
    for f in features:
        part = proba[start : start + len(f.X)]
        start += len(f.X)
        out.append(np.average(part, axis=0, weights=np.maximum(f.durations_s, 1e-3)))
    return np.array(out)


def scores(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str]) -> dict:
    """Accuracy, macro-F1, per-class F1 and the confusion matrix (rows: truth)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    per_class = f1_score(y_true, y_pred, labels=list(classes), average=None, zero_division=0)
    return {
        "accuracy": round(float(accuracy_score(y_true, y_pred)), 4),
        "macro_f1": round(float(np.mean(per_class)), 4),
        "per_class_f1": {c: round(float(v), 4) for c, v in zip(classes, per_class)},
        "confusion": confusion_matrix(y_true, y_pred, labels=list(classes)).tolist(),
    }


def cross_validate(
    clips: Sequence[Clip],
    features: dict[str, list[ClipFeatures]],
    *,
    classes: Sequence[str],
    train_conditions: Sequence[str],
    make_model: Callable[[], object],
    feature_names: Sequence[str],
    n_folds: int = 6,
    on_fold: Callable[[int, dict], None] | None = None,
) -> dict:
    """The speaker-independent protocol: per-fold and pooled figures per test condition.

    ``features`` maps a condition to the features of every clip under it.
    Models train on the training speakers' clips under ``train_conditions``
    and are tested on the test speakers' clips under every condition.
    """
    folds = speaker_folds([c.speaker for c in clips], n_folds)
    speakers = np.array([c.speaker for c in clips])
    labels = np.array([c.label for c in clips])
    predictions = {cond: np.empty(len(clips), dtype=object) for cond in features}
    per_fold: dict[str, list[dict]] = {cond: [] for cond in features}
    for k, test_speakers in enumerate(folds):
        test = np.flatnonzero(np.isin(speakers, test_speakers))
        train = np.flatnonzero(~np.isin(speakers, test_speakers))
        model = _fit(clips, features, train, train_conditions, make_model, feature_names)
        fold_report = {"test_speakers": list(test_speakers)}
        for cond, feats in features.items():
            proba = clip_probabilities(model, [feats[i] for i in test])
            predicted = np.array(classes)[np.argmax(proba, axis=1)]
            predictions[cond][test] = predicted
            fold_scores = scores(labels[test], predicted, classes)
            per_fold[cond].append(fold_scores)
            fold_report[cond] = fold_scores
        if on_fold:
            on_fold(k, fold_report)
    result = {
        "protocol": f"{n_folds} folds by speaker; fold k tests speakers {folds_text(folds)}",
        "n_clips": len(clips),
        "train_conditions": list(train_conditions),
    }
    for cond in features:
        folds_scores = per_fold[cond]
        result[cond] = {
            "accuracy": round(float(np.mean([f["accuracy"] for f in folds_scores])), 4),
            "macro_f1": round(float(np.mean([f["macro_f1"] for f in folds_scores])), 4),
            "per_class_f1": scores(labels, predictions[cond], classes)["per_class_f1"],
            "confusion": scores(labels, predictions[cond], classes)["confusion"],
            "per_fold": [
                {"accuracy": f["accuracy"], "macro_f1": f["macro_f1"]} for f in folds_scores
            ],
        }
    return result


def metric_differences(expected: dict, measured: dict, *, tolerance: float) -> list[str]:
    """Where ``measured`` figures differ from ``expected`` by more than ``tolerance``."""
    out = []
    for cond in CONDITIONS:
        for key in ("accuracy", "macro_f1"):
            want = expected.get(cond, {}).get(key)
            got = measured.get(cond, {}).get(key)
            if want is None or got is None or abs(want - got) > tolerance:
                out.append(f"{cond} {key}: card {want}, measured {got}")
    if expected.get("n_clips") != measured.get("n_clips"):
        out.append(f"clips: card {expected.get('n_clips')}, measured {measured.get('n_clips')}")
    return out


def fit_final(
    clips: Sequence[Clip],
    features: dict[str, list[ClipFeatures]],
    *,
    train_conditions: Sequence[str],
    make_model: Callable[[], object],
    feature_names: Sequence[str],
):
    """Fit one model on every clip given, under ``train_conditions``."""
    index = np.arange(len(clips))
    return _fit(clips, features, index, train_conditions, make_model, feature_names)


def _fit(clips, features, index, train_conditions, make_model, feature_names):
    X_parts, y_parts = [], []
    for cond in train_conditions:
        X, y, _ = stack_segments([clips[i] for i in index], [features[cond][i] for i in index])
        X_parts.append(X)
        y_parts.append(y)
    model = make_model()
    model.fit(np.concatenate(X_parts), np.concatenate(y_parts), feature_names=feature_names)
    return model


def folds_text(folds: Sequence[Sequence[str]]) -> str:
    return "; ".join(f"{k}: {','.join(f)}" for k, f in enumerate(folds))


# --- the train and evaluate commands ------------------------------------------------------


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that decides what ``callsort train`` produces from a folder."""

    classes: tuple[str, ...] = DEFAULT_CLASSES
    train_conditions: tuple[str, ...] = CONDITIONS
    calm_from_neutral: bool = False
    n_estimators: int = 400
    n_folds: int = 6
    holdout_speakers: tuple[str, ...] = ()
    seed: int = 0


@dataclass(frozen=True)
class ProtocolRun:
    """Clips, their features per condition, and the settings they were made with."""

    clips: list[Clip]
    features: dict[str, list[ClipFeatures]]
    settings: AnalysisSettings
    feature_settings: FeatureSettings
    feature_names: list[str]


def extract(
    data_dir: Path | str,
    config: TrainingConfig,
    *,
    jobs: int,
    cache_dir: Path | None,
    on_done: Callable[[], None] | None = None,
) -> ProtocolRun:
    """Find the clips and compute their features under every condition (cached)."""
    from callsort.features import feature_names

    settings, feature_settings = AnalysisSettings(), FeatureSettings()
    clips = find_clips(data_dir, classes=config.classes, calm_from_neutral=config.calm_from_neutral)
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
        for cond in CONDITIONS
    }
    return ProtocolRun(clips, features, settings, feature_settings, feature_names(feature_settings))


def evaluate_protocol(
    run: ProtocolRun,
    config: TrainingConfig,
    *,
    jobs: int,
    on_fold: Callable[[int, dict], None] | None = None,
) -> dict:
    """Cross-validated figures of ``config`` on every speaker of the run."""
    return cross_validate(
        run.clips,
        run.features,
        classes=config.classes,
        train_conditions=config.train_conditions,
        make_model=lambda: _classifier(config, jobs),
        feature_names=run.feature_names,
        n_folds=config.n_folds,
        on_fold=on_fold,
    )


def train_model(
    run: ProtocolRun,
    config: TrainingConfig,
    *,
    data_dir: Path | str,
    metrics: dict,
    jobs: int,
    licence: str,
):
    """Fit the final model on every speaker except the held-out ones; return it and its card."""
    from datetime import datetime, timezone

    import callsort
    from callsort.model import ModelCard

    held_out = set(config.holdout_speakers)
    keep = [i for i, c in enumerate(run.clips) if c.speaker not in held_out]
    clips = [run.clips[i] for i in keep]
    features = {cond: [f[i] for i in keep] for cond, f in run.features.items()}
    classifier = fit_final(
        clips,
        features,
        train_conditions=config.train_conditions,
        make_model=lambda: _classifier(config, jobs),
        feature_names=run.feature_names,
    )
    digest = hashlib.sha1(classifier.booster_.model_to_string().encode()).hexdigest()[:8]
    speakers = sorted({c.speaker for c in clips})
    card = ModelCard(
        version=f"{callsort.__version__}+{digest}",
        classes=list(config.classes),
        feature_names=run.feature_names,
        feature_settings=asdict(run.feature_settings),
        segmentation_settings=asdict(run.settings.segmentation),
        training={
            "data": Path(data_dir).name,
            "n_clips": len(clips),
            "n_segments": int(sum(len(f.X) for f in features[CONDITIONS[0]])),
            "speakers": speakers,
            "held_out_speakers": sorted(held_out),
            "label_counts": {c: sum(x.label == c for x in clips) for c in config.classes},
            "config": asdict(config),
            "command": "callsort train DATA_DIR --out MODEL_DIR"
            + (f" --holdout-speakers {','.join(sorted(held_out))}" if held_out else ""),
        },
        metrics=metrics,
        library_versions=library_versions(),
        licence=licence,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    return classifier, card


RAVDESS_LICENCE = (
    "Trained on the Ryerson Audio-Visual Database of Emotional Speech and Song (RAVDESS): "
    "Livingstone SR, Russo FA (2018) PLoS ONE 13(5): e0196391, "
    "https://doi.org/10.1371/journal.pone.0196391, licensed CC BY-NC-SA 4.0. "
    "This model is a derived work and is distributed under the same licence "
    "(Creative Commons Attribution-NonCommercial-ShareAlike 4.0): non-commercial use only."
)


def default_licence(data_dir: Path | str) -> str:
    """The RAVDESS notice for a RAVDESS-layout folder; otherwise a prompt to state one."""
    if (Path(data_dir) / "labels.csv").is_file():
        return "Trained on user-supplied data; its licence applies."
    return RAVDESS_LICENCE


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


def _classifier(config: TrainingConfig, jobs: int):
    from callsort.model import EmotionClassifier

    return EmotionClassifier(
        n_estimators=config.n_estimators,
        classes=config.classes,
        random_state=config.seed,
        n_jobs=jobs,
    )
