"""callsort summary and callsort export on synthetic datasets (no audio)."""

from __future__ import annotations

import io
import json

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from callsort.analyst.export import Condition, date_conditions, parse_condition, select
from callsort.analyst.summary import rank_calls, summarise
from callsort.cli import app
from callsort.dataset.reading import Dataset, read_dataset
from callsort.dataset.synthetic import synthetic_tables, write_flat, write_partitioned
from callsort.errors import UsageError


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def tables():
    return synthetic_tables(300, days=5, seed=3, mean_segments=8, failed_every=50)


@pytest.fixture(scope="module")
def partitioned(tmp_path_factory, tables):
    return write_partitioned(tmp_path_factory.mktemp("nightly"), *tables)


@pytest.fixture(scope="module")
def flat(tmp_path_factory, tables):
    return write_flat(tmp_path_factory.mktemp("flat"), *tables[:2])


def _calls(rows: list[dict]) -> pd.DataFrame:
    base = {
        "recording_id": "0",
        "status": "ok",
        "duration_s": 60.0,
        "speech_s": 10.0,
        "share_angry": 0.0,
        "share_calm": 1.0,
        "dominant_label": "calm",
        "peak_p_angry": 0.1,
        "angry_share_last_third": 0.0,
        "escalation_score": 0.0,
        "escalated": False,
        "model_version": "m",
    }
    return pd.DataFrame([{**base, **r} for r in rows])


# --- summary ------------------------------------------------------------------------------


def test_ranking_puts_the_customer_side_first():
    calls = _calls(
        [
            {"recording": "agent_angrier.wav", "channel": "agent", "escalated": True,
             "escalation_score": 0.9},
            {"recording": "agent_angrier.wav", "channel": "customer"},
            {"recording": "customer.wav", "channel": "agent"},
            {"recording": "customer.wav", "channel": "customer", "escalated": True,
             "escalation_score": 0.4},
            {"recording": "calm.wav", "channel": "customer", "peak_p_angry": 0.5},
            {"recording": "calmer.wav", "channel": "customer", "peak_p_angry": 0.2},
            {"recording": "broken.wav", "channel": "", "status": "error"},
        ]
    )  # fmt: skip
    ranked = rank_calls(calls)
    assert ranked["recording"].tolist() == [
        "customer.wav", "agent_angrier.wav", "calm.wav", "calmer.wav"
    ]  # fmt: skip
    assert ranked["customer_escalated"].tolist() == [True, False, False, False]
    assert ranked["escalated_channels"].tolist() == ["customer", "agent", "", ""]
    # without a customer channel, a call ranks by its most escalated channel
    ranked = rank_calls(calls.replace({"channel": {"customer": "right", "agent": "left"}}))
    assert ranked["recording"].tolist()[:2] == ["agent_angrier.wav", "customer.wav"]
    assert ranked["rank_channel"].tolist()[:2] == ["left", "right"]


def test_summary_figures_match_the_tables(partitioned, tables):
    segments, calls, dates = tables
    frame = calls.to_pandas()
    ok = frame[frame["status"] == "ok"]
    s = summarise(read_dataset(partitioned), top=5)
    assert s["calls"] == frame["recording"].nunique() == 300
    assert s["calls_failed"] == 6
    assert s["channels"] == len(ok)
    assert s["segments"] == segments.num_rows
    assert s["speech_hours"] == pytest.approx(ok["speech_s"].sum() / 3600, abs=1e-3)
    seconds = segments.to_pandas().groupby("label")["duration_s"].sum()
    for label, share in s["label_share"].items():
        assert share == pytest.approx(seconds[label] / seconds.sum(), abs=2e-3)
    escalated = ok[ok["escalated"]]
    assert s["escalated_calls"] == escalated["recording"].nunique() > 0
    assert s["escalated_channels"] == escalated["channel"].value_counts().to_dict()
    assert s["grouped_by"] == "date"
    assert [g["group"] for g in s["groups"]] == sorted(set(dates.values()))
    assert sum(g["calls"] for g in s["groups"]) == ok["recording"].nunique()
    assert len(s["top_escalated"]) == 5
    assert all(t["customer_escalated"] for t in s["top_escalated"])
    scores = [t["escalation_score"] for t in s["top_escalated"]]
    assert scores == sorted(scores, reverse=True)


def test_summary_command_table_and_json(flat):
    result = invoke("summary", flat)
    assert result.exit_code == 0, result.output
    for text in ("calls", "escalated calls", "by folder", "most escalated calls"):
        assert text in result.output
    result = invoke("summary", flat, "--json", "--top", "3")
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["layout"] == "flat" and figures["grouped_by"] == "folder"
    assert figures["calls"] == 300 and len(figures["top_escalated"]) == 3
    assert figures["dates"] is None


def test_summary_of_nothing_is_a_usage_error(tmp_path):
    result = invoke("summary", tmp_path)
    assert result.exit_code == 2
    assert "not a callsort dataset" in result.output


