"""Mono calls (issue 19): the two speakers of a mono file become two channels.

Real audio only: the demo calls of sample_recordings/ (``call_06_mono.wav`` is the mono
sum of ``call_01_escalation.wav``, whose turns ground_truth.csv gives) and the
one-speaker voicemail, labelled by the real command with the fast model.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from typer.testing import CliRunner

from callsort.audio.decode import probe
from callsort.audio.diarise import diarisation_error, speaker_turns
from callsort.audio.segment import frame_measures, speech_segments
from callsort.cli import app
from callsort.run.analysis import decode_mono, mono_speakers
from callsort.run.options import analysis_settings
from callsort.schema import segment_columns

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_recordings"
MONO_CALL = "call_06_mono.wav"
STEREO_CALL = "call_01_escalation.wav"
VOICEMAIL = "voicemail_05_mono.flac"


def turns(recording: str, channels: tuple[str, ...]) -> list[list[tuple[float, float]]]:
    with (SAMPLES / "ground_truth.csv").open(encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["recording"] == recording]
    return [
        [(float(r["start_s"]), float(r["end_s"])) for r in rows if r["channel"] == c]
        for c in channels
    ]


def speakers(path: Path, **options):
    settings = analysis_settings(**options)
    y = decode_mono(path)
    energy, zcr = frame_measures(y, frame_length=160)
    segments = speech_segments(energy, zcr, settings=settings.segmentation)
    return mono_speakers(path, probe(path), settings, segments, kept=y[np.newaxis, :])


def segment_windows(y: np.ndarray, diarisation) -> tuple[list, list]:
    """The speech segments of the 16 kHz ``y`` and their speaker windows."""
    from callsort.audio.diarise import speaker_windows

    settings = analysis_settings()
    frame = round(settings.segmentation.frame_s * 16_000)
    segments = speech_segments(
        *frame_measures(y, frame_length=frame), settings=settings.segmentation
    )
    audio = (y[round(a * 16_000) : round(b * 16_000)] for a, b in segments)
    return segments, speaker_windows(audio, settings=diarisation)


def label(tmp_path: Path, files: list[str], *options: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    for name in files:
        shutil.copy2(SAMPLES / name, folder / name)
    out = tmp_path / "out"
    shutil.rmtree(out, ignore_errors=True)
    args = ["label", str(folder), "--out", str(out), "--model", "fast", "-j", "1", "-q"]
    result = CliRunner().invoke(app, [*args, "--segments-csv", *options])
    assert result.exit_code == 0, result.output
    return pd.read_csv(out / "segments.csv"), pd.read_csv(out / "calls.csv")


def test_diarisation_error_on_a_hand_worked_example():
    reference = [[(0.0, 4.0)], [(5.0, 9.0)]]
    # scored: 0.25-3.75 and 5.25-8.75 of speech (7 s); 4.25-4.75 has none
    assert diarisation_error(reference, reference) == 0.0
    # the first speaker runs on to 5 s: 0.5 s of false alarm in the scored 4.25-4.75
    assert diarisation_error(reference, [[(0.0, 5.0)], [(5.0, 9.0)]]) == pytest.approx(
        0.5 / 7, abs=0.003
    )
    # speakers swapped: the best mapping makes it no error
    assert diarisation_error(reference, [[(5.0, 9.0)], [(0.0, 4.0)]]) == 0.0
    # one speaker for everything: the second speaker's 3.5 s confused, 0.5 s false alarm
    assert diarisation_error(reference, [[(0.0, 9.0)]]) == pytest.approx(4 / 7, abs=0.003)
    # nothing found: all missed
    assert diarisation_error(reference, []) == pytest.approx(1.0)


def test_the_mono_demo_call_has_its_two_speakers_the_agent_first():
    found = speakers(SAMPLES / MONO_CALL)  # --speakers auto: the test finds two
    assert found.n_speakers == 2
    assert found.separation >= analysis_settings().diarisation.min_separation
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"finds its two speakers (silhouette {found.separation:.2f})" in readme
    reference = turns(STEREO_CALL, ("left", "right"))  # the agent (left) speaks first
    # scored as benchmarks/diarisation.py does: a speaker's segments less than 1 s apart
    # are one turn, as the ground truth's turns hold their speaker's pauses (the agent's
    # sentences here pause for up to 0.8 s)
    hypothesis = speaker_turns(found.segments, max_gap_s=1.0)
    assert diarisation_error(reference, hypothesis) <= 0.10
    # speaker_a (heard first) is the ground truth's agent: each matches its own side
    for mine, theirs in zip(hypothesis, reference, strict=True):
        assert diarisation_error([theirs], [mine]) <= 0.15


def test_the_one_speaker_voicemail_stays_whole(tmp_path):
    found = speakers(SAMPLES / VOICEMAIL)
    assert found.n_speakers == 1
    assert speakers(SAMPLES / VOICEMAIL, speakers=2).n_speakers == 2  # unless imposed
    segments, calls = label(tmp_path, [VOICEMAIL])
    assert list(calls.channel) == ["mono"]
    assert segments.speaker_confidence.isna().all()


def test_label_names_the_speakers_of_a_mono_call_and_leaves_stereo_alone(tmp_path):
    files = [MONO_CALL, STEREO_CALL]
    segments, calls = label(tmp_path, files, "--channel-names", "agent,customer", "--speakers", "2")
    channels = calls.groupby("recording")["channel"].apply(sorted).to_dict()
    assert channels == {MONO_CALL: ["agent", "customer"], STEREO_CALL: ["agent", "customer"]}
    mono = segments[segments.recording == MONO_CALL]
    stereo = segments[segments.recording == STEREO_CALL]
    # only a speaker of a mono file has a speaker confidence, between a coin toss and sure
    assert stereo.speaker_confidence.isna().all()
    assert mono.speaker_confidence.between(0.5, 1.0).all()
    # the agent opens the call; the customer is the side that turns angry in both runs
    assert (
        mono[mono.channel == "agent"].start_s.min() < mono[mono.channel == "customer"].start_s.min()
    )
    escalated = calls.set_index(["recording", "channel"]).escalated
    assert escalated[(STEREO_CALL, "customer")] == escalated[(MONO_CALL, "customer")]
    assert not escalated[(MONO_CALL, "agent")]


def test_stereo_segments_are_what_they_were_without_diarisation(tmp_path):
    with_it, _ = label(tmp_path, [STEREO_CALL])
    without, _ = label(tmp_path, [STEREO_CALL], "--speakers", "1")
    columns = ["channel", "start_s", "end_s", "label"]
    pd.testing.assert_frame_equal(with_it[columns], without[columns])
    assert set(with_it.channel) == {"left", "right"}


def test_speakers_1_keeps_a_mono_call_whole_and_agent_orders_the_names(tmp_path):
    _, whole = label(tmp_path, [MONO_CALL], "--speakers", "1")
    assert list(whole.channel) == ["mono"]

    segments, calls = label(tmp_path, [MONO_CALL], "--speakers", "2", "--agent", "most")
    seconds = segments.groupby("channel").duration_s.sum()
    assert list(calls.channel) == ["speaker_a", "speaker_b"]
    assert seconds["speaker_a"] > seconds["speaker_b"]  # most speech takes the first name

    segments, calls = label(
        tmp_path,
        [MONO_CALL],
        *("--channel-names", "agent,customer", "--agent", "none", "--speakers", "2"),
    )
    assert sorted(calls.channel) == ["speaker_a", "speaker_b"]  # no speaker called agent
    first = segments.sort_values("start_s").channel.iloc[0]
    assert first == "speaker_a"


def test_bad_speaker_options_are_usage_errors(tmp_path):
    for option in (["--speakers", "3"], ["--agent", "loudest"]):
        result = CliRunner().invoke(app, ["label", str(SAMPLES / VOICEMAIL), *option])
        assert result.exit_code == 2
        assert option[0] in result.output


def test_the_segments_table_has_a_speaker_confidence_column():
    names = [c.name for c in segment_columns()]
    assert names.index("speaker_confidence") == names.index("channel") + 1


def test_a_long_mono_recording_is_diarised_in_two_passes_like_a_short_one(tmp_path):
    """Beyond ``in_memory_s`` the segments are cut from a second pass over the file:
    the same speakers as from the decoded recording."""
    y, sr = sf.read(SAMPLES / MONO_CALL, dtype="float32")
    path = tmp_path / "long.wav"
    sf.write(path, y, sr, subtype="PCM_16")
    settings = analysis_settings(speakers=2)
    decoded = decode_mono(path)
    energy, zcr = frame_measures(decoded, frame_length=160)
    segments = speech_segments(energy, zcr, settings=settings.segmentation)
    kept = mono_speakers(path, probe(path), settings, segments, kept=decoded[np.newaxis, :])
    streamed = mono_speakers(path, probe(path), settings, segments)
    assert streamed.segments == kept.segments


def test_a_long_mono_recording_gets_the_same_speaker_channels_and_features(tmp_path):
    """The two-pass path (longer than ``in_memory_s``) cuts each speaker's segments from
    the file's one channel, as the in-memory path does."""
    from dataclasses import replace

    from callsort.run.analysis import recording_features
    from callsort.settings import FeatureSettings

    settings = analysis_settings(speakers=2, channel_names=("agent", "customer"))
    features = FeatureSettings(prosody=False)
    short = recording_features(SAMPLES / MONO_CALL, feature_settings=features, settings=settings)
    long = recording_features(
        SAMPLES / MONO_CALL,
        feature_settings=features,
        settings=replace(settings, in_memory_s=1.0, block_s=7.0),
    )
    assert short.names == long.names == ["agent", "customer"]
    assert short.segments == long.segments
    for a, b in zip(short.features, long.features, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    for c in range(2):
        np.testing.assert_array_equal(short.confidence(c), long.confidence(c))


def test_clustering_is_scikit_learns_without_importing_it():
    """Ward's two clusters (labels numbered alike: the window labels' median filter pads
    with zeros, so the numbering matters) and the silhouette, as scikit-learn computes them,
    on the mono demo call's speaker embeddings and on random points."""
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.metrics import silhouette_score

    from callsort.audio.diarise import centred, silhouette, ward_halves

    y = decode_mono(SAMPLES / "call_06_mono.wav")
    _, windows = segment_windows(y, analysis_settings().diarisation)
    real = centred(np.concatenate([w.features for w in windows]))
    rng = np.random.default_rng(3)
    points = [real, real[:7]] + [
        rng.standard_normal((n, 8)) + rng.integers(0, 2, (n, 1)) * 2.0 for n in (4, 30, 120)
    ]
    for X in points:
        expected = AgglomerativeClustering(n_clusters=2, linkage="ward").fit_predict(X)
        np.testing.assert_array_equal(ward_halves(X), expected)
        assert silhouette(X, expected) == pytest.approx(silhouette_score(X, expected), abs=1e-12)


def _separation(y: np.ndarray, *, whiten: bool) -> float:
    """The separation of the two clusters (two speakers imposed) of the 16 kHz ``y``."""
    from dataclasses import replace

    from callsort.audio.diarise import diarise

    d = replace(analysis_settings().diarisation, speakers=2, whiten=whiten)
    segments, windows = segment_windows(y, d)
    return diarise(segments, windows, settings=d).separation


@pytest.mark.parametrize(
    "call", ["call_01_escalation", "call_02_sad", "call_03_happy", "call_04_calm"]
)
def test_whitening_sets_two_voices_further_apart_than_one_voice_moving(call):
    """Each demo call's two channels hold one voice each, whose turns change emotion; their
    mono sum holds both. In the whitened space (``DiarisationSettings.whiten``) the sum's
    clusters stand further above the more separated of the one-voice channels' than
    without it: the one-or-two test gets a wider margin on audio no part of it saw."""
    import soxr

    audio, rate = sf.read(SAMPLES / f"{call}.wav", dtype="float32")
    y = soxr.resample(audio, rate, 16_000).astype(np.float32)
    margin = {}
    for whiten in (False, True):
        one_voice = max(_separation(y[:, c], whiten=whiten) for c in (0, 1))
        margin[whiten] = _separation(y.mean(axis=1), whiten=whiten) - one_voice
    assert margin[True] > margin[False] + 0.005, margin


DATASETS = REPO.parent / "shared" / "datasets"


@pytest.mark.skipif(
    not (
        (DATASETS / "ravdess-speech-16k").is_dir()
        and (DATASETS / "nemo-speech-16k").is_dir()
        and os.environ.get("CALLSORT_CORPUS_TESTS") == "1"
    ),
    reason=f"needs both corpora under {DATASETS} and CALLSORT_CORPUS_TESTS=1 (set by .ci/run)",
)
def test_the_shipped_whitening_is_what_its_script_builds_from_the_corpora(tmp_path):
    """callsort/models/speakers/whitening.npz is a build product: its script, run on the
    corpora, gives it again (to float rounding across CPUs)."""
    import subprocess
    import sys

    from callsort.audio.voices import WHITENING

    built = tmp_path / "whitening.npz"
    script = REPO / "scripts" / "make_speaker_whitening.py"
    env = {**os.environ, "CALLSORT_DATASETS": str(DATASETS)}
    subprocess.run([sys.executable, str(script), "--out", str(built)], check=True, env=env)
    with np.load(built) as new, np.load(WHITENING) as shipped:
        assert list(new["speakers"]) == list(shipped["speakers"])
        assert int(new["n_embeddings"]) == int(shipped["n_embeddings"])
        scale = float(np.abs(shipped["whitening"]).max())
        np.testing.assert_allclose(
            new["whitening"], shipped["whitening"], rtol=1e-4, atol=1e-4 * scale
        )
