"""Labels files: reading and checking them, and matching them to hand-made segments."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest

from callsort.dataset.labels import LabelRow, LabelsError, match_segments, read_labels
from callsort.errors import UsageError

CLASSES = ("angry", "calm", "happy", "sad")


def write(tmp_path, text: str, name: str = "labels.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def segments(*rows: tuple[str, str, float, float]) -> pd.DataFrame:
    """A segments frame: (recording, channel, start_s, end_s), indexed per channel in order."""
    frame = pd.DataFrame(rows, columns=["recording", "channel", "start_s", "end_s"])
    frame["segment_index"] = frame.groupby(["recording", "channel"]).cumcount()
    return frame


def labelled(match) -> list[tuple[str, str, int, str, int]]:
    frame = match.labelled
    return list(
        zip(
            frame.recording,
            frame.channel,
            frame.segment_index,
            frame.label,
            frame.line,
            strict=True,
        )
    )


# --- reading ------------------------------------------------------------------------------


def test_span_form_is_read_with_lines_case_and_paths(tmp_path):
    path = write(
        tmp_path,
        "Recording , Channel,start_s,end_s,Emotion,note\n"
        "a.wav,left,0.5,2,calm,first\n"
        "\n"
        "./q\\b.wav,right,1,3.25, Angry ,\n",
    )
    labels = read_labels(path, classes=CLASSES)
    assert labels.rows == (
        LabelRow(2, "a.wav", "left", 0.5, 2.0, "calm"),
        LabelRow(4, "q/b.wav", "right", 1.0, 3.25, "angry"),  # line 3 is blank
    )
    assert labels.outside == () and labels.unknown_labels == {}
    assert labels.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert labels.n_rows == 2 and labels.classes == CLASSES


def test_whole_channel_form_semicolons_and_a_byte_order_mark(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_bytes(
        "recording;channel;label\r\na.wav;left;sad\r\na.wav;right;calm\r\n".encode("utf-8-sig")
    )
    rows = read_labels(path, classes=CLASSES).rows
    assert rows == (
        LabelRow(2, "a.wav", "left", None, None, "sad"),
        LabelRow(3, "a.wav", "right", None, None, "calm"),
    )
    assert all(r.whole_channel for r in rows)


def test_span_form_with_empty_times_is_a_whole_channel(tmp_path):
    path = write(tmp_path, "recording,channel,start_s,end_s,label\na.wav,left,,,sad\n")
    assert read_labels(path, classes=CLASSES).rows[0].whole_channel


def test_labels_outside_the_classes_are_counted_not_refused(tmp_path):
    path = write(
        tmp_path,
        "recording,channel,label\na.wav,left,Neutral\nb.wav,left,neutral\nc.wav,left,bored\n"
        "d.wav,left,CALM\n",
    )
    labels = read_labels(path, classes=CLASSES)
    assert [r.label for r in labels.rows] == ["calm"]
    assert labels.unknown_labels == {"neutral": 2, "bored": 1}
    assert [r.line for r in labels.outside] == [2, 3, 4]


def test_same_label_spans_may_overlap_and_touching_spans_do_not_overlap(tmp_path):
    path = write(
        tmp_path,
        "recording,channel,start_s,end_s,label\n"
        "a.wav,left,0,10,calm\na.wav,left,2,3,Calm\na.wav,left,10,12,angry\n",
    )
    assert len(read_labels(path, classes=CLASSES).rows) == 3


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("", 0, "empty"),
        ("recording,channel,label\n", 0, "no labels"),
        ("recording,chan,label\na.wav,left,calm\n", 1, "no 'channel' column"),
        ("recording,channel,start_s,label\n", 1, "'start_s' without 'end_s'"),
        ("recording,channel,label,emotion\n", 1, "both 'label' and 'emotion'"),
        ("recording,channel,mood\n", 1, "no 'label' (or 'emotion') column"),
        ("recording,channel,label\na.wav,,calm\n", 2, "empty channel"),
        ("recording,channel,start_s,end_s,label\na.wav,left,1,,calm\n", 2, "give both"),
        ("recording,channel,start_s,end_s,label\na.wav,left,nan,2,calm\n", 2, "not a time"),
        ("recording,channel,start_s,end_s,label\na.wav,left,-1,2,calm\n", 2, "not a time"),
        ("recording,channel,start_s,end_s,label\na.wav,left,1s,2,calm\n", 2, "not a number"),
        ("recording,channel,start_s,end_s,label\na.wav,left,2,2,calm\n", 2, "not after"),
        ("recording,channel,label\na.wav,left,calm,extra\n", 2, "4 fields"),
        (
            "recording,channel,label\na.wav,left,calm\na.wav,left,calm\n",
            3,
            "duplicate whole-channel",
        ),
        (
            "recording,channel,start_s,end_s,label\na.wav,left,,,calm\na.wav,left,1,2,calm\n",
            2,
            "also has spans (line 3)",
        ),
    ],
)
def test_a_bad_file_names_the_line(tmp_path, text, line, message):
    path = write(tmp_path, text)
    with pytest.raises(LabelsError) as caught:
        read_labels(path, classes=CLASSES)
    assert caught.value.exit_code == 2
    assert caught.value.problems[0][0] == line
    assert message in caught.value.problems[0][1]
    assert str(path) in str(caught.value)
    assert (f"line {line}: " in str(caught.value)) == (line > 0)


def test_every_problem_is_listed_in_line_order(tmp_path):
    path = write(
        tmp_path,
        "recording,channel,start_s,end_s,label\n"
        "a.wav,left,3,1,calm\n"  # 2: end before start
        "a.wav,left,10,20,calm\n"
        "a.wav,left,15,25,angry\n"  # 4: overlaps line 3 with another label
        "a.wav,left,10,20,calm\n"  # 5: duplicate of line 3
        "a.wav,left,x,2\n",  # 6: short
    )
    with pytest.raises(LabelsError) as caught:
        read_labels(path, classes=CLASSES)
    problems = caught.value.problems
    assert [line for line, _ in problems] == [2, 4, 5, 6]
    assert "overlaps span 10-20 s 'calm' (line 3)" in problems[1][1]
    assert "duplicate span 10-20 s" in problems[2][1] and "(line 3)" in problems[2][1]
    assert str(caught.value).count("\n  line ") == 4


def test_an_unreadable_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="cannot read"):
        read_labels(tmp_path / "missing.csv", classes=CLASSES)
    path = tmp_path / "latin1.csv"
    path.write_bytes("recording,channel,label\ncaf\xe9.wav,left,calm\n".encode("latin-1"))
    with pytest.raises(LabelsError, match="not UTF-8"):
        read_labels(path, classes=CLASSES)


# --- matching -----------------------------------------------------------------------------


def test_each_segment_takes_the_span_it_overlaps_most(tmp_path):
    labels = read_labels(
        write(
            tmp_path,
            "recording,channel,start_s,end_s,label\n"
            "a.wav,left,0,2,calm\n"  # 2
            "a.wav,left,2,5,angry\n"  # 3
            "a.wav,left,8,9,sad\n"  # 4: overlaps no segment
            "a.wav,left,20,22,happy\n"  # 5: past the end
            "a.wav,right,0,100,sad\n",  # 6
        ),
        classes=CLASSES,
    )
    segs = segments(
        ("a.wav", "left", 1.0, 4.0),  # calm 1 s, angry 2 s -> angry
        ("a.wav", "left", 1.5, 2.5),  # calm 0.5 s, angry 0.5 s: a tie -> the earlier span
        ("a.wav", "left", 5.0, 8.0),  # touches angry and sad, overlaps neither -> unlabelled
        ("a.wav", "left", 0.1, 0.2),  # inside calm
        ("a.wav", "right", 3.0, 4.0),
        ("b.wav", "left", 0.0, 1.0),  # no labels for b.wav
    )
    match = match_segments(labels, segs)
    assert labelled(match) == [
        ("a.wav", "left", 0, "angry", 3),
        ("a.wav", "left", 1, "calm", 2),
        ("a.wav", "left", 3, "calm", 2),
        ("a.wav", "right", 0, "sad", 6),
    ]
    assert [r.line for r in match.unmatched] == [4, 5]
    assert match.n_matched_rows == 3 and match.n_outside_segments == 0


def test_a_tie_goes_to_the_earlier_span_whatever_the_line_order(tmp_path):
    text = "recording,channel,start_s,end_s,label\na.wav,left,2,4,angry\na.wav,left,0,2,calm\n"
    labels = read_labels(write(tmp_path, text), classes=CLASSES)
    match = match_segments(labels, segments(("a.wav", "left", 1.0, 3.0)))
    assert labelled(match) == [("a.wav", "left", 0, "calm", 3)]
    assert [r.line for r in match.unmatched] == [2]


def test_a_long_span_before_short_ones_still_counts(tmp_path):
    """Spans are searched by the latest end so far, not only the last span's end."""
    text = (
        "recording,channel,start_s,end_s,label\n"
        "a.wav,left,0,100,calm\na.wav,left,10,11,calm\na.wav,left,20,21,calm\n"
    )
    labels = read_labels(write(tmp_path, text), classes=CLASSES)
    match = match_segments(labels, segments(("a.wav", "left", 50.0, 60.0)))
    assert labelled(match) == [("a.wav", "left", 0, "calm", 2)]


