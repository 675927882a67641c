"""Decode recordings with libsndfile (soundfile) and resample with soxr.

Audio is read in blocks so memory stays flat however long a recording is.
Arrays are float32, shaped ``(frames, channels)`` as read and
``(channels, samples)`` after :func:`resampled_blocks`.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from callsort.errors import DecodeError

MAX_SAMPLE_RATE = 768_000
MAX_CHANNELS = 64


@dataclass(frozen=True)
class AudioInfo:
    """What the file's header says."""

    sample_rate: int  # Hz, as stored
    n_channels: int
    n_frames: int
    format: str
    subtype: str

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.sample_rate


def probe(path: Path | str) -> AudioInfo:
    """Read a recording's header; raise :class:`DecodeError` if it is not usable audio."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as exc:
        raise DecodeError(_reason(path, exc)) from None
    if not 0 < info.samplerate <= MAX_SAMPLE_RATE:
        raise DecodeError(f"implausible sample rate in header: {info.samplerate} Hz")
    if not 0 < info.channels <= MAX_CHANNELS:
        raise DecodeError(f"implausible channel count in header: {info.channels}")
    _check_not_truncated(info)
    return AudioInfo(
        sample_rate=int(info.samplerate),
        n_channels=int(info.channels),
        n_frames=max(int(info.frames), 0),
        format=str(info.format),
        subtype=str(info.subtype),
    )


def read_blocks(path: Path | str, *, block_frames: int) -> Iterator[np.ndarray]:
    """Yield the file's audio as float32 blocks of shape ``(frames, channels)``.

    NaN and infinite samples (float files) are read as silence, so nothing
    downstream sees them.
    """
    try:
        with sf.SoundFile(str(path)) as f:
            if f.format == "MP3":
                # libsndfile 1.2's MP3 decoder returns wrong samples after some chunk
                # boundaries (tests/test_decode.py shows it), so MP3 is read in one go.
                block_frames = max(f.frames, 1)
            while True:
                block = f.read(block_frames, dtype="float32", always_2d=True)
                if not len(block):
                    return
                if not np.isfinite(block).all():
                    block = np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0)
                yield block
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as exc:
        raise DecodeError(_reason(path, exc)) from None


def resampled_blocks(
    blocks: Iterable[np.ndarray], *, from_hz: int, to_hz: int
) -> Iterator[np.ndarray]:
    """Resample a stream of ``(channels, samples)`` blocks with soxr, block by block.

    The stream keeps the filter state between blocks, so the output equals
    resampling the whole signal at once (up to the filter's edge).
    """
    if from_hz == to_hz:
        yield from blocks
        return
    import soxr

    stream = None
    n_channels = 0
    for block in blocks:
        if stream is None:
            n_channels = block.shape[0]
            stream = soxr.ResampleStream(from_hz, to_hz, n_channels, dtype="float32")
        out = stream.resample_chunk(np.ascontiguousarray(block.T))
        if len(out):
            yield np.ascontiguousarray(out.T)
    if stream is not None:
        tail = stream.resample_chunk(np.zeros((0, n_channels), dtype="float32"), last=True)
        if len(tail):
            yield np.ascontiguousarray(tail.T)


_DATA_CHUNK = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def _check_not_truncated(info: sf._SoundFileInfo) -> None:
    """Refuse a file whose header declares more audio than the file holds.

    libsndfile quietly shortens ``frames`` to what is there; its header dump
    (``extra_info``) keeps the declared size: ``data : 757182 (should be 942)``.
    """
    match = _DATA_CHUNK.search(info.extra_info or "")
    if not match:
        return
    declared, present = int(match.group(1)), int(match.group(2))
    if declared > present and info.frames >= 0:
        declared_s = info.duration * declared / max(present, 1)
        raise DecodeError(
            f"truncated file: the header declares {declared_s:.1f} s of audio, "
            f"the file holds {info.duration:.1f} s"
        )


_ERRNO_REASONS = {
    errno.ENOENT: "file not found (deleted or moved before it could be read)",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EISDIR: "is a folder, not a file",
    errno.ELOOP: "symlink loop",
}


def _reason(path: Path | str, exc: BaseException) -> str:
    """A short, specific reason for a failed read.

    libsndfile reports most failures as a generic "System error", so the file
    itself is checked first: missing, unreadable, a folder, empty.
    """
    try:
        st = os.stat(path)
        with open(path, "rb"):
            pass
    except OSError as os_error:
        return _ERRNO_REASONS.get(os_error.errno, f"cannot read file: {os_error.strerror}")
    if os.path.isdir(path):
        return _ERRNO_REASONS[errno.EISDIR]
    if st.st_size == 0:
        return "empty file (0 bytes)"
    # error_string leaves out the path, which may itself hold ": "
    text = exc.error_string if isinstance(exc, sf.LibsndfileError) else str(exc)
    return f"not readable as audio: {text.strip()}"
