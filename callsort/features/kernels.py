"""Frame-level DSP for many segments at once, equal to librosa's and numpy's results.

The feature code works on a batch of segments: their frames are stacked into
one matrix, so that each step is one numpy call over all of them instead of
one per segment (a segment of a few seconds spent most of its time in the
per-call cost of some hundred small numpy and librosa calls). ``counts``
gives the frames of each segment, in order.

:func:`yin` is ``librosa.yin`` and :func:`spectral_contrast` is
``librosa.feature.spectral_contrast``, step for step in the same dtypes;
:func:`cumulative_rows` is ``np.cumsum(axis=0)``; :func:`grouped_statistics`
the statistics of ``spectral.summarise`` per segment. Each is tested equal to
the original (tests/features/test_kernels.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import scipy.fft

from callsort.audio.filters import savgol_derivative

YIN_TROUGH_THRESHOLD = 0.1  # librosa.yin's default
FFT_CHUNK = 256
"""Frames transformed together: the FFTs and what is done with their output run on
blocks of frames that stay in the CPU's cache (a pass over a whole batch's array
streams it from memory, and costs several times as much)."""
YIN_BLOCK = 4096  # frames whose pitch is found together, for the same reason


def centred_frames(
    signals: Sequence[np.ndarray],
    *,
    frame_length: int,
    hop_length: int,
    mode: str = "constant",
) -> tuple[np.ndarray, np.ndarray]:
    """The centred frames of every signal (``librosa.util.frame`` of the signal padded by
    ``frame_length // 2`` on both sides, with zeros or, ``mode="edge"``, its end values).

    Returns ``(frames, counts)``: ``(sum(counts), frame_length)`` float32 and the
    frames of each signal, ``1 + (len + 2 * (frame_length // 2) - frame_length) //
    hop_length``. Every signal must hold a sample.
    """
    buffer, rows, counts = _framed_buffer(signals, frame_length, hop_length, mode)
    view = np.lib.stride_tricks.as_strided(
        buffer,
        shape=((buffer.size - frame_length) // hop_length + 1, frame_length),
        strides=(buffer.strides[0] * hop_length, buffer.strides[0]),
        writeable=False,
    )
    return view[rows], counts


def zero_crossing_rates(
    signals: Sequence[np.ndarray], *, frame_length: int, hop_length: int
) -> np.ndarray:
    """``librosa.feature.zero_crossing_rate(y, frame_length=, hop_length=, center=True)``
    of every signal, frames concatenated: ``(sum(counts),)`` float64.

    A frame counts the sign changes between its own samples; values within 1e-10
    of zero count as zero, as librosa's. The frames start on multiples of
    ``hop_length`` of one buffer: the changes are counted once per hop-long block,
    and a frame adds up its whole blocks and the head of the next.
    """
    buffer, rows, _ = _framed_buffer(signals, frame_length, hop_length, "edge")
    negative = buffer < -1e-10  # as signbit(np.where(|x| <= 1e-10, 0, x)), NaN-free x
    change = np.zeros((buffer.size - 1) // hop_length * hop_length, dtype=np.uint8)
    np.not_equal(negative[1 : change.size + 1], negative[: change.size], out=change)
    blocks = change.reshape(-1, hop_length)
    whole, rest = divmod(frame_length - 1, hop_length)
    per_block = np.zeros(blocks.shape[0] + 1, dtype=np.int64)
    np.cumsum(blocks.sum(axis=1, dtype=np.int64), out=per_block[1:])
    head = blocks[:, :rest].sum(axis=1, dtype=np.int64)
    counts = per_block[rows + whole] - per_block[rows] + head[rows + whole]
    return counts / frame_length


def _framed_buffer(
    signals: Sequence[np.ndarray], frame_length: int, hop_length: int, mode: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The padded signals one after another in one float32 buffer, each starting on a
    multiple of ``hop_length``, so that one strided view frames them all; the rows of
    that view that are frames of a signal, and their count per signal."""
    pad = frame_length // 2
    lengths = np.array([len(y) for y in signals], dtype=np.int64)
    padded = lengths + 2 * pad
    counts = 1 + (padded - frame_length) // hop_length
    blocks = -(-padded // hop_length) * hop_length
    offsets = np.concatenate([[0], np.cumsum(blocks)])
    buffer = np.zeros(offsets[-1] + frame_length, dtype=np.float32)
    for y, offset, n in zip(signals, offsets[:-1].tolist(), lengths.tolist(), strict=True):
        buffer[offset + pad : offset + pad + n] = y
        if mode == "edge":
            buffer[offset : offset + pad] = y[0]
            buffer[offset + pad + n : offset + 2 * pad + n] = y[-1]
    first = offsets[:-1] // hop_length
    rows = np.repeat(first - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    rows += np.arange(counts.sum())
    return buffer, rows, counts


def yin(
    y: np.ndarray, *, fmin: float, fmax: float, sr: int, frame_length: int, hop_length: int
) -> np.ndarray:
    """``librosa.yin(y, fmin=, fmax=, sr=, frame_length=, hop_length=, center=True)``:
    the fundamental frequency (Hz) of each centred frame, shape ``(frames,)``."""
    frames, _ = centred_frames([y], frame_length=frame_length, hop_length=hop_length)
    return yin_frames(frames, fmin=fmin, fmax=fmax, sr=sr)


def yin_frames(frames: np.ndarray, *, fmin: float, fmax: float, sr: int) -> np.ndarray:
    """librosa's YIN on frames ``(frames, frame_length)`` float32: ``(frames,)`` Hz.

    The cumulative mean normalised difference is computed up to the longest period
    only, with the same operations as librosa's, lags by frames (so that its
    cumulative sums run over many frames at once); the parabolic refinement only
    where a period was picked. Every step is per frame: blocks of
    :data:`YIN_BLOCK` frames keep the working arrays in the CPU's cache.
    """
    f0 = np.empty(frames.shape[0])
    for a in range(0, frames.shape[0], YIN_BLOCK):
        f0[a : a + YIN_BLOCK] = _yin_block(frames[a : a + YIN_BLOCK], fmin=fmin, fmax=fmax, sr=sr)
    return f0


def _yin_block(frames: np.ndarray, *, fmin: float, fmax: float, sr: int) -> np.ndarray:
    frame_length = frames.shape[1]
    min_period = int(np.floor(sr / fmax))
    max_period = min(int(np.ceil(sr / fmin)), frame_length - 1)
    # autocorrelation of each frame (librosa.autocorrelate), lags 0..max_period
    n_pad = scipy.fft.next_fast_len(2 * frame_length - 1, real=True)
    acf = np.empty((max_period + 1, frames.shape[0]), dtype=frames.dtype)  # (lags, frames)
    padded = np.zeros((min(FFT_CHUNK, frames.shape[0]), n_pad), dtype=frames.dtype)
    for a in range(0, frames.shape[0], FFT_CHUNK):
        n = min(FFT_CHUNK, frames.shape[0] - a)
        padded[:n, :frame_length] = frames[a : a + n]
        spectrum = scipy.fft.rfft(padded[:n], axis=1)
        power = np.zeros_like(spectrum)  # complex: irfft of a real array is slower
        np.add(np.square(spectrum.real), np.square(spectrum.imag), out=power.real)
        acf[:, a : a + n] = scipy.fft.irfft(power, n=n_pad, axis=1)[:, : max_period + 1].T
    energy = cumulative_rows(np.square(np.ascontiguousarray(frames[:, :max_period].T)))
    energy[0] = 0.0  # as librosa's, whose energy of lag 1 is the zeroed lag 0
    # difference function d(k) = 2 (ACF(0) - ACF(k)) - sum_{m<k} y(m)^2, k = 1..max_period
    difference = 2 * (acf[:1] - acf[1:]) - energy
    cumulative_mean = cumulative_rows(difference) / np.arange(1.0, max_period + 1)[:, None]
    denominator = cumulative_mean[min_period - 1 : max_period]
    cmnd = difference[min_period - 1 :] / (denominator + np.finfo(denominator.dtype).tiny)
    cmnd = np.ascontiguousarray(cmnd.T)  # (frames, lags)
    # the first local minimum below the threshold, else the global minimum
    trough = np.empty(cmnd.shape, dtype=bool)
    trough[:, 0] = cmnd[:, 0] < cmnd[:, 1]
    trough[:, 1:-1] = (cmnd[:, 1:-1] < cmnd[:, :-2]) & (cmnd[:, 1:-1] <= cmnd[:, 2:])
    trough[:, -1] = cmnd[:, -1] < cmnd[:, -2]
    trough &= cmnd < YIN_TROUGH_THRESHOLD
    rows = np.arange(cmnd.shape[0])
    period = np.where(trough.any(axis=1), np.argmax(trough, axis=1), np.argmin(cmnd, axis=1))
    # parabolic interpolation around the chosen lag (none at the ends of the range)
    inner = np.clip(period, 1, cmnd.shape[1] - 2)
    before, at, after = (cmnd[rows, inner + i] for i in (-1, 0, 1))
    a = after + before - 2 * at
    b = (after - before) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(np.abs(b) >= np.abs(a), 0.0, -b / a)
    shift[(period == 0) | (period == cmnd.shape[1] - 1)] = 0.0
    return sr / (min_period + period + shift)


def spectral_contrast(
    spectrum: np.ndarray,
    *,
    sr: int,
    n_fft: int,
    n_bands: int,
    fmin: float,
    counts: np.ndarray | None = None,
    quantile: float = 0.02,
) -> np.ndarray:
    """``librosa.feature.spectral_contrast(S=, sr=, n_fft=, n_bands=, fmin=)`` of each
    segment of a magnitude spectrum ``(bins, frames)``, C-contiguous, whose segments
    have ``counts`` frames (default: one segment); returns ``(n_bands + 1, frames)``
    (dB, float64, as librosa's).

    The peak and valley of each band are the means of its ``quantile`` highest and
    lowest bins: a minimum and a maximum where that is one bin (every band but the
    top one at 16 kHz), a partial sort otherwise, summed in sorted order as
    librosa's mean of its sorted band. The 80 dB floor of librosa's ``power_to_db``
    is drawn per segment.
    """
    n_frames = spectrum.shape[1]
    counts = np.array([n_frames]) if counts is None else counts
    valley = np.zeros((n_bands + 1, n_frames))
    peak = np.zeros_like(valley)
    for k, (lo, hi, count) in enumerate(_contrast_bands(sr, n_fft, n_bands, fmin, quantile)):
        if count == 1:
            valley[k] = spectrum[lo:hi].min(axis=0)
            peak[k] = spectrum[lo:hi].max(axis=0)
            continue
        lowest, highest = _extremes(spectrum[lo:hi], count)
        valley[k] = _sequential_mean(lowest)
        peak[k] = _sequential_mean(highest[::-1])
    return _power_to_db(peak, counts) - _power_to_db(valley, counts)


def _extremes(band: np.ndarray, count: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The ``count`` lowest values of each column of ``band`` ``(bins, frames)`` in
    ascending order, and its ``count`` highest in descending order: each bin is
    inserted into two running sorted lists, one vector operation per frame row
    (a partial sort per frame costs five times as much)."""
    lowest = [np.full(band.shape[1], np.inf, dtype=band.dtype) for _ in range(count)]
    highest = [np.full(band.shape[1], -np.inf, dtype=band.dtype) for _ in range(count)]
    for x in band:
        for j in range(count - 1, 0, -1):  # the new value moves past the larger ones
            np.minimum(lowest[j], np.maximum(lowest[j - 1], x), out=lowest[j])
            np.maximum(highest[j], np.minimum(highest[j - 1], x), out=highest[j])
        np.minimum(lowest[0], x, out=lowest[0])
        np.maximum(highest[0], x, out=highest[0])
    return lowest, highest


def _sequential_mean(x: list[np.ndarray]) -> np.ndarray:
    """Mean of the rows ``x``, summed in order as numpy's mean over a leading axis does
    (librosa's ``np.mean(sorted[:k], axis=-2)``)."""
    total = x[0].copy()
    for row in x[1:]:
        total += row
    return total / len(x)


def _power_to_db(
    x: np.ndarray, counts: np.ndarray, *, amin: float = 1e-10, top_db: float = 80.0
) -> np.ndarray:
    """``librosa.power_to_db(x)`` with its defaults (ref 1, top_db 80) of each segment
    (columns, ``counts`` of them per segment)."""
    log_spec = 10.0 * np.log10(np.maximum(amin, x))
    log_spec -= 10.0 * np.log10(np.maximum(amin, 1.0))
    floor = np.maximum.reduceat(log_spec.max(axis=0), _starts(counts)) - top_db
    return np.maximum(log_spec, np.repeat(floor, counts))


@lru_cache(maxsize=8)
def _contrast_bands(
    sr: int, n_fft: int, n_bands: int, fmin: float, quantile: float
) -> tuple[tuple[int, int, int], ...]:
    """``(first bin, end bin, bins averaged)`` of each band, as librosa draws them:
    octaves from ``fmin``, the bin below each band added to it and its top bin left
    out, the top band running to Nyquist."""
    freq = np.fft.rfftfreq(n_fft, 1.0 / sr)
    octa = np.zeros(n_bands + 2)
    octa[1:] = fmin * (2.0 ** np.arange(0, n_bands + 1))
    bands = []
    for k, (f_low, f_high) in enumerate(zip(octa[:-1], octa[1:], strict=True)):
        current = np.logical_and(freq >= f_low, freq <= f_high)
        idx = np.flatnonzero(current)
        if k > 0:
            current[idx[0] - 1] = True
        if k == n_bands:
            current[idx[-1] + 1 :] = True
        chosen = np.flatnonzero(current)
        lo, hi = int(chosen[0]), int(chosen[-1]) + 1  # contiguous
        if k < n_bands:
            hi -= 1
        count = max(int(np.rint(quantile * current.sum())), 1)
        bands.append((lo, hi, count))
    return tuple(bands)


@lru_cache(maxsize=8)
def _window_autocorrelation(n_fft: int) -> np.ndarray:
    window = np.hanning(n_fft + 1)[:-1]  # periodic Hann, as the STFT's
    spectrum = np.abs(np.fft.rfft(window, n=2 * n_fft)) ** 2
    r = np.fft.irfft(spectrum)[:n_fft]
    return r / r[0]


def harmonicity(
    power_by_frame: np.ndarray,
    *,
    sample_rate: int,
    f0_range_hz: tuple[float, float],
    voicing_threshold: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Harmonics-to-noise ratio (dB) and a voicing decision per frame, from the power
    spectra ``(frames, 1 + n_fft // 2)`` of Hann-windowed frames.

    Boersma's method: the autocorrelation of each windowed frame (the inverse
    FFT of its power spectrum) divided by the window's own autocorrelation;
    its highest peak in the pitch range is the harmonic share of the energy.
    """
    n_fft = 2 * (power_by_frame.shape[1] - 1)
    lo = int(sample_rate / f0_range_hz[1])
    hi = min(int(sample_rate / f0_range_hz[0]), n_fft // 2 - 1)
    window = np.maximum(_window_autocorrelation(n_fft)[lo : hi + 1], 0.1)
    complex_dtype = np.result_type(power_by_frame.dtype, np.complex64)
    peak = np.empty(power_by_frame.shape[0])
    for a in range(0, power_by_frame.shape[0], FFT_CHUNK):
        # irfft of a complex copy: faster than of the real array itself
        r = scipy.fft.irfft(power_by_frame[a : a + FFT_CHUNK].astype(complex_dtype), axis=1)
        # only the lags of the pitch range are normalised and searched
        band = r[:, lo : hi + 1] / np.maximum(r[:, :1], 1e-12)
        peak[a : a + FFT_CHUNK] = (band / window).max(axis=1)  # float64
    peak = np.clip(peak, 1e-4, 1 - 1e-4)
    return 10.0 * np.log10(peak / (1.0 - peak)), peak > voicing_threshold


def spectral_rolloff(spectrum: np.ndarray, freqs: np.ndarray, *, fraction: float) -> np.ndarray:
    """The frequency (Hz) below which ``fraction`` of each frame's magnitude lies, ``(1, frames)``,
    of a magnitude spectrum ``(bins, frames)``, C-contiguous, with bin frequencies ``freqs``."""
    cumulative = cumulative_rows(spectrum)
    n_bins, n_frames = cumulative.shape
    threshold = fraction * cumulative[-1]
    # The first bin that reaches the threshold: the count of those below it, as the
    # cumulative sum never falls; found by bisection, a few values per frame read.
    columns = np.arange(n_frames)
    flat = cumulative.ravel()
    index = np.zeros(n_frames, dtype=np.intp)
    step = 1 << (n_bins.bit_length() - 1)
    while step:
        ahead = index + step
        below = ahead <= n_bins
        below[below] = flat[(ahead[below] - 1) * n_frames + columns[below]] < threshold[below]
        index[below] = ahead[below]
        step >>= 1
    index[index == n_bins] = 0  # never reached (a fraction above 1): argmax's 0
    return freqs[index][np.newaxis, :]


def cumulative_rows(x: np.ndarray) -> np.ndarray:
    """``np.cumsum(x, axis=0)`` of a C-contiguous ``(rows, columns)`` array, row by row:
    the same sums in the same order, but each step runs over all columns at once
    (numpy's cumulative sum walks each column on its own, five times slower)."""
    out = np.empty_like(x)
    out[0] = x[0]
    for i in range(1, out.shape[0]):
        np.add(out[i - 1], x[i], out=out[i])
    return out


def deltas(
    mfcc: np.ndarray, *, max_width: int, counts: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """First and second time derivatives of ``mfcc`` ``(coefficients, frames)`` over
    ``max_width`` frames (odd), as ``librosa.feature.delta``, within each segment of
    ``counts`` frames (default: one); the window shrinks for short segments.

    Segments of ``max_width`` frames or more share one pass over the interior and one
    product for their edges; shorter ones are filtered one by one.
    """
    n_frames = mfcc.shape[1]
    counts = np.array([n_frames]) if counts is None else counts
    first, second = np.zeros_like(mfcc), np.zeros_like(mfcc)
    starts = _starts(counts)
    full = (counts >= max_width) & (max_width % 2 == 1)
    if full.any():
        a, b = starts[full], starts[full] + counts[full]
        for order, out in ((1, first), (2, second)):
            _savgol_segments(mfcc, a, b, width=max_width, order=order, out=out)
    for a, n in zip(starts[~full].tolist(), counts[~full].tolist(), strict=True):
        width = min(max_width, n if n % 2 else n - 1)
        short = width >= 3
        first[:, a : a + n] = _savgol(mfcc[:, a : a + n], width=width, order=1) if short else 0
        second[:, a : a + n] = _savgol(mfcc[:, a : a + n], width=width, order=2) if short else 0
    return first, second


def _savgol_segments(
    x: np.ndarray, a: np.ndarray, b: np.ndarray, *, width: int, order: int, out: np.ndarray
) -> None:
    """:func:`_savgol` of the segments ``[a, b)`` of ``x``'s frames (each ``width`` or
    more) into ``out``: the interior filter runs over all frames (what it computes
    across a border, or in other segments, is overwritten after), the edge fits for
    all segments at once."""
    m = _savgol_operator(width, order).astype(x.dtype)
    h, n = width // 2, x.shape[1]
    out[:, h : n - h] = sum(m[h, j] * x[:, j : n - width + 1 + j] for j in range(width))
    window = np.arange(width)
    heads = np.ascontiguousarray(x[:, a[:, None] + window].transpose(1, 0, 2))
    tails = np.ascontiguousarray(x[:, (b - width)[:, None] + window].transpose(1, 0, 2))
    out[:, (a[:, None] + np.arange(h)).ravel()] = np.concatenate(heads @ m[:h].T, axis=1)
    out[:, (b[:, None] - h + np.arange(h)).ravel()] = np.concatenate(tails @ m[h + 1 :].T, axis=1)


@lru_cache(maxsize=32)
def _savgol_operator(width: int, order: int) -> np.ndarray:
    """The ``(width, width)`` linear map of ``scipy.signal.savgol_filter(mode="interp")``
    on a window of ``width`` frames: its middle row filters the interior, the rows
    above and below it give the edges (polynomial fits)."""
    return savgol_derivative(width, order)


def _savgol(x: np.ndarray, *, width: int, order: int) -> np.ndarray:
    """``librosa.feature.delta(x, width=width, order=order)`` along frames, with the
    filter built once per width instead of on every call (half the cost of deltas)."""
    m = _savgol_operator(width, order).astype(x.dtype)
    h, n = width // 2, x.shape[1]
    out = np.empty_like(x)
    out[:, h : n - h] = sum(m[h, j] * x[:, j : n - width + 1 + j] for j in range(width))
    out[:, :h] = x[:, :width] @ m[:h].T
    out[:, n - h :] = x[:, n - width :] @ m[h + 1 :].T
    return out


def grouped_statistics(m: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The seven statistics (mean, median, std, min, max, skew, kurtosis) of every row of
    ``m`` ``(rows, columns)`` over each group of ``counts`` columns (each at least one):
    ``(groups, rows, 7)`` float64, NaN where a row of a group holds NaN.

    Moments of a (nearly) constant row are undefined: they are 0, as for a normal.
    The moments are computed in float64; the order statistics come from sorting
    ``m`` as it is (float32 sorts in two thirds of the time, to the same values).
    """
    starts = _starts(counts)
    n = counts.astype(np.float64)
    wide = m.astype(np.float64, copy=False)
    mean = np.add.reduceat(wide, starts, axis=1) / n
    centred = wide - np.repeat(mean, counts, axis=1)
    # Products, not ``**3``/``**4``: numpy raises to those powers with the general pow(),
    # ten times slower.
    c2 = centred * centred
    variance = np.add.reduceat(c2, starts, axis=1) / n
    third = np.add.reduceat(np.multiply(c2, centred, out=centred), starts, axis=1) / n
    fourth = np.add.reduceat(np.multiply(c2, c2, out=c2), starts, axis=1) / n
    std = np.sqrt(variance)
    flat = std <= 1e-6 * np.maximum(np.abs(mean), 1.0)
    safe_var = np.where(flat, 1.0, variance)
    skew = np.where(flat, 0.0, third / (safe_var * np.sqrt(safe_var)))
    kurtosis = np.where(flat, 0.0, fourth / (safe_var * safe_var) - 3.0)
    # one sort per group gives median, minimum and maximum (np.median's partition
    # costs more than the sort)
    median, minimum, maximum = (np.empty_like(mean) for _ in range(3))
    for g, (a, size) in enumerate(zip(starts.tolist(), counts.tolist(), strict=True)):
        ordered = np.sort(m[:, a : a + size], axis=1).astype(np.float64, copy=False)
        median[:, g] = 0.5 * (ordered[:, (size - 1) // 2] + ordered[:, size // 2])
        minimum[:, g], maximum[:, g] = ordered[:, 0], ordered[:, -1]
    if np.isnan(mean).any():  # a row with NaN: its median, min and max are NaN too
        missing = np.add.reduceat(np.isnan(m), starts, axis=1) > 0
        median[missing] = minimum[missing] = maximum[missing] = np.nan
    stats = np.stack([mean, median, std, minimum, maximum, skew, kurtosis], axis=-1)
    return stats.transpose(1, 0, 2)


def _starts(counts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.intp)
