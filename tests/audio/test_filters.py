"""callsort.audio.filters against the librosa and scipy functions they stand in for."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest
import scipy.signal
import soundfile as sf

from callsort.audio import filters, voices
from callsort.features.encoder import WHISPER_N_FFT, WHISPER_N_MELS, WHISPER_SAMPLE_RATE
from callsort.settings import FeatureSettings

SAMPLES = Path(__file__).resolve().parents[2] / "sample_recordings"
FEATURES = FeatureSettings()


@pytest.mark.parametrize(
    ("sr", "n_fft", "n_mels", "fmin", "fmax"),
    [
        (FEATURES.sample_rate, FEATURES.n_fft, FEATURES.n_mels, FEATURES.fmin_hz, FEATURES.fmax_hz),
        (WHISPER_SAMPLE_RATE, WHISPER_N_FFT, WHISPER_N_MELS, 0.0, None),  # Whisper's
        (16_000, 400, 40, 0.0, None),  # the speaker encoder's
        (8_000, 256, 26, 20.0, 3_800.0),
    ],
)
def test_mel_filters_are_librosas(sr, n_fft, n_mels, fmin, fmax):
    ours = filters.mel_filters(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    theirs = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    assert ours.dtype == theirs.dtype == np.float32
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize(("sr", "n_fft"), [(FEATURES.sample_rate, FEATURES.n_fft), (8_000, 256)])
def test_chroma_filters_and_bin_frequencies_are_librosas(sr, n_fft):
    ours = filters.chroma_filters(sr=sr, n_fft=n_fft)
    np.testing.assert_array_equal(ours, librosa.filters.chroma(sr=sr, n_fft=n_fft, tuning=0.0))
    np.testing.assert_array_equal(
        filters.fft_frequencies(sr=sr, n_fft=n_fft), librosa.fft_frequencies(sr=sr, n_fft=n_fft)
    )


@pytest.mark.parametrize("n", [1, 2, 255, 400, 512])
def test_hann_is_scipys_periodic_window(n):
    np.testing.assert_array_equal(filters.hann(n), scipy.signal.get_window("hann", n, fftbins=True))


def test_median_filter_is_scipys_medfilt_zeros_beyond_the_ends():
    rng = np.random.default_rng(7)
    for n in (3, 4, 5, 17, 200):
        for x in (rng.integers(0, 2, n).astype(float), rng.standard_normal(n)):
            for size in (3, 5):
                if n >= size:
                    np.testing.assert_array_equal(
                        filters.median_filter(x, size=size), scipy.signal.medfilt(x, size)
                    )
    assert filters.median_filter(np.array([1.0, 1.0, 1.0]), size=3).tolist() == [1.0, 1.0, 1.0]
    assert filters.median_filter(np.array([1.0, 0.0, 1.0]), size=3).tolist() == [0.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="odd"):
        filters.median_filter(np.zeros(4), size=4)


@pytest.mark.parametrize("width", [3, 5, 7, FEATURES.delta_width])
@pytest.mark.parametrize("order", [1, 2])
def test_savgol_derivative_is_scipys_interp_filter(width, order):
    """Interior and edge rows alike, to float64 rounding."""
    ours = filters.savgol_derivative(width, order)
    theirs = scipy.signal.savgol_filter(np.eye(width), width, polyorder=order, deriv=order, axis=0)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-13)
    x = np.random.default_rng(width).standard_normal((width, 50))
    np.testing.assert_allclose(
        ours @ x,
        scipy.signal.savgol_filter(x, width, polyorder=order, deriv=order, axis=0),
        rtol=0,
        atol=1e-12,
    )


def test_voice_mel_is_librosas_melspectrogram_of_real_speech():
    """The speaker encoder's input, on the customer's side of a demo call, quiet and loud:
    librosa.feature.melspectrogram (as Resemblyzer computes it) to float32 rounding."""
    y, sr = sf.read(SAMPLES / "call_01_escalation.wav", dtype="float32")
    speech = librosa.resample(y[:, 1], orig_sr=sr, target_sr=16_000, res_type="soxr_hq")
    for gain in (1.0, 1e-3):  # as it is (louder than -30 dBFS), and raised to -30 dBFS
        part = (speech[: 5 * 16_000] * gain).astype(np.float32)
        ours = voices.voice_mel(part)
        rms = float(np.sqrt(np.mean(np.square(part, dtype=np.float64))))
        raise_db = max(0.0, -30.0 - 20 * np.log10(rms))
        raised = part * np.float32(10 ** (raise_db / 20))
        theirs = librosa.feature.melspectrogram(
            y=raised, sr=16_000, n_fft=400, hop_length=160, n_mels=40
        ).T
        assert ours.shape == theirs.shape == (1 + part.size // 160, 40)
        assert ours.dtype == np.float32
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6 * float(theirs.max()))
