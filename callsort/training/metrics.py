"""Scores of predictions against the truth: labels, F1, calibration, card checks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from callsort.model.booster import temperature_scaled

NO_SPEECH = "(no speech)"
"""What a clip in which the voice-activity detector finds no speech is predicted as."""


def predicted_labels(proba: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """The most probable class per row; :data:`NO_SPEECH` for rows of NaN."""
    speech = ~np.isnan(proba).any(axis=1)
    best = np.argmax(np.where(speech[:, None], proba, 0.0), axis=1)
    return np.where(speech, np.asarray(classes, dtype=object)[best], NO_SPEECH)


def scores(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str]) -> dict:
    """Accuracy, macro-F1, per-class F1 and the confusion matrix (rows: truth)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    per_class = f1_score(y_true, y_pred, labels=list(classes), average=None, zero_division=0)
    return {
        "accuracy": round(float(accuracy_score(y_true, y_pred)), 4),
        "macro_f1": round(float(np.mean(per_class)), 4),
        "per_class_f1": {c: round(float(v), 4) for c, v in zip(classes, per_class, strict=True)},
        "confusion": confusion_matrix(y_true, y_pred, labels=list(classes)).tolist(),
    }


def fit_temperature(proba: np.ndarray, truth: np.ndarray, classes: Sequence[str]) -> float:
    """The temperature that minimises the log loss of ``proba`` (segments, classes)."""
    from scipy.optimize import minimize_scalar

    index = np.array([list(classes).index(t) for t in truth])

    def loss(log_t: float) -> float:
        p = temperature_scaled(proba, float(np.exp(log_t)))
        return float(-np.mean(np.log(np.clip(p[np.arange(len(p)), index], 1e-12, 1.0))))

    best = minimize_scalar(loss, bounds=(np.log(0.1), np.log(10.0)), method="bounded")
    return round(float(np.exp(best.x)), 4)


def calibration_scores(proba: np.ndarray, truth: np.ndarray, classes: Sequence[str]) -> dict:
    """Brier score (mean over segments of the squared error summed over classes) and
    expected calibration error (15 equal-width bins of the top probability)."""
    onehot = (np.asarray(truth)[:, None] == np.asarray(classes)[None, :]).astype(float)
    brier = float(np.mean(np.sum((proba - onehot) ** 2, axis=1)))
    top = proba.max(axis=1)
    right = onehot[np.arange(len(proba)), proba.argmax(axis=1)]
    bins = np.minimum((top * 15).astype(int), 14)
    ece = sum(
        abs(right[bins == b].mean() - top[bins == b].mean()) * np.mean(bins == b)
        for b in range(15)
        if np.any(bins == b)
    )
    return {"brier": round(brier, 4), "ece": round(float(ece), 4)}


def calibration_report(proba_by_fold, truth_by_fold, classes) -> dict:
    """Segment-level calibration before and after a cross-fitted temperature: fold k's
    temperature is fitted on the other folds' out-of-fold predictions only. With one
    fold (leave-one-corpus-out) there is nothing to fit on: only "before" is given."""
    truth = np.concatenate(truth_by_fold)
    before = calibration_scores(np.concatenate(proba_by_fold), truth, classes)
    if len(proba_by_fold) < 2:
        return {"before": before, "after": None, "fold_temperatures": []}
    calibrated, temperatures = [], []
    for k in range(len(proba_by_fold)):
        others = [j for j in range(len(proba_by_fold)) if j != k]
        t = fit_temperature(
            np.concatenate([proba_by_fold[j] for j in others]),
            np.concatenate([truth_by_fold[j] for j in others]),
            classes,
        )
        temperatures.append(t)
        calibrated.append(temperature_scaled(proba_by_fold[k], t))
    return {
        "before": before,
        "after": calibration_scores(np.concatenate(calibrated), truth, classes),
        "fold_temperatures": temperatures,
    }


def metric_differences(
    expected: dict,
    measured: dict,
    *,
    tolerance: float,
    conditions: Sequence[str] = ("clean", "telephone"),
) -> list[str]:
    """Where ``measured`` figures differ from ``expected`` by more than ``tolerance``."""
    out = []
    for cond in conditions:
        for key in ("accuracy", "macro_f1"):
            want = expected.get(cond, {}).get(key)
            got = measured.get(cond, {}).get(key)
            if want is None or got is None or abs(want - got) > tolerance:
                out.append(f"{cond} {key}: card {want}, measured {got}")
    if expected.get("n_clips") != measured.get("n_clips"):
        out.append(f"clips: card {expected.get('n_clips')}, measured {measured.get('n_clips')}")
    return out
