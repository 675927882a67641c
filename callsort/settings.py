"""Settings that cross module borders, as frozen dataclasses.

Every field that changes results lives here, so a run can be described (and
later fingerprinted) by these objects alone. Units are in the field names or
the comments: seconds (``_s``), Hz, decibels (``_db``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Literal

ANALYSIS_SAMPLE_RATE = 16_000
"""The rate (Hz) recordings are analysed at unless a model's card names another
(:attr:`FeatureSettings.sample_rate`); the default model's encoder hears only this one."""

FAST_SAMPLE_RATE = 8_000
"""The rate (Hz) ``callsort train --fast`` builds a model for unless told otherwise: the
telephone rate, at which an 8 kHz call is not resampled and a window holds half the
samples."""

DEFAULT_CLASSES: tuple[str, ...] = ("angry", "calm", "happy", "sad")

MAX_SEGMENT_LIMIT_S = 120.0
"""The longest ``--max-segment`` callsort accepts (seconds). A worker holds its longest
segment's hand-made features' STFT (about 0.7 MB a second of segment): labelling 10 minutes
of continuous speech peaked at 613 MB with 4 s segments and 723 MB with 120 s
(``benchmarks/long_segments.py``); one 520 s segment took 953 MB (1,447 MB with the whole
Whisper model in memory and its log-mel computed at once), against a target under 1 GB a
worker."""

ENCODER_COMPUTE_TYPE = "float32"
"""How CTranslate2 runs the speech encoder (:mod:`callsort.features.encoder`). float32,
not int8: CTranslate2's int8 kernels differ by CPU (Intel MKL or oneDNN, with or without
AVX-512 VNNI), and moved the demo calls' probabilities by up to 0.18 between the kernels
of one machine; float32 gave the same probabilities on every path measured
(``benchmarks/cpu_paths.py``), for 1.6 times int8's CPU time in the encoder."""


def identity(settings: Any) -> dict:
    """``asdict(settings)`` without the fields that still hold the value callsort used
    before they became settings (each class's ``LEGACY``), nested settings alike.

    Fingerprints and cache keys hash this, so adding a setting at its old value keeps
    existing datasets and feature caches valid, while any other value changes them.
    """
    legacy = getattr(settings, "LEGACY", {})
    out = {}
    for f in fields(settings):
        value = getattr(settings, f.name)
        if f.name in legacy and value == legacy[f.name]:
            continue
        out[f.name] = identity(value) if hasattr(value, "__dataclass_fields__") else value
    return out


def recorded(cls: type, data: dict) -> Any:
    """Settings of class ``cls`` as a model card recorded them in ``data``: a field the card
    lacks (added to callsort after the card was written) takes the value callsort used
    before it became a setting (``cls.LEGACY``), not today's default."""
    return cls(**{**getattr(cls, "LEGACY", {}), **data})


def settings_repr(settings: Any) -> str:
    """``repr(settings)`` over :func:`identity`'s fields (what a cache key hashed before)."""
    inner = ", ".join(f"{k}={v!r}" for k, v in identity(settings).items())
    return f"{type(settings).__name__}({inner})"


@dataclass(frozen=True)
class ChannelSettings:
    """How the channels of a recording become analysis channels.

    ``mode="split"`` analyses every channel on its own (agent and customer
    recorded apart); ``mode="mix"`` averages them into one channel named ``mix``.
    ``names`` names the two channels of a stereo file; files with more channels
    are named by index (``ch0``, ``ch1``...).
    """

    mode: Literal["split", "mix"] = "split"
    names: tuple[str, str] = ("left", "right")
    # A converter's DC offset is the median of the means of chunks of this many samples
    # (16 ms at 16 kHz) ...
    dc_chunk: int = 256
    # ... and is left alone below this level (dBFS): it hides no speech there, and it is
    # of the order of what speech itself averages to (asymmetric glottal pulses)
    negligible_dc_db: float = -50.0

    LEGACY: ClassVar[dict[str, object]] = {"dc_chunk": 256, "negligible_dc_db": -50.0}


