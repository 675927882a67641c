"""What a training run is made of: audio conditions, a clip's features, the config.

Shared by the other modules of :mod:`callsort.training` (cache, cross-validation,
tuning, protocol, train), which import it and never each other in a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from callsort.settings import DEFAULT_CLASSES
from callsort.training.standardise import ArchiveSample

CONDITIONS = ("clean", "telephone")
"""Audio conditions: the corpus file as it is, and the clip written as an 8 kHz G.711
mu-law WAV (300-3400 Hz) and read back through ``callsort label``'s decode path."""
CODEC_CONDITIONS = ("alaw", "gsm", "g721")
"""Other telephone files, read the same way: A-law, GSM 06.10 and G.721 ADPCM WAV."""
TEST_CONDITIONS = (*CONDITIONS, *CODEC_CONDITIONS, "noise20", "noise10")
"""Conditions a model can be tested under: also white noise at 20 and 10 dB SNR."""
AUGMENTED = "augmented"
"""A training-only condition: random background noise, half of it written as a telephone
file in one of the four codecs."""
PERTURBED = "perturbed"
"""A training-only condition: another gain, speed and pitch (augment.perturbed); measured
and left out of the default (benchmarks/ACCURACY.md)."""


@dataclass(frozen=True)
class ClipFeatures:
    """Segment features of one clip under one audio condition."""

    X: np.ndarray  # (segments, features)
    durations_s: np.ndarray  # (segments,)


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that decides what ``callsort train`` produces from a folder."""

    classes: tuple[str, ...] = DEFAULT_CLASSES
    # clean clips, their telephone copies and a noisy copy of each (augment.augmented);
    # PERTURBED copies (augment.perturbed) were measured and left out (ACCURACY.md)
    train_conditions: tuple[str, ...] = (*CONDITIONS, AUGMENTED)
    calm_from_neutral: bool = False
    n_estimators: int = 300
    n_folds: int = 6
    holdout_speakers: tuple[str, ...] = ()
    seed: int = 0
    # features also z-scored within each channel (see callsort.features.normalise)
    channel_normalisation: bool = True
    prior_weight: float = 5.0  # segments the population prior counts as
    contexts_per_clip: int = 1  # pseudo-calls each training clip is normalised in
    # weigh training segments so that every corpus counts alike (nEMO has 4x RAVDESS's
    # clips and, unweighted, pulls RAVDESS's folds down: ACCURACY.md)
    balance_corpora: bool = True
    # a corpus without calm clips (nEMO) trains calm on its neutral ones
    neutral_for_missing_calm: bool = True
    # "pseudo-call", or WHOLE_SPEAKER: each training clip normalised over all of its
    # speaker's clips (the optimistic protocol of the accuracy issue's anchors)
    train_context: str = "pseudo-call"
    calibrate: bool = True  # temperature-scale the probabilities
    model_params: dict | None = None  # LightGBM parameters over model.DEFAULT_PARAMS
    max_features: int | None = None  # feature selection inside each fit (EmotionClassifier)
    # each corpus standardised per condition over its own clips, test archives over a
    # sample of their own clips (callsort.training.standardise; ACCURACY.md issue 12 item 4)
    archive_standardisation: bool = False
    archive_sample: ArchiveSample = ArchiveSample()
    # choose n_estimators / model_params / max_features by a search inside the
    # training speakers (tuned_config); the evaluation nests it in every fold
    tune: bool = False


def tuned_fields(config: TrainingConfig) -> dict:
    """The fields of ``config`` the nested search chooses (:mod:`callsort.training.tuning`)."""
    return {
        "n_estimators": config.n_estimators,
        "model_params": config.model_params,
        "max_features": config.max_features,
    }
