"""The emotion classifier: LightGBM over the hand-made features, a linear head over a
speech encoder's embedding stacked below it, as a scikit-learn estimator.

Saving and loading model folders is :mod:`callsort.model.folder`'s; what a fitted
classifier predicts with, without scikit-learn, is
:class:`~callsort.model.booster.StackedBooster`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from callsort.model.booster import StackedBooster, booster_input_names, lgb_safe
from callsort.model.head import HEAD_FOLDS, fit_linear_head, head_columns

DEFAULT_PARAMS: dict[str, Any] = {
    "num_leaves": 15,
    "learning_rate": 0.1,  # with 300 trees: as 0.05 with 600 at half the training time
    "max_bin": 63,  # 2,000 inputs over ~13,000 segments of two corpora: coarser bins, faster
    "min_data_in_leaf": 10,
    "feature_fraction": 0.3,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    # extremely randomised split thresholds: what the nested search of the accuracy
    # benchmark chose in 5 of 6 folds (benchmarks/ACCURACY.md, rows tuned and shipped)
    "extra_trees": True,
}


class EmotionClassifier(ClassifierMixin, BaseEstimator):
    """Multiclass LightGBM, a scikit-learn estimator (``clone``, ``get_params``...).

    Hyper-parameters are set in ``__init__`` and stored as given; learned
    attributes end in ``_`` and exist only after :meth:`fit` (or
    :meth:`from_stack`, for a loaded model). ``classes_`` fixes the column order
    of :meth:`predict_proba`.

    Inputs named with :data:`~callsort.model.head.HEAD_PREFIXES` (a speech
    encoder's embedding) are stacked: a :class:`~callsort.model.head.LinearHead`
    learns them, and LightGBM sees the head's log-probabilities beside the other
    inputs. During :meth:`fit` those come from heads that never saw the sample's
    group (speaker): ``HEAD_FOLDS`` folds of ``groups``, so LightGBM learns how far
    to trust the head on unseen speakers.

    Parameters: ``n_estimators`` boosting rounds; ``params`` LightGBM parameters
    over :data:`DEFAULT_PARAMS`; ``classes`` the labels in column order (None:
    sorted labels of ``y``); ``temperature`` > 1 softens overconfident
    probabilities; ``max_features`` keeps only this many LightGBM inputs, those
    with the most gain in a first, shorter fit (None: all); ``head_C`` inverse L2
    strength of the linear head.
    """

    def __init__(
        self,
        *,
        n_estimators: int = 300,
        params: dict[str, Any] | None = None,
        classes: Sequence[str] | None = None,
        random_state: int = 0,
        n_jobs: int = 1,
        temperature: float = 1.0,
        max_features: int | None = None,
        head_C: float = 0.01,
    ) -> None:
        self.n_estimators = n_estimators
        self.params = params
        self.classes = classes
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.temperature = temperature
        self.max_features = max_features
        self.head_C = head_C

    @classmethod
    def from_stack(
        cls, stack: StackedBooster, *, temperature: float = 1.0, n_jobs: int = 1
    ) -> EmotionClassifier:
        """The fitted classifier that predicts with ``stack`` (a loaded model's)."""
        classifier = cls(classes=list(stack.classes), temperature=temperature, n_jobs=n_jobs)
        classifier._set_fitted(stack)
        return classifier

    def _set_fitted(self, stack: StackedBooster) -> None:
        self.booster_ = stack.booster
        self.classes_ = np.asarray(stack.classes)
        self.feature_names_in_ = np.asarray(stack.feature_names)
        self.n_features_in_ = len(stack.feature_names)
        self.head_ = stack.head
        self.feature_index_ = stack.feature_index  # None when the booster reads every input

    @property
    def stack_(self) -> StackedBooster:
        """The fitted state as a :class:`~callsort.model.booster.StackedBooster`."""
        check_is_fitted(self)
        return StackedBooster(
            booster=self.booster_,
            classes=self.classes_,
            feature_names=self.feature_names_in_,
            head=self.head_,
            feature_index=self.feature_index_,
        )

    def fit(
        self,
        X: np.ndarray,
        y: Sequence[str],
        *,
        feature_names: Sequence[str] | None = None,
        sample_weight: np.ndarray | None = None,
        groups: np.ndarray | None = None,
    ) -> EmotionClassifier:
        """Train on ``X`` of shape ``(samples, features)`` and string labels ``y``.

        ``groups`` (one per sample: the speaker) keeps the head's out-of-fold
        scores speaker-independent; without it the folds are by row.
        """
        import lightgbm as lgb

        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y)
        classes = list(self.classes) if self.classes is not None else sorted(set(y.tolist()))
        unknown = set(y.tolist()) - set(classes)
        if unknown:
            raise ValueError(f"labels not among the classes: {sorted(unknown)}")
        names = (
            list(feature_names)
            if feature_names is not None
            else [f"f{i}" for i in range(X.shape[1])]
        )
        if len(names) != X.shape[1]:
            raise ValueError(f"{len(names)} feature names for {X.shape[1]} features")
        index = {c: i for i, c in enumerate(classes)}
        params = {
            **DEFAULT_PARAMS,
            **(self.params or {}),
            "objective": "multiclass",
            "num_class": len(classes),
            "seed": self.random_state,
            "deterministic": True,
            "force_col_wise": True,
            "num_threads": self.n_jobs,
            "verbose": -1,
        }
        labels = np.array([index[v] for v in y.tolist()])
        head_cols = head_columns(names)
        head = None
        inputs = X
        if len(head_cols):
            out_of_fold = self._out_of_fold_head(
                X, labels, head_cols, len(classes), groups, sample_weight
            )
            head = fit_linear_head(
                X,
                labels,
                columns=head_cols,
                n_classes=len(classes),
                C=self.head_C,
                sample_weight=sample_weight,
            )
            keep = np.setdiff1d(np.arange(X.shape[1]), head_cols)
            inputs = np.hstack([X[:, keep], out_of_fold])
        input_names = booster_input_names(names, classes, head_cols if head is not None else None)

        def train(columns: np.ndarray, rounds: int):
            data = lgb.Dataset(
                inputs[:, columns],
                label=labels,
                weight=sample_weight,
                feature_name=[lgb_safe(input_names[i]) for i in columns],
                free_raw_data=True,
            )
            return lgb.train(params, data, num_boost_round=rounds)

        columns = np.arange(inputs.shape[1])
        if self.max_features is not None and self.max_features < inputs.shape[1]:
            probe = train(columns, max(50, self.n_estimators // 4))
            gain = probe.feature_importance(importance_type="gain")
            columns = np.sort(np.argsort(-gain, kind="stable")[: self.max_features])
        booster = train(columns, self.n_estimators)
        self._set_fitted(
            StackedBooster(
                booster=booster,
                classes=np.array(classes),
                feature_names=np.array(names),
                head=head,
                feature_index=None if len(columns) == inputs.shape[1] else columns,
            )
        )
        return self

    def _out_of_fold_head(self, X, labels, columns, n_classes, groups, sample_weight) -> np.ndarray:
        """Head log-probabilities for every row from heads fitted without its group."""
        from sklearn.model_selection import GroupKFold

        groups = np.arange(len(X)) if groups is None else np.asarray(groups)
        n_splits = min(HEAD_FOLDS, len(np.unique(groups)))
        out = np.zeros((len(X), n_classes), dtype=np.float32)
        for train, test in GroupKFold(n_splits=n_splits).split(X, labels, groups):
            head = fit_linear_head(
                X[train],
                labels[train],
                columns=columns,
                n_classes=n_classes,
                C=self.head_C,
                sample_weight=None if sample_weight is None else sample_weight[train],
            )
            out[test] = head.log_proba(X[test])
        return out

    def lightgbm_inputs(self, X: np.ndarray) -> np.ndarray:
        """What the booster reads for ``X``: the head's columns replaced by its scores."""
        return self.stack_.lightgbm_inputs(X)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, shape ``(samples, len(classes_))``, rows summing to 1."""
        return self.stack_.predict_proba(X, n_jobs=self.n_jobs, temperature=self.temperature)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The most probable class of each row, shape ``(samples,)``."""
        proba = self.predict_proba(X)  # first: NotFittedError before any attribute
        return self.classes_[np.argmax(proba, axis=1)]
