"""callsort agreement on the demo calls, labelled once with the shipped model.

Every expectation is computed here from the segments table and the ground
truth with pandas and scikit-learn, not with callsort's own matching or metrics.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support
from typer.testing import CliRunner

from callsort.analyst.agreement import agreement
from callsort.cli import app
from callsort.dataset.labels import read_labels
from callsort.dataset.reading import read_dataset

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample_recordings"
GROUND_TRUTH = SAMPLES / "ground_truth.csv"
CLASSES = ["angry", "calm", "happy", "sad"]
TRUTH_LINES = 64  # header and 63 turns: a row appended to it is line 65


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def shown(result) -> str:
    return f"exit {result.exit_code}\noutput:\n{result.output}"


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """sample_recordings/ labelled with the shipped default model."""
    out = tmp_path_factory.mktemp("agreement") / "reports"
    result = invoke("label", SAMPLES, "--out", out, "--jobs", 1, "--quiet")
    assert result.exit_code == 0, shown(result)
    return out


@pytest.fixture(scope="module")
def segments(demo) -> pd.DataFrame:
    return read_dataset(demo).segments


@pytest.fixture(scope="module")
def truth() -> pd.DataFrame:
    return pd.read_csv(GROUND_TRUTH)


def cases_by_overlap(segments: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Each segment with the turn it overlaps most (> 0), written out for the demo's turns."""
    rows = []
    for s in segments.itertuples():
        turns = truth[(truth["recording"] == s.recording) & (truth["channel"] == s.channel)]
        overlap = np.minimum(turns["end_s"], s.end_s) - np.maximum(turns["start_s"], s.start_s)
        if len(turns) and overlap.max() > 0:
            best = turns.iloc[int(np.argmax(overlap.to_numpy()))]
            rows.append((s.recording, best["emotion"], s.label, s.end_s - s.start_s))
    return pd.DataFrame(rows, columns=["recording", "truth", "predicted", "seconds"])


def macro(cases: pd.DataFrame) -> float:
    used = sorted(set(cases["truth"]))
    return f1_score(
        cases["truth"], cases["predicted"], labels=used, average="macro", zero_division=0
    )


def run_json(demo: Path, labels: Path, *extra: object) -> dict:
    result = invoke("agreement", demo, labels, "--json", "-", *extra)
    assert result.exit_code == 0, shown(result)
    return json.loads(result.stdout)


def with_rows(tmp_path: Path, *rows: str, replace: dict[int, str] | None = None) -> Path:
    """The ground truth with rows appended (from line 65) and lines replaced (1-based)."""
    lines = GROUND_TRUTH.read_text(encoding="utf-8").splitlines()
    assert len(lines) == TRUTH_LINES
    for number, text in (replace or {}).items():
        lines[number - 1] = text
    path = tmp_path / "labels.csv"
    path.write_text("\n".join([*lines, *rows]) + "\n", encoding="utf-8")
    return path


# --- agreement with the demo's ground truth -----------------------------------------------


def test_agreement_is_what_the_segments_and_the_truth_say(demo, segments, truth):
    got = run_json(demo, GROUND_TRUTH)
    cases = cases_by_overlap(segments, truth)
    assert len(cases) > 60  # the demo's segments fall in its turns
    precision, recall, f1, support = precision_recall_fscore_support(
        cases["truth"], cases["predicted"], labels=CLASSES, zero_division=0
    )
    assert got["classes"] == CLASSES
    for i, c in enumerate(CLASSES):
        mine = got["per_class"][c]
        assert mine["support"] == support[i]
        assert mine["predicted"] == (cases["predicted"] == c).sum()
        assert mine["recall"] == pytest.approx(recall[i], abs=1e-12)
        assert mine["f1"] == pytest.approx(f1[i], abs=1e-12)
        if mine["predicted"]:
            assert mine["precision"] == pytest.approx(precision[i], abs=1e-12)
        else:
            assert mine["precision"] is None
    assert (
        got["confusion"]["counts"]
        == confusion_matrix(cases["truth"], cases["predicted"], labels=CLASSES).tolist()
    )
    assert got["macro_f1"] == pytest.approx(macro(cases), abs=1e-12)
    agree = cases["truth"] == cases["predicted"]
    assert got["accuracy"] == pytest.approx(agree.mean(), abs=1e-12)
    assert got["accuracy_s"] == pytest.approx(
        cases["seconds"][agree].sum() / cases["seconds"].sum(), abs=1e-12
    )
    assert got["n_labelled"] == len(cases) and got["n_segments"] == len(segments)
    assert got["n_label_rows"] == got["n_rows_matched"] == len(truth)
    assert got["unmatched_lines"] == [] and got["outside_classes"] == {}
    assert got["dataset"] == str(demo) and got["labels_file"] == str(GROUND_TRUTH)