@dataclass(frozen=True)
class SegmentationSettings:
    """Energy voice-activity detection with hysteresis.

    Thresholds are decibels above the channel's own noise floor (a low
    percentile of its frame energies), never absolute levels. Fields added since a
    model card was written take their defaults, the values callsort used before.
    """

    frame_s: float = 0.010
    noise_floor_percentile: float = 10.0
    start_db: float = 12.0  # a frame rises this far above the floor to start speech
    stay_db: float = 7.0  # speech continues while frames stay this far above it
    dynamic_range_db: float = 50.0  # frames this far below the channel's peak are never speech
    min_speech_s: float = 0.30
    min_pause_s: float = 0.40
    pad_s: float = 0.05
    max_segment_s: float = 4.0
    min_modulation_db: float = 2.0  # steadier than this (std of frame dB) is a tone, not speech
    # ... or a zero-crossing rate whose interquartile range over the loud frames is below
    # this: tones keep a near-constant one, speech does not
    min_zcr_spread: float = 0.012
    silence_db: float = -120.0  # frame energies are floored here (digital silence)
    smooth_s: float = 0.05  # moving average of the frame energies before the thresholds
    peak_percentile: float = 99.5  # the channel's peak level: this percentile of its frames
    # A channel in which no run lasts min_speech_s keeps its runs at least this long (a
    # short answer, "No!") rather than nothing; None: such a channel has no segment
    short_utterance_s: float | None = 0.15
    # ... judged steady by the distance between these percentiles of their loud frames'
    # zero-crossing rates (the speech runs: 25 and 75). A tone's rate stays within one
    # crossing a frame; a voice holding one vowel can keep its quartiles that close (sad
    # speech, fundamental-dominant), but its consonants and pitch spread its deciles
    short_utterance_zcr_percentiles: tuple[float, float] = (10.0, 90.0)

    LEGACY: ClassVar[dict[str, object]] = {
        "min_zcr_spread": 0.012,
        "silence_db": -120.0,
        "smooth_s": 0.05,
        "peak_percentile": 99.5,
        "short_utterance_s": None,
        "short_utterance_zcr_percentiles": (25.0, 75.0),
    }

    def __post_init__(self) -> None:
        low, high = (float(v) for v in self.short_utterance_zcr_percentiles)
        if not 0.0 <= low < high <= 100.0:
            raise ValueError(
                "short_utterance_zcr_percentiles are two percentiles, the lower first, "
                f"not {self.short_utterance_zcr_percentiles!r}"
            )
        # a card's JSON gives a list: the same setting, and the same identity
        object.__setattr__(self, "short_utterance_zcr_percentiles", (low, high))


