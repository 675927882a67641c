"""Segment features of every clip under every audio condition, cached on disk.

Clips go through the product's own path (decode, segmentation, features), so a
model trains on what ``callsort label`` computes; telephone copies are real
8 kHz codec files read back by the label path. One ``.npz`` per clip and
condition, keyed by the file's content (sha256) and name (augmentation seeds come from
it), the settings and :data:`FEATURE_CACHE_VERSION` (and, for features with the
encoder's embedding, :data:`~callsort.settings.ENCODER_COMPUTE_TYPE`). Not by its
folder or mtime: a corpus copied or unpacked again keeps its cached features.
Features are computed with BLAS on one thread, as labelling computes them: OpenBLAS's
results depend on its thread count, so features would otherwise depend on the host's
``OPENBLAS_NUM_THREADS`` and differ from the label path's by float32 rounding.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from callsort.audio.decode import resampled
from callsort.features.encoder import WHISPER_BASE
from callsort.features.spectral import feature_names
from callsort.model.card import file_sha256
from callsort.run.worker import map_on_one_thread
from callsort.settings import (
    ANALYSIS_SAMPLE_RATE,
    ENCODER_COMPUTE_TYPE,
    AnalysisSettings,
    FeatureSettings,
    SegmentationSettings,
    identity,
    settings_repr,
)
from callsort.training.config import (
    AUGMENTED,
    CODEC_CONDITIONS,
    PERTURBED,
    TEST_CONDITIONS,
    ClipFeatures,
)
from callsort.training.corpora import Clip

# bump when feature code changes without a settings change (5: BLAS on one thread, as
# labelling computes; 4's entries were computed on as many threads as BLAS took)
FEATURE_CACHE_VERSION = 5


def clip_features(
    clips: Sequence[Clip],
    *,
    condition: str,
    settings: AnalysisSettings,
    feature_settings: FeatureSettings,
    cache_dir: Path | None,
    jobs: int,
    on_done: Callable[[], None] | None = None,
) -> list[ClipFeatures]:
    """Features of every clip under ``condition``, using all ``jobs`` cores and the cache."""
    tasks = [(c.path, condition, settings, feature_settings, cache_dir) for c in clips]
    return map_on_one_thread(_clip_features_task, tasks, jobs=jobs, on_done=on_done, chunksize=8)


def _clip_features_task(task: tuple) -> ClipFeatures:
    path, condition, settings, feature_settings, cache_dir = task
    if cache_dir is None:
        return _compute_clip_features(path, condition, settings, feature_settings)
    cached = cached_file(
        path,
        condition=condition,
        settings=settings,
        feature_settings=feature_settings,
        cache_dir=cache_dir,
    )
    if cached is not None:
        with np.load(cached) as data:
            X = data["X"]
            if feature_settings.encoder is None:  # perhaps an encoder model's: its first columns
                X = X[:, : len(feature_names(feature_settings))]
            return ClipFeatures(X=X, durations_s=data["durations_s"])
    features = _compute_clip_features(path, condition, settings, feature_settings)
    cache_file = Path(cache_dir) / f"{_cache_key(path, condition, settings, feature_settings)}.npz"
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, X=features.X, durations_s=features.durations_s)
    os.replace(tmp, cache_file)
    return features


def cached_file(
    path: Path,
    *,
    condition: str,
    settings: AnalysisSettings,
    feature_settings: FeatureSettings,
    cache_dir: Path,
) -> Path | None:
    """The cache file holding ``path``'s features under ``condition`` (None: not cached).

    Without an encoder, an encoder model's cached features serve too: the hand-made
    features are their first columns (same code, same segments). Features cached before
    short utterances existed serve when they hold segments: short utterances are only
    looked for in a channel without any other segment, so such a clip's segments, and
    features, are the same now; so do features cached under other settings of short
    utterances alone (``short_utterance_zcr_percentiles``), for the same reason.
    """
    found = _cached_exactly(path, condition, settings, feature_settings, Path(cache_dir))
    if found is not None or settings.segmentation.short_utterance_s is None:
        return found
    for before in _short_utterances_before(settings):
        found = _cached_exactly(path, condition, before, feature_settings, Path(cache_dir))
        if found is not None:
            with np.load(found) as data:
                return found if len(data["durations_s"]) else None
    return None


def _short_utterances_before(settings: AnalysisSettings) -> list[AnalysisSettings]:
    """``settings`` with short utterances as callsort looked for them before: with the
    zero-crossing quartiles of the speech runs, then not at all."""
    legacy = SegmentationSettings.LEGACY["short_utterance_zcr_percentiles"]
    quartiles = replace(settings.segmentation, short_utterance_zcr_percentiles=legacy)
    candidates = [quartiles, replace(quartiles, short_utterance_s=None)]
    return [replace(settings, segmentation=c) for c in candidates if c != settings.segmentation]


def _cached_exactly(
    path: Path, condition: str, settings: AnalysisSettings, fs: FeatureSettings, cache_dir: Path
) -> Path | None:
    key = _cache_key(path, condition, settings, fs)
    if (cache_dir / f"{key}.npz").is_file():
        return cache_dir / f"{key}.npz"
    if fs.encoder is None and fs.sample_rate == ANALYSIS_SAMPLE_RATE:
        with_encoder = replace(fs, encoder=WHISPER_BASE)
        richer = cache_dir / f"{_cache_key(path, condition, settings, with_encoder)}.npz"
        if richer.is_file():
            return richer
    return None


def _compute_clip_features(
    path: Path, condition: str, settings: AnalysisSettings, feature_settings: FeatureSettings
) -> ClipFeatures:
    from callsort.run.analysis import decode_mono
    from callsort.training.augment import add_noise

    rate = feature_settings.sample_rate  # the model's: what its label path decodes to
    if condition == "clean":
        return _segment_features(decode_mono(path, sample_rate=rate), settings, feature_settings)
    y = decode_mono(path)  # at 16 kHz, the rate the augmentations work at
    if condition == "telephone":
        y = through_telephone_file(y, codec="mulaw", sample_rate=rate)
    elif condition in CODEC_CONDITIONS:
        y = through_telephone_file(y, codec=condition, sample_rate=rate)
    elif condition == AUGMENTED:
        from callsort.training.augment import TELEPHONE_CODECS, augmented

        seed = _name_seed(path) ^ 0x5EED
        y = augmented(y, seed=seed, telephone_chain=False)
        rng = np.random.default_rng([seed, 1])
        if rng.random() < 0.5:
            codecs = sorted(TELEPHONE_CODECS)
            codec = codecs[int(rng.integers(len(codecs)))]
            y = through_telephone_file(y, codec=codec, sample_rate=rate)
        else:
            y = resampled(y, from_hz=ANALYSIS_SAMPLE_RATE, to_hz=rate)
    elif condition == PERTURBED:
        from callsort.training.augment import perturbed

        y = perturbed(y, seed=_name_seed(path) ^ 0x5BEED)
        y = resampled(y, from_hz=ANALYSIS_SAMPLE_RATE, to_hz=rate)
    elif condition.startswith("noise") and condition in TEST_CONDITIONS:
        # the same noise for a clip every time: a stable seed from its file name
        noisy = add_noise(y, snr_db=float(condition[len("noise") :]), seed=_name_seed(path))
        y = resampled(noisy, from_hz=ANALYSIS_SAMPLE_RATE, to_hz=rate)
    else:
        raise ValueError(f"unknown condition {condition!r}")
    return _segment_features(y, settings, feature_settings)


def _segment_features(
    y: np.ndarray, settings: AnalysisSettings, feature_settings: FeatureSettings
) -> ClipFeatures:
    """The segments' features of one clip's waveform at the model's rate."""
    from callsort.run.analysis import waveform_segments

    # A clip in which no speech is found gives no rows, as `callsort label` would:
    # it trains nothing and counts as wrong when tested (see NO_SPEECH).
    segments, X = waveform_segments(y, settings=settings, feature_settings=feature_settings)
    durations = np.array([end - start for start, end in segments], dtype=np.float32)
    return ClipFeatures(X=X.astype(np.float32), durations_s=durations)


