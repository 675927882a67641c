"""Decoding real files written with soundfile: header probing, block reading, resampling."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from callsort.audio.decode import probe, read_blocks, resampled_blocks
from callsort.errors import DecodeError
from callsort.settings import AnalysisSettings

TARGET_SR = 16_000
LEFT_HZ, RIGHT_HZ = 440.0, 1000.0

# (soundfile format, subtype, file extension, lossless)
FORMATS = [
    ("WAV", "PCM_16", "wav", True),
    ("WAV", "PCM_24", "wav", True),
    ("WAV", "PCM_32", "wav", True),
    ("WAV", "FLOAT", "wav", True),
    ("WAV", "ULAW", "wav", False),
    ("WAV", "ALAW", "wav", False),
    ("FLAC", "PCM_16", "flac", True),
    ("OGG", "VORBIS", "ogg", False),
    ("MP3", "MPEG_LAYER_III", "mp3", False),
]
SAMPLE_RATES = [8000, 16000, 44100, 48000]


def two_tone_stereo(sr: int, duration_s: float = 1.0) -> np.ndarray:
    """``(frames, 2)``: a 440 Hz tone on the left, a quieter 1 kHz tone on the right."""
    t = np.arange(int(round(sr * duration_s))) / sr
    left = 0.5 * np.sin(2 * np.pi * LEFT_HZ * t)
    right = 0.25 * np.sin(2 * np.pi * RIGHT_HZ * t)
    return np.stack([left, right], axis=1).astype(np.float32)


def decode_to_16k(path, *, block_frames: int) -> np.ndarray:
    """What the analysis does: read blocks, transpose to (channels, samples), resample."""
    info = probe(path)
    channel_major = (block.T for block in read_blocks(path, block_frames=block_frames))
    out = list(resampled_blocks(channel_major, from_hz=info.sample_rate, to_hz=TARGET_SR))
    return np.concatenate(out, axis=1)


def dominant_hz(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * sr / len(x))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


@pytest.mark.parametrize("sr", SAMPLE_RATES)
@pytest.mark.parametrize(
    ("fmt", "subtype", "ext", "lossless"), FORMATS, ids=[f"{f}-{s}" for f, s, _, _ in FORMATS]
)
def test_format_probe_read_and_resample(tmp_path, fmt, subtype, ext, lossless, sr):
    written = two_tone_stereo(sr)
    path = tmp_path / f"tone_{sr}.{ext}"
    sf.write(path, written, sr, format=fmt, subtype=subtype)

    info = probe(path)
    assert (info.sample_rate, info.n_channels, info.n_frames) == (sr, 2, len(written))
    assert info.format == fmt and info.subtype == subtype
    assert info.duration_s == pytest.approx(1.0)

    blocks = list(read_blocks(path, block_frames=2 * sr))  # one block
    assert len(blocks) == 1
    raw = blocks[0]
    assert raw.dtype == np.float32
    assert raw.shape == written.shape
    if lossless:
        np.testing.assert_allclose(raw, written, atol=1.0 / 2**15)
    else:  # companded or perceptual codecs: same level, roughly the same waveform
        assert rms(raw[:, 0]) == pytest.approx(rms(written[:, 0]), rel=0.12)

    y = decode_to_16k(path, block_frames=2 * sr)
    assert y.dtype == np.float32 and y.shape[0] == 2
    assert abs(y.shape[1] - TARGET_SR) <= 2  # 1 s of audio at 16 kHz
    assert dominant_hz(y[0], TARGET_SR) == pytest.approx(LEFT_HZ, abs=2.0)
    assert dominant_hz(y[1], TARGET_SR) == pytest.approx(RIGHT_HZ, abs=2.0)  # channel order kept
    assert rms(y[0, 800:-800]) == pytest.approx(0.5 / np.sqrt(2), rel=0.12)


@pytest.mark.parametrize("sr", [8000, 22050, 44100, 48000])
def test_resampled_length_follows_the_rate_ratio(sr):
    n = 3 * sr + 123  # not a whole number of output samples for every rate
    x = np.zeros((1, n), dtype=np.float32)
    y = np.concatenate(list(resampled_blocks([x], from_hz=sr, to_hz=TARGET_SR)), axis=1)
    assert abs(y.shape[1] - n * TARGET_SR / sr) <= 2


@pytest.mark.parametrize("sr", [8000, 44100, 48000])
def test_streaming_in_small_blocks_equals_one_block(sr):
    rng = np.random.default_rng(sr)
    x = (0.1 * rng.standard_normal((2, 2 * sr + 77))).astype(np.float32)
    one = np.concatenate(list(resampled_blocks([x], from_hz=sr, to_hz=TARGET_SR)), axis=1)
    small = [x[:, i : i + 1000] for i in range(0, x.shape[1], 1000)]
    many = np.concatenate(list(resampled_blocks(small, from_hz=sr, to_hz=TARGET_SR)), axis=1)
    assert many.shape == one.shape
    edge = 64
    np.testing.assert_allclose(many[:, edge:-edge], one[:, edge:-edge], atol=1e-5)


def one_read(path) -> np.ndarray:
    """The whole file in one call to libsndfile: the reference blocks must match."""
    with sf.SoundFile(path) as f:
        return f.read(dtype="float32", always_2d=True)


@pytest.mark.parametrize("sr", [8000, 44100])
@pytest.mark.parametrize(
    ("fmt", "subtype", "ext", "lossless"),
    [pytest.param(*f, id=f"{f[0]}-{f[1]}") for f in FORMATS],
)
def test_reading_in_small_blocks_equals_one_read(tmp_path, fmt, subtype, ext, lossless, sr):
    path = tmp_path / f"tone.{ext}"
    sf.write(path, two_tone_stereo(sr, 2.0), sr, format=fmt, subtype=subtype)
    blocks = list(read_blocks(path, block_frames=1000))
    assert len(blocks) > 1 and max(len(b) for b in blocks) <= 1000  # really read in blocks
    small, whole = np.concatenate(blocks), one_read(path)
    assert small.shape == whole.shape
    np.testing.assert_allclose(small, whole, atol=1e-6)


@pytest.mark.parametrize(("sr", "channels"), [(8000, 1), (16000, 1), (44100, 2)])
def test_mp3_is_read_in_analysis_blocks_with_exact_samples(tmp_path, sr, channels):
    """The real setting: blocks of AnalysisSettings.block_s over a 2-minute MP3. libsndfile
    1.2 decodes MP3 read in consecutive pieces wrongly: each block must come out exact."""
    block_frames = int(AnalysisSettings().block_s * sr)
    t = np.arange(int(2.1 * block_frames)) / sr
    tone = (0.5 * np.sin(2 * np.pi * LEFT_HZ * t)).astype(np.float32)
    path = tmp_path / "call.mp3"
    sf.write(path, np.stack([tone] * channels, axis=1), sr)
    blocks = list(read_blocks(path, block_frames=block_frames))
    assert [len(b) for b in blocks[:-1]] == [block_frames, block_frames]  # memory: one block
    blocked, whole = np.concatenate(blocks), one_read(path)
    assert blocked.shape == whole.shape
    np.testing.assert_allclose(blocked, whole, atol=1e-6)


def test_streaming_from_a_file_in_small_blocks_equals_one_block(tmp_path):
    sr = 44100
    path = tmp_path / "tone.flac"
    sf.write(path, two_tone_stereo(sr, 2.0), sr, format="FLAC")
    small = decode_to_16k(path, block_frames=1000)
    whole = decode_to_16k(path, block_frames=10 * sr)
    assert small.shape == whole.shape
    np.testing.assert_allclose(small[:, 64:-64], whole[:, 64:-64], atol=1e-5)


def test_same_rate_passes_blocks_through_unchanged():
    blocks = [np.ones((2, 10), np.float32), np.zeros((2, 5), np.float32)]
    out = list(resampled_blocks(iter(blocks), from_hz=TARGET_SR, to_hz=TARGET_SR))
    assert len(out) == 2
    assert all(a is b for a, b in zip(out, blocks, strict=True))


def test_empty_stream_resamples_to_nothing():
    assert list(resampled_blocks(iter([]), from_hz=8000, to_hz=TARGET_SR)) == []


def test_nan_and_inf_in_a_float_wav_are_read_as_zeros(tmp_path):
    pattern = np.array([0.1, np.nan, np.inf, -np.inf, -0.2], dtype=np.float32)
    samples = np.tile(pattern, 200)[:, np.newaxis]
    path = tmp_path / "nan.wav"
    sf.write(path, samples, 16000, subtype="FLOAT")
    assert np.isnan(sf.read(path)[0]).any()  # the file really holds NaN
    raw = np.concatenate(list(read_blocks(path, block_frames=7)))
    assert np.isfinite(raw).all()
    expected = np.where(np.isfinite(samples), samples, 0.0)
    np.testing.assert_array_equal(raw, expected)


def test_header_only_wav_probes_as_zero_frames_and_reads_nothing(tmp_path):
    path = tmp_path / "header_only.wav"
    sf.write(path, np.zeros((0, 1), np.float32), 8000)
    info = probe(path)
    assert (info.sample_rate, info.n_channels, info.n_frames) == (8000, 1, 0)
    assert list(read_blocks(path, block_frames=100)) == []


def test_implausible_sample_rate_is_refused(tmp_path):
    path = tmp_path / "fast.wav"
    sf.write(path, np.zeros(100, np.float32), 1_000_000)
    with pytest.raises(DecodeError, match="implausible sample rate"):
        probe(path)


def test_implausible_channel_count_is_refused(tmp_path):
    path = tmp_path / "wide.wav"
    sf.write(path, np.zeros((10, 65), np.float32), 16000)
    with pytest.raises(DecodeError, match="implausible channel count"):
        probe(path)


def read_all(path) -> list[np.ndarray]:
    return list(read_blocks(path, block_frames=100))


@pytest.mark.parametrize("reader", [probe, read_all], ids=["probe", "read_blocks"])
def test_zero_byte_file_is_reported_empty(tmp_path, reader):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(DecodeError, match="empty"):
        reader(path)


@pytest.mark.parametrize("reader", [probe, read_all], ids=["probe", "read_blocks"])
def test_text_file_named_wav_is_not_audio(tmp_path, reader):
    path = tmp_path / "notes.wav"
    path.write_text("this is a transcript, not audio\n" * 20)
    with pytest.raises(DecodeError, match="not readable as audio") as caught:
        reader(path)
    assert str(path) not in str(caught.value)  # a reason, not libsndfile's "Error opening '...'"


@pytest.mark.parametrize("reader", [probe, read_all], ids=["probe", "read_blocks"])
def test_missing_file_is_reported_not_found(tmp_path, reader):
    with pytest.raises(DecodeError, match="not found"):
        reader(tmp_path / "gone.wav")


def test_missing_file_raises_decode_error(tmp_path):
    """Whatever the wording, a vanished file is a DecodeError, not a crash."""
    with pytest.raises(DecodeError):
        probe(tmp_path / "gone.wav")


def test_folder_is_reported_as_a_folder(tmp_path):
    folder = tmp_path / "looks_like.wav"
    folder.mkdir()
    with pytest.raises(DecodeError, match="folder"):
        probe(folder)


def test_reason_is_not_garbled_by_a_colon_in_the_file_name(tmp_path):
    path = tmp_path / "call: 1.wav"
    path.write_text("not audio\n" * 50)
    with pytest.raises(DecodeError) as caught:
        probe(path)
    assert str(caught.value) == "not readable as audio: Format not recognised."


def test_file_that_changes_after_probing_is_refused(tmp_path):
    path = tmp_path / "growing.wav"
    sf.write(path, two_tone_stereo(8000), 8000, subtype="PCM_16")
    info = probe(path)
    with open(path, "ab") as f:  # a recorder appends more audio
        f.write(b"\0" * 400)
    with pytest.raises(DecodeError, match=r"changed while it was being read \(still being written"):
        list(read_blocks(path, block_frames=1000, stamp=info.stamp))
    assert len(np.concatenate(list(read_blocks(path, block_frames=1000)))) >= 8000  # no stamp


def test_file_that_changes_while_read_is_refused(tmp_path):
    path = tmp_path / "growing.wav"
    sf.write(path, two_tone_stereo(8000), 8000, subtype="PCM_16")
    blocks = read_blocks(path, block_frames=1000)
    next(blocks)
    with open(path, "ab") as f:
        f.write(b"\0" * 400)
    with pytest.raises(DecodeError, match="still being written"):
        list(blocks)


def test_unfinished_wav_from_a_recorder_is_refused(tmp_path):
    """libsndfile fills in the data size on close; a file still open has none."""
    path = tmp_path / "recording.wav"
    with sf.SoundFile(path, "w", 8000, 1, "PCM_16") as f:
        f.write(np.zeros(8000, np.float32))
        f.flush()
        with pytest.raises(DecodeError, match="unfinished file"):
            probe(path)
    assert probe(path).n_frames == 8000  # closed: complete


def test_blocks_of_many_channels_are_capped(tmp_path, monkeypatch):
    from callsort.audio import decode

    monkeypatch.setattr(decode, "MAX_BLOCK_SAMPLES", 64 * 100)
    path = tmp_path / "wide.wav"
    sf.write(path, np.zeros((1000, 64), np.float32), 8000)
    blocks = list(read_blocks(path, block_frames=10_000))
    assert [len(b) for b in blocks] == [100] * 10


@pytest.mark.parametrize("sr", [1, 999])
def test_sample_rate_below_1_khz_is_refused(tmp_path, sr):
    path = tmp_path / "slow.wav"
    sf.write(path, np.zeros(100, np.float32), sr)
    with pytest.raises(DecodeError, match=f"implausible sample rate in header: {sr} Hz"):
        probe(path)


def test_non_utf8_file_name_is_read(tmp_path):
    path = os.path.join(os.fsencode(tmp_path), b"caf\xe9.wav")
    sf.write(path, two_tone_stereo(8000), 8000)
    name = os.fsdecode(path)
    assert probe(name).n_frames == 8000
    assert sum(len(b) for b in read_blocks(name, block_frames=1000)) == 8000


@pytest.mark.parametrize("reader", [probe, read_all], ids=["probe", "read_blocks"])
def test_named_pipe_is_refused_without_waiting_for_a_writer(tmp_path, reader):
    path = tmp_path / "pipe.wav"
    os.mkfifo(path)
    with pytest.raises(DecodeError, match="not a regular file"):
        reader(path)


def test_device_is_refused():
    with pytest.raises(DecodeError, match="not a regular file"):
        probe("/dev/zero")
