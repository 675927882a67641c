"""The emotion classifier: LightGBM in scikit-learn clothing, plus its model card.

A model folder holds ``model.txt`` (LightGBM's text format) and ``card.json``
(classes, feature names in order, analysis settings, training data, measured
metrics, library versions, licence). :func:`load_model` refuses a folder whose
card and booster disagree, and :meth:`EmotionClassifier.predict_proba` refuses
feature matrices of the wrong width.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from callsort.errors import ModelError
from callsort.settings import FeatureSettings

CARD_FORMAT = 2
"""Cards of format 1 (callsort before channel normalisation) lack settings; refused."""
MODEL_FILE = "model.txt"
CARD_FILE = "card.json"
HEAD_FILE = "head.npz"
HEAD_PREFIXES = ("enc_", "z_enc_")
"""Inputs whose names start so (the encoder's embedding and its channel z-scores) go to
the linear head, not to LightGBM."""
HEAD_FOLDS = 3

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
        import io

        buffer = io.BytesIO()
        np.savez(buffer, **{k: getattr(self, k) for k in self.__dataclass_fields__})
        return buffer.getvalue()

    @classmethod
    def from_npz(cls, data: bytes) -> LinearHead:
        import io

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
    """Fit a :class:`LinearHead` on ``X[:, columns]`` and integer ``labels``."""
    from sklearn.linear_model import LogisticRegression

    Z = np.asarray(X[:, columns], dtype=np.float64)
    mean = Z.mean(axis=0)
    scale = Z.std(axis=0) + 1e-6
    Z = (Z - mean) / scale
    lr = LogisticRegression(C=C, max_iter=300, tol=1e-3).fit(Z, labels, sample_weight=sample_weight)
    coef = np.zeros((n_classes, len(columns)))
    intercept = np.full(n_classes, -30.0)
    coef[lr.classes_] = lr.coef_ if n_classes > 2 else np.vstack([-lr.coef_, lr.coef_])
    intercept[lr.classes_] = (
        lr.intercept_ if n_classes > 2 else [-lr.intercept_[0], lr.intercept_[0]]
    )
    return LinearHead(
        columns=np.asarray(columns), mean=mean, scale=scale, coef=coef, intercept=intercept
    )


def head_columns(names: Sequence[str]) -> np.ndarray:
    """Indices of the inputs named with :data:`HEAD_PREFIXES` (the linear head's)."""
    return np.array([i for i, n in enumerate(names) if n.startswith(HEAD_PREFIXES)], dtype=int)


def head_names(classes: Sequence[str]) -> list[str]:
    """Names of the head's outputs among LightGBM's inputs."""
    return [f"head_logp_{c}" for c in classes]


class EmotionClassifier:
    """Multiclass LightGBM with the scikit-learn estimator conventions.

    Hyper-parameters are set in ``__init__``; learned attributes end in ``_``
    and exist only after :meth:`fit`. ``classes_`` fixes the column order of
    :meth:`predict_proba`.

    Inputs named with :data:`HEAD_PREFIXES` (a speech encoder's embedding) are
    stacked: a :class:`LinearHead` learns them, and LightGBM sees the head's
    log-probabilities beside the other inputs. During :meth:`fit` those come from
    heads that never saw the sample's group (speaker): ``HEAD_FOLDS`` folds of
    ``groups``, so LightGBM learns how far to trust the head on unseen speakers.
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
        self.head_C = head_C  # inverse L2 strength of the linear head on the embedding
        # keep only this many features: those with the most gain in a first, shorter fit
        self.max_features = max_features
        self.temperature = temperature  # > 1 softens overconfident probabilities
        self.params = params
        self.classes = classes
        self.random_state = random_state
        self.n_jobs = n_jobs

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
        self.head_ = None
        inputs, input_names = X, names
        if len(head_cols):
            out_of_fold = self._out_of_fold_head(
                X, labels, head_cols, len(classes), groups, sample_weight
            )
            self.head_ = fit_linear_head(
                X,
                labels,
                columns=head_cols,
                n_classes=len(classes),
                C=self.head_C,
                sample_weight=sample_weight,
            )
            keep = np.setdiff1d(np.arange(X.shape[1]), head_cols)
            inputs = np.hstack([X[:, keep], out_of_fold])
            input_names = [names[i] for i in keep] + head_names(classes)

        def train(columns: np.ndarray, rounds: int):
            data = lgb.Dataset(
                inputs[:, columns],
                label=labels,
                weight=sample_weight,
                feature_name=[_lgb_safe(input_names[i]) for i in columns],
                free_raw_data=True,
            )
            return lgb.train(params, data, num_boost_round=rounds)

        columns = np.arange(inputs.shape[1])
        if self.max_features is not None and self.max_features < inputs.shape[1]:
            probe = train(columns, max(50, self.n_estimators // 4))
            gain = probe.feature_importance(importance_type="gain")
            columns = np.sort(np.argsort(-gain, kind="stable")[: self.max_features])
        self.booster_ = train(columns, self.n_estimators)
        # None when the booster reads every LightGBM input
        self.feature_index_ = None if len(columns) == inputs.shape[1] else columns
        self.classes_ = np.array(classes)
        self.feature_names_in_ = np.array(names)
        self.n_features_in_ = X.shape[1]
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
        head = getattr(self, "head_", None)
        if head is not None:
            keep = np.setdiff1d(np.arange(X.shape[1]), head.columns)
            X = np.hstack([X[:, keep], head.log_proba(X)])
        if getattr(self, "feature_index_", None) is not None:
            X = X[:, self.feature_index_]
        return X

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, shape ``(samples, len(classes_))``, rows summing to 1."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ModelError(
                f"feature matrix has shape {X.shape}; this model expects "
                f"(n, {self.n_features_in_}) in the order of its card"
            )
        if not len(X):
            return np.zeros((0, len(self.classes_)))
        if not np.isfinite(X).all():
            raise ModelError("feature matrix contains NaN or infinite values")
        proba = self.booster_.predict(self.lightgbm_inputs(X), num_threads=self.n_jobs)
        proba = np.asarray(proba, dtype=np.float64).reshape(len(X), len(self.classes_))
        if self.temperature != 1.0:
            proba = temperature_scaled(proba, self.temperature)
        return proba

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def temperature_scaled(proba: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities ``(samples, classes)`` sharpened (T < 1) or softened (T > 1)."""
    logits = np.log(np.clip(proba, 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class ModelCard:
    """What a model is, how it was made and how well it does (``card.json``)."""

    version: str
    classes: list[str]
    feature_names: list[str]
    feature_settings: dict[str, Any]
    segmentation_settings: dict[str, Any]
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    library_versions: dict[str, str] = field(default_factory=dict)
    licence: str = ""
    created_at: str = ""
    model_sha256: str = ""  # of model.txt: a truncated copy is refused before LightGBM reads it
    # population prior of callsort.features.normalise (mean, var, weight) when the model takes
    # channel-normalised features, else None
    normalisation: dict[str, Any] | None = None
    temperature: float = 1.0  # calibration of predict_proba
    head_sha256: str = ""  # of head.npz, the linear head on the embedding (if the model has one)
    format: int = CARD_FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False) + "\n"


@dataclass(frozen=True)
class Model:
    """A loaded model folder: the classifier and its card."""

    classifier: EmotionClassifier
    card: ModelCard
    path: Path

    @property
    def version(self) -> str:
        return self.card.version

    @property
    def classes(self) -> list[str]:
        return list(self.classifier.classes_)

    @property
    def feature_settings(self) -> FeatureSettings:
        return FeatureSettings(**self.card.feature_settings)

    def channel_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities of the segments ``X`` (segments, features) of ONE channel.

        The features are normalised against the channel's own segments first when
        the model was trained that way (see :mod:`callsort.features.normalise`).
        """
        if self.card.normalisation is None:
            return self.classifier.predict_proba(X)
        if not len(X):
            return self.classifier.predict_proba(
                np.zeros((0, self.classifier.n_features_in_), dtype=np.float32)
            )
        from callsort.features.normalise import (
            PopulationPrior,
            channel_normalised,
            channel_statistics,
        )

        prior = PopulationPrior.from_dict(self.card.normalisation)
        statistics = channel_statistics(X, prior=prior)
        # in blocks: the statistics come from the whole channel, the [raw, z] matrix
        # (twice the features) never exists for more than a block of a long recording
        return np.concatenate(
            [
                self.classifier.predict_proba(
                    channel_normalised(X[start : start + 512], prior=prior, statistics=statistics)
                )
                for start in range(0, len(X), 512)
            ]
        )

    def check_feature_layout(self, computed: Sequence[str]) -> None:
        """Refuse to label with features other than the card's, in number or in order.

        ``computed`` names the features this callsort computes with the card's
        feature settings. A model made for another layout would otherwise be
        handed the right number of values in the wrong places.
        """
        expected = list(self.card.feature_names)
        computed = list(computed)
        if self.card.normalisation is not None:  # the model adds the z-scores itself
            from callsort.features.normalise import normalised_names

            computed = normalised_names(computed)
        if computed == expected:
            return
        if len(computed) != len(expected):
            raise ModelError(
                f"the model in {self.path} expects {len(expected)} features, this callsort "
                f"computes {len(computed)}: the model was made for another feature layout"
            )
        i = next(i for i, (a, b) in enumerate(zip(computed, expected, strict=True)) if a != b)
        raise ModelError(
            f"the model in {self.path} expects its features in another order (feature {i} "
            f"is {expected[i]!r} on its card, {computed[i]!r} here): the model was made "
            "for another feature layout"
        )


SHIPPED_MODELS = ("default", "fast")
"""Models inside the package: ``default`` hears Whisper base's encoder beside the
hand-made features; ``fast`` is the hand-made features alone (no encoder)."""


def default_model_dir() -> Path:
    """The model that ships inside the package."""
    return shipped_model_dir("default")


def shipped_model_dir(name: str) -> Path:
    """The folder of the shipped model ``name`` (one of :data:`SHIPPED_MODELS`)."""
    if name not in SHIPPED_MODELS:
        raise ModelError(f"no shipped model {name!r}; callsort ships {', '.join(SHIPPED_MODELS)}")
    return Path(str(resources.files("callsort") / "models" / name))


def model_folder(model: Path | str | None) -> Path:
    """Where a model named on the command line or in the API lives: ``None`` or
    ``"default"``, ``"fast"`` (the shipped ones), or any other path to a model folder."""
    if model is None:
        return default_model_dir()
    if isinstance(model, str) and model in SHIPPED_MODELS:
        return shipped_model_dir(model)
    return Path(model)


_lean_import = {"enabled": False}
# What LightGBM imports, if it can, to accept their data types. callsort hands it numpy
# arrays only, and importing scikit-learn and pandas costs about 0.3 s of CPU per process.
_LIGHTGBM_EXTRAS = ("sklearn", "pandas", "dask", "datatable", "matplotlib", "graphviz")


def lean_lightgbm_import() -> None:
    """Import LightGBM in this process without its scikit-learn and pandas glue.

    For processes that only ever give LightGBM numpy arrays: the ``callsort``
    command and its workers. Elsewhere in such a process, scikit-learn and
    pandas import as usual; only LightGBM's own wrappers for them
    (``lightgbm.LGBMClassifier``, DataFrame input) are missing. Has no effect
    once LightGBM is imported.
    """
    _lean_import["enabled"] = True


def _import_lightgbm():
    import sys

    if "lightgbm" in sys.modules or not _lean_import["enabled"]:
        import lightgbm

        return lightgbm
    hidden = [name for name in _LIGHTGBM_EXTRAS if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import name` fail
    try:
        import lightgbm
    finally:
        for name in hidden:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]
    return lightgbm


def load_model(path: Path | str | None = None, *, n_jobs: int = 1) -> Model:
    """Load a model folder (default: the shipped model) and check card against booster."""
    lgb = _import_lightgbm()

    folder = model_folder(path)
    model_file, card_file = model_files(folder)
    try:
        raw = json.loads(card_file.read_text(encoding="utf-8"))
        card = ModelCard(**raw)
    except (ValueError, TypeError) as exc:
        raise ModelError(f"unreadable model card {card_file}: {exc}") from None
    if card.format != CARD_FORMAT:
        raise ModelError(
            f"model card {card_file} has format {card.format}; this callsort reads format "
            f"{CARD_FORMAT}: retrain the model with this version (callsort train)"
        )
    try:
        FeatureSettings(**card.feature_settings)
    except TypeError as exc:
        raise ModelError(f"model card {card_file} has unusable feature settings: {exc}") from None
    if card.model_sha256 and file_sha256(model_file) != card.model_sha256:
        raise ModelError(
            f"{model_file} does not match its card (checksum differs): truncated or replaced?"
        )
    try:
        booster = lgb.Booster(model_file=str(model_file))
    except lgb.basic.LightGBMError as exc:
        raise ModelError(f"unreadable model {model_file}: {exc}") from None
    head = None
    if card.head_sha256:
        head_file = folder / HEAD_FILE
        try:
            head_bytes = head_file.read_bytes()
        except OSError as exc:
            raise ModelError(f"the model in {folder} needs {HEAD_FILE}: {exc.strerror}") from None
        if hashlib.sha256(head_bytes).hexdigest() != card.head_sha256:
            raise ModelError(f"{head_file} does not match its card (checksum differs)")
        head = LinearHead.from_npz(head_bytes)
        head_set = set(head.columns.tolist())
        if head_set != set(head_columns(card.feature_names).tolist()):
            raise ModelError(f"{head_file} does not read the card's embedding columns")
    # the booster reads the card's inputs (the head's columns replaced by its scores); one
    # fitted with max_features reads a subset
    booster_inputs = [
        n for i, n in enumerate(card.feature_names) if head is None or i not in head_set
    ] + (head_names(card.classes) if head is not None else [])
    position = {_lgb_safe(n): i for i, n in enumerate(booster_inputs)}
    feature_index = np.array([position.get(n, -1) for n in booster.feature_name()])
    if booster.num_feature() > len(booster_inputs):
        raise ModelError(
            f"model card lists {len(card.feature_names)} features but the booster "
            f"expects {booster.num_feature()}: {folder} is inconsistent"
        )
    if (feature_index < 0).any() or (np.diff(feature_index) <= 0).any():
        raise ModelError(f"model card feature names do not match the booster in {folder}")
    if card.normalisation is not None:
        from callsort.features.spectral import feature_names

        n_raw = len(feature_names(FeatureSettings(**card.feature_settings)))
        sizes = {len(card.normalisation.get(k, ())) for k in ("mean", "var")}
        if sizes != {n_raw} or 2 * n_raw != len(card.feature_names):
            raise ModelError(f"model card normalisation does not fit its features in {folder}")
    if booster.params.get("num_class", len(card.classes)) != len(card.classes):
        raise ModelError(f"model card classes do not match the booster in {folder}")
    classifier = EmotionClassifier(
        classes=card.classes, n_jobs=n_jobs, temperature=card.temperature
    )
    classifier.booster_ = booster
    classifier.classes_ = np.array(card.classes)
    classifier.feature_names_in_ = np.array(card.feature_names)
    classifier.n_features_in_ = len(card.feature_names)
    classifier.head_ = head
    classifier.feature_index_ = None if len(feature_index) == len(booster_inputs) else feature_index
    return Model(classifier=classifier, card=card, path=folder)


def model_files(folder: Path) -> tuple[Path, Path]:
    """``model.txt`` and ``card.json`` of a model folder; refuses a folder without them."""
    model_file, card_file = folder / MODEL_FILE, folder / CARD_FILE
    for f in (model_file, card_file):
        if not f.is_file():
            raise ModelError(f"not a callsort model folder: {f} is missing")
    return model_file, card_file


def save_model(classifier: EmotionClassifier, card: ModelCard, folder: Path | str) -> Path:
    """Write ``model.txt`` and ``card.json`` into ``folder``, each atomically."""
    from callsort.dataset.writers import atomic_path

    folder = Path(folder)
    model_text = classifier.booster_.model_to_string().encode("utf-8")
    head = getattr(classifier, "head_", None)
    head_bytes = head.to_npz() if head is not None else b""
    card = replace(
        card,
        model_sha256=hashlib.sha256(model_text).hexdigest(),
        head_sha256=hashlib.sha256(head_bytes).hexdigest() if head is not None else "",
    )
    files = [(MODEL_FILE, model_text), (CARD_FILE, card.to_json().encode("utf-8"))]
    if head is not None:
        files.insert(0, (HEAD_FILE, head_bytes))
    elif (folder / HEAD_FILE).exists():
        (folder / HEAD_FILE).unlink()  # a previous model's head must not linger
    for name, data in files:
        with atomic_path(folder / name) as tmp:
            tmp.write_bytes(data)
    return folder


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _lgb_safe(name: str) -> str:
    """LightGBM forbids some characters in feature names; ours never use them."""
    return name.replace(" ", "_")
