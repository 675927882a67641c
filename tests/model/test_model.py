"""The classifier and its model folder: fit, probabilities, save/load, refusals."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from callsort.errors import ModelError
from callsort.features.spectral import feature_names
from callsort.model.card import CARD_FILE, MODEL_FILE, ModelCard, default_model_dir
from callsort.model.classifier import EmotionClassifier
from callsort.model.folder import load_model, save_model
from callsort.settings import FeatureSettings, SegmentationSettings

LABELS = ("angry", "calm", "happy", "sad")
COLUMN_ORDER = ("sad", "angry", "calm", "happy")  # deliberately not sorted
N_FEATURES = 20
N_PER_CLASS = 40


def gaussian_blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four well-separated clusters in 20 dimensions, one per label."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 3.0, size=(len(LABELS), N_FEATURES))
    which = np.repeat(np.arange(len(LABELS)), N_PER_CLASS)
    X = centres[which] + rng.standard_normal((len(which), N_FEATURES))
    return X.astype(np.float32), np.array(LABELS)[which]


def card_for(classifier: EmotionClassifier, **changes) -> ModelCard:
    card = ModelCard(
        version="test-1",
        classes=list(classifier.classes_),
        feature_names=list(classifier.feature_names_in_),
        feature_settings={},
        segmentation_settings={},
        training={"clips": len(LABELS) * N_PER_CLASS},
        metrics={"accuracy": 1.0},
        licence="test",
    )
    return replace(card, **changes)


@pytest.fixture(scope="module")
def blobs():
    return gaussian_blobs()


@pytest.fixture(scope="module")
def fitted(blobs) -> EmotionClassifier:
    X, y = blobs
    return EmotionClassifier(n_estimators=30, classes=COLUMN_ORDER).fit(X, y)


@pytest.fixture
def saved(tmp_path, fitted) -> Path:
    return save_model(fitted, card_for(fitted), tmp_path / "model")


def rewrite_card(folder: Path, **changes) -> None:
    raw = json.loads((folder / CARD_FILE).read_text())
    raw.update(changes)
    (folder / CARD_FILE).write_text(json.dumps(raw))


# fit and predict ------------------------------------------------------------------------


def test_predict_proba_shape_and_rows_sum_to_one(fitted, blobs):
    X, _ = blobs
    proba = fitted.predict_proba(X)
    assert proba.shape == (len(X), len(LABELS))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    assert (proba >= 0).all()


def test_columns_follow_the_given_class_order(fitted, blobs):
    X, y = blobs
    assert list(fitted.classes_) == list(COLUMN_ORDER)
    proba = fitted.predict_proba(X)
    for column, label in enumerate(fitted.classes_):
        mean_row = proba[y == label].mean(axis=0)
        assert np.argmax(mean_row) == column, (label, mean_row)
    assert (fitted.predict(X) == y).mean() > 0.95


def test_classes_default_to_sorted_labels(blobs):
    X, y = blobs
    model = EmotionClassifier(n_estimators=5).fit(X, y)
    assert list(model.classes_) == sorted(LABELS)
    assert list(model.feature_names_in_) == [f"f{i}" for i in range(N_FEATURES)]
    assert model.n_features_in_ == N_FEATURES


def test_fit_is_deterministic(blobs, fitted):
    X, y = blobs
    again = EmotionClassifier(n_estimators=30, classes=COLUMN_ORDER).fit(X, y)
    np.testing.assert_array_equal(again.predict_proba(X), fitted.predict_proba(X))


def test_fit_refuses_labels_outside_the_classes(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="not among the classes"):
        EmotionClassifier(n_estimators=2, classes=("angry", "calm", "happy")).fit(X, y)


def test_fit_refuses_the_wrong_number_of_feature_names(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="feature names"):
        EmotionClassifier(n_estimators=2).fit(X, y, feature_names=["a", "b"])


@pytest.mark.parametrize(
    "shape", [(3, N_FEATURES - 1), (3, N_FEATURES + 1), (N_FEATURES,)], ids=str
)
def test_predict_proba_refuses_the_wrong_number_of_columns(fitted, shape):
    with pytest.raises(ModelError, match="expects"):
        fitted.predict_proba(np.zeros(shape, np.float32))


def test_predict_proba_refuses_nan(fitted):
    X = np.zeros((2, N_FEATURES), np.float32)
    X[1, 3] = np.nan
    with pytest.raises(ModelError, match="NaN"):
        fitted.predict_proba(X)


def test_predict_proba_of_no_rows(fitted):
    assert fitted.predict_proba(np.zeros((0, N_FEATURES), np.float32)).shape == (0, len(LABELS))


def informative_in(columns: tuple[int, ...], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pure noise except ``columns``, which carry the label (plus a little noise)."""
    rng = np.random.default_rng(seed)
    y = np.array(LABELS)[np.repeat(np.arange(len(LABELS)), N_PER_CLASS)]
    X = rng.standard_normal((len(y), N_FEATURES))
    for n, c in enumerate(columns):
        X[:, c] = (np.searchsorted(LABELS, y) * (n + 1)) % len(LABELS) + 0.2 * X[:, c]
    return X.astype(np.float32), y


