"""Adapters: what ``callsort adapt`` learns on top of a model from an archive's labels.

An :class:`Adapter` is a multinomial logistic layer fitted on a few hundred labelled
segments with an L2 pull toward a starting point (:func:`fit_pulled_logistic`):

- ``"residual"``: logits = log p_base + W z + b, with ``z`` standardised model inputs
  and (W, b) pulled toward 0. With no data, or an infinite pull, it is the base model.
- ``"head"``: the base model's linear head (:mod:`callsort.model.head`) re-fitted on
  the new segments with (W, b) pulled toward the shipped head's; LightGBM then reads
  the new head's log-probabilities instead of the old one's.

The model folder keeps it in ``adapter.npz`` beside the base's files, which stay as
they were (see :mod:`callsort.model.folder`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

ADAPTER_KINDS = ("residual", "head")
LOG_FLOOR = -30.0
"""Floor of log-probabilities (as the linear head's), so a zero never gives -inf."""


@dataclass(frozen=True)
class Adapter:
    """A fitted adapter: ``kind`` (one of :data:`ADAPTER_KINDS`); ``columns`` index the
    model's inputs (the channel-normalised matrix its booster reads); ``mean``/``scale``
    ``(columns,)`` standardise them; ``coef`` ``(classes, columns)`` and ``intercept``
    ``(classes,)`` give the logits (for ``"residual"``, added to log p_base)."""

    kind: str
    columns: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray

    def standardised(self, X: np.ndarray) -> np.ndarray:
        """``X[:, columns]`` standardised, float64 ``(samples, columns)``."""
        return (np.asarray(X[:, self.columns], dtype=np.float64) - self.mean) / self.scale

    def logits(self, X: np.ndarray) -> np.ndarray:
        """W z + b ``(samples, classes)`` of the model inputs ``X``."""
        return self.standardised(X) @ self.coef.T + self.intercept

    def adjusted(self, X: np.ndarray, proba: np.ndarray) -> np.ndarray:
        """A residual adapter's probabilities from the base's ``proba`` of ``X``."""
        log_p = np.maximum(np.log(np.maximum(proba, 1e-300)), LOG_FLOOR)
        return softmax(log_p + self.logits(X))

    def to_npz(self) -> bytes:
        """The adapter as the bytes of an ``.npz`` file (a model folder's ``adapter.npz``)."""
        buffer = io.BytesIO()
        arrays = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "kind"}
        np.savez(buffer, kind=np.array(self.kind), **arrays)
        return buffer.getvalue()

    @classmethod
    def from_npz(cls, data: bytes) -> Adapter:
        """The adapter :meth:`to_npz` wrote."""
        with np.load(io.BytesIO(data)) as arrays:
            fields = {k: np.asarray(arrays[k]) for k in cls.__dataclass_fields__ if k != "kind"}
            return cls(kind=str(arrays["kind"]), **fields)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(samples, classes)`` logits, float64."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def balanced_weights(labels: np.ndarray, *, n_classes: int) -> np.ndarray:
    """Sample weights summing to 1 with every present class weighing alike."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    present = np.count_nonzero(counts)
    return 1.0 / (present * counts[labels])


def pulled_loss(
    params: np.ndarray,
    Z: np.ndarray,
    labels: np.ndarray,
    *,
    offset: np.ndarray,
    weights: np.ndarray,
    coef0: np.ndarray,
    intercept0: np.ndarray,
    lam: float,
) -> tuple[float, np.ndarray]:
    """The objective of :func:`fit_pulled_logistic` and its gradient at ``params``
    (``coef`` then ``intercept``, flattened)."""
    n_classes, d = coef0.shape
    coef = params[: n_classes * d].reshape(n_classes, d)
    intercept = params[n_classes * d :]
    logits = offset + Z @ coef.T + intercept
    logits -= logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(logits).sum(axis=1))
    rows = np.arange(len(labels))
    loss = float(weights @ (log_norm - logits[rows, labels]))
    d_coef, d_intercept = coef - coef0, intercept - intercept0
    loss += lam * float((d_coef**2).sum() + (d_intercept**2).sum())
    grad_logits = np.exp(logits - log_norm[:, None])
    grad_logits[rows, labels] -= 1.0
    grad_logits *= weights[:, None]
    grad_coef = grad_logits.T @ Z + 2 * lam * d_coef
    grad_intercept = grad_logits.sum(axis=0) + 2 * lam * d_intercept
    return loss, np.concatenate([grad_coef.ravel(), grad_intercept])


def fit_pulled_logistic(
    Z: np.ndarray,
    labels: np.ndarray,
    *,
    n_classes: int,
    lam: float,
    offset: np.ndarray | None = None,
    coef0: np.ndarray | None = None,
    intercept0: np.ndarray | None = None,
    sample_weight: np.ndarray | None = None,
    max_iter: int = 300,
    gtol: float = 1e-5,
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression pulled toward a starting point.

    Minimises ``sum_i w_i CE(softmax(offset_i + W z_i + b), y_i) + lam (|W - W0|^2 +
    |b - b0|^2)`` by L-BFGS, with ``w`` the ``sample_weight`` scaled to sum to 1
    (default: :func:`balanced_weights`), so ``lam`` weighs the pull against the mean
    loss whatever the number of samples. ``Z`` ``(samples, d)``, integer ``labels``,
    ``offset`` ``(samples, classes)`` (default 0), ``coef0`` ``(classes, d)`` and
    ``intercept0`` ``(classes,)`` (default 0); L-BFGS stops after ``max_iter``
    iterations or when no gradient component exceeds ``gtol``. Returns ``(W, b)``.

    BLAS runs on one thread during the fit (threadpoolctl, restored after): the
    matrices are small, and on a busy machine threaded BLAS made it 6x slower.
    """
    from scipy.optimize import minimize
    from threadpoolctl import threadpool_limits

    Z = np.asarray(Z, dtype=np.float64)
    labels = np.asarray(labels, dtype=int)
    coef0 = np.zeros((n_classes, Z.shape[1])) if coef0 is None else np.asarray(coef0, float)
    intercept0 = np.zeros(n_classes) if intercept0 is None else np.asarray(intercept0, float)
    if not len(Z):
        return coef0.copy(), intercept0.copy()
    offset = np.zeros((len(Z), n_classes)) if offset is None else np.asarray(offset, float)
    if sample_weight is None:
        weights = balanced_weights(labels, n_classes=n_classes)
    else:
        weights = np.asarray(sample_weight, dtype=np.float64)
    weights = weights / weights.sum()
    start = np.concatenate([coef0.ravel(), intercept0])
    with threadpool_limits(limits=1, user_api="blas"):
        result = minimize(
            lambda p: pulled_loss(
                p,
                Z,
                labels,
                offset=offset,
                weights=weights,
                coef0=coef0,
                intercept0=intercept0,
                lam=lam,
            ),
            start,
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": max_iter, "gtol": gtol},
        )
    d = Z.shape[1]
    return result.x[: n_classes * d].reshape(n_classes, d), result.x[n_classes * d :]


