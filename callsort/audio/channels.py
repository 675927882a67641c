"""Turn a file's channels into analysis channels.

Contact centres record agent and customer on separate channels, so stereo is
split by default and each side is labelled on its own. A converter's DC offset is taken
out here, before segmentation and features see the samples.
"""

from __future__ import annotations

import numpy as np

from callsort.settings import ChannelSettings


def channel_names(n_channels: int, settings: ChannelSettings) -> list[str]:
    """Names of the analysis channels for a file with ``n_channels`` channels."""
    if n_channels == 1:
        return ["mono"]
    if settings.mode == "mix":
        return ["mix"]
    if n_channels == 2:
        return list(settings.names)
    return [f"ch{i}" for i in range(n_channels)]


def analysis_channels(block: np.ndarray, settings: ChannelSettings) -> np.ndarray:
    """Map a ``(frames, channels)`` block to ``(analysis_channels, frames)``, each
    channel without its DC offset (:func:`without_dc`)."""
    dc = {"chunk": settings.dc_chunk, "negligible_db": settings.negligible_dc_db}
    if block.shape[1] > 1 and settings.mode == "mix":
        return without_dc(block.mean(axis=1, dtype=np.float32)[np.newaxis, :], **dc)
    return without_dc(np.ascontiguousarray(block.T), **dc)


def without_dc(channels: np.ndarray, *, chunk: int, negligible_db: float) -> np.ndarray:
    """``channels`` ``(channels, samples)`` minus each channel's DC offset.

    A cheap converter's constant offset lifts every frame's energy and hides
    zero crossings, so the voice-activity detector misses the speech on it and
    the features describe the offset. The offset is the median of the means of
    ``chunk``-sample chunks (robust to speech and clicks); below ``negligible_db``
    (dBFS), or beyond full scale, the channel is returned as it is, untouched to
    the last bit.
    """
    n = channels.shape[-1] // chunk * chunk
    if n == 0:
        return channels
    chunks = channels[:, :n].reshape(channels.shape[0], -1, chunk)
    with np.errstate(invalid="ignore"):  # a damaged float file's NaN or inf samples
        offset = np.median(chunks.mean(axis=-1, dtype=np.float64), axis=-1)
    # beyond full scale it is no converter's offset but a damaged file: left alone
    negligible = 10 ** (negligible_db / 20)
    offset[~((np.abs(offset) >= negligible) & (np.abs(offset) <= 1.0))] = 0.0
    if not offset.any():
        return channels
    return channels - offset[:, np.newaxis].astype(channels.dtype)
