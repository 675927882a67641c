"""Training copies: telephone line (band, length, mu-law), noise, gain/speed/pitch."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal

from callsort.training.augment import (
    GAIN_RANGE_DB,
    PITCH_RANGE_SEMITONES,
    SPEED_RANGE,
    TELEPHONE_BAND_HZ,
    add_noise,
    augmented,
    coloured_noise,
    mu_law_roundtrip,
    perturbed,
    telephone,
)

SR = 16_000


def band_energy(y: np.ndarray, lo_hz: float, hi_hz: float, sr: int = SR) -> float:
    freqs, psd = scipy.signal.welch(y, fs=sr, nperseg=1024)
    return float(psd[(freqs >= lo_hz) & (freqs < hi_hz)].sum())


def attenuation_db(
    before: np.ndarray, after: np.ndarray, lo_hz: float, hi_hz: float, sr: int = SR
) -> float:
    """Change of energy in ``[lo_hz, hi_hz)`` from ``before`` to ``after``, in dB."""
    return 10 * np.log10(
        band_energy(after, lo_hz, hi_hz, sr) / band_energy(before, lo_hz, hi_hz, sr)
    )


@pytest.fixture
def noise(make_noise) -> np.ndarray:
    return make_noise(2.0, rms=0.1, seed=1)


@pytest.mark.parametrize("n_samples", [1, 5, 100, 16_001, 32_000])
def test_telephone_keeps_the_length_and_returns_float32(make_noise, n_samples):
    y = make_noise(n_samples / SR, rms=0.1, seed=2)
    out = telephone(y)
    assert out.shape == y.shape
    assert out.dtype == np.float32
    assert np.isfinite(out).all()


def test_telephone_keeps_the_speech_band(noise):
    assert attenuation_db(noise, telephone(noise), 500, 3000) == pytest.approx(0.0, abs=1.0)


def test_telephone_removes_energy_above_3400_hz(noise):
    out = telephone(noise)
    assert attenuation_db(noise, out, 3800, 8000) < -40  # above the 4 kHz Nyquist of 8 kHz
    assert attenuation_db(noise, out, TELEPHONE_BAND_HZ[1], 8000) < -15


def test_telephone_removes_energy_below_300_hz(noise):
    out = telephone(noise)
    assert attenuation_db(noise, out, 0, 150) < -20
    assert attenuation_db(noise, out, 0, TELEPHONE_BAND_HZ[0]) < -8


def test_telephone_keeps_a_mid_band_tone(make_sine):
    tone = make_sine(1000.0, 1.0, amplitude=0.5)
    out = telephone(tone)
    middle = slice(1000, -1000)  # away from the filters' start-up
    rms_ratio = np.sqrt(np.mean(out[middle] ** 2)) / np.sqrt(np.mean(tone[middle] ** 2))
    assert rms_ratio == pytest.approx(1.0, abs=0.05)


def test_telephone_at_another_rate_keeps_length(make_noise):
    y = make_noise(1.0, sr=44_100, rms=0.1, seed=3)
    out = telephone(y, sr=44_100)
    assert out.shape == y.shape
    assert attenuation_db(y, out, 5000, 20000, sr=44_100) < -40


def test_telephone_of_an_overloaded_signal_stays_in_range(make_noise):
    y = make_noise(1.0, rms=2.0, seed=4)  # far beyond full scale
    out = telephone(y)
    assert np.abs(out).max() < 1.5  # normalised before mu-law, then only filter overshoot


def test_telephone_of_an_empty_signal_is_empty():
    assert telephone(np.zeros(0, np.float32)).shape == (0,)


@pytest.mark.parametrize("amplitude", [0.9, 0.5, 0.1, 0.01])
def test_mu_law_error_is_small_relative_to_the_signal(make_sine, amplitude):
    x = make_sine(440.0, 1.0, amplitude=amplitude).astype(np.float64)
    error = mu_law_roundtrip(x) - x
    relative_rms = np.sqrt(np.mean(error**2)) / np.sqrt(np.mean(x**2))
    assert relative_rms < 0.03  # about 35-38 dB SNR at any level: that is what mu-law is for


def test_mu_law_has_256_levels_and_clips_to_full_scale():
    out = mu_law_roundtrip(np.linspace(-1.5, 1.5, 100_001))
    assert len(np.unique(out)) == 256
    assert out.min() == pytest.approx(-1.0) and out.max() == pytest.approx(1.0)


def test_mu_law_is_finer_near_zero_than_near_full_scale():
    quiet = np.linspace(0.001, 0.01, 1000)
    loud = np.linspace(0.5, 0.9, 1000)
    assert np.abs(mu_law_roundtrip(quiet) - quiet).max() < 0.001
    assert np.abs(mu_law_roundtrip(loud) - loud).max() > 0.005


def test_add_noise_sets_the_signal_to_noise_ratio(make_sine):
    y = make_sine(440.0, 2.0, amplitude=0.5)
    noisy = add_noise(y, snr_db=10.0, seed=5)
    noise = noisy.astype(np.float64) - y
    snr = 10 * np.log10(np.mean(y.astype(np.float64) ** 2) / np.mean(noise**2))
    assert snr == pytest.approx(10.0, abs=0.3)
    np.testing.assert_array_equal(add_noise(y, snr_db=10.0, seed=5), noisy)  # seeded


@pytest.mark.parametrize("colour", ["white", "pink", "brown"])
def test_coloured_noise_keeps_the_signal_to_noise_ratio(make_sine, colour):
    y = make_sine(440.0, 1.0)
    noisy = add_noise(y, snr_db=10.0, seed=1, colour=colour)
    noise = noisy - y
    snr = 10 * np.log10(np.mean(y.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2))
    assert snr == pytest.approx(10.0, abs=0.1)


def test_noise_colours_fall_with_frequency():
    """Pink loses about 3 dB per octave, brown about 6: compare 500 Hz with 4 kHz."""
    rng = np.random.default_rng(0)
    for colour, per_octave in (("white", 0.0), ("pink", 3.0), ("brown", 6.0)):
        x = coloured_noise(16000 * 8, colour=colour, rng=rng)
        f, p = scipy.signal.welch(x, fs=16000, nperseg=4096)
        low = 10 * np.log10(p[(f > 400) & (f < 600)].mean())
        high = 10 * np.log10(p[(f > 3200) & (f < 4800)].mean())
        assert low - high == pytest.approx(3 * per_octave, abs=1.5), colour


def test_augmented_copy_is_reproducible_and_different_per_seed(make_sine):
    y = make_sine(220.0, 1.0)
    a, b = augmented(y, seed=7), augmented(y, seed=7)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, augmented(y, seed=8))
    assert a.shape == y.shape and a.dtype == np.float32


def dominant_hz(y: np.ndarray, sr: int = SR) -> float:
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.fft.rfftfreq(len(y), 1 / sr)[np.argmax(spectrum)])


def test_perturbed_copy_shifts_pitch_and_tempo_within_the_ranges(make_sine):
    y = make_sine(1000.0, 2.0, amplitude=0.1)
    low = 1000.0 * SPEED_RANGE[0] * 2 ** (PITCH_RANGE_SEMITONES[0] / 12)
    high = 1000.0 * SPEED_RANGE[1] * 2 ** (PITCH_RANGE_SEMITONES[1] / 12)
    peaks, lengths = [], []
    for seed in range(8):
        z = perturbed(y, seed=seed)
        assert z.dtype == np.float32 and np.isfinite(z).all()
        assert len(y) / SPEED_RANGE[1] - 2 <= len(z) <= len(y) / SPEED_RANGE[0] + 2
        peaks.append(dominant_hz(z))
        lengths.append(len(z))
        rms_db = 20 * np.log10(np.sqrt(np.mean(z**2)) / np.sqrt(np.mean(y**2)))
        assert GAIN_RANGE_DB[0] - 3 <= rms_db <= GAIN_RANGE_DB[1] + 3
    assert all(low - 10 <= p <= high + 10 for p in peaks), peaks
    assert np.ptp(peaks) > 30 and len(set(lengths)) > 4  # it really varies with the seed
    np.testing.assert_array_equal(perturbed(y, seed=3), perturbed(y, seed=3))


def test_perturbed_copy_of_an_empty_signal_is_empty():
    assert perturbed(np.zeros(0, dtype=np.float32), seed=0).size == 0
