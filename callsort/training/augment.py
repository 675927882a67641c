"""Degrade clean 16 kHz speech the way a telephone line does.

Used to train on telephone-like copies of studio clips and to measure how a
model holds up on telephone audio. Training and evaluation write telephone
copies as real 8 kHz files in an archive's codecs (:data:`TELEPHONE_CODECS`,
:func:`write_telephone_file`) and read them back through ``callsort label``'s
own decode path, so a model learns from exactly what it will be given;
:func:`telephone` is the in-memory chain for tests and quick experiments.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import scipy.signal
import soxr

TELEPHONE_RATE = 8_000
TELEPHONE_BAND_HZ = (300.0, 3400.0)


def telephone(y: np.ndarray, *, sr: int = 16_000) -> np.ndarray:
    """8 kHz, 300-3400 Hz band, 8-bit mu-law, and back to ``sr`` (float32, same length)."""
    if len(y) == 0:
        return np.zeros(0, dtype=np.float32)
    narrow = mu_law_roundtrip(telephone_band(y, sr=sr))
    wide = soxr.resample(narrow.astype(np.float32), TELEPHONE_RATE, sr)
    out = np.zeros(len(y), dtype=np.float32)
    out[: min(len(y), len(wide))] = wide[: len(y)]
    return out


TELEPHONE_CODECS: dict[str, str] = {
    "mulaw": "ULAW",  # G.711 mu-law, 8 bits: North American and Japanese archives
    "alaw": "ALAW",  # G.711 A-law, 8 bits: European archives
    "gsm": "GSM610",  # GSM 06.10 full rate, 13 kbit/s: mobile calls
    "g721": "G721_32",  # G.721 ADPCM, 32 kbit/s
}
"""Telephone codecs as libsndfile's WAV subtypes: what call archives hold."""


def telephone_band(y: np.ndarray, *, sr: int = 16_000) -> np.ndarray:
    """``y`` at 8 kHz through the 300-3400 Hz band, peak-limited to full scale (float32)."""
    narrow = soxr.resample(np.asarray(y, dtype=np.float32), sr, TELEPHONE_RATE)
    narrow = scipy.signal.sosfilt(_band_filter(), narrow)
    peak = np.max(np.abs(narrow)) if narrow.size else 0.0
    if peak > 1.0:
        narrow = narrow / peak
    return narrow.astype(np.float32)


def write_telephone_file(y: np.ndarray, path: Path | str, *, codec: str, sr: int = 16_000) -> Path:
    """Write ``y`` (mono, ``sr`` Hz) as an 8 kHz WAV in ``codec`` (a :data:`TELEPHONE_CODECS`
    key), the way a call recorder stores it."""
    import soundfile as sf

    if codec not in TELEPHONE_CODECS:
        raise ValueError(f"unknown codec {codec!r}; one of {sorted(TELEPHONE_CODECS)}")
    sf.write(
        str(path),
        telephone_band(y, sr=sr),
        TELEPHONE_RATE,
        subtype=TELEPHONE_CODECS[codec],
        format="WAV",
    )
    return Path(path)


def mu_law_roundtrip(x: np.ndarray, *, mu: int = 255) -> np.ndarray:
    """Quantise ``x`` (in [-1, 1]) to 8-bit mu-law and expand it again."""
    x = np.clip(x, -1.0, 1.0)
    compressed = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    quantised = np.round((compressed + 1.0) / 2.0 * mu) / mu * 2.0 - 1.0
    return np.sign(quantised) * ((1.0 + mu) ** np.abs(quantised) - 1.0) / mu


NOISE_COLOURS = ("white", "pink", "brown")


def add_noise(y: np.ndarray, *, snr_db: float, seed: int = 0, colour: str = "white") -> np.ndarray:
    """``y`` plus noise at ``snr_db`` below the signal's mean power.

    ``colour``: ``white`` (flat spectrum), ``pink`` (power falling 3 dB per
    octave, like a room or crowd) or ``brown`` (6 dB per octave, like rumble).
    """
    rng = np.random.default_rng(seed)
    power = float(np.mean(np.asarray(y, dtype=np.float64) ** 2))
    noise = coloured_noise(len(y), colour=colour, rng=rng)
    noise *= np.sqrt(power / 10 ** (snr_db / 10) / max(float(np.mean(noise**2)), 1e-20))
    return (y + noise).astype(np.float32)


def coloured_noise(n: int, *, colour: str, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of noise with a 1/f^alpha power spectrum (white, pink, brown)."""
    alpha = {"white": 0.0, "pink": 1.0, "brown": 2.0}[colour]
    white = rng.standard_normal(n)
    if alpha == 0.0 or n < 2:
        return white
    spectrum = np.fft.rfft(white)
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = 1.0
    return np.fft.irfft(spectrum / f ** (alpha / 2), n=n)


def augmented(y: np.ndarray, *, seed: int, telephone_chain: bool = True) -> np.ndarray:
    """A training copy of clean speech as a real line might deliver it: background
    noise of a random colour at 5-30 dB SNR, and (``telephone_chain``) half the time
    the in-memory telephone chain. Training passes ``telephone_chain=False`` and
    writes the telephone half as real codec files instead."""
    rng = np.random.default_rng(seed)
    colour = NOISE_COLOURS[int(rng.integers(len(NOISE_COLOURS)))]
    noisy = add_noise(y, snr_db=float(rng.uniform(5.0, 30.0)), seed=seed + 1, colour=colour)
    return telephone(noisy) if telephone_chain and rng.random() < 0.5 else noisy


SPEED_RANGE = (0.9, 1.1)  # playback-rate factor: tempo and pitch together
PITCH_RANGE_SEMITONES = (-1.5, 1.5)
GAIN_RANGE_DB = (-12.0, 6.0)


def perturbed(y: np.ndarray, *, seed: int, sr: int = 16_000) -> np.ndarray:
    """A training copy with another speaker's voice and level in mind: a gain of
    -12..+6 dB, a speed change of 0.9-1.1x (tempo and pitch together, by
    resampling), a pitch shift of -1.5..+1.5 semitones at constant tempo, and
    half the time the telephone chain. Float32, length changes with the speed."""
    import librosa

    rng = np.random.default_rng(seed)
    gain = 10 ** (rng.uniform(*GAIN_RANGE_DB) / 20)
    speed = float(rng.uniform(*SPEED_RANGE))
    semitones = float(rng.uniform(*PITCH_RANGE_SEMITONES))
    y = np.asarray(y, dtype=np.float32)
    if len(y) == 0:
        return y
    # played `speed` times faster: resample to fewer samples, read at the same rate
    y = soxr.resample(y, sr, sr / speed).astype(np.float32)
    y = librosa.effects.pitch_shift(y, sr=sr, n_steps=semitones, res_type="soxr_hq")
    y = np.clip(y * gain, -1.0, 1.0).astype(np.float32)
    return telephone(y, sr=sr) if rng.random() < 0.5 else y


@lru_cache(maxsize=1)
def _band_filter() -> np.ndarray:
    return scipy.signal.butter(
        4, TELEPHONE_BAND_HZ, btype="bandpass", fs=TELEPHONE_RATE, output="sos"
    )
