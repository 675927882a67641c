"""The fitted model without scikit-learn, and how callsort imports LightGBM.

:class:`StackedBooster` is what a fitted
:class:`~callsort.model.classifier.EmotionClassifier` predicts with: a LightGBM
booster, with the linear head (:mod:`callsort.model.head`) stacked below it. A
loaded model folder predicts with it directly, so labelling never imports
scikit-learn (whose import pulls in pandas: about 0.3 s of CPU per process).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from callsort.errors import ModelError
from callsort.model.head import LinearHead, head_names

LIGHTGBM_EXTRAS = ("sklearn", "pandas", "dask", "datatable", "matplotlib", "graphviz")
"""What LightGBM imports, if it can, to accept their data types (and to offer
``lightgbm.LGBMClassifier``); callsort hands it numpy arrays only."""


def lean_lightgbm_import() -> None:
    """Import LightGBM now, without its glue for :data:`LIGHTGBM_EXTRAS`. Opt-in, for
    processes callsort owns: the ``callsort`` command and the workers it starts.

    Saves about 0.3 s of CPU per process. While LightGBM imports, those packages
    are made unimportable (``sys.modules[name] = None``); afterwards ``sys.modules``
    is as before, so they import as usual elsewhere in the process, and only
    LightGBM's own wrappers for them (``lightgbm.LGBMClassifier``, DataFrame input)
    are missing. Does nothing once LightGBM is imported. Never called on import
    of callsort or by :func:`callsort.label`: a program that imports callsort
    gets LightGBM as a plain ``import lightgbm`` gives it.
    """
    if "lightgbm" in sys.modules:
        return
    hidden = [name for name in LIGHTGBM_EXTRAS if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import name` fail
    try:
        import lightgbm  # noqa: F401
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


@dataclass(frozen=True)
class StackedBooster:
    """A trained LightGBM booster and what feeds it: the fitted state of a classifier.

    ``feature_names`` ``(features,)`` name the classifier's inputs, in order;
    ``head`` (or None) replaces its embedding columns by its log-probabilities
    (see :func:`booster_input_names`); ``feature_index`` selects the booster's
    inputs among those (None: it reads all). ``classes`` ``(classes,)`` order the
    columns of :meth:`predict_proba`.
    """

    booster: Any  # lightgbm.Booster
    classes: np.ndarray
    feature_names: np.ndarray
    head: LinearHead | None = None
    feature_index: np.ndarray | None = None

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def lightgbm_inputs(self, X: np.ndarray) -> np.ndarray:
        """What the booster reads for ``X``: the head's columns replaced by its scores."""
        if self.head is not None:
            keep = np.setdiff1d(np.arange(X.shape[1]), self.head.columns)
            X = np.hstack([X[:, keep], self.head.log_proba(X)])
        if self.feature_index is not None:
            X = X[:, self.feature_index]
        return X

    def predict_proba(
        self, X: np.ndarray, *, n_jobs: int = 1, temperature: float = 1.0
    ) -> np.ndarray:
        """Class probabilities ``(samples, classes)``, rows summing to 1; ``temperature``
        as in :func:`temperature_scaled`. Refuses a matrix of another width, NaN, inf."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ModelError(
                f"feature matrix has shape {X.shape}; this model expects "
                f"(n, {self.n_features}) in the order of its card"
            )
        if not len(X):
            return np.zeros((0, len(self.classes)))
        if not np.isfinite(X).all():
            raise ModelError("feature matrix contains NaN or infinite values")
        proba = self.booster.predict(self.lightgbm_inputs(X), num_threads=n_jobs)
        proba = np.asarray(proba, dtype=np.float64).reshape(len(X), len(self.classes))
        if temperature != 1.0:
            proba = temperature_scaled(proba, temperature)
        return proba


def booster_input_names(
    feature_names: Sequence[str], classes: Sequence[str], head_columns: np.ndarray | None
) -> list[str]:
    """Names of LightGBM's inputs: the features outside the head's ``head_columns``
    (None: no head), then the head's log-probabilities per class."""
    if head_columns is None:
        return list(feature_names)
    inside = set(np.asarray(head_columns).tolist())
    kept = [n for i, n in enumerate(feature_names) if i not in inside]
    return kept + head_names(classes)


def lgb_safe(name: str) -> str:
    """A feature name as LightGBM stores it: it forbids spaces (ours never have them)."""
    return name.replace(" ", "_")


def temperature_scaled(proba: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities ``(samples, classes)`` sharpened (T < 1) or softened (T > 1)."""
    logits = np.log(np.clip(proba, 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)