@dataclass(frozen=True)
class FeatureSettings:
    """Spectral analysis settings for :mod:`callsort.features.spectral`.

    ``sample_rate`` is the rate a model hears: labelling decodes every file to it,
    finds speech and computes features at it (16 kHz for the default model, whose
    encoder needs it; the fast model works at the telephone rate, 8 kHz).

    A model card stores them; fields added since a card was written take their
    defaults when it is read, which are the values callsort used before they became
    settings.
    """

    sample_rate: int = ANALYSIS_SAMPLE_RATE
    n_fft: int = 512
    hop_length: int = 160
    n_mels: int = 40
    n_mfcc: int = 20
    fmin_hz: float = 0.0
    fmax_hz: float = 8000.0
    n_contrast_bands: int = 6
    contrast_fmin_hz: float = 100.0
    # Calls arrive at any gain (line AGC, headsets), so each segment is scaled to this
    # RMS level (dBFS) first: level features then describe dynamics, not the gain.
    reference_level_db: float | None = -20.0
    # Prosody in the spirit of eGeMAPS: pitch (librosa.yin at 8 kHz), harmonicity,
    # spectral balance and slope, energy dynamics and a speaking-rate proxy.
    prosody: bool = True
    f0_min_hz: float = 70.0
    f0_max_hz: float = 400.0
    pitch_every_frames: int = 2  # pitch every 20 ms (two STFT hops)
    # a frame is voiced when its harmonic share (the normalised autocorrelation peak in
    # the pitch range) exceeds this: Praat's voicing threshold
    voicing_threshold: float = 0.45
    # syllable-rate proxy: peaks of the level, smoothed over this many STFT frames, that
    # stand this far above its median
    level_smooth_frames: int = 5
    level_peak_db: float = 3.0
    rolloff_fraction: float = 0.85  # spectral roll-off: the frequency below this share
    delta_width: int = 9  # frames of the MFCC delta filters (fewer in shorter segments)
    # learned features after the hand-made ones: None, or "whisper-base" (callsort.features.encoder)
    encoder: str | None = None
    # how many of the encoder's 6 layers run: fewer are faster, and the last layer kept is
    # the one pooled (benchmarks/encoder_depth_probe.py)
    encoder_layers: int = 6

    LEGACY: ClassVar[dict[str, object]] = {
        "voicing_threshold": 0.45,
        "level_smooth_frames": 5,
        "level_peak_db": 3.0,
        "rolloff_fraction": 0.85,
        "delta_width": 9,
        "encoder_layers": 6,
    }

    def __post_init__(self) -> None:
        nyquist = self.sample_rate / 2
        if not 0 < self.fmax_hz <= nyquist:
            raise ValueError(f"fmax_hz {self.fmax_hz} lies above Nyquist ({nyquist:g} Hz)")
        if self.contrast_fmin_hz * 2**self.n_contrast_bands >= nyquist:
            raise ValueError(
                f"{self.n_contrast_bands} contrast bands from {self.contrast_fmin_hz:g} Hz: "
                f"the top one starts above Nyquist ({nyquist:g} Hz); use fewer"
            )
        if self.encoder is not None and self.sample_rate != ANALYSIS_SAMPLE_RATE:
            raise ValueError(f"the encoder hears {ANALYSIS_SAMPLE_RATE} Hz audio only")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ContextSettings:
    """How a segment's probabilities are combined with those of its channel's other
    segments (:mod:`callsort.model.context`): an emotion tends to last from one segment
    to the next, less so across a long silence.
    """

    # probability that the next segment of the channel has the same emotion, when no
    # silence separates them (1 / classes: no tie, each segment on its own)
    p_stay: float = 0.8
    # a silence this long halves the tie (p_stay moves halfway toward 1 / classes)
    half_life_s: float = 60.0
    # exponent on each segment's evidence (1: the model's calibrated probabilities as they are)
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.p_stay <= 1.0:
            raise ValueError(f"p_stay is a probability, not {self.p_stay!r}")
        if not self.half_life_s > 0.0:
            raise ValueError(f"half_life_s must be positive, not {self.half_life_s!r}")
        if not self.weight > 0.0:
            raise ValueError(f"weight must be positive, not {self.weight!r}")


