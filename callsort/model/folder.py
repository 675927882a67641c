"""Model folders: load one into a :class:`Model`, save a fitted classifier into one.

:meth:`Model.load` refuses a folder whose card and booster disagree; a loaded
model predicts with its :class:`~callsort.model.booster.StackedBooster` and
imports scikit-learn only when its :attr:`Model.classifier` is asked for.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from callsort.errors import ModelError
from callsort.model.adapter import ADAPTER_KINDS, Adapter
from callsort.model.booster import StackedBooster, booster_input_names, lgb_safe
from callsort.model.card import (
    ADAPTER_FILE,
    CARD_FILE,
    HEAD_FILE,
    MODEL_FILE,
    ModelCard,
    file_sha256,
    model_files,
    model_folder,
)
from callsort.model.head import LinearHead, head_columns
from callsort.settings import FeatureSettings, SegmentationSettings, recorded

if TYPE_CHECKING:
    from callsort.features.archive import ArchiveStatistics
    from callsort.model.classifier import EmotionClassifier

CHANNEL_BLOCK = 512
"""Segments normalised and predicted at a time in :meth:`Model.channel_proba`."""


@dataclass(frozen=True, eq=False)
class Model:
    """A loaded model folder: what it predicts with, its card, where it lives."""

    stack: StackedBooster
    card: ModelCard
    path: Path
    n_jobs: int = 1  # LightGBM threads per prediction
    adapter: Adapter | None = None  # what callsort adapt learned on top (see read_adapter)

    @classmethod
    def load(cls, path: Path | str | None = None, *, n_jobs: int = 1) -> Model:
        """Load a model folder (``None``: the shipped default; see
        :func:`~callsort.model.card.model_folder`) and check its card against its booster."""
        import lightgbm as lgb

        folder = model_folder(path)
        model_file, card_file = model_files(folder)
        card = ModelCard.read(card_file)
        if card.model_sha256 and file_sha256(model_file) != card.model_sha256:
            raise ModelError(
                f"{model_file} does not match its card (checksum differs): truncated or replaced?"
            )
        try:
            booster = lgb.Booster(model_file=str(model_file))
        except lgb.basic.LightGBMError as exc:
            raise ModelError(f"unreadable model {model_file}: {exc}") from None
        head = read_head(folder, card)
        # the booster reads the card's inputs (the head's columns replaced by its scores);
        # one fitted with max_features reads a subset
        inputs = booster_input_names(
            card.feature_names, card.classes, None if head is None else head.columns
        )
        position = {lgb_safe(n): i for i, n in enumerate(inputs)}
        feature_index = np.array([position.get(n, -1) for n in booster.feature_name()])
        if booster.num_feature() > len(inputs):
            raise ModelError(
                f"model card lists {len(card.feature_names)} features but the booster "
                f"expects {booster.num_feature()}: {folder} is inconsistent"
            )
        if (feature_index < 0).any() or (np.diff(feature_index) <= 0).any():
            raise ModelError(f"model card feature names do not match the booster in {folder}")
        entry = card.training.get("archive_standardisation") if card.training else None
        if entry:
            from callsort.features.spectral import feature_names

            n_raw = len(feature_names(FeatureSettings(**card.feature_settings)))
            population = entry.get("population", {}) if isinstance(entry, dict) else {}
            sizes = {len(population.get(k, ())) for k in ("mean", "var")}
            if sizes != {n_raw} or not np.isfinite(population.get("var", [np.nan])).all():
                raise ModelError(
                    f"model card archive standardisation does not fit its features in {folder}"
                )
        if card.normalisation is not None:
            from callsort.features.spectral import feature_names

            n_raw = len(feature_names(FeatureSettings(**card.feature_settings)))
            sizes = {len(card.normalisation.get(k, ())) for k in ("mean", "var")}
            if sizes != {n_raw} or 2 * n_raw != len(card.feature_names):
                raise ModelError(f"model card normalisation does not fit its features in {folder}")
        if booster.params.get("num_class", len(card.classes)) != len(card.classes):
            raise ModelError(f"model card classes do not match the booster in {folder}")
        stack = StackedBooster(
            booster=booster,
            classes=np.array(card.classes),
            feature_names=np.array(card.feature_names),
            head=head,
            feature_index=None if len(feature_index) == len(inputs) else feature_index,
        )
        model = cls(stack=stack, card=card, path=folder, n_jobs=n_jobs)
        adapter = read_adapter(folder, card)
        return model if adapter is None else model.with_adapter(adapter)

    def with_adapter(self, adapter: Adapter | None) -> Model:
        """This model with ``adapter`` on top (None: without one): a ``"head"`` adapter
        takes the linear head's place, a ``"residual"`` one adjusts the probabilities."""
        if adapter is not None and (
            adapter.coef.shape != (len(self.classes), len(adapter.columns))
            or len(adapter.columns) == 0
            or adapter.columns.min() < 0
            or adapter.columns.max() >= self.stack.n_features
        ):
            raise ModelError(f"the adapter does not fit the model in {self.path}")
        head = self.base_head
        if adapter is not None and adapter.kind == "head":
            if head is None or set(adapter.columns.tolist()) != set(head.columns.tolist()):
                raise ModelError(f"the adapter does not read the head's columns in {self.path}")
            head = LinearHead(
                columns=adapter.columns,
                mean=adapter.mean,
                scale=adapter.scale,
                coef=adapter.coef,
                intercept=adapter.intercept,
            )
        return replace(self, stack=replace(self.stack, head=head), adapter=adapter)

    @property
    def base_head(self) -> LinearHead | None:
        """The linear head as trained (before a ``"head"`` adapter took its place)."""
        if self.adapter is not None and self.adapter.kind == "head":
            return read_head(self.path, self.card)
        return self.stack.head

    @property
    def version(self) -> str:
        return self.card.version

    @property
    def classes(self) -> list[str]:
        return self.stack.classes.tolist()

    @property
    def feature_settings(self) -> FeatureSettings:
        return recorded(FeatureSettings, self.card.feature_settings)

    @property
    def segmentation_settings(self) -> SegmentationSettings:
        """The segmentation the model was trained with (see :func:`callsort.settings.recorded`)."""
        return recorded(SegmentationSettings, self.card.segmentation_settings)

    @cached_property
    def classifier(self) -> EmotionClassifier:
        """The model as a fitted scikit-learn estimator (imports scikit-learn); refused for
        a model with a ``"residual"`` adapter, which the estimator would not apply."""
        from callsort.model.classifier import EmotionClassifier

        if self.adapter is not None and self.adapter.kind == "residual":
            raise ModelError(
                f"the model in {self.path} is adapted (adapter.npz): it predicts with "
                "Model.predict_proba / channel_proba, not as a scikit-learn estimator"
            )

        return EmotionClassifier.from_stack(
            self.stack, temperature=self.card.temperature, n_jobs=self.n_jobs
        )

    @cached_property
    def archive_population(self) -> ArchiveStatistics | None:
        """The training population's statistics of the raw features when the model was
        trained on features standardised per archive (:mod:`callsort.features.archive`),
        else None. The card keeps them in ``training["archive_standardisation"]``."""
        entry = self.card.training.get("archive_standardisation")
        if not entry:
            return None
        from callsort.features.archive import ArchiveStatistics

        return ArchiveStatistics.from_dict(entry["population"])

    @property
    def archive_prior_weight(self) -> float:
        """Segments the population counts as when an archive's statistics are shrunk
        toward it (0 for a model without archive standardisation)."""
        entry = self.card.training.get("archive_standardisation")
        return float(entry.get("prior_weight", 0.0)) if entry else 0.0

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities ``(samples, classes)`` of features ``X`` (segments,
        features) as the card lists them (already channel-normalised, if the model is);
        a ``"residual"`` adapter adjusts the booster's."""
        proba = self.stack.predict_proba(X, n_jobs=self.n_jobs, temperature=self.card.temperature)
        if self.adapter is not None and self.adapter.kind == "residual" and len(proba):
            proba = self.adapter.adjusted(np.asarray(X, dtype=np.float32), proba)
        return proba

    def channel_proba(
        self, X: np.ndarray, *, archive: ArchiveStatistics | None = None
    ) -> np.ndarray:
        """Class probabilities of the segments ``X`` (segments, features) of ONE channel.

        A model trained on features standardised per archive standardises ``X`` with
        ``archive``, the statistics of the archive the channel belongs to (shrunk
        toward the training population), or with the population itself when
        ``archive`` is None (no shift); a model without it ignores ``archive``. The
        features are then normalised against the channel's own segments when the
        model was trained that way (see :mod:`callsort.features.normalise`).
        """
        return np.concatenate(
            [self.predict_proba(block) for block in self._input_blocks(X, archive=archive)]
        )

    def channel_inputs(
        self, X: np.ndarray, *, archive: ArchiveStatistics | None = None
    ) -> np.ndarray:
        """What :meth:`predict_proba` reads for the segments ``X`` (segments, features)
        of ONE channel: ``X`` standardised per archive and normalised against the
        channel's own segments as :meth:`channel_proba` does, ``(segments, inputs)``."""
        blocks = list(self._input_blocks(X, archive=archive))
        return np.concatenate(blocks) if blocks else np.zeros((0, self.stack.n_features))

    def _input_blocks(self, X: np.ndarray, *, archive: ArchiveStatistics | None):
        population = self.archive_population
        if population is not None and len(X):
            from callsort.features.archive import standardised

            X = standardised(X, population if archive is None else archive)
        if self.card.normalisation is None:
            yield X
            return
        if not len(X):
            yield np.zeros((0, self.stack.n_features), dtype=np.float32)
            return
        from callsort.features.normalise import (
            PopulationPrior,
            channel_normalised,
            channel_statistics,
        )

        prior = PopulationPrior.from_dict(self.card.normalisation)
        statistics = channel_statistics(X, prior=prior)
        # in blocks: the statistics come from the whole channel, the [raw, z] matrix
        # (twice the features) never exists for more than a block of a long recording
        for start in range(0, len(X), CHANNEL_BLOCK):
            yield channel_normalised(
                X[start : start + CHANNEL_BLOCK], prior=prior, statistics=statistics
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


def load_model(path: Path | str | None = None, *, n_jobs: int = 1) -> Model:
    """Load a model folder (default: the shipped model): :meth:`Model.load`."""
    return Model.load(path, n_jobs=n_jobs)


def read_head(folder: Path, card: ModelCard) -> LinearHead | None:
    """The linear head of a model folder (None if its card names none), checked
    against the card's checksum and embedding columns."""
    if not card.head_sha256:
        return None
    head_file = folder / HEAD_FILE
    try:
        head_bytes = head_file.read_bytes()
    except OSError as exc:
        raise ModelError(f"the model in {folder} needs {HEAD_FILE}: {exc.strerror}") from None
    if hashlib.sha256(head_bytes).hexdigest() != card.head_sha256:
        raise ModelError(f"{head_file} does not match its card (checksum differs)")
    head = LinearHead.from_npz(head_bytes)
    if set(head.columns.tolist()) != set(head_columns(card.feature_names).tolist()):
        raise ModelError(f"{head_file} does not read the card's embedding columns")
    return head


def read_adapter(folder: Path, card: ModelCard) -> Adapter | None:
    """The adapter of an adapted model folder (None for a model as trained), checked
    against the card's checksum and kind."""
    entry = card.adaptation
    if not entry:
        return None
    adapter_file = folder / ADAPTER_FILE
    try:
        data = adapter_file.read_bytes()
    except OSError as exc:
        raise ModelError(f"the model in {folder} needs {ADAPTER_FILE}: {exc.strerror}") from None
    if hashlib.sha256(data).hexdigest() != entry.get("adapter_sha256"):
        raise ModelError(f"{adapter_file} does not match its card (checksum differs)")
    try:
        adapter = Adapter.from_npz(data)
    except (ValueError, KeyError, OSError) as exc:
        raise ModelError(f"unreadable {adapter_file}: {exc}") from None
    if adapter.kind not in ADAPTER_KINDS or adapter.kind != entry.get("kind"):
        raise ModelError(f"{adapter_file} is not the adapter its card describes")
    return adapter


def save_model(classifier: EmotionClassifier, card: ModelCard, folder: Path | str) -> Path:
    """Write a fitted ``classifier`` and its ``card`` into ``folder``, each file atomically;
    the card gets the checksums of the files written beside it."""
    from callsort.dataset.writers import atomic_path

    folder = Path(folder)
    model_text = classifier.booster_.model_to_string().encode("utf-8")
    head = classifier.head_
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