def test_whole_channel_labels_every_segment_of_its_channel(tmp_path):
    labels = read_labels(
        write(tmp_path, "recording,channel,label\na.wav,left,sad\na.wav,right,calm\n"),
        classes=CLASSES,
    )
    segs = segments(("a.wav", "left", 0, 1), ("a.wav", "left", 5, 6), ("a.wav", "mono", 0, 1))
    match = match_segments(labels, segs, channels=[("a.wav", "right")])
    assert labelled(match) == [("a.wav", "left", 0, "sad", 2), ("a.wav", "left", 1, "sad", 2)]
    assert [r.line for r in match.unmatched] == [3]  # a known channel without segments


def test_a_span_outside_the_classes_claims_its_segments(tmp_path):
    text = (
        "recording,channel,start_s,end_s,label\n"
        "a.wav,left,0,3,neutral\na.wav,left,3,4,calm\na.wav,left,10,12,calm\n"
    )
    labels = read_labels(write(tmp_path, text), classes=CLASSES)
    segs = segments(("a.wav", "left", 1.0, 3.5), ("a.wav", "left", 10.0, 11.0))
    match = match_segments(labels, segs)
    assert labelled(match) == [("a.wav", "left", 1, "calm", 4)]  # not calm for segment 0
    assert match.n_outside_segments == 1
    assert [r.line for r in match.unmatched] == [3]