# --- export -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("escalated=true", Condition("escalated", "=", "true")),
        (" peak_p_angry >= 0.8 ", Condition("peak_p_angry", ">=", "0.8")),
        ("label=angry,sad", Condition("label", "=", "angry,sad")),
        ("recording~queue2/", Condition("recording", "~", "queue2/")),
        ("error=", Condition("error", "=", "")),
    ],
)
def test_parse_condition(text, expected):
    assert parse_condition(text) == expected


@pytest.mark.parametrize(
    "text", ["escalated", "=true", "__import__('os').system('id')", "a>", "1x=2", "a==b;c"]
)
def test_parse_condition_refuses_what_is_not_a_condition(text):
    with pytest.raises(UsageError):
        select(_dataset(), conditions=[parse_condition(text)])


def _dataset() -> Dataset:
    return Dataset(segments=pd.DataFrame({"recording": []}), calls=_calls([]))


def test_conditions_are_typed_by_column(partitioned):
    data = read_dataset(partitioned)
    calls = data.calls
    got = select(data, conditions=[parse_condition("escalated=yes")])
    assert len(got) == calls["escalated"].sum() > 0
    got = select(data, conditions=[parse_condition("peak_p_angry>0.9")])
    assert len(got) == (calls["peak_p_angry"] > 0.9).sum()
    got = select(data, conditions=[parse_condition("dominant_label!=calm,sad")])
    assert set(got["dominant_label"].dropna()) == {"angry", "happy"}
    assert got["dominant_label"].isna().sum() == calls["dominant_label"].isna().sum()
    got = select(data, conditions=[parse_condition("recording~QUEUE2")])
    assert len(got) and got["recording"].str.contains("queue2").all()
    got = select(data, conditions=[parse_condition("processed_at>=2024-12-31T00:00")])
    assert len(got) == len(calls)
    for bad in ("escalated=maybe", "peak_p_angry>high", "no_such_column=1"):
        with pytest.raises(UsageError):
            select(data, conditions=[parse_condition(bad)])


def test_segments_of_escalated_calls_in_a_date_range(partitioned, tables):
    _, calls, dates = tables
    days = sorted(set(dates.values()))
    data = read_dataset(partitioned)
    conditions = [parse_condition("escalated=true"), *date_conditions(days[1], days[2])]
    got = select(data, table="segments", conditions=conditions)
    frame = calls.to_pandas()
    frame["date"] = frame["recording"].map(dates)
    chosen = frame[frame["escalated"] & frame["date"].between(days[1], days[2])]
    assert len(got) == chosen["n_segments"].sum() > 0
    assert set(zip(got["recording"], got["channel"], strict=True)) == set(
        zip(chosen["recording"], chosen["channel"], strict=True)
    )


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_export_command_formats(partitioned, tables, tmp_path, fmt):
    _, calls, dates = tables
    days = sorted(set(dates.values()))
    out = tmp_path / f"escalated.{fmt}"
    result = invoke(
        "export", partitioned, "--format", fmt, "--where", "escalated=true",
        "--since", days[0], "--until", days[1], "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    if fmt == "csv":
        got = pd.read_csv(out)
    elif fmt == "parquet":
        got = pq.read_table(out).to_pandas()
    else:
        got = pd.DataFrame(json.loads(out.read_text()))
    frame = calls.to_pandas()
    frame["date"] = frame["recording"].map(dates)
    expected = frame[frame["escalated"] & (frame["date"] <= days[1])]
    assert sorted(got["recording"]) == sorted(expected["recording"])
    assert got["escalated"].astype(bool).all()
    assert set(got["date"].astype(str)) <= {days[0], days[1]}


def test_export_to_stdout_and_errors(flat, tmp_path):
    result = invoke("export", flat, "--where", "escalated=true", "--format", "json")
    assert result.exit_code == 0, result.output
    assert all(r["escalated"] for r in json.loads(result.output))
    result = invoke("export", flat, "--since", "2025-01-01")
    assert result.exit_code == 2 and "no dates" in result.output
    result = invoke("export", flat, "--where", "import os")
    assert result.exit_code == 2 and "COLUMN OP VALUE" in result.output
    result = invoke("export", flat, "--format", "parquet")
    assert result.exit_code == 2 and "--out" in result.output
    result = invoke("export", flat, "--until", "last week")
    assert result.exit_code == 2 and "YYYY-MM-DD" in result.output


def test_csv_export_neutralises_formulas(tmp_path):
    calls = _calls([{"recording": "=HYPERLINK(1).wav", "channel": "mono"}])
    data = Dataset(segments=pd.DataFrame(), calls=calls)
    from callsort.analyst.export import write_export

    write_export(select(data), "csv", tmp_path / "x.csv")
    text = (tmp_path / "x.csv").read_text()
    assert "'=HYPERLINK(1).wav" in text
    got = pd.read_csv(io.StringIO(text))
    assert got["recording"].tolist() == ["'=HYPERLINK(1).wav"]