def test_max_features_keeps_the_informative_features():
    X, y = informative_in((3, 11))
    model = EmotionClassifier(n_estimators=60, max_features=2).fit(X, y)
    assert list(model.feature_index_) == [3, 11]
    assert model.n_features_in_ == N_FEATURES  # still takes every input column
    assert model.booster_.num_feature() == 2
    X_test, y_test = informative_in((3, 11), seed=1)
    assert (model.predict(X_test) == y_test).mean() > 0.6  # chance is 0.25


def test_without_max_features_every_feature_is_read(fitted):
    assert fitted.feature_index_ is None and fitted.booster_.num_feature() == N_FEATURES


# save and load ---------------------------------------------------------------------------


def test_round_trip_gives_identical_probabilities_and_card(saved, fitted, blobs):
    X, _ = blobs
    model = load_model(saved)
    text = (saved / MODEL_FILE).read_bytes()
    assert model.card.model_sha256 == hashlib.sha256(text).hexdigest()
    assert replace(model.card, model_sha256="") == card_for(fitted)
    assert model.version == "test-1"
    assert model.classes == list(COLUMN_ORDER)
    assert model.path == saved
    np.testing.assert_array_equal(model.classifier.predict_proba(X), fitted.predict_proba(X))


def test_round_trip_of_a_model_reading_selected_features(tmp_path):
    X, y = informative_in((3, 11))
    names = [f"feature {i}" for i in range(N_FEATURES)]
    model = EmotionClassifier(n_estimators=20, max_features=5).fit(X, y, feature_names=names)
    loaded = load_model(save_model(model, card_for(model), tmp_path / "m"))
    assert loaded.card.feature_names == names
    np.testing.assert_array_equal(loaded.classifier.feature_index_, model.feature_index_)
    np.testing.assert_array_equal(loaded.classifier.predict_proba(X), model.predict_proba(X))


def test_save_leaves_only_the_two_files(saved):
    assert sorted(p.name for p in saved.iterdir()) == sorted([CARD_FILE, MODEL_FILE])


def test_save_overwrites_an_existing_model(tmp_path, saved, blobs):
    X, y = blobs
    other = EmotionClassifier(n_estimators=3, classes=COLUMN_ORDER).fit(X, y)
    save_model(other, card_for(other, version="test-2"), saved)
    model = load_model(saved)
    assert model.version == "test-2"
    np.testing.assert_array_equal(model.classifier.predict_proba(X), other.predict_proba(X))


def test_feature_names_with_spaces_survive_the_round_trip(tmp_path, blobs):
    X, y = blobs
    names = [f"feature {i}" for i in range(N_FEATURES)]
    model = EmotionClassifier(n_estimators=3).fit(X, y, feature_names=names)
    loaded = load_model(save_model(model, card_for(model), tmp_path / "m"))
    assert loaded.card.feature_names == names


def test_load_refuses_a_card_with_another_number_of_features(saved):
    raw = json.loads((saved / CARD_FILE).read_text())
    rewrite_card(saved, feature_names=raw["feature_names"][:-1])
    with pytest.raises(ModelError, match="features"):
        load_model(saved)


def test_load_refuses_a_card_with_other_feature_names(saved):
    raw = json.loads((saved / CARD_FILE).read_text())
    rewrite_card(saved, feature_names=list(reversed(raw["feature_names"])))
    with pytest.raises(ModelError, match="feature names"):
        load_model(saved)