def test_the_interval_resamples_recordings(demo, segments, truth):
    """The interval is a bootstrap over recordings: against the exact bootstrap
    distribution (every multiset of 5 of the 5 recordings, with its multinomial
    probability; scikit-learn's F1), each end lies within the quantiles that 1,000 draws
    can land on (2.5 % and 97.5 %, +-1 point: two standard errors of a 1,000-draw
    estimate). One over segments would not (its upper end is far lower here)."""
    got = run_json(demo, GROUND_TRUTH)
    cases = cases_by_overlap(segments, truth)
    recordings = sorted(set(cases["recording"]))
    by_recording = {r: cases[cases["recording"] == r] for r in recordings}
    n = len(recordings)
    values, weights = [], []
    for drawn in itertools.combinations_with_replacement(recordings, n):
        counts = Counter(drawn).values()
        ways = math.factorial(n) // math.prod(math.factorial(c) for c in counts)
        values.append(macro(pd.concat([by_recording[r] for r in drawn])))
        weights.append(ways / n**n)
    order = np.argsort(values)
    sorted_values, cdf = np.asarray(values)[order], np.cumsum(np.asarray(weights)[order])

    def quantile(p: float) -> float:  # the smallest value whose cumulative probability >= p
        return float(sorted_values[np.searchsorted(cdf, p - 1e-12)])

    assert got["bootstrap_unit"] == "recording" and got["n_units"] == n == 5
    assert got["n_bootstrap"] == 1000 and got["seed"] == 0
    assert quantile(0.015) <= got["macro_f1_low"] <= quantile(0.035), (
        got["macro_f1_low"],
        quantile(0.015),
        quantile(0.035),
    )
    assert quantile(0.965) <= got["macro_f1_high"] <= quantile(0.985), (
        got["macro_f1_high"],
        quantile(0.965),
        quantile(0.985),
    )
    by_segment = np.random.default_rng(1)
    segment_highs = [
        macro(cases.iloc[by_segment.integers(0, len(cases), len(cases))]) for _ in range(500)
    ]
    assert np.percentile(segment_highs, 97.5) < got["macro_f1_high"] - 0.02
    again = run_json(demo, GROUND_TRUTH)
    assert (again["macro_f1_low"], again["macro_f1_high"]) == (
        got["macro_f1_low"],
        got["macro_f1_high"],
    )
    other = run_json(demo, GROUND_TRUTH, "--seed", 7, "--bootstrap", 300)
    assert other["seed"] == 7 and other["n_bootstrap"] == 300
    assert other["macro_f1"] == got["macro_f1"]
    none = run_json(demo, GROUND_TRUTH, "--bootstrap", 0)
    assert none["macro_f1_low"] is None and none["macro_f1_high"] is None


def test_identical_recordings_give_an_interval_of_no_width(segments, truth, tmp_path):
    """Resampling recordings that all agree alike moves nothing (resampling their segments
    would); one recording has no interval at all."""
    one = segments[segments["recording"] == "call_01_escalation.wav"]
    copies = pd.concat([one.assign(recording=f"copy{k}.wav") for k in range(3)], ignore_index=True)
    calls = copies.groupby(["recording", "channel"], as_index=False).size()
    calls = calls.assign(
        status="ok",
        dominant_label="calm",
        share_angry=0.0,
        share_calm=1.0,
        share_happy=0.0,
        share_sad=0.0,
    )
    rows = truth[truth["recording"] == "call_01_escalation.wav"]
    labels_csv = tmp_path / "copies.csv"
    pd.concat([rows.assign(recording=f"copy{k}.wav") for k in range(3)]).to_csv(
        labels_csv, index=False
    )
    from callsort.dataset.reading import Dataset

    result = agreement(Dataset(copies, calls), read_labels(labels_csv, classes=CLASSES))
    assert result.n_units == 3
    assert result.macro_f1_low == result.macro_f1_high == pytest.approx(result.macro_f1)
    single = agreement(
        Dataset(one, calls.assign(recording="call_01_escalation.wav")),
        read_labels(_only(tmp_path, "call_01_escalation.wav"), classes=CLASSES),
    )
    assert single.n_units == 1 and single.macro_f1_low is None


