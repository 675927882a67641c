"""Decode recordings with libsndfile (soundfile) and resample with soxr.

Audio is read in blocks so memory stays flat however long a recording is.
Arrays are float32, shaped ``(frames, channels)`` as read and
``(channels, samples)`` after :func:`resampled_blocks`.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import soundfile as sf

from callsort.errors import DecodeError

MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 768_000
MAX_CHANNELS = 64
MAX_BLOCK_SAMPLES = 1 << 23
"""Largest block read at once, in samples over all channels (32 MB as float32), so that
a file with a high rate or many channels, or a header that claims them, cannot
make one block huge."""
STILL_BEING_WRITTEN = "the file changed while it was being read (still being written?)"


@dataclass(frozen=True)
class AudioInfo:
    """What the file's header says."""

    sample_rate: int  # Hz, as stored
    n_channels: int
    n_frames: int
    format: str
    subtype: str
    stamp: tuple[int, int] | None = None  # (size, mtime_ns) when probed: to notice changes

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.sample_rate


def probe(path: Path | str) -> AudioInfo:
    """Read a recording's header; raise :class:`DecodeError` if it is not usable audio."""
    stamp = _stamp(path)
    try:
        info = sf.info(os.fsencode(path))  # bytes: names need not be UTF-8
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as exc:
        raise DecodeError(_reason(path, exc)) from None
    if not MIN_SAMPLE_RATE <= info.samplerate <= MAX_SAMPLE_RATE:
        raise DecodeError(f"implausible sample rate in header: {info.samplerate} Hz")
    if not 0 < info.channels <= MAX_CHANNELS:
        raise DecodeError(f"implausible channel count in header: {info.channels}")
    _check_complete(info, path)
    return AudioInfo(
        sample_rate=int(info.samplerate),
        n_channels=int(info.channels),
        n_frames=max(int(info.frames), 0),
        format=str(info.format),
        subtype=str(info.subtype),
        stamp=stamp,
    )


