"""Analyse one recording: decode -> channels -> segment -> features -> model.

Short recordings are decoded once and kept in memory. Longer ones are decoded
twice, block by block: the first pass measures frame energies (all that
segmentation needs), the second cuts out only the speech segments, so memory
does not grow with the length of the recording.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path

import numpy as np

from callsort.audio.channels import analysis_channels, channel_names
from callsort.audio.decode import AudioInfo, probe, read_blocks, resampled, resampled_blocks
from callsort.audio.diarise import Speakers, diarise, speaker_windows
from callsort.audio.segment import frame_measures, speech_segments
from callsort.errors import DecodeError
from callsort.features.archive import ArchiveStatistics
from callsort.features.spectral import feature_names, segments_features
from callsort.model.context import gaps_between, in_context
from callsort.model.folder import Model
from callsort.settings import (
    ANALYSIS_SAMPLE_RATE,
    AnalysisSettings,
    ChannelSettings,
    FeatureSettings,
)

SR = ANALYSIS_SAMPLE_RATE
FEATURE_BATCH = 64  # segments whose features are computed together (segments_features)


@dataclass(frozen=True)
class ChannelAnalysis:
    """Segments of one analysis channel and the model's probabilities for them."""

    name: str
    segments: list[tuple[float, float]]  # (start_s, end_s) in the original recording
    # (segments, classes), columns in the model's class order: each segment in the context
    # of the channel's other segments (callsort.model.context), what labels it
    probabilities: np.ndarray
    # the same from each segment alone (the model's own); None: equal to ``probabilities``
    raw_probabilities: np.ndarray | None = None
    # (segments,) how sure the speaker of each segment is, for the speakers of a mono
    # file told apart (callsort.audio.diarise); None: a channel of the file itself
    speaker_confidence: np.ndarray | None = None

    @property
    def raw(self) -> np.ndarray:
        """The model's probabilities of each segment alone ``(segments, classes)``."""
        return self.probabilities if self.raw_probabilities is None else self.raw_probabilities


@dataclass(frozen=True)
class RecordingAnalysis:
    """Everything learned from one recording."""

    info: AudioInfo
    duration_s: float  # of the audio actually decoded (a truncated file is shorter)
    channels: list[ChannelAnalysis] = field(default_factory=list)


@dataclass(frozen=True)
class RecordingFeatures:
    """The raw features (before any standardisation) of every analysis channel of one
    recording: ``features[c]`` is ``(segments, features)`` float32 for channel ``names[c]``."""

    info: AudioInfo
    duration_s: float  # of the audio actually decoded
    names: list[str]
    segments: list[list[tuple[float, float]]]  # (start_s, end_s) per channel
    features: list[np.ndarray]
    # per channel: each segment's speaker confidence (a speaker of a mono file), else None
    speaker_confidence: list[np.ndarray | None] | None = None

    def confidence(self, c: int) -> np.ndarray | None:
        """Channel ``c``'s speaker confidences, or None."""
        return None if self.speaker_confidence is None else self.speaker_confidence[c]


def recording_features(
    path: Path | str, *, feature_settings: FeatureSettings, settings: AnalysisSettings
) -> RecordingFeatures:
    """Segment every channel of the recording at ``path`` and compute each segment's raw
    features (:func:`~callsort.features.spectral.segments_features`), as labelling does.

    Raises :class:`~callsort.errors.DecodeError` for files that are not usable audio.
    """
    info = probe(path)
    names = channel_names(info.n_channels, settings.channels)
    rate = feature_settings.sample_rate  # the model's: segments are found and cut at it
    frame_length = round(settings.segmentation.frame_s * rate)

    keep = info.duration_s <= settings.in_memory_s
    energy, zcr, kept, n_samples = _measure(
        _analysis_stream(path, info, settings, rate=rate),
        frame_length=frame_length,
        sample_rate=rate,
        keep=keep,
    )
    if n_samples == 0:
        raise DecodeError("no audio data (the file holds a header only)")
    duration_s = n_samples / rate

    segments = [
        speech_segments(energy[c], zcr[c], settings=settings.segmentation)
        for c in range(len(names))
    ]
    confidence: list[np.ndarray | None] = [None] * len(names)
    sources = list(range(len(names)))  # the decoded channel each analysis channel cuts
    if is_diarised(info, settings):
        speakers = mono_speakers(path, info, settings, segments[0], kept=kept, rate=rate)
        if speakers.n_speakers == 2:
            names = speaker_names(settings)
            segments, confidence, sources = speakers.segments, speakers.confidence, [0, 0]
    if kept is not None:
        audio = (
            (c, i, _cut(kept[sources[c]], seg, rate=rate))
            for c, segs in enumerate(segments)
            for i, seg in enumerate(segs)
        )
    else:
        audio = _cut_stream(
            _analysis_stream(path, info, settings, rate=rate), segments, sources=sources, rate=rate
        )

    # Each channel's features are kept (float32, 3.7 kB a segment: about 20 MB for three
    # hours of stereo speech) because the model normalises a segment against all the
    # segments of its channel before it labels any of them.
    n_features = len(feature_names(feature_settings))
    features = [np.zeros((len(s), n_features), dtype=np.float32) for s in segments]
    for batch in _batched(audio, FEATURE_BATCH):
        rows = segments_features([y for _, _, y in batch], settings=feature_settings)
        for (c, i, _), row in zip(batch, rows, strict=True):
            features[c][i] = row
    return RecordingFeatures(
        info=info,
        duration_s=duration_s,
        names=names,
        segments=segments,
        features=features,
        speaker_confidence=confidence,
    )