def through_telephone_file(
    y: np.ndarray, *, codec: str, sample_rate: int = ANALYSIS_SAMPLE_RATE
) -> np.ndarray:
    """16 kHz ``y`` written as an 8 kHz telephone WAV in ``codec`` and decoded again by
    ``callsort label``'s own path at ``sample_rate`` Hz (what an archive's file gives
    the model)."""
    import tempfile

    from callsort.run.analysis import decode_mono
    from callsort.training.augment import write_telephone_file

    with tempfile.TemporaryDirectory(prefix="callsort-telephone-") as folder:
        path = write_telephone_file(y, Path(folder) / f"{codec}.wav", codec=codec)
        return decode_mono(path, sample_rate=sample_rate)


def _name_seed(path: Path) -> int:
    """A seed that is stable for a clip across runs and machines."""
    return int(hashlib.sha1(Path(path).name.encode()).hexdigest()[:8], 16)


def _cache_key(path: Path, condition: str, settings: AnalysisSettings, fs: FeatureSettings) -> str:
    ident = json.dumps(
        [
            _content_sha256(Path(path)),
            Path(path).name,
            condition,
            settings_repr(settings.segmentation),
            identity(fs),
            FEATURE_CACHE_VERSION,
            # how the encoder ran (float32 since issue 18; int8 entries were computed by
            # CPU-dependent kernels): part of the key of encoder features only
            *([f"encoder {ENCODER_COMPUTE_TYPE}"] if fs.encoder else []),
        ],
        sort_keys=True,
    )
    return hashlib.sha1(ident.encode()).hexdigest()


def _content_sha256(path: Path) -> str:
    """sha256 of the file's bytes, remembered per (path, size, mtime) within a process
    (a clip's key is asked for once per condition and settings)."""
    st = os.stat(path)
    return _sha256_of(str(path.resolve()), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=4096)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(Path(path))


def default_cache_dir() -> Path:
    base = os.environ.get("CALLSORT_CACHE") or os.environ.get("XDG_CACHE_HOME")
    return Path(base) / "callsort" if base else Path.home() / ".cache" / "callsort"
