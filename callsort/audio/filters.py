"""Filterbanks and small filters over numpy arrays, equal to librosa's and scipy's.

``callsort label`` needs a mel and a chroma filterbank, a Hann window, a median filter
and a Savitzky-Golay operator, each built once. librosa and ``scipy.signal`` would
build them too, but importing them costs a second or more of every run's start-up
(``scipy.signal`` pulls in ``scipy.stats``; librosa pulls in numba and compiles its
code on a first run), for a few lines of arithmetic. These are the same formulas,
step for step, tested equal to librosa's and scipy's results
(``tests/audio/test_filters.py``).
"""

from __future__ import annotations

import math

import numpy as np


def fft_frequencies(*, sr: float, n_fft: int) -> np.ndarray:
    """The frequency (Hz) of each of the ``1 + n_fft // 2`` bins of a real FFT, float64."""
    return np.fft.rfftfreq(n=n_fft, d=1.0 / sr)


def hz_to_mel(frequencies: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (linear below 1 kHz, logarithmic above), as librosa's default."""
    f = np.asanyarray(frequencies, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = f / f_sp
    min_log_hz, logstep = 1000.0, np.log(6.4) / 27.0
    log = f >= min_log_hz
    return np.where(
        log, min_log_hz / f_sp + np.log(np.maximum(f, 1e-300) / min_log_hz) / logstep, mels
    )


def mel_to_hz(mels: np.ndarray) -> np.ndarray:
    """The inverse of :func:`hz_to_mel`."""
    m = np.asanyarray(mels, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filters(
    *, sr: float, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
) -> np.ndarray:
    """``librosa.filters.mel(sr=, n_fft=, n_mels=, fmin=, fmax=)`` (Slaney's scale and
    area normalisation): ``(n_mels, 1 + n_fft // 2)`` float32 triangular weights."""
    fmax = float(sr) / 2 if fmax is None else fmax
    fftfreqs = fft_frequencies(sr=sr, n_fft=n_fft)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    weights = np.zeros((n_mels, len(fftfreqs)), dtype=np.float32)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, np.newaxis]
    return weights


def chroma_filters(*, sr: float, n_fft: int, n_chroma: int = 12) -> np.ndarray:
    """``librosa.filters.chroma(sr=, n_fft=, tuning=0.0)`` with its other defaults (a
    Gaussian of two octaves around C5, columns of unit L2 norm, starting at C):
    ``(n_chroma, 1 + n_fft // 2)`` float32."""
    frequencies = np.linspace(0, sr, n_fft, endpoint=False)[1:]
    frqbins = n_chroma * np.log2(frequencies / (440.0 / 16))
    frqbins = np.concatenate(([frqbins[0] - 1.5 * n_chroma], frqbins))
    binwidthbins = np.concatenate((np.maximum(frqbins[1:] - frqbins[:-1], 1.0), [1]))
    d = np.subtract.outer(frqbins, np.arange(0, n_chroma, dtype="d")).T
    half = np.round(float(n_chroma) / 2)
    d = np.remainder(d + half + 10 * n_chroma, n_chroma) - half
    wts = np.exp(-0.5 * (2 * d / np.tile(binwidthbins, (n_chroma, 1))) ** 2)
    length = np.sum(np.abs(wts).astype(float) ** 2, axis=0, keepdims=True) ** 0.5
    length[length < np.finfo(wts.dtype).tiny] = 1.0
    wts = wts / length
    wts *= np.tile(np.exp(-0.5 * ((frqbins / n_chroma - 5.0) / 2) ** 2), (n_chroma, 1))
    wts = np.roll(wts, -3 * (n_chroma // 12), axis=0)
    return np.ascontiguousarray(wts[:, : int(1 + n_fft / 2)], dtype=np.float32)


def hann(n: int) -> np.ndarray:
    """The periodic Hann window of ``n`` samples (``scipy.signal.get_window("hann", n)``,
    the STFT's, computed as scipy does: the symmetric window of ``n + 1``, its last
    sample dropped), float64."""
    if n == 1:
        return np.ones(1)
    return (0.5 + 0.5 * np.cos(np.linspace(-np.pi, np.pi, n + 1)))[:n]


def median_filter(x: np.ndarray, *, size: int) -> np.ndarray:
    """``scipy.signal.medfilt(x, kernel_size=size)`` of a 1-D ``x`` (odd ``size``): the
    median of each ``size`` values around a point, zeros beyond both ends."""
    if size % 2 != 1:
        raise ValueError(f"the median filter's size must be odd, not {size}")
    half = size // 2
    padded = np.concatenate([np.zeros(half, dtype=x.dtype), x, np.zeros(half, dtype=x.dtype)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, size)
    return np.median(windows, axis=1).astype(x.dtype)


def savgol_derivative(width: int, order: int) -> np.ndarray:
    """The ``(width, width)`` linear map of ``scipy.signal.savgol_filter(..., width,
    polyorder=order, deriv=order, mode="interp")`` on ``width`` frames, float64.

    A polynomial of degree ``order`` fitted by least squares has a constant derivative
    of that order, ``order!`` times its leading coefficient, wherever it is evaluated: the
    middle row (the interior) and the edge rows (``interp`` fits the edge window and
    evaluates it there) are the same weights. Equal to scipy's to float64 rounding
    (1e-15), so a float32 copy may differ from scipy's in its last bit."""
    if not (width % 2 == 1 and 0 <= order < width):
        raise ValueError(f"a Savitzky-Golay window of {width} frames cannot fit order {order}")
    t = np.arange(width, dtype=np.float64) - width // 2
    design = np.vander(t, order + 1, increasing=True)  # (width, order + 1)
    leading = np.linalg.pinv(design)[order]  # the fit's coefficient of t ** order
    return np.tile(math.factorial(order) * leading, (width, 1))