@dataclass(frozen=True)
class DiarisationSettings:
    """How the speech of a mono file is told apart into two speakers
    (:mod:`callsort.audio.diarise`): speaker embeddings of short windows of the speech
    segments, clustered in two, the segments cut where the speaker changes.

    ``speakers``: 1 keeps a mono file one channel, 2 always splits it, None decides by
    the separation of the two clusters (``min_separation``). ``agent`` orders the two
    speakers, whose channels take ``names`` in that order: ``first`` gives the first
    name to the speaker heard first (the agent who opens a contact-centre call),
    ``most`` to the speaker with more speech; ``none`` to the speaker heard first, and
    the names stay ``speaker_a`` / ``speaker_b`` (no speaker is claimed to be the agent).
    """

    speakers: int | None = None
    agent: Literal["first", "most", "none"] = "first"
    names: tuple[str, str] = ("speaker_a", "speaker_b")
    # speaker-embedding windows (callsort.audio.voices) inside the speech segments: as
    # long as the encoder's training windows (1.6 s), each starting this far after the last
    # (half-overlapping windows, hop 0.8 s, gave the same figures in benchmarks/diarisation.py
    # within its noise, TEST DER 6.1 % vs 6.4 % with two speakers, for 1.5x the encoder's time)
    window_s: float = 1.6
    hop_s: float = 1.6
    min_window_s: float = 0.25  # a segment shorter than this gets no window of its own
    level_dbfs: float = -30.0  # a quieter segment is raised to this RMS level first
    # cluster where one speaker's segments spread alike in every direction: the centred
    # embeddings times callsort/models/speakers/whitening.npz (the inverse square root of
    # the within-speaker covariance of corpus speakers' telephone clips, shrunk halfway to
    # the identity; scripts/make_speaker_whitening.py), so that how one voice moves with
    # emotion weighs less than how two voices differ (benchmarks/speaker_space_trial.py)
    whiten: bool = True
    batch_windows: int = 256  # windows embedded together (speed; the results do not change)
    smooth_windows: int = 3  # median filter over a segment's window labels
    min_piece_s: float = 0.5  # a speaker turn shorter than this joins its neighbour
    # with speakers=None, two speakers when the clusters' separation (the silhouette of
    # the segments in the whitened space, diarise.separation) reaches this: chosen on the
    # synthetic calls and one-speaker files of the FIT speakers (benchmarks/diarisation.py),
    # best balanced accuracy
    min_separation: float = 0.231
    # ... and when the two clusters' mean embeddings are less alike than this (cosine;
    # diarise.similarity): the FIT calls' two speakers were at most 0.85 alike, the same
    # recorded turn repeated through a file 0.96 (tests/hostile_cases.py, one_hour_8k)
    max_similarity: float = 0.9
    segment_level: bool = True  # cluster the segments' mean windows, not each window
    max_cluster_windows: int = 1500  # segments (windows) clustered at most, evenly spread
    kmeans_iterations: int = 10

    def __post_init__(self) -> None:
        if self.speakers not in (None, 1, 2):
            raise ValueError(f"speakers is 1, 2 or None (decide), not {self.speakers!r}")
        if self.agent not in ("first", "most", "none"):
            raise ValueError(f"agent is 'first', 'most' or 'none', not {self.agent!r}")


@dataclass(frozen=True)
class AnalysisSettings:
    """Everything that decides the labels of one recording."""

    channels: ChannelSettings = field(default_factory=ChannelSettings)
    segmentation: SegmentationSettings = field(default_factory=SegmentationSettings)
    block_s: float = 60.0  # recordings are decoded in blocks of this many seconds
    # Recordings up to this long are decoded once and kept (16 kHz float32 per channel:
    # 38 MB for 5 minutes of stereo); longer ones are decoded twice, block by block, so that
    # a worker's memory does not grow with the length (benchmarks/nightly.py).
    in_memory_s: float = 300.0
    # a model that standardises features per archive (callsort.features.archive) gets the
    # statistics of the segments of up to this many recordings, evenly spread over the run's
    # sorted plan (a dataset keeps them in archive-statistics.json for its later runs)
    archive_sample_recordings: int = 64
    # each segment's label in the context of its channel's other segments; None: each
    # segment on its own (the labels of callsort before issue 17)
    context: ContextSettings | None = field(default_factory=ContextSettings)
    # the two speakers of a mono file told apart (issue 19); None: a mono file is one
    # channel named ``mono`` (callsort before issue 19)
    diarisation: DiarisationSettings | None = field(default_factory=DiarisationSettings)

    LEGACY: ClassVar[dict[str, object]] = {
        "archive_sample_recordings": 64,
        "context": None,
        "diarisation": None,
    }

    def to_dict(self) -> dict:
        return asdict(self)