def read_blocks(
    path: Path | str, *, block_frames: int, stamp: tuple[int, int] | None = None
) -> Iterator[np.ndarray]:
    """Yield the file's audio as float32 blocks of shape ``(frames, channels)``.

    NaN and infinite samples (float files) are read as silence, so nothing
    downstream sees them. Raises :class:`DecodeError` when the file turns out
    shorter than its header declares, or changes while it is read (or since
    ``stamp``, from :attr:`AudioInfo.stamp`, was taken).
    """
    before = _stamp(path)
    if stamp is not None and before != stamp:
        raise DecodeError(STILL_BEING_WRITTEN)
    decoded = 0
    try:
        with sf.SoundFile(os.fsencode(path)) as f:
            declared, rate = f.frames, f.samplerate
            block_frames = min(block_frames, max(MAX_BLOCK_SAMPLES // max(f.channels, 1), 1))
            read = _seeking_reader(f) if f.format == "MP3" else f.read
            while True:
                try:
                    block = read(block_frames, dtype="float32", always_2d=True)
                except (sf.LibsndfileError, RuntimeError) as exc:
                    if declared <= 0:
                        raise
                    raise DecodeError(
                        "truncated or corrupt file: decoding failed before the end of the "
                        f"{declared / rate:.1f} s its header declares ({_libsndfile_text(exc)})"
                    ) from None
                if not len(block):
                    break
                decoded += len(block)
                if not np.isfinite(block).all():
                    block = np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0)
                yield block
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as exc:
        raise DecodeError(_reason(path, exc)) from None
    if _stamp(path) != before:
        raise DecodeError(STILL_BEING_WRITTEN)
    shortfall = declared - decoded
    if shortfall > 0.01 * declared and shortfall > 0.1 * rate:
        raise DecodeError(
            f"truncated file: the header declares {declared / rate:.1f} s of audio, "
            f"only {decoded / rate:.1f} s could be decoded"
        )


MP3_PREROLL = 9216
"""Frames decoded and dropped before each MP3 block: 16 frames of the shortest MPEG
layer III frame (576 samples), more than the bit reservoir and the overlap reach back.
4608 was the least that gave exact samples in tests/audio/test_decode.py's files."""


def _seeking_reader(f: sf.SoundFile):
    """``f.read`` for libsndfile's MP3 decoder, in blocks that come out exact.

    libsndfile 1.2's MP3 decoder returns wrong samples when a read continues where
    the previous one stopped (tests/audio/test_decode.py shows it), while one read after a
    seek is exact once the decoder has settled. So each block is one read that starts
    :data:`MP3_PREROLL` frames early, after a seek there, and those frames are dropped:
    memory holds one block, as for every other format.
    """
    position = 0

    def read(frames: int, **options) -> np.ndarray:
        nonlocal position
        start = max(position - MP3_PREROLL, 0)
        f.seek(start)
        block = f.read(frames + position - start, **options)[position - start :]
        position += len(block)
        return block

    return read


def _stamp(path: Path | str) -> tuple[int, int]:
    """Size and modification time, which change while a file is being written.

    Refuses what is not a regular file: opening a named pipe would wait for a
    writer forever, and a device never ends.
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        raise DecodeError(_reason(path, exc)) from None
    if stat.S_ISDIR(st.st_mode):
        raise DecodeError(_folder_reason(path))
    if not stat.S_ISREG(st.st_mode):
        raise DecodeError("not a regular file (a named pipe, device or socket)")
    return st.st_size, st.st_mtime_ns


def _folder_reason(path: Path | str) -> str:
    """Why a folder was handed over as a recording: usually one that cannot be listed."""
    try:
        with os.scandir(path):
            pass
    except OSError as exc:
        why = _ERRNO_REASONS.get(exc.errno, exc.strerror or str(exc))
        return f"folder that cannot be listed ({why}): its recordings, if any, are not labelled"
    return _ERRNO_REASONS[errno.EISDIR]


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


def resampled(y: np.ndarray, *, from_hz: int, to_hz: int) -> np.ndarray:
    """One channel ``(samples,)`` float32 resampled as :func:`resampled_blocks` resamples
    a file (``y`` itself when the rates are equal)."""
    if from_hz == to_hz:
        return y
    blocks = list(resampled_blocks([y[np.newaxis, :]], from_hz=from_hz, to_hz=to_hz))
    return np.concatenate(blocks, axis=1)[0] if blocks else np.zeros(0, np.float32)


class SoundFileHeader(Protocol):
    """What :func:`_check_complete` reads of ``soundfile.info(path)``."""

    format: str
    frames: int
    duration: float
    extra_info: str


_DATA_CHUNK = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_PLACEHOLDER_SIZES = (0xFFFFFFFF, 0x7FFFFFFF, 0x7FFFF000)
UNFINISHED = "unfinished file: {what} (still being written, or never closed by the recorder?)"


def _check_complete(info: SoundFileHeader, path: Path | str) -> None:
    """Refuse a file that holds less than its header declares, or was never finished.

    libsndfile quietly shortens ``frames`` to what is there; its header dump
    (``extra_info``) keeps the declared size: ``data : 757182 (should be 942)``.
    A WAV that is still being written has a placeholder size (0 or 0xFFFFFFFF),
    which libsndfile reports as a file "which wasn't closed properly".
    """
    extra = info.extra_info or ""
    if "wasn't closed properly" in extra:
        raise DecodeError(UNFINISHED.format(what="the header's data size was never filled in"))
    if info.format == "OGG" and "end-of-stream" in extra.lower():
        raise DecodeError("truncated file: the OGG stream ends without its end-of-stream page")
    match = _DATA_CHUNK.search(extra)
    if match:
        declared, present = int(match.group(1)), int(match.group(2))
        if declared in _PLACEHOLDER_SIZES:
            raise DecodeError(
                UNFINISHED.format(what=f"the header's data size is a placeholder ({declared:#x})")
            )
        if declared > present and info.frames >= 0:
            declared_s = info.duration * declared / max(present, 1)
            raise DecodeError(
                f"truncated file: the header declares {declared_s:.1f} s of audio, "
                f"the file holds {info.duration:.1f} s"
            )
    if info.frames == 0 and info.format in ("WAV", "WAVEX", "RF64"):
        riff = _riff_header(path)
        if riff and riff.get("data_size") == 0 and riff["after_data"] > 0:
            raise DecodeError(
                UNFINISHED.format(
                    what=f"the header declares no audio, yet {riff['after_data']} bytes follow it"
                )
            )


def _riff_header(path: Path | str) -> dict[str, int] | None:
    """Sample rate, channels and data chunk of a RIFF/WAVE file, read by hand.

    Only to explain a failure better than libsndfile does; ``None`` if the file
    does not start like a WAV.
    """
    import struct

    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return None
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX", b"RF64") or head[8:12] != b"WAVE":
        return None
    endian = ">" if head[:4] == b"RIFX" else "<"
    found: dict[str, int] = {}
    position = 12
    while position + 8 <= len(head):
        chunk, length = (
            head[position : position + 4],
            struct.unpack(endian + "I", head[position + 4 : position + 8])[0],
        )
        body = position + 8
        if chunk == b"fmt " and body + 16 <= len(head):
            _, channels, rate = struct.unpack(endian + "HHI", head[body : body + 8])
            found.update(channels=channels, sample_rate=rate)
        elif chunk == b"data":
            found.update(data_size=length, after_data=size - body)
            break
        position = body + length + (length & 1)
    return found


_ERRNO_REASONS = {
    errno.ENOENT: "file not found (deleted or moved before it could be read)",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EISDIR: "is a folder, not a file",
    errno.ELOOP: "symlink loop",
    errno.ENAMETOOLONG: "file name too long for the file system",
}


def _reason(path: Path | str, exc: BaseException) -> str:
    """A short, specific reason for a failed read.

    libsndfile reports most failures as a generic "System error", so the file
    itself is checked first: missing, unreadable, a folder, empty; then a WAV
    header is read by hand for the values libsndfile refuses without naming.
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
    riff = _riff_header(path)
    if riff and "sample_rate" in riff:
        if not MIN_SAMPLE_RATE <= riff["sample_rate"] <= MAX_SAMPLE_RATE:
            return f"implausible sample rate in header: {riff['sample_rate']} Hz"
        if not 0 < riff["channels"] <= MAX_CHANNELS:
            return f"implausible channel count in header: {riff['channels']}"
    return f"not readable as audio: {_libsndfile_text(exc)}"


def _libsndfile_text(exc: BaseException) -> str:
    # error_string leaves out the path, which may itself hold ": "
    text = exc.error_string if isinstance(exc, sf.LibsndfileError) else str(exc)
    return text.strip()
