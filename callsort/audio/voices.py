"""Speaker embeddings of short stretches of speech (issue 19).

The GE2E voice encoder of Resemblyzer 0.1.4 (Apache-2.0; a three-layer LSTM over
40-band mel spectra, trained to tell thousands of speakers apart), run in numpy. Its
weights ship in the package (``callsort/models/speakers/ge2e.npz``, converted from the
Resemblyzer wheel by scripts/make_speaker_encoder.py); nothing is fetched at run time
and no deep-learning framework is needed.

:func:`voice_mel` turns 16 kHz samples into the encoder's input, :func:`voice_embeddings`
a batch of equally long inputs into unit vectors: two stretches of one voice point the
same way (cosine near 1), two voices less so.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np

from callsort.audio.filters import hann, mel_filters

SAMPLE_RATE = 16_000
FRAMES_PER_S = 100  # the encoder's mel frames: 25 ms windows every 10 ms
WINDOW_FRAMES = 160  # the stretch the encoder was trained on (1.6 s)
MIN_SAMPLES = 400  # one 25 ms frame: the shortest input the encoder takes
EMBEDDING_DIMS = 256
_HOP = 160
_N_MELS = 40
_INT16_MAX = 2**15 - 1
WEIGHTS = Path(__file__).resolve().parents[1] / "models" / "speakers" / "ge2e.npz"
WHITENING = WEIGHTS.with_name("whitening.npz")


def voice_mel(y: np.ndarray, *, level_dbfs: float = -30.0) -> np.ndarray:
    """The encoder's input for the 16 kHz samples ``y``: a power mel spectrogram
    ``(frames, 40)`` float32, one frame per 10 ms, after raising a quieter ``y`` to
    ``level_dbfs`` (RMS, dB re full scale; louder audio is left as it is, as Resemblyzer
    prepares its training audio, unless beyond full scale: brought down to 0 dBFS).
    Resemblyzer's ``librosa.feature.melspectrogram`` (Hann windows of 400 samples,
    centred, zero-padded), computed here without importing librosa."""
    y = np.asarray(y, dtype=np.float32)
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))
    if 0 < rms < np.inf:
        gain_db = level_dbfs - 20 * np.log10(rms)
        if gain_db > 0:
            y = y * np.float32(10 ** (gain_db / 20))
        elif rms > 1:  # a float file far beyond +-1, whose power would overflow float32
            y = (y.astype(np.float64) / rms).astype(np.float32)
    half = MIN_SAMPLES // 2
    padded = np.concatenate([np.zeros(half, np.float32), y, np.zeros(half, np.float32)])
    frames = np.lib.stride_tricks.sliding_window_view(padded, MIN_SAMPLES)[::_HOP]
    # as librosa: the float32 frames windowed in float64, the spectrum kept as complex64
    spectrum = np.fft.rfft(frames * _window(), axis=1).astype(np.complex64)
    power = np.abs(spectrum) ** 2
    return power @ _mel_basis().T


@cache
def _window() -> np.ndarray:
    return hann(MIN_SAMPLES)


@cache
def _mel_basis() -> np.ndarray:
    return mel_filters(sr=SAMPLE_RATE, n_fft=MIN_SAMPLES, n_mels=_N_MELS)


def voice_embeddings(mels: Sequence[np.ndarray], *, batch: int = 256) -> np.ndarray:
    """Embeddings ``(len(mels), EMBEDDING_DIMS)`` float32 of unit length of the mel spectrograms
    ``mels``, each ``(frames, 40)`` (:func:`voice_mel`; best :data:`WINDOW_FRAMES` long,
    lengths may differ): the encoder's LSTM state after each one's last frame, through its
    linear layer and a ReLU. Computed ``batch`` at a time; a shorter spectrogram is
    padded after its end, which its state, read at its own last frame, never sees."""
    out = np.zeros((len(mels), EMBEDDING_DIMS), dtype=np.float32)
    for start in range(0, len(mels), batch):
        chunk = mels[start : start + batch]
        lengths = np.array([len(m) for m in chunk])
        x = np.zeros((len(chunk), lengths.max(), _N_MELS), dtype=np.float32)
        for i, m in enumerate(chunk):
            x[i, : len(m)] = m
        out[start : start + len(chunk)] = _embed(x, lengths)
    return out


def _embed(x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    w = _weights()
    h = x
    for layer in range(3):
        h = _lstm_layer(h, w[f"w_ih_{layer}"], w[f"w_hh_{layer}"], w[f"b_{layer}"])
    last = h[np.arange(len(h)), lengths - 1]
    e = np.maximum(last @ w["linear_w"].T + w["linear_b"], 0)
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


def _lstm_layer(x: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One LSTM layer (PyTorch's gate order: input, forget, cell, output) over ``x``
    ``(batch, time, inputs)``; its hidden states ``(batch, time, hidden)``."""
    batch, steps, _ = x.shape
    n = w_hh.shape[1]
    projected = x @ w_ih.T + b  # (batch, time, 4 * hidden): the input's share, all steps
    # sigmoid(v) = (tanh(v / 2) + 1) / 2: one tanh over the four gates at each step
    half = np.full(4 * n, 0.5, dtype=np.float32)
    half[2 * n : 3 * n] = 1.0
    w_hh_t = np.ascontiguousarray(w_hh.T)
    h = np.zeros((batch, n), dtype=np.float32)
    c = np.zeros((batch, n), dtype=np.float32)
    out = np.empty((batch, steps, n), dtype=np.float32)
    for t in range(steps):
        gates = projected[:, t] + h @ w_hh_t
        gates *= half
        np.tanh(gates, out=gates)
        i, f, g, o = (gates[:, k * n : (k + 1) * n] for k in range(4))
        c = (f * 0.5 + 0.5) * c + (i * 0.5 + 0.5) * g
        h = (o * 0.5 + 0.5) * np.tanh(c)
        out[:, t] = h
    return out


@cache
def _weights() -> dict[str, np.ndarray]:
    with np.load(WEIGHTS) as f:
        return {k: f[k].astype(np.float32) for k in f.files}


@cache
def voice_whitening() -> np.ndarray:
    """``(256, 256)`` float64: the embeddings' within-speaker whitening (``WHITENING``,
    :func:`within_speaker_whitening` of corpus clips, built by
    scripts/make_speaker_whitening.py), so that one voice's ``(e - mean) @ W`` spread
    alike in every direction and two voices stand apart."""
    with np.load(WHITENING) as f:
        return f["whitening"].astype(np.float64)


def within_speaker_whitening(
    embeddings: np.ndarray, groups: np.ndarray, *, shrinkage: float
) -> np.ndarray:
    """The inverse square root ``(dims, dims)`` of the within-group covariance of
    ``embeddings`` ``(n, dims)`` (each row centred on the mean of its group in ``groups``
    ``(n,)``: one speaker, one audio condition), shrunk toward the identity:
    ``(1 - shrinkage) S + shrinkage tr(S) / dims I``."""
    residuals = np.concatenate(
        [embeddings[groups == g] - embeddings[groups == g].mean(axis=0) for g in np.unique(groups)]
    )
    within = residuals.T @ residuals / len(residuals)
    d = within.shape[0]
    shrunk = (1 - shrinkage) * within + shrinkage * np.trace(within) / d * np.eye(d)
    values, vectors = np.linalg.eigh(shrunk)
    return (vectors * values**-0.5) @ vectors.T
