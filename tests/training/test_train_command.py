"""``callsort train`` checks its corpora whole before computing anything: every refusal
here is exit 2 with a message naming the file and its lines, returned before a single
feature reaches the cache (each corpus has 200 clips; extracting them would take
minutes). ``--dry-run`` shows the plan and stops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from callsort.cli import app

SR = 16_000
CLASSES = ("angry", "calm", "happy", "sad")


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def write_corpus(
    folder: Path,
    *,
    speakers: int = 10,
    per_class: int = 5,
    classes=CLASSES,
    header: str = "path,label,speaker",
    extra_lines: tuple[str, ...] = (),
    label_of=lambda label: label,
) -> Path:
    """``speakers x classes x per_class`` short noise clips (200 by default) and their
    labels.csv (``label_of`` rewrites each label as written); ``extra_lines`` are
    appended to it as they are."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = [header]
    for s in range(speakers):
        for label in classes:
            for take in range(per_class):
                rel = f"audio/s{s:02d}_{label}_{take}.wav"
                (folder / rel).parent.mkdir(exist_ok=True)
                sf.write(folder / rel, 0.01 * rng.standard_normal(SR // 10), SR, "PCM_16")
                row = [rel, label_of(label), f"s{s:02d}"]
                lines.append(",".join(row[: header.count(",") + 1]))
    (folder / "labels.csv").write_text("\n".join([*lines, *extra_lines]) + "\n")
    return folder


def train(corpus: Path, tmp_path: Path, *args: object):
    """``callsort train`` with a cache of its own (the test checks it stays empty)."""
    return invoke(
        "train",
        corpus,
        "--out",
        tmp_path / "model",
        "--cache",
        tmp_path / "cache",
        "--jobs",
        1,
        *args,
    )


def assert_refused(result, tmp_path: Path, *expected: str) -> None:
    assert result.exit_code == 2, result.output
    for text in expected:
        assert text in result.output, (text, result.output)
    assert "Traceback" not in result.output
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(cache.iterdir())  # nothing was extracted
    assert not (tmp_path / "model").exists()


def test_a_short_row_is_refused_naming_its_line(tmp_path):
    corpus = write_corpus(tmp_path / "c", extra_lines=("audio/s00_angry_0.wav,angry",))
    result = train(corpus, tmp_path)
    assert_refused(result, tmp_path, "labels.csv", "line 202: 2 fields, the header has 3")


def test_empty_fields_are_refused_naming_their_lines(tmp_path):
    extra = ("audio/s00_angry_0.wav,,s00", ",calm,s01", "audio/s01_calm_0.wav,calm,")
    result = train(write_corpus(tmp_path / "c", extra_lines=extra), tmp_path)
    assert_refused(
        result,
        tmp_path,
        "3 of its 203 rows cannot be used",
        "line 202: no label",
        "line 203: no path",
        "line 204: no speaker",
    )


def test_missing_files_are_refused_all_counted_before_extraction(tmp_path):
    corpus = write_corpus(tmp_path / "c")
    for name in ("s03_sad_1", "s07_calm_4", "s09_happy_0"):
        (corpus / "audio" / f"{name}.wav").unlink()
    result = train(corpus, tmp_path)
    assert_refused(
        result,
        tmp_path,
        "3 of the 200 files it lists for the classes are missing",
        "s03_sad_1.wav",
        "s09_happy_0.wav",
    )


def test_a_path_listed_twice_with_another_label_is_refused(tmp_path):
    corpus = write_corpus(tmp_path / "c", extra_lines=("audio/s00_angry_0.wav,sad,s00",))
    result = train(corpus, tmp_path)
    assert_refused(
        result,
        tmp_path,
        "line 202: audio/s00_angry_0.wav is listed on line 2 too, as angry by s00, "
        "here as sad by s00",
    )


def test_an_identical_repeated_row_is_used_once_and_said(tmp_path):
    corpus = write_corpus(tmp_path / "c", extra_lines=("audio/s00_angry_0.wav,angry,s00",))
    result = train(corpus, tmp_path, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "200 clips (angry 50, calm 50, happy 50, sad 50)" in result.output
    assert "1 row repeats an earlier one (line 202): each clip is used once" in result.output


def test_labels_match_the_classes_ignoring_case(tmp_path):
    corpus = write_corpus(tmp_path / "c", label_of=lambda label: f" {label.title()}")
    result = train(corpus, tmp_path, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "200 clips (angry 50, calm 50, happy 50, sad 50)" in result.output
    assert "ignoring case: Angry -> angry (50)" in result.output


def test_labels_that_are_not_classes_are_counted_and_an_empty_class_is_warned(tmp_path):
    names = {"angry": "anger", "sad": "sadness"}
    corpus = write_corpus(tmp_path / "c", label_of=lambda label: names.get(label, label))
    result = train(corpus, tmp_path, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "100 clips (angry 0, calm 50, happy 50, sad 0)" in result.output
    assert "not used: anger 50, sadness 50" in result.output
    assert (
        "warning: class angry has no clip in any corpus: the model will never predict it "
        "(left out as not a class: anger)"
    ) in result.output
    assert "warning: class sad has no clip" in result.output


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "default"])
def test_a_corpus_of_one_class_is_refused_before_extraction(tmp_path, fast):
    corpus = write_corpus(tmp_path / "c", classes=("angry",), per_class=20)
    result = train(corpus, tmp_path, *(["--fast"] if fast else []))
    assert_refused(
        result,
        tmp_path,
        "only 1 of the classes has clips (angry 200, calm 0, happy 0, sad 0)",
        "at least two",
    )


def test_labels_csv_without_a_speaker_column_is_refused(tmp_path):
    corpus = write_corpus(tmp_path / "c", header="path,label")
    assert_refused(train(corpus, tmp_path), tmp_path, "has no speaker column", "path,label,speaker")


def test_too_few_speakers_for_the_folds_are_refused_up_front(tmp_path):
    corpus = write_corpus(tmp_path / "c", speakers=3, per_class=17)
    assert_refused(
        train(corpus, tmp_path),
        tmp_path,
        "c has 3 speakers (s00, s01, s02); the evaluation's folds by speaker need at least 6",
        "--no-evaluate",
    )
    # without the protocols three speakers are enough
    result = train(corpus, tmp_path, "--no-evaluate", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "fits: final model on 204 clips (1 fit)" in result.output


def test_a_second_corpus_of_one_speaker_cannot_make_its_folds(tmp_path):
    first = write_corpus(tmp_path / "first", per_class=4)
    second = write_corpus(tmp_path / "second", speakers=1, per_class=10)
    (second / "labels.csv").write_text(
        (second / "labels.csv").read_text().replace(",s00", ",other")
    )
    result = invoke(
        "train", first, second, "--out", tmp_path / "model", "--cache", tmp_path / "cache"
    )
    assert_refused(result, tmp_path, "second has 1 speaker (other)", "need at least 2")


def test_an_unknown_held_out_speaker_is_refused(tmp_path):
    corpus = write_corpus(tmp_path / "c")
    assert_refused(
        train(corpus, tmp_path, "--holdout-speakers", "s01,s99"),
        tmp_path,
        "held-out speakers s99 are in none of the corpora",
    )


def test_the_plan_names_corpora_conditions_protocols_fits_and_an_estimate(tmp_path):
    corpus = write_corpus(tmp_path / "c", speakers=12)
    result = train(corpus, tmp_path, "--dry-run", "--holdout-speakers", "s10,s11")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "plan: 240 clips from 1 corpus, classes angry, calm, happy, sad" in out
    assert "c: 240 clips (angry 60, calm 60, happy 60, sad 60), 12 speakers" in out
    assert "audio conditions: clean, telephone, augmented (training), alaw, gsm, g721" in out
    assert "1,440 clip features, 0 cached, 1,440 to compute" in out
    assert "fits: c: 6 folds by speaker (6 fits); final model on 200 clips (1 fit)" in out
    assert "estimate: about" in out
    assert not (tmp_path / "cache").exists()


def test_a_corpus_without_speech_is_refused_after_extraction_without_a_crash(tmp_path):
    """Whether a clip holds speech is known only once its features are computed."""
    corpus = write_corpus(tmp_path / "c", speakers=2, per_class=2)
    result = train(corpus, tmp_path, "--fast", "--no-evaluate", "--no-telephone")
    assert result.exit_code == 2, result.output
    assert "speech was found in none of the 16 clips (clean audio)" in result.output
    assert not (tmp_path / "model").exists()
