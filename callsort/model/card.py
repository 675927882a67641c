"""The model card (``card.json``), the files of a model folder and where the shipped
models live. Reads no model: nothing here imports LightGBM.

A model folder holds ``model.txt`` (LightGBM's text format), ``card.json``
(classes, feature names in order, analysis settings, training data, measured
metrics, library versions, licence) and, for a model with a linear head on an
encoder's embedding, ``head.npz``; a model adapted to an archive (``callsort adapt``)
also ``adapter.npz``, described by the card's ``adaptation`` entry.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from callsort.errors import ModelError
from callsort.settings import FeatureSettings, SegmentationSettings, recorded

CARD_FORMAT = 2
"""Cards of format 1 (callsort before channel normalisation) lack settings; refused."""
MODEL_FILE = "model.txt"
CARD_FILE = "card.json"
HEAD_FILE = "head.npz"
ADAPTER_FILE = "adapter.npz"

NOT_PREDICTIVE = ("metrics", "created_at", "library_versions", "licence")
"""Card fields that cannot change a prediction: every other field, including any added
later, is part of :meth:`ModelCard.prediction_identity`."""

SHIPPED_MODELS = ("default", "fast")
"""Models inside the package: ``default`` hears Whisper base's encoder beside the
hand-made features; ``fast`` is the hand-made features alone (no encoder)."""


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
    # a model adapted to an archive (callsort adapt): adapter.npz's kind and sha256, the base
    # model, the adaptation data and the adapted figures; None for a model as trained
    adaptation: dict[str, Any] | None = None
    format: int = CARD_FORMAT

    def prediction_identity(self) -> dict[str, Any]:
        """What the card contributes to a prediction: every field but :data:`NOT_PREDICTIVE`
        (classes, features and settings, checksums of the files beside it, temperature,
        normalisation prior, training entries such as archive standardisation) and its
        version, which every row names. A dataset's fingerprint hashes it. ``adaptation``
        is left out when None, so a model as trained keeps the fingerprint it had
        before adapted models existed; an adapted model's names its adapter's sha256."""
        identity = {k: v for k, v in asdict(self).items() if k not in NOT_PREDICTIVE}
        if identity.get("adaptation") is None:
            identity.pop("adaptation", None)
        return identity

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False) + "\n"

    @classmethod
    def read(cls, card_file: Path) -> ModelCard:
        """The card in ``card_file``; refuses an unreadable one, another format, or
        feature or segmentation settings this callsort does not know.

        Settings added since a card was written take the values callsort used then
        (:func:`callsort.settings.recorded`).
        """
        try:
            card = cls(**json.loads(card_file.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as exc:
            raise ModelError(f"unreadable model card {card_file}: {exc}") from None
        if card.format != CARD_FORMAT:
            raise ModelError(
                f"model card {card_file} has format {card.format}; this callsort reads format "
                f"{CARD_FORMAT}: retrain the model with this version (callsort train)"
            )
        for what, cls, data in (
            ("feature", FeatureSettings, card.feature_settings),
            ("segmentation", SegmentationSettings, card.segmentation_settings),
        ):
            try:
                recorded(cls, data)
            except (TypeError, ValueError) as exc:
                raise ModelError(
                    f"model card {card_file} has unusable {what} settings: {exc}"
                ) from None
        return card


def model_files(folder: Path) -> tuple[Path, Path]:
    """``model.txt`` and ``card.json`` of a model folder; refuses a folder without them."""
    model_file, card_file = folder / MODEL_FILE, folder / CARD_FILE
    for f in (model_file, card_file):
        if not f.is_file():
            raise ModelError(f"not a callsort model folder: {f} is missing")
    return model_file, card_file


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, hex, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