def test_load_refuses_a_card_with_another_number_of_classes(saved):
    rewrite_card(saved, classes=["angry", "calm", "happy"])
    with pytest.raises(ModelError, match="classes"):
        load_model(saved)


@pytest.mark.parametrize("missing", [CARD_FILE, MODEL_FILE])
def test_load_refuses_a_folder_missing_a_file(saved, missing):
    (saved / missing).unlink()
    with pytest.raises(ModelError, match=f"{missing} is missing"):
        load_model(saved)


def test_load_refuses_a_missing_folder(tmp_path):
    with pytest.raises(ModelError, match="not a callsort model folder"):
        load_model(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "content",
    ["{not json", "[1, 2]", '{"version": "x"}', '{"unknown_field": 1}'],
    ids=["invalid-json", "not-an-object", "missing-fields", "unknown-field"],
)
def test_load_refuses_an_unreadable_card(saved, content):
    (saved / CARD_FILE).write_text(content)
    with pytest.raises(ModelError, match="unreadable model card"):
        load_model(saved)


@pytest.mark.parametrize(
    "content",
    [b"", b"this is not a LightGBM model\n", bytes(range(256)) * 4],
    ids=["empty", "text", "binary"],
)
def test_load_refuses_a_corrupt_model_file(saved, content):
    (saved / MODEL_FILE).write_bytes(content)
    with pytest.raises(ModelError, match="checksum differs"):
        load_model(saved)
    # A card without a checksum (written by hand) still gets LightGBM's own refusal.
    card = json.loads((saved / CARD_FILE).read_text())
    card["model_sha256"] = ""
    (saved / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelError, match="unreadable model"):
        load_model(saved)


LOAD_IN_A_CHILD = """
import sys
from callsort.errors import ModelError
from callsort.model.folder import load_model
try:
    load_model(sys.argv[1])
except ModelError as exc:
    print("ModelError:", exc)
    sys.exit(3)
print("loaded")
"""