def input_standardisation(
    normalisation: dict | None, *, n_inputs: int, X: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale ``(n_inputs,)`` that put a model's inputs on one scale for a
    residual adapter, fixed by the base model so that no data means no change.

    With the card's channel-normalisation prior (``normalisation``: mean and var of
    the raw features over the training segments) the raw half is standardised by it
    and the z-scores half is taken as it is (mean 0, scale 1); a model without one
    uses the mean and spread of ``X``, the adaptation data's own inputs.
    """
    if normalisation is not None:
        mean = np.asarray(normalisation["mean"], dtype=np.float64)
        scale = np.sqrt(np.asarray(normalisation["var"], dtype=np.float64)) + 1e-6
        n_raw = len(mean)
        if 2 * n_raw == n_inputs:
            return np.concatenate([mean, np.zeros(n_raw)]), np.concatenate([scale, np.ones(n_raw)])
    if X is None or not len(X):
        return np.zeros(n_inputs), np.ones(n_inputs)
    X = np.asarray(X, dtype=np.float64)
    return X.mean(axis=0), X.std(axis=0) + 1e-6


def fit_adapter(
    X: np.ndarray,
    labels: np.ndarray,
    *,
    kind: str,
    lam: float,
    columns: np.ndarray,
    mean: np.ndarray,
    scale: np.ndarray,
    n_classes: int,
    base_proba: np.ndarray | None = None,
    coef0: np.ndarray | None = None,
    intercept0: np.ndarray | None = None,
    sample_weight: np.ndarray | None = None,
) -> Adapter:
    """Fit an :class:`Adapter` on model inputs ``X`` ``(segments, inputs)`` and integer
    ``labels``: ``"residual"`` on top of ``base_proba`` (the base model's probabilities
    of ``X``), pulled toward 0; ``"head"`` pulled toward ``coef0``/``intercept0`` (the
    base's linear head). ``columns``, ``mean`` and ``scale`` pick and standardise the
    inputs it reads."""
    if kind not in ADAPTER_KINDS:
        raise ValueError(f"unknown adapter kind {kind!r}")
    columns = np.asarray(columns, dtype=int)
    adapter = Adapter(
        kind=kind,
        columns=columns,
        mean=np.asarray(mean, dtype=np.float64),
        scale=np.asarray(scale, dtype=np.float64),
        coef=np.zeros((n_classes, len(columns))),
        intercept=np.zeros(n_classes),
    )
    offset = None
    if kind == "residual":
        if base_proba is None:
            raise ValueError("a residual adapter needs the base's probabilities")
        offset = np.maximum(np.log(np.maximum(base_proba, 1e-300)), LOG_FLOOR)
    coef, intercept = fit_pulled_logistic(
        adapter.standardised(X),
        labels,
        n_classes=n_classes,
        lam=lam,
        offset=offset,
        coef0=coef0,
        intercept0=intercept0,
        sample_weight=sample_weight,
    )
    return Adapter(kind, columns, adapter.mean, adapter.scale, coef, intercept)