def _only(tmp_path: Path, recording: str) -> Path:
    path = tmp_path / "only.csv"
    truth = pd.read_csv(GROUND_TRUTH)
    truth[truth["recording"] == recording].to_csv(path, index=False)
    return path


def test_whole_channel_labels(demo, segments, truth, tmp_path):
    """One label per channel (its most frequent turn emotion) labels all its segments."""
    per_channel = truth.groupby(["recording", "channel"])["emotion"].agg(lambda s: s.mode()[0])
    path = tmp_path / "channels.csv"
    per_channel.rename("label").reset_index().to_csv(path, index=False)
    got = run_json(demo, path)
    expected = segments.merge(
        per_channel.rename("truth").reset_index(), on=["recording", "channel"]
    )
    # every segment of a recording the ground truth covers (not the mono demo call's)
    covered = segments[segments["recording"].isin(set(truth["recording"]))]
    assert got["n_labelled"] == len(expected) == len(covered)
    assert (
        got["confusion"]["counts"]
        == confusion_matrix(expected["truth"], expected["label"], labels=CLASSES).tolist()
    )
    used = sorted(set(expected["truth"]))
    assert got["macro_f1"] == pytest.approx(
        f1_score(
            expected["truth"], expected["label"], labels=used, average="macro", zero_division=0
        )
    )
    calls = read_dataset(demo).calls.set_index(["recording", "channel"])["dominant_label"]
    assert len(got["channels"]) == len(per_channel) == 9
    for c in got["channels"]:
        assert c["label"] == per_channel[(c["recording"], c["channel"])]
        assert c["dominant_label"] == calls[(c["recording"], c["channel"])]
    agree = sum(per_channel[k] == calls[k] for k in per_channel.index)
    assert got["channels_agree"] == agree
    text = invoke("agreement", demo, path).stdout
    assert f"whole-channel labels: {agree} of 9 channels' dominant label agrees" in text


# --- what the file says that cannot be scored ---------------------------------------------


def test_labels_outside_the_classes_are_counted_and_reported(demo, segments, truth, tmp_path):
    """Two calm agent turns become 'Neutral', one angry turn 'ANGRY' (a class, any case)."""
    lines = GROUND_TRUTH.read_text(encoding="utf-8").splitlines()
    changed = {
        2: lines[1].replace("calm", "Neutral"),
        4: lines[3].replace("calm", "neutral"),
        9: lines[8].replace("angry", "ANGRY"),
    }
    assert lines[8].endswith(",angry")
    got = run_json(demo, with_rows(tmp_path, replace=changed))
    assert got["outside_classes"] == {"neutral": 2}
    edited = truth.copy()
    edited.loc[[0, 2], "emotion"] = "neutral"
    cases = cases_by_overlap(segments, edited)
    outside = cases["truth"] == "neutral"
    assert outside.sum() > 0
    assert got["n_outside_segments"] == outside.sum()
    assert got["n_labelled"] == (~outside).sum()
    assert (
        got["confusion"]["counts"]
        == confusion_matrix(
            cases["truth"][~outside], cases["predicted"][~outside], labels=CLASSES
        ).tolist()
    )
    text = invoke("agreement", demo, with_rows(tmp_path, replace=changed)).stdout
    assert (
        "2 label rows outside the classes (angry, calm, happy, sad), not scored: neutral 2" in text
    )


def test_a_label_over_no_segment_is_unmatched(demo, segments, tmp_path):
    left = segments[
        (segments["recording"] == "call_01_escalation.wav") & (segments["channel"] == "left")
    ]
    assert left["end_s"].max() < 46.5  # the agent is silent at the end of the call
    path = with_rows(
        tmp_path,
        "call_01_escalation.wav,left,46.5,47.0,calm",  # 65: silence
        "call_02_sad.wav,right,100,110,sad",  # 66: after the end of the recording
    )
    got = run_json(demo, path)
    assert got["unmatched_lines"] == [65, 66]
    assert got["n_label_rows"] == 65 and got["n_rows_matched"] == 63
    assert got["n_labelled"] == run_json(demo, GROUND_TRUTH)["n_labelled"]
    text = invoke("agreement", demo, path).stdout
    assert "2 label rows matched no segment: lines 65, 66" in text


# --- bad labels files ---------------------------------------------------------------------