@pytest.mark.parametrize("keep", [0.5, 0.05], ids=["half", "header-only"])
def test_load_refuses_a_truncated_model_file_without_crashing(saved, keep):
    # In a child process: the failure mode is the interpreter dying.
    text = (saved / MODEL_FILE).read_text()
    (saved / MODEL_FILE).write_text(text[: int(len(text) * keep)])
    child = subprocess.run(
        [sys.executable, "-c", LOAD_IN_A_CHILD, str(saved)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 3, (child.returncode, child.stdout, child.stderr[-500:])
    assert "ModelError" in child.stdout


def test_load_refuses_a_card_of_an_older_format(saved):
    rewrite_card(saved, format=1)
    with pytest.raises(ModelError, match="format 1.*retrain"):
        load_model(saved)


def test_load_refuses_unknown_feature_settings(saved):
    rewrite_card(saved, feature_settings={"n_mfcc": 20, "wavelets": True})
    with pytest.raises(ModelError, match="unusable feature settings"):
        load_model(saved)


def test_load_refuses_unknown_segmentation_settings(saved):
    rewrite_card(saved, segmentation_settings={"min_speech_s": 0.3, "wavelet_vad": True})
    with pytest.raises(ModelError, match="unusable segmentation settings"):
        load_model(saved)
    rewrite_card(saved, segmentation_settings={"short_utterance_zcr_percentiles": [90, 10]})
    with pytest.raises(ModelError, match="unusable segmentation settings.*lower first"):
        load_model(saved)


def test_segmentation_settings_of_a_card_written_before_a_setting_existed(saved):
    # the card of a model trained before short utterances: it segmented without them
    rewrite_card(saved, segmentation_settings={"min_speech_s": 0.3, "max_segment_s": 4.0})
    old = load_model(saved).segmentation_settings
    assert old.short_utterance_s is None and old.max_segment_s == 4.0
    assert old.short_utterance_zcr_percentiles == (25.0, 75.0)
    assert old != SegmentationSettings()  # today's default looks for short utterances
    # a card that records them keeps its own values
    rewrite_card(saved, segmentation_settings={"short_utterance_s": 0.2, "max_segment_s": 6.0})
    recorded = load_model(saved).segmentation_settings
    assert (recorded.short_utterance_s, recorded.max_segment_s) == (0.2, 6.0)


def test_temperature_softens_probabilities_but_keeps_the_ranking(fitted, blobs):
    X, _ = blobs
    sharp = fitted.predict_proba(X)
    soft = EmotionClassifier.from_stack(fitted.stack_, temperature=2.0)
    p = soft.predict_proba(X)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_array_equal(p.argmax(axis=1), sharp.argmax(axis=1))
    assert (p.max(axis=1) <= sharp.max(axis=1) + 1e-12).all()
    assert p.max(axis=1).mean() < sharp.max(axis=1).mean() - 0.05


def test_temperature_is_saved_in_the_card_and_applied_on_load(tmp_path, fitted, blobs):
    X, _ = blobs
    folder = save_model(fitted, card_for(fitted, temperature=2.0), tmp_path / "warm")
    loaded = load_model(folder)
    assert loaded.classifier.temperature == 2.0
    assert loaded.classifier.predict_proba(X).max(axis=1).mean() < (
        fitted.predict_proba(X).max(axis=1).mean()
    )


def test_normalising_model_normalises_each_channel(tmp_path):
    """A model trained on [raw, z] features takes raw channel features and adds z itself.

    The labels depend only on where a segment stands in its own channel (above or
    below the channel's average of the first feature), and every channel has its own
    offset: labelled from raw features alone, a channel shifted up would come out all
    "angry". Each expectation is the rule the labels were made by, not the code's formula.
    """
    from callsort.features.normalise import channel_normalised, normalised_names, population_prior

    settings = FeatureSettings()
    raw_names = feature_names(settings)
    rng = np.random.default_rng(5)

    def channel(offset: float, n: int) -> np.ndarray:
        return (offset + rng.standard_normal((n, len(raw_names)))).astype(np.float32)

    def by_own_average(x: np.ndarray) -> np.ndarray:
        return np.where(x[:, 0] > x[:, 0].mean(), "angry", "calm")

    channels = [channel(offset, 40) for offset in rng.uniform(-4.0, 4.0, size=30)]
    X = np.concatenate(channels)
    prior = population_prior(X, weight=5.0)
    both = np.concatenate([channel_normalised(c, prior=prior) for c in channels])
    y = np.concatenate([by_own_average(c) for c in channels])
    clf = EmotionClassifier(n_estimators=30, classes=("angry", "calm")).fit(
        both, y, feature_names=normalised_names(raw_names)
    )
    folder = save_model(clf, card_for(clf, normalisation=prior.to_dict()), tmp_path / "normalising")
    model = load_model(folder)
    shifted = channel(3.0, 40)  # one speaker's channel, every raw value high
    labels = np.array(model.classes)[model.channel_proba(shifted).argmax(axis=1)]
    assert (labels == by_own_average(shifted)).mean() >= 0.9
    assert model.channel_proba(np.zeros((0, len(raw_names)), np.float32)).shape == (0, 2)
    # a long channel is labelled in blocks, against the statistics of all its segments:
    # its first 650 segments, all below the whole channel's average, are calm, though
    # against the first block's own average half of them would be angry
    long_channel = np.concatenate([channel(0.0, 650), channel(0.0, 650)])
    long_channel[650:, 0] += 4.0
    labels = np.array(model.classes)[model.channel_proba(long_channel).argmax(axis=1)]
    assert (labels[:650] == "calm").mean() >= 0.9
    assert (labels[650:] == "angry").mean() >= 0.9
    # a prior of the wrong length is refused
    rewrite_card(folder, normalisation={**prior.to_dict(), "mean": [0.0] * 3})
    with pytest.raises(ModelError, match="normalisation does not fit"):
        load_model(folder)


def test_saved_model_files_respect_the_umask(tmp_path, fitted):
    """Models are shared between users: not 0600 as tempfile.mkstemp would leave them."""
    old = os.umask(0o022)
    try:
        folder = save_model(fitted, card_for(fitted), tmp_path / "shared_model")
    finally:
        os.umask(old)
    for name in (MODEL_FILE, CARD_FILE):
        assert (folder / name).stat().st_mode & 0o777 == 0o644


# the shipped model ------------------------------------------------------------------------


def test_default_model_loads_and_matches_the_feature_layout():
    if not (default_model_dir() / MODEL_FILE).is_file():
        pytest.skip("callsort/models/default/model.txt is absent (being regenerated)")
    model = load_model()
    card = model.card
    assert model.path == default_model_dir()
    raw = feature_names(FeatureSettings(**card.feature_settings))
    if card.normalisation is not None:  # raw features, then the same within the channel
        from callsort.features.normalise import normalised_names

        raw = normalised_names(raw)
    assert card.feature_names == raw
    assert sorted(card.classes) == sorted(LABELS)
    SegmentationSettings(**card.segmentation_settings)  # the card's settings are complete
    proba = model.classifier.predict_proba(np.zeros((2, len(card.feature_names)), np.float32))
    assert proba.shape == (2, len(card.classes))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)


# --- the linear head on an encoder's embedding (stacking) ---------------------------------


def embedding_blobs(seed: int = 0, *, n_groups: int = 8, n_per_class: int = N_PER_CLASS):
    """Hand-made columns that carry nothing, embedding columns that carry the label
    (weakly, spread over 40 dimensions, as an encoder's do), speakers as groups."""
    rng = np.random.default_rng(seed)
    n = len(LABELS) * n_per_class
    which = np.tile(np.arange(len(LABELS)), n_per_class)
    direction = rng.normal(size=(len(LABELS), 40))
    embedding = 0.6 * direction[which] + rng.standard_normal((n, 40))
    handmade = rng.standard_normal((n, 5))
    names = [f"h{i}" for i in range(5)] + [f"enc_mean_{i}" for i in range(40)]
    groups = np.arange(n) // (n // n_groups)
    X = np.hstack([handmade, embedding]).astype(np.float32)
    return X, np.array(LABELS)[which], names, groups


def test_embedding_columns_go_through_the_linear_head():
    X_all, y_all, names, groups = embedding_blobs(n_groups=16, n_per_class=2 * N_PER_CLASS)
    train, test = groups < 8, groups >= 8  # later speakers are new to the model
    X, y, groups = X_all[train], y_all[train], groups[train]
    model = EmotionClassifier(n_estimators=40, classes=COLUMN_ORDER).fit(
        X, y, feature_names=names, groups=groups
    )
    assert model.head_ is not None
    assert list(model.head_.columns) == list(range(5, 45))
    booster_inputs = model.booster_.feature_name()
    assert booster_inputs == [*names[:5], *(f"head_logp_{c}" for c in COLUMN_ORDER)]
    accuracy = np.mean(model.predict(X_all[test]) == y_all[test])
    # the label is in the embedding only: above chance (0.25) only through the head
    assert accuracy > 0.6
    gain = dict(zip(booster_inputs, model.booster_.feature_importance("gain"), strict=True))
    assert sum(gain[f"head_logp_{c}"] for c in COLUMN_ORDER) > 0.8 * sum(gain.values())


def test_a_model_with_a_head_saves_and_loads_to_the_same_probabilities(tmp_path):
    X, y, names, groups = embedding_blobs()
    model = EmotionClassifier(n_estimators=20, classes=COLUMN_ORDER).fit(
        X, y, feature_names=names, groups=groups
    )
    folder = save_model(model, card_for(model), tmp_path / "m")
    assert sorted(p.name for p in folder.iterdir()) == ["card.json", "head.npz", "model.txt"]
    loaded = load_model(folder)
    np.testing.assert_allclose(
        loaded.classifier.predict_proba(X), model.predict_proba(X), rtol=1e-6, atol=1e-9
    )
    head = folder / "head.npz"
    head.write_bytes(head.read_bytes()[:-10])
    with pytest.raises(ModelError, match="head.npz does not match its card"):
        load_model(folder)


def test_saving_a_model_without_a_head_removes_an_old_head(tmp_path, fitted):
    X, y, names, groups = embedding_blobs()
    with_head = EmotionClassifier(n_estimators=5).fit(X, y, feature_names=names, groups=groups)
    folder = save_model(with_head, card_for(with_head), tmp_path / "m")
    save_model(fitted, card_for(fitted), folder)
    assert not (folder / "head.npz").exists()
    assert load_model(folder).classifier.head_ is None