def is_diarised(info: AudioInfo, settings: AnalysisSettings) -> bool:
    """Whether the speakers of the file ``info`` describes are told apart: a mono file,
    its channels split (not ``mix``), with diarisation settings that allow two speakers."""
    d = settings.diarisation
    return (
        info.n_channels == 1
        and settings.channels.mode == "split"
        and d is not None
        and d.speakers != 1
    )


def speaker_names(settings: AnalysisSettings) -> list[str]:
    """The channel names of the two speakers of a mono file, in the agent rule's order."""
    d = settings.diarisation
    if d is None or d.agent == "none":
        return ["speaker_a", "speaker_b"]
    return list(d.names)


def mono_speakers(
    path: Path | str,
    info: AudioInfo,
    settings: AnalysisSettings,
    segments: list[tuple[float, float]],
    *,
    kept: np.ndarray | None = None,
    rate: int = SR,
) -> Speakers:
    """The speakers of the mono recording at ``path`` whose speech ``segments`` are known
    (:func:`~callsort.audio.diarise.diarise`): the segments' samples are cut from
    ``kept`` (the recording decoded at ``rate`` Hz), else from a new pass over the file
    that holds one segment at a time. The speaker encoder hears 16 kHz: segments cut at
    another rate are resampled to it."""
    d = settings.diarisation
    if d is None:
        raise ValueError("no diarisation settings")
    if kept is not None:
        audio = ((0, i, _cut(kept[0], seg, rate=rate)) for i, seg in enumerate(segments))
    else:
        stream = _analysis_stream(path, info, settings, rate=rate)
        audio = _cut_stream(stream, [segments], rate=rate)
    order: list[int] = []

    def samples():
        for _, i, y in audio:
            order.append(i)
            yield resampled(y, from_hz=rate, to_hz=SR)

    windows = speaker_windows(samples(), settings=d)  # fills order: the segments it got
    found = dict(zip(order, windows, strict=True))
    return diarise(segments, [found[i] for i in range(len(segments))], settings=d)


def analyse_recording(
    path: Path | str,
    *,
    model: Model,
    settings: AnalysisSettings,
    archive: ArchiveStatistics | None = None,
) -> RecordingAnalysis:
    """Segment and label every channel of the recording at ``path``; ``archive``: the
    statistics of the archive it belongs to, for a model that standardises per archive
    (see :meth:`~callsort.model.folder.Model.channel_proba`).

    Raises :class:`~callsort.errors.DecodeError` for files that are not usable audio.
    """
    raw = recording_features(path, feature_settings=model.feature_settings, settings=settings)
    channels = labelled_channels(raw, model=model, settings=settings, archive=archive)
    return RecordingAnalysis(info=raw.info, duration_s=raw.duration_s, channels=channels)


def labelled_channels(
    raw: RecordingFeatures,
    *,
    model: Model,
    settings: AnalysisSettings,
    archive: ArchiveStatistics | None = None,
) -> list[ChannelAnalysis]:
    """:func:`channel_analysis` of every channel of ``raw``."""
    return [
        replace(
            channel_analysis(name, segs, X, model=model, settings=settings, archive=archive),
            speaker_confidence=raw.confidence(c),
        )
        for c, (name, segs, X) in enumerate(zip(raw.names, raw.segments, raw.features, strict=True))
    ]


def channel_analysis(
    name: str,
    segments: list[tuple[float, float]],
    X: np.ndarray,
    *,
    model: Model,
    settings: AnalysisSettings,
    archive: ArchiveStatistics | None = None,
) -> ChannelAnalysis:
    """Label one channel from its segments' raw features ``X`` (segments, features): the
    model's probabilities of each segment, then each in the context of the others
    (``settings.context``; None: each segment on its own)."""
    proba = model.channel_proba(X, archive=archive)
    if settings.context is None:
        return ChannelAnalysis(name, segments, proba)
    smoothed = in_context(proba, settings=settings.context, gaps_s=gaps_between(segments))
    return ChannelAnalysis(name, segments, smoothed, raw_probabilities=proba)


