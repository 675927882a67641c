"""Protocol pieces: pseudo-calls, clips without speech, calibration scores."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from callsort.training import (
    CALL_CLIPS,
    MIX_KINDS,
    NO_SPEECH,
    Clip,
    calibration_scores,
    predicted_labels,
    pseudo_call,
    temperature_scaled,
)

EMOTIONS = ("angry", "calm", "happy", "sad")


@pytest.fixture(scope="module")
def clips() -> list[Clip]:
    """Two speakers with eight clips of each emotion, as in RAVDESS."""
    return [
        Clip(path=Path(f"{s}-{e}-{i}.flac"), label=e, speaker=s)
        for s in ("01", "02")
        for e in EMOTIONS
        for i in range(8)
    ]


@pytest.mark.parametrize("kind, own", [("one", 8), ("mostly", 6), ("minority", 2), ("two", 4)])
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


def test_every_kind_is_covered():
    assert MIX_KINDS == ("one", "mostly", "minority", "two")


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
