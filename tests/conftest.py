"""Shared audio-synthesis helpers for the unit tests.

Every helper is a fixture that returns a plain function, so tests can build
the exact signal they need. All signals are float32 numpy arrays, mono,
seeded (the same call always gives the same samples) and short.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import scipy.signal

ANALYSIS_SR = 16_000
DEMO_CALL = Path(__file__).resolve().parents[1] / "sample_recordings" / "call_01_escalation.wav"


def speech_like(
    duration_s: float,
    *,
    sr: int = ANALYSIS_SR,
    rms: float = 0.1,
    f0_range_hz: tuple[float, float] = (100.0, 220.0),
    syllable_hz: float = 4.0,
    consonants: bool = True,
    seed: int = 0,
) -> np.ndarray:
    """A crude voice: syllables of a gliding harmonic complex, ``rms`` overall.

    * voiced part: harmonics of a fundamental that glides through
      ``f0_range_hz`` (about one rise and fall per second), with a spectral tilt
      that changes from syllable to syllable (another vowel);
    * syllable rhythm: raised-sine amplitude modulation at ``syllable_hz``;
    * ``consonants``: short high-passed noise bursts (fricatives) in the dips
      between syllables, as in real speech.

    Starts and ends at zero amplitude (a syllable boundary) for whole
    syllables; no background noise (add it separately).
    """
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * sr))
    t = np.arange(n) / sr
    lo, hi = f0_range_hz
    glide = 0.5 + 0.5 * np.sin(2 * np.pi * 0.9 * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(lo + (hi - lo) * glide) / sr
    syllable = np.floor(t * syllable_hz).astype(int)
    tilt = rng.uniform(0.6, 2.0, size=syllable.max(initial=0) + 1)[syllable]
    voiced = np.zeros(n)
    for k in range(1, int(min(4000.0, sr / 2) / hi) + 1):
        voiced += np.sin(k * phase + rng.uniform(0, 2 * np.pi)) * k ** (-tilt)
    envelope = np.sin(np.pi * syllable_hz * t) ** 2
    y = voiced * envelope
    if consonants:
        cutoff = min(3000.0, 0.4 * sr)
        sos = scipy.signal.butter(4, cutoff, btype="highpass", fs=sr, output="sos")
        hiss = scipy.signal.sosfilt(sos, rng.standard_normal(n))
        every_other_dip = np.sin(np.pi * syllable_hz * t / 2) ** 2
        y += 0.3 * hiss * (1.0 - envelope) ** 4 * every_other_dip
    if n:
        y *= rms / max(float(np.sqrt(np.mean(y**2))), 1e-12)
    return y.astype(np.float32)


def white_noise(duration_s: float, *, sr: int = ANALYSIS_SR, rms: float = 1e-3, seed: int = 0):
    """Gaussian white noise of the given RMS."""
    rng = np.random.default_rng(seed)
    return (rms * rng.standard_normal(int(round(duration_s * sr)))).astype(np.float32)


def sine(
    freq_hz: float,
    duration_s: float,
    *,
    sr: int = ANALYSIS_SR,
    amplitude: float = 0.5,
) -> np.ndarray:
    """A pure tone starting at phase 0."""
    t = np.arange(int(round(duration_s * sr))) / sr
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def bursts_in_noise(
    bursts: Sequence[tuple[float, float]],
    total_s: float,
    *,
    sr: int = ANALYSIS_SR,
    speech_rms: float = 0.1,
    noise_rms: float = 1e-3,
    seed: int = 0,
) -> np.ndarray:
    """``total_s`` of background noise with a speech-like burst at each ``(start_s, end_s)``."""
    y = white_noise(total_s, sr=sr, rms=noise_rms, seed=seed)
    for i, (start, end) in enumerate(bursts):
        a = int(round(start * sr))
        burst = speech_like(end - start, sr=sr, rms=speech_rms, seed=seed + 1 + i)
        y[a : a + len(burst)] += burst[: len(y) - a]
    return y


def held_vowel(
    *, fricative_s: float, tone: bool = False, sr: int = ANALYSIS_SR, seed: int = 0
) -> np.ndarray:
    """A fricative (hiss above 3 kHz), then 1.6 s of one vowel held on a low pitch that
    barely moves (165 +- 6 Hz, the fundamental strongest), fading to half its level: how
    sad speech can sound (nEMO has such clips). Its zero-crossing rate stays within one
    crossing a 10 ms frame between its quartiles, as a tone's does. ``tone``: a 165 Hz
    tone at a steady level instead of the vowel."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(1.6 * sr)) / sr
    if tone:
        voiced = np.sin(2 * np.pi * 165.0 * t)
    else:
        phase = 2 * np.pi * np.cumsum(165.0 + 6.0 * np.sin(2 * np.pi * 0.8 * t)) / sr
        harmonics = [np.sin(k * phase + rng.uniform(0, 2 * np.pi)) * k**-2.5 for k in range(1, 24)]
        voiced = np.sum(harmonics, axis=0) * np.minimum(t / 0.1, 1.0) * (1.0 - 0.5 * t / t[-1])
    y = voiced
    if fricative_s > 0:
        sos = scipy.signal.butter(4, 3000.0, btype="highpass", fs=sr, output="sos")
        hiss = scipy.signal.sosfilt(sos, rng.standard_normal(round(fricative_s * sr)))
        hiss *= 0.3 * np.sqrt(np.mean(voiced**2) / np.mean(hiss**2))
        y = np.concatenate([hiss, voiced])
    return (0.1 * y / np.sqrt(np.mean(y**2))).astype(np.float32)