def test_unknown_recordings_and_channels_are_errors_naming_the_lines(tmp_path):
    text = (
        "recording,channel,label\n"
        "calls/a.wav,left,calm\n"
        "a.wav,middle,calm\n"
        "nowhere.wav,left,neutral\n"  # outside the classes, still checked
        "broken.wav,left,calm\n"  # a recording that failed: no channels, unmatched
    )
    labels = read_labels(write(tmp_path, text), classes=CLASSES)
    segs = segments(("a.wav", "left", 0, 1))
    with pytest.raises(LabelsError) as caught:
        match_segments(
            labels, segs, recordings=["a.wav", "broken.wav"], channels=[("a.wav", "right")]
        )
    assert caught.value.problems == (
        (2, "unknown recording 'calls/a.wav' (did you mean 'a.wav'?)"),
        (3, "unknown channel 'middle' of a.wav (it has left, right)"),
        (4, "unknown recording 'nowhere.wav'"),
    )
    fine = "recording,channel,label\na.wav,left,calm\na.wav,right,calm\nbroken.wav,left,calm\n"
    labels = read_labels(write(tmp_path, fine), classes=CLASSES)
    match = match_segments(
        labels, segs, recordings=["a.wav", "broken.wav"], channels=[("a.wav", "right")]
    )
    assert [r.line for r in match.unmatched] == [3, 4]
