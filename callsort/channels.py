"""Turn a file's channels into analysis channels.

Contact centres record agent and customer on separate channels, so stereo is
split by default and each side is labelled on its own.
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
    """Map a ``(frames, channels)`` block to ``(analysis_channels, frames)``."""
    if block.shape[1] > 1 and settings.mode == "mix":
        return block.mean(axis=1, dtype=np.float32)[np.newaxis, :]
    return np.ascontiguousarray(block.T)