def demo_customer() -> dict[str, np.ndarray]:
    """Real speech for voice-activity tests: pieces of the customer channel (right) of the
    demo call ``call_01_escalation.wav`` (8 kHz mu-law), at 16 kHz.

    ``word``: a 0.2 s word (4.30-4.50 s), a short answer's length; ``turn``: the
    customer's first turn (3.70-6.00 s, 2.1 s of calm speech); ``line``: 3 s of the
    line's background before it (0.50-3.50 s, no speech).
    """
    import soundfile as sf

    y, sr = sf.read(DEMO_CALL, dtype="float32")
    right = scipy.signal.resample_poly(y[:, 1], ANALYSIS_SR // sr, 1).astype(np.float32)

    def cut(start_s: float, end_s: float) -> np.ndarray:
        return right[round(start_s * ANALYSIS_SR) : round(end_s * ANALYSIS_SR)].copy()

    return {"word": cut(4.30, 4.50), "turn": cut(3.70, 6.00), "line": cut(0.50, 3.50)}


@pytest.fixture(scope="session")
def demo_voice() -> dict[str, np.ndarray]:
    """:func:`demo_customer`: a real word, a real turn and the line's background."""
    return demo_customer()


@pytest.fixture
def make_speech() -> Callable[..., np.ndarray]:
    """``make_speech(duration_s, *, sr, rms, f0_range_hz, syllable_hz, consonants, seed)``."""
    return speech_like


@pytest.fixture
def make_noise() -> Callable[..., np.ndarray]:
    """``make_noise(duration_s, *, sr, rms, seed)``: white noise."""
    return white_noise


@pytest.fixture
def make_sine() -> Callable[..., np.ndarray]:
    """``make_sine(freq_hz, duration_s, *, sr, amplitude)``: a pure tone."""
    return sine


@pytest.fixture
def make_bursts() -> Callable[..., np.ndarray]:
    """``make_bursts(bursts, total_s, *, sr, speech_rms, noise_rms, seed)``."""
    return bursts_in_noise


@pytest.fixture(scope="module")
def clips():
    """Two speakers with eight clips of each emotion, as in RAVDESS (list of ``Clip``)."""
    from callsort.training.corpora import Clip

    return [
        Clip(path=Path(f"{s}-{e}-{i}.flac"), label=e, speaker=s)
        for s in ("01", "02")
        for e in ("angry", "calm", "happy", "sad")
        for i in range(8)
    ]
