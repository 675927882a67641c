"""Protocol pieces: pseudo-calls, clips without speech, calibration, nested tuning."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from callsort.model.booster import temperature_scaled
from callsort.model.classifier import EmotionClassifier
from callsort.training import cache as training_cache
from callsort.training import tuning
from callsort.training.config import ClipFeatures, TrainingConfig
from callsort.training.corpora import Clip
from callsort.training.crossval import (
    CALL_CLIPS,
    INNER_FOLDS,
    MIX_KINDS,
    cross_validate,
    make_classifier,
    pseudo_call,
)
from callsort.training.metrics import NO_SPEECH, calibration_scores, predicted_labels
from callsort.training.tuning import tuned_config

EMOTIONS = ("angry", "calm", "happy", "sad")


# each kind of pseudo-call and how many of its 8 clips have the test clip's emotion, as
# the README describes them: all one emotion, 75 %, the odd one out (and its twin), half
MIXES = [("one", 8), ("mostly", 6), ("minority", 2), ("two", 4)]


@pytest.mark.parametrize("kind, own", MIXES)
def test_pseudo_call_mixes(clips, kind, own):
    rng = np.random.default_rng(0)
    for i in (0, 9, 40):
        call = pseudo_call(i, clips, kind=kind, rng=rng)
        assert len(call) == CALL_CLIPS and call[0] == i
        assert {clips[j].speaker for j in call} == {clips[i].speaker}  # one speaker per call
        labels = Counter(clips[j].label for j in call)
        assert labels[clips[i].label] == own
        if kind in ("minority", "two"):
            assert len(labels) == 2  # the clip's emotion and one other
        if kind == "one":
            assert len(set(call)) == CALL_CLIPS  # all eight, no repeats


def test_every_kind_the_protocol_uses_is_checked_above(clips):
    assert sorted(MIX_KINDS) == sorted(kind for kind, _ in MIXES)
    with pytest.raises(KeyError):
        pseudo_call(0, clips, kind="no such kind", rng=np.random.default_rng(0))


def test_a_clip_without_speech_is_predicted_as_no_speech():
    proba = np.array([[0.1, 0.7, 0.1, 0.1], [np.nan] * 4])
    assert list(predicted_labels(proba, EMOTIONS)) == ["calm", NO_SPEECH]


def test_calibration_scores_of_perfect_and_useless_predictions():
    truth = np.array(EMOTIONS * 25)
    perfect = (truth[:, None] == np.array(EMOTIONS)[None, :]).astype(float)
    assert calibration_scores(perfect, truth, EMOTIONS) == {"brier": 0.0, "ece": 0.0}
    uniform = np.full((100, 4), 0.25)
    got = calibration_scores(uniform, truth, EMOTIONS)
    assert got["brier"] == pytest.approx(0.75)
    assert got["ece"] == pytest.approx(0.0, abs=1e-9)  # says 25 %, is right 25 % of the time


def test_temperature_above_one_softens():
    p = np.array([[0.9, 0.05, 0.03, 0.02]])
    assert temperature_scaled(p, 2.0)[0, 0] < 0.9
    np.testing.assert_allclose(temperature_scaled(p, 1.0), p)


# nested tuning ----------------------------------------------------------------------------

SPEAKERS = tuple(f"{s:02d}" for s in range(1, 7))


def separable_clips(seed: int = 0):
    """6 speakers x 2 classes x 4 clips of 2 segments; column 0 is the speaker's number,
    column 1 carries the class, the rest is noise."""
    rng = np.random.default_rng(seed)
    clips, feats = [], []
    for speaker in SPEAKERS:
        for label in ("low", "high"):
            for take in range(4):
                X = rng.standard_normal((2, 6)).astype(np.float32)
                X[:, 0] = int(speaker)
                X[:, 1] += 3.0 if label == "high" else 0.0
                clips.append(
                    Clip(path=Path(f"{speaker}-{label}-{take}.wav"), label=label, speaker=speaker)
                )
                feats.append(ClipFeatures(X=X, durations_s=np.array([1.0, 1.0], np.float32)))
    # the tuning scores clean and telephone test audio: the same features stand for both
    return clips, {"clean": feats, "telephone": feats}


def test_nested_search_never_sees_the_test_speakers_and_picks_the_better_candidate(monkeypatch):
    useless = {"model_params": {"min_data_in_leaf": 10_000}}  # can never split: chance
    useful = {"n_estimators": 40}
    monkeypatch.setattr(tuning, "TUNING_CANDIDATES", (useless, useful))
    clips, features = separable_clips()
    config = TrainingConfig(
        classes=("low", "high"),
        train_conditions=("clean",),
        channel_normalisation=False,
        n_estimators=20,
        tune=True,
    )
    speakers_seen: list[set[int]] = []

    def make_model(cfg: TrainingConfig) -> EmotionClassifier:
        model = make_classifier(cfg, jobs=1)
        fit = model.fit

        def recording_fit(X, y, **kwargs):
            speakers_seen.append({int(v) for v in np.unique(X[:, 0])})
            return fit(X, y, **kwargs)

        model.fit = recording_fit
        return model

    def choose(train_index):
        return tuned_config(
            clips,
            features,
            train_index,
            config,
            make_model=make_model,
            feature_names=list("abcdef"),
        )

    result = cross_validate(
        clips,
        features,
        classes=config.classes,
        config=config,
        make_model=make_model,
        feature_names=list("abcdef"),
        choose_config=choose,
    )
    fits_per_fold = 2 * INNER_FOLDS + 1  # every candidate in every inner fold, then the fold's fit
    assert len(speakers_seen) == len(SPEAKERS) * fits_per_fold
    for k, speaker in enumerate(SPEAKERS):
        fold_fits = speakers_seen[k * fits_per_fold : (k + 1) * fits_per_fold]
        assert all(int(speaker) not in seen for seen in fold_fits)  # the test speaker
        assert fold_fits[-1] == {int(s) for s in SPEAKERS} - {int(speaker)}
    per_fold = result["tuning"]["per_fold"]
    assert len(per_fold) == len(SPEAKERS)
    for fold in per_fold:
        scores_ = {str(row["candidate"]): row["score"] for row in fold["search"]}
        assert scores_[str(useful)] > scores_[str(useless)]
        assert fold["chosen"]["n_estimators"] == 40 and fold["chosen"]["model_params"] is None
    assert result["clean"]["macro_f1"] > 0.9


def test_telephone_training_copies_are_what_label_reads_from_an_8khz_mulaw_file(
    tmp_path, make_speech
):
    """The telephone condition must give the features `callsort label` computes on an
    archive's 8 kHz mu-law WAV: studio clips start and end in digital silence, which a
    real G.711 file keeps as zeros and the old in-memory chain turned into a -81 dB
    hiss, moving the noise floor and so the segments (the 8 kHz skew of issue 12)."""
    import scipy.signal
    import soundfile as sf

    from callsort.run.analysis import decode_mono, waveform_segments
    from callsort.settings import AnalysisSettings, FeatureSettings

    sr = 16_000
    rng = np.random.default_rng(7)
    speech = make_speech(2.2, rms=0.02, seed=4) + 3e-4 * rng.standard_normal(int(2.2 * sr))
    silence = np.zeros(sr)
    clip = np.concatenate([silence, speech, silence]).astype(np.float32)
    clip_path = tmp_path / "03-01-02-01-01-01-01.flac"
    sf.write(clip_path, clip, sr, subtype="PCM_16")

    # the archive's file, made here with scipy alone: 8 kHz, 300-3400 Hz, G.711 mu-law
    narrow = scipy.signal.resample_poly(clip.astype(np.float64), 1, 2)
    band = scipy.signal.butter(4, (300, 3400), btype="bandpass", fs=8_000, output="sos")
    archive = tmp_path / "call.wav"
    sf.write(archive, scipy.signal.sosfilt(band, narrow), 8_000, subtype="ULAW")

    settings, fs = AnalysisSettings(), FeatureSettings()
    labelled_segments, labelled = waveform_segments(
        decode_mono(archive), settings=settings, feature_settings=fs
    )
    trained = training_cache._compute_clip_features(clip_path, "telephone", settings, fs)
    assert len(labelled_segments) == len(trained.X) >= 1
    durations = np.array([b - a for a, b in labelled_segments])
    np.testing.assert_allclose(trained.durations_s, durations, atol=0.03)
    # the same features, up to the two resamplers' and filters' differences
    spread = np.abs(labelled).mean(axis=0) + 1e-3
    assert np.median(np.abs(trained.X - labelled) / spread) < 0.05


def test_fast_features_are_read_from_an_encoder_models_cache(tmp_path, make_speech):
    """One extraction serves both shipped models: the hand-made features of a cached
    encoder entry are exactly what the fast model would compute."""
    import soundfile as sf

    from callsort.settings import AnalysisSettings, FeatureSettings

    path = tmp_path / "03-01-05-01-01-01-01.wav"
    sf.write(path, make_speech(2.5, rms=0.05, seed=2), 16_000)
    settings, cache = AnalysisSettings(), tmp_path / "cache"
    rich = FeatureSettings(encoder="whisper-base")
    task = (path, "clean", settings, rich, cache)
    with_encoder = training_cache._clip_features_task(task)
    assert len(list(cache.iterdir())) == 1
    fast = training_cache._clip_features_task((path, "clean", settings, FeatureSettings(), cache))
    assert len(list(cache.iterdir())) == 1  # nothing new computed or written
    computed = training_cache._compute_clip_features(path, "clean", settings, FeatureSettings())
    np.testing.assert_array_equal(fast.X, computed.X)
    assert with_encoder.X.shape[1] == computed.X.shape[1] + 1024


def test_a_copied_corpus_keeps_its_cached_features_and_a_changed_clip_does_not(
    tmp_path, make_speech
):
    """The cache follows a clip's bytes and name, not its folder or mtime: a corpus copied
    (or unpacked again) is read from the cache; a clip whose audio changed is computed."""
    import os
    import shutil

    import soundfile as sf

    from callsort.settings import AnalysisSettings, FeatureSettings

    name = "03-01-05-01-01-01-01.wav"
    first, copy = tmp_path / "first", tmp_path / "elsewhere"
    first.mkdir()
    sf.write(first / name, make_speech(2.5, rms=0.05, seed=2), 16_000)
    settings, fs, cache = AnalysisSettings(), FeatureSettings(), tmp_path / "cache"
    original = training_cache._clip_features_task((first / name, "clean", settings, fs, cache))
    shutil.copytree(first, copy)
    os.utime(copy / name, ns=(1_700_000_000_000_000_000,) * 2)
    again = training_cache._clip_features_task((copy / name, "clean", settings, fs, cache))
    assert len(list(cache.iterdir())) == 1  # read from the cache, nothing written
    np.testing.assert_array_equal(again.X, original.X)

    sf.write(copy / name, make_speech(2.5, rms=0.05, seed=3), 16_000)
    changed = training_cache._clip_features_task((copy / name, "clean", settings, fs, cache))
    assert len(list(cache.iterdir())) == 2
    assert not np.array_equal(changed.X, original.X)


def test_calibration_report_of_a_single_fold_has_no_cross_fitted_temperature():
    """Leave-one-corpus-out is one fold: no other fold to fit a temperature on."""
    from callsort.training.metrics import calibration_report

    proba = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1]])
    truth = np.array(["angry", "calm"])
    report = calibration_report([proba], [truth], EMOTIONS)
    assert report["after"] is None and report["fold_temperatures"] == []
    assert report["before"] == calibration_scores(proba, truth, EMOTIONS)


@pytest.mark.parametrize(
    ("short_utterance_s", "silent_clip"),
    [(None, "word"), (0.15, "held vowel")],
    ids=["before short utterances", "before the deciles of short utterances"],
)
def test_features_cached_before_short_utterances_serve_clips_with_segments(
    tmp_path, make_speech, demo_voice, short_utterance_s, silent_clip
):
    """Short utterances only add segments to a channel that had none: a clip cached with
    segments before them (or before their zero-crossing deciles) is read as it is
    (nothing recomputed), a clip cached without any is computed again and gets its
    segment."""
    from dataclasses import replace

    import soundfile as sf
    from conftest import held_vowel

    from callsort.settings import AnalysisSettings, FeatureSettings

    speech = tmp_path / "speech.wav"
    sf.write(speech, make_speech(2.5, rms=0.05, seed=2), 16_000)
    silent = tmp_path / "silent.wav"
    sound = demo_voice["word"] if silent_clip == "word" else held_vowel(fricative_s=0.2)
    sf.write(silent, np.concatenate([demo_voice["line"], sound, demo_voice["line"]]), 16_000)
    now, cache, fs = AnalysisSettings(), tmp_path / "cache", FeatureSettings()
    then = replace(
        now.segmentation,
        short_utterance_s=short_utterance_s,
        short_utterance_zcr_percentiles=(25.0, 75.0),
    )
    before = replace(now, segmentation=then)
    old = {
        p: training_cache._clip_features_task((p, "clean", before, fs, cache))
        for p in (speech, silent)
    }
    assert len(old[speech].X) >= 1 and len(old[silent].X) == 0
    assert len(list(cache.iterdir())) == 2

    reread = training_cache._clip_features_task((speech, "clean", now, fs, cache))
    assert len(list(cache.iterdir())) == 2  # read from the entry made before
    np.testing.assert_array_equal(reread.X, old[speech].X)
    found = training_cache._clip_features_task((silent, "clean", now, fs, cache))
    assert len(list(cache.iterdir())) == 3  # computed and cached under today's settings
    assert len(found.X) >= 1
    if silent_clip == "word":
        assert len(found.X) == 1 and found.durations_s[0] < 0.4


def test_a_subset_of_folds_skips_a_corpus_with_fewer_folds_and_shows_each_fold_model():
    """RAVDESS has 6 folds beside nEMO's 3: asking for fold 4 runs the first corpus's
    fourth fold alone (it once failed on the second corpus's missing fourth), and the fold
    model reaches on_model with that fold's test clips."""
    from callsort.settings import AnalysisSettings, FeatureSettings
    from callsort.training.protocol import ProtocolRun, corpus_folds, corpus_protocols

    rng = np.random.default_rng(0)
    clips = [
        Clip(path=Path(f"{corpus}/{s}-{e}-{i}.wav"), label=e, speaker=f"{corpus}{s:02d}",
             corpus=corpus)
        for corpus, n_speakers in (("big", 18), ("small", 9))
        for s in range(n_speakers)
        for e in EMOTIONS
        for i in range(2)
    ]  # fmt: skip
    features = {
        cond: [
            ClipFeatures(
                X=rng.normal(EMOTIONS.index(c.label), 1.0, (2, 4)).astype(np.float32),
                durations_s=np.full(2, 1.0, np.float32),
            )
            for c in clips
        ]
        for cond in ("clean", "telephone", "augmented")
    }
    run = ProtocolRun(clips, features, AnalysisSettings(), FeatureSettings(), list("abcd"))
    config = TrainingConfig(n_estimators=5)
    assert [len(corpus_folds(clips, c, n_folds=6)) for c in ("big", "small")] == [6, 3]
    seen = []
    metrics = corpus_protocols(
        run, config, jobs=1, kinds=("folds",), fold_subset=[3],
        on_model=lambda protocol, k, fold: seen.append((protocol, k, fold.test)),
    )  # fmt: skip
    assert metrics["headline"] == "big: 6 folds by speaker, folds 4"
    assert metrics["other_protocols"] == {} and metrics["n_folds"] == 1
    ((protocol, k, test),) = seen
    assert protocol == metrics["headline"] and k == 0
    tested = {clips[i].speaker for i in test}
    assert tested == set(corpus_folds(clips, "big", n_folds=6)[3])


@pytest.mark.parametrize("fast", [False, True], ids=["default", "fast"])
def test_training_computes_features_on_one_blas_thread_as_labelling_does(
    tmp_path, make_speech, fast
):
    """OpenBLAS's results depend on its thread count, by float32 rounding, and labelling
    computes on one thread: training's features, in this process (``jobs=1``) and in its
    spawned workers (``jobs=2``), equal to the bit those of a process limited to one BLAS
    thread, whatever this process's own thread count (given back after). Before, they
    followed the host's ``OPENBLAS_NUM_THREADS``, which a Dask cluster sets to 1."""
    import soundfile as sf
    from threadpoolctl import threadpool_info, threadpool_limits

    from callsort.cli.training import feature_settings
    from callsort.run.analysis import decode_mono, waveform_segments
    from callsort.settings import AnalysisSettings

    settings, fs = AnalysisSettings(), replace(feature_settings(fast=fast), encoder=None)
    clips = []
    for i in range(4):
        path = tmp_path / f"03-01-05-01-01-0{i + 1}-01.wav"
        sf.write(path, make_speech(3.0, rms=0.05, seed=20 + i), 16_000)
        clips.append(Clip(path=path, label="angry", speaker="01"))
    with threadpool_limits(limits=1):
        expected = [
            waveform_segments(
                decode_mono(c.path, sample_rate=fs.sample_rate),
                settings=settings,
                feature_settings=fs,
            )[1]
            for c in clips
        ]
    threads_before = [p["num_threads"] for p in threadpool_info()]
    for jobs in (1, 2):
        computed = training_cache.clip_features(
            clips,
            condition="clean",
            settings=settings,
            feature_settings=fs,
            cache_dir=None,
            jobs=jobs,
        )
        for got, want in zip(computed, expected, strict=True):
            assert len(want) >= 1
            np.testing.assert_array_equal(got.X, want, err_msg=f"jobs={jobs}")
    assert [p["num_threads"] for p in threadpool_info()] == threads_before