def decode_mono(path: Path | str, *, sample_rate: int = SR) -> np.ndarray:
    """The whole recording as one float32 channel at ``sample_rate`` Hz (channels
    averaged), decoded as labelling decodes it."""
    info = probe(path)
    settings = AnalysisSettings(channels=ChannelSettings(mode="mix"))
    blocks = list(_analysis_stream(path, info, settings, rate=sample_rate))
    if not blocks:
        raise DecodeError("no audio data (the file holds a header only)")
    return np.concatenate(blocks, axis=1)[0]


def waveform_segments(
    y: np.ndarray, *, settings: AnalysisSettings, feature_settings: FeatureSettings
) -> tuple[list[tuple[float, float]], np.ndarray]:
    """Segments and feature matrix of one channel given as a waveform at
    ``feature_settings.sample_rate`` Hz.

    The same segmentation and features as :func:`analyse_recording`, for audio
    already in memory (training clips, tests).
    """
    rate = feature_settings.sample_rate
    frame_length = round(settings.segmentation.frame_s * rate)
    energy, zcr = frame_measures(y, frame_length=frame_length, sample_rate=rate)
    segments = speech_segments(energy, zcr, settings=settings.segmentation)
    cut = [_cut(y, seg, rate=rate) for seg in segments]
    X = segments_features(cut, settings=feature_settings)
    return segments, X


def _batched(items: Iterable, n: int) -> Iterator[list]:
    """``items`` in lists of ``n`` (the last one shorter)."""
    iterator = iter(items)
    while batch := list(islice(iterator, n)):
        yield batch


def _analysis_stream(
    path: Path | str, info: AudioInfo, settings: AnalysisSettings, *, rate: int
) -> Iterator[np.ndarray]:
    """Float32 blocks at ``rate`` Hz of shape ``(analysis_channels, samples)``."""
    block_frames = max(int(settings.block_s * info.sample_rate), 1)
    raw = (
        analysis_channels(b, settings.channels)
        for b in read_blocks(path, block_frames=block_frames, stamp=info.stamp)
    )
    return resampled_blocks(raw, from_hz=info.sample_rate, to_hz=rate)


def _measure(
    blocks: Iterator[np.ndarray], *, frame_length: int, sample_rate: int, keep: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
    """Frame energy and zero-crossing rate per channel over a block stream at
    ``sample_rate`` Hz (:func:`~callsort.audio.segment.frame_measures`).

    Returns ``(energy_db, zcr, audio, n_samples)``: ``audio`` is the whole
    decoded signal when ``keep`` is true, else ``None``.
    """
    energies, zcrs, kept = [], [], []
    carry = None
    n_samples = 0
    for block in blocks:
        n_samples += block.shape[1]
        if keep:
            kept.append(block)
        data = block if carry is None else np.concatenate([carry, block], axis=1)
        usable = data.shape[1] // frame_length * frame_length
        e, z = frame_measures(data[:, :usable], frame_length=frame_length, sample_rate=sample_rate)
        energies.append(e)
        zcrs.append(z)
        carry = data[:, usable:]
    if not energies:
        return np.zeros((0, 0)), np.zeros((0, 0)), None, 0
    audio = np.concatenate(kept, axis=1) if keep else None
    return (
        np.concatenate(energies, axis=1),
        np.concatenate(zcrs, axis=1),
        audio,
        n_samples,
    )


def _cut(y: np.ndarray, segment: tuple[float, float], *, rate: int) -> np.ndarray:
    start, end = segment
    return y[round(start * rate) : round(end * rate)]


def _cut_stream(
    blocks: Iterator[np.ndarray],
    segments: list[list[tuple[float, float]]],
    *,
    rate: int,
    sources: list[int] | None = None,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Cut ``(channel, index, audio)`` for every segment out of a block stream, channel
    ``c``'s from the block's row ``sources[c]`` (row ``c`` without ``sources``).

    Holds only the segments that overlap the current block, so memory is
    bounded by the block size and the longest segment.
    """
    wanted = sorted(
        (round(start * rate), round(end * rate), c, i)
        for c, segs in enumerate(segments)
        for i, (start, end) in enumerate(segs)
    )
    active: dict[tuple[int, int], tuple[int, int, list[np.ndarray]]] = {}
    next_wanted = 0
    position = 0
    for block in blocks:
        block_end = position + block.shape[1]
        while next_wanted < len(wanted) and wanted[next_wanted][0] < block_end:
            start, end, c, i = wanted[next_wanted]
            active[(c, i)] = (start, end, [])
            next_wanted += 1
        for (c, i), (start, end, parts) in list(active.items()):
            a, b = max(start, position) - position, min(end, block_end) - position
            if b > a:
                parts.append(block[c if sources is None else sources[c], a:b])
            if end <= block_end:
                del active[(c, i)]
                yield c, i, _joined(parts)
        position = block_end
    for (c, i), (_, _, parts) in active.items():  # segments running past the decoded end
        yield c, i, _joined(parts)


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)