BAD_ROWS = {
    "unknown recording": ("call_99.wav,left,0.5,1.0,calm", "unknown recording 'call_99.wav'"),
    "recording under another root": (
        "sample_recordings/call_02_sad.wav,left,50,51,calm",
        "(did you mean 'call_02_sad.wav'?)",
    ),
    "unknown channel": ("call_01_escalation.wav,agent,50,51,calm", "unknown channel 'agent'"),
    "end before start": (
        "call_01_escalation.wav,left,60,59.5,calm",
        "end_s 59.5 is not after start_s 60",
    ),
    "empty span": ("call_01_escalation.wav,left,60,60,calm", "is not after"),
    "duplicate span": (
        "call_01_escalation.wav,left,0.500,3.188,calm",
        "duplicate span 0.5-3.188 s of call_01_escalation.wav left (line 2)",
    ),
    "overlap with another label": (
        "call_01_escalation.wav,left,3.0,3.5,angry",
        "overlaps span 0.5-3.188 s 'calm' (line 2)",
    ),
    "short row": ("call_01_escalation.wav,left,60,61", "4 fields, the header has 5"),
    "non-numeric time": (
        "call_01_escalation.wav,left,1:00,61,calm",
        "start_s '1:00' is not a number",
    ),
    "negative time": ("call_01_escalation.wav,left,-2,1,calm", "start_s -2 is not a time"),
    "empty label": ("call_01_escalation.wav,left,60,61,", "empty label"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_a_bad_row_is_exit_2_naming_the_line(demo, tmp_path, case):
    row, message = BAD_ROWS[case]
    result = invoke("agreement", demo, with_rows(tmp_path, row))
    assert result.exit_code == 2, shown(result)
    assert "line 65: " in result.output, shown(result)
    assert message in result.output, shown(result)
    assert "labels.csv" in result.output and "Traceback" not in result.output


def test_other_bad_input_is_exit_2(demo, tmp_path):
    bad_header = tmp_path / "header.csv"
    bad_header.write_text("file,channel,start_s,end_s,emotion\na.wav,left,0,1,calm\n")
    result = invoke("agreement", demo, bad_header)
    assert result.exit_code == 2 and "line 1: header: no 'recording' column" in result.output
    result = invoke("agreement", demo, tmp_path / "missing.csv")
    assert result.exit_code == 2 and "cannot read the labels file" in result.output
    result = invoke("agreement", tmp_path, GROUND_TRUTH)
    assert result.exit_code == 2 and "not a callsort dataset" in result.output
    result = invoke("agreement", demo, GROUND_TRUTH, "--json", tmp_path / "no" / "such.json")
    assert result.exit_code == 2 and "cannot write" in result.output


# --- the command --------------------------------------------------------------------------


def test_text_and_json_say_the_same(demo, tmp_path):
    out = tmp_path / "agreement.json"
    result = invoke("agreement", demo, GROUND_TRUTH, "--json", out)
    assert result.exit_code == 0, shown(result)
    got = json.loads(out.read_text(encoding="utf-8"))
    assert got == run_json(demo, GROUND_TRUTH)
    text = result.stdout

    def two(value):
        return "-" if value is None else f"{value:.2f}"

    assert f"{got['n_labelled']} of {got['n_segments']} labelled by the file" in text
    assert f"{two(got['accuracy'])} of segments, {two(got['accuracy_s'])} of seconds" in text
    assert (
        f"{two(got['macro_f1'])} (95 % interval "
        f"{two(got['macro_f1_low'])}-{two(got['macro_f1_high'])})"
    ) in text
    assert "resamples 5 recordings (not segments) 1,000 times, seed 0" in text
    for c, s in got["per_class"].items():
        cells = [
            c,
            two(s["precision"]),
            two(s["recall"]),
            two(s["f1"]),
            str(s["support"]),
            str(s["predicted"]),
        ]
        assert re.search(r"\s+[│|]\s+".join(map(re.escape, cells)), text), (c, text)
    matrix = text[text.index("confusion matrix") :]
    for c, row in zip(got["classes"], got["confusion"]["counts"], strict=True):
        assert re.search(r"\s+[│|]\s+".join([c, *map(str, row)]), matrix), (c, matrix)


def test_help_has_an_example():
    result = invoke("agreement", "--help")
    assert result.exit_code == 0
    assert "callsort agreement reports sample_recordings/ground_truth.csv" in result.output
