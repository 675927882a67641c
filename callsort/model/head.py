"""The linear head: a logistic regression on a speech encoder's embedding, stacked
below LightGBM (see :class:`callsort.model.classifier.EmotionClassifier`)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

HEAD_PREFIXES = ("enc_", "z_enc_")
"""Inputs whose names start so (the encoder's embedding and its channel z-scores) go to
the linear head, not to LightGBM."""
HEAD_FOLDS = 3
"""Folds of the speakers for the head's out-of-fold scores during a fit."""


@dataclass(frozen=True)
class LinearHead:
    """A standardised multinomial logistic regression on the embedding columns.

    ``columns`` index the classifier's input; ``mean``/``scale`` standardise them;
    ``coef`` ``(classes, columns)`` and ``intercept`` ``(classes,)`` give the logits.
    """

    columns: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray

    def log_proba(self, X: np.ndarray) -> np.ndarray:
        """Log-probabilities ``(samples, classes)`` of the head, float32."""
        Z = (np.asarray(X[:, self.columns], dtype=np.float64) - self.mean) / self.scale
        logits = Z @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return np.maximum(log_p, -30.0).astype(np.float32)

    def to_npz(self) -> bytes:
        """The head as the bytes of an ``.npz`` file (the model folder's ``head.npz``)."""
        buffer = io.BytesIO()
        np.savez(buffer, **{k: getattr(self, k) for k in self.__dataclass_fields__})
        return buffer.getvalue()

    @classmethod
    def from_npz(cls, data: bytes) -> LinearHead:
        """The head :meth:`to_npz` wrote."""
        with np.load(io.BytesIO(data)) as arrays:
            return cls(**{k: np.asarray(arrays[k]) for k in cls.__dataclass_fields__})


def fit_linear_head(
    X: np.ndarray,
    labels: np.ndarray,
    *,
    columns: np.ndarray,
    n_classes: int,
    C: float,
    sample_weight: np.ndarray | None = None,
) -> LinearHead:
    """Fit a :class:`LinearHead` on ``X[:, columns]`` and integer ``labels``.

    Classes absent from ``labels`` (a fold or a corpus without them) get a logit
    30 below the others. With two classes present, the binary regression's one
    row of coefficients is the logit of its second class over its first, so the
    head's probabilities are the regression's own; with one, it predicts that class.
    """
    from sklearn.linear_model import LogisticRegression

    Z = np.asarray(X[:, columns], dtype=np.float64)
    mean = Z.mean(axis=0)
    scale = Z.std(axis=0) + 1e-6
    Z = (Z - mean) / scale
    coef = np.zeros((n_classes, len(columns)))
    intercept = np.full(n_classes, -30.0)
    present = np.unique(labels)
    if len(present) == 1:
        intercept[present] = 0.0
    else:
        lr = LogisticRegression(C=C, max_iter=300, tol=1e-3)
        lr.fit(Z, labels, sample_weight=sample_weight)
        if len(lr.classes_) == 2:  # logit(second) - logit(first) = coef . z + intercept
            intercept[lr.classes_[0]] = 0.0
            coef[lr.classes_[1]], intercept[lr.classes_[1]] = lr.coef_[0], lr.intercept_[0]
        else:
            coef[lr.classes_], intercept[lr.classes_] = lr.coef_, lr.intercept_
    return LinearHead(
        columns=np.asarray(columns), mean=mean, scale=scale, coef=coef, intercept=intercept
    )


def head_columns(names: Sequence[str]) -> np.ndarray:
    """Indices of the inputs named with :data:`HEAD_PREFIXES` (the linear head's)."""
    return np.array([i for i, n in enumerate(names) if n.startswith(HEAD_PREFIXES)], dtype=int)


def head_names(classes: Sequence[str]) -> list[str]:
    """Names of the head's outputs among LightGBM's inputs."""
    return [f"head_logp_{c}" for c in classes]
