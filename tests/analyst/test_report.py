"""callsort report: one self-contained HTML file, its embedded data and its caps.

What the page draws is checked in a real browser by test_browser.py; here the
file itself: no external resources, safe embedding, what data goes in.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pandas as pd
import pytest
from typer.testing import CliRunner

from callsort.analyst.report import render_report, report_data, write_report
from callsort.cli import app
from callsort.dataset.reading import Dataset, read_dataset
from callsort.dataset.synthetic import synthetic_tables, write_flat, write_partitioned


@pytest.fixture(scope="module")
def tables():
    return synthetic_tables(200, days=4, seed=5, mean_segments=8, failed_every=40)


@pytest.fixture(scope="module")
def nightly(tmp_path_factory, tables):
    return read_dataset(write_partitioned(tmp_path_factory.mktemp("nightly"), *tables))


class _Resources(HTMLParser):
    """Every URL the page would fetch: src, href (except in-page anchors), CSS url()."""

    def __init__(self) -> None:
        super().__init__()
        self.fetched: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            fetches = name in ("src", "href", "data", "poster", "srcset")
            if fetches and value and not value.startswith("#"):
                self.fetched.append(f"{tag} {name}={value}")


def embedded(page: str) -> dict:
    match = re.search(
        r'<script type="application/json" id="callsort-data">(.*?)</script>', page, re.S
    )
    assert match, "no embedded data"
    return json.loads(match.group(1))


def test_report_is_self_contained(nightly):
    page = render_report(nightly)
    parser = _Resources()
    parser.feed(page)
    assert parser.fetched == []
    assert "<link" not in page and "@import" not in page
    style = page[page.index("<style>") : page.index("</style>")]
    assert "url(" not in style
    assert parser.tags.count("script") == 3  # data, plotly.js, the page's own script
    assert "Plotly" in page  # the library is inline


def test_embedded_data_matches_the_tables(nightly, tables):
    _, calls, dates = tables
    data = embedded(render_report(nightly))
    ok = calls.to_pandas().query("status == 'ok'")
    assert data["grouped_by"] == "date"
    assert data["groups"] == sorted(set(dates.values()))
    assert data["n_calls"] == ok["recording"].nunique()
    assert data["failed"] == calls.to_pandas().query("status != 'ok'")["recording"].nunique()
    assert len(data["calls"]["r"]) == len(ok)
    assert data["customer"] == "customer" and data["channels"][0] == "customer"
    # label seconds survive the thousandths encoding
    speech = sum(data["calls"]["sp"])
    assert speech == pytest.approx(ok["speech_s"].sum(), rel=1e-3)
    angry = data["labels"].index("angry")
    angry_s = sum(
        s / 1000 * sp for s, sp in zip(data["calls"]["sh"][angry], data["calls"]["sp"], strict=True)
    )
    assert angry_s == pytest.approx((ok["share_angry"] * ok["speech_s"]).sum(), rel=1e-2)


def test_timelines_are_capped_to_the_most_escalated_calls(nightly):
    data = report_data(nightly, max_timelines=7)
    assert data["timeline_cap"] == 7 and len(data["timelines"]) == 7
    tl = data["recs"]["tl"]
    assert tl[:7] == list(range(7)) and set(tl[7:]) == {-1}  # the first 7 in rank order
    first = data["recs"]["name"][0]
    seg = nightly.segments[nightly.segments["recording"] == first]
    lanes = data["timelines"][0]["lanes"]
    assert sum(len(lane["s"]) for lane in lanes) == len(seg)
    customer = next(lane for lane in lanes if data["channels"][lane["c"]] == "customer")
    expected = seg[seg["channel"] == "customer"].sort_values("start_s")
    assert customer["s"] == [round(v * 100) for v in expected["start_s"]]
    assert customer["q"] == [round(v * 100) for v in expected["confidence"]]
    assert report_data(nightly, max_timelines=0)["timelines"] == []


def test_flat_dataset_is_grouped_by_folder(tmp_path, tables):
    data = embedded(render_report(read_dataset(write_flat(tmp_path, *tables[:2]))))
    assert data["grouped_by"] == "folder"
    assert set(data["groups"]) == {n.rsplit("/", 1)[0] for n in tables[2]}


def test_hostile_names_cannot_break_out_of_the_page(tmp_path):
    name = '</script><script>alert("x")</script><!--&.wav'
    calls = pd.DataFrame(
        {
            "recording": [name], "recording_id": ["1"], "channel": ["mono"], "status": ["ok"],
            "duration_s": [10.0], "speech_s": [5.0], "share_angry": [1.0], "share_calm": [0.0],
            "dominant_label": ["angry"], "peak_p_angry": [0.9], "angry_share_last_third": [1.0],
            "escalation_score": [0.5], "escalated": [True], "model_version": ["m"],
        }
    )  # fmt: skip
    segments = pd.DataFrame(
        {"recording": [name], "channel": ["mono"], "start_s": [1.0], "end_s": [2.0],
         "label": ["angry"], "confidence": [0.9]}
    )  # fmt: skip
    page = render_report(Dataset(segments, calls), title="<b>t</b>")
    assert 'alert("x")' not in page and "</script><script>alert" not in page
    assert "<b>t</b>" not in page and "&lt;b&gt;t&lt;/b&gt;" in page
    assert embedded(page)["recs"]["name"] == [name]


def _calls(rows: list[tuple]) -> pd.DataFrame:
    columns = ["recording", "channel", "escalated", "escalation_score", "peak_p_angry"]
    calls = pd.DataFrame(rows, columns=columns)
    return calls.assign(
        recording_id=calls["recording"], status="ok", duration_s=60.0, speech_s=20.0,
        share_angry=0.5, share_calm=0.5, dominant_label="angry", angry_share_last_third=0.5,
        model_version="m",
    )  # fmt: skip


def test_recordings_are_listed_in_the_documented_rank_order():
    """Customer escalated first (by score), then another channel escalated, then by score
    and peak p_angry: the README's rule, written out by hand for five calls."""
    calls = _calls(
        [
            ("a.wav", "customer", True, 0.4, 0.9), ("a.wav", "agent", False, 0.0, 0.1),
            ("b.wav", "customer", False, 0.2, 0.6), ("b.wav", "agent", True, 0.9, 0.99),
            ("c.wav", "customer", True, 0.7, 0.8), ("c.wav", "agent", False, 0.0, 0.1),
            ("d.wav", "customer", False, 0.1, 0.99), ("d.wav", "agent", False, 0.0, 0.1),
            ("e.wav", "customer", False, 0.1, 0.5), ("e.wav", "agent", False, 0.0, 0.1),
        ]
    )  # fmt: skip
    segments = pd.DataFrame(columns=["recording", "channel", "start_s", "end_s", "label"])
    data = report_data(Dataset(segments.assign(confidence=[]), calls))
    assert data["recs"]["name"] == ["c.wav", "a.wav", "b.wav", "d.wav", "e.wav"]


def test_no_recording_name_or_title_changes_how_the_page_is_built():
    """Placeholders of the page's template, in a name and a title, are data like any other."""
    name = "{{PLOTLY}}{{DATA}}{{TITLE}}.wav"
    calls = _calls([(name, "mono", True, 0.5, 0.9)])
    segments = pd.DataFrame(
        {"recording": [name], "channel": ["mono"], "start_s": [1.0], "end_s": [2.0],
         "label": ["angry"], "confidence": [0.9]}
    )  # fmt: skip
    page = render_report(Dataset(segments, calls), title="{{PLOTLY}} {{DATA}}")
    assert embedded(page)["recs"]["name"] == [name]
    assert page.count("Plotly") == render_report(Dataset(segments, _calls([]))).count("Plotly")
    assert "<title>{{PLOTLY}} {{DATA}}</title>" in page


def test_report_command(tmp_path, tables):
    folder = write_flat(tmp_path / "r", *tables[:2])
    out = tmp_path / "r" / "report.html"
    result = CliRunner().invoke(app, ["report", str(folder), "--out", str(out), "--timelines", "3"])
    assert result.exit_code == 0, result.output
    assert "report written" in result.output
    assert embedded(out.read_text(encoding="utf-8"))["timeline_cap"] == 3
    result = CliRunner().invoke(app, ["report", str(tmp_path / "nothing"), "--out", str(out)])
    assert result.exit_code == 2


def test_write_report_info(tmp_path, nightly):
    info = write_report(nightly, tmp_path / "x.html", max_timelines=10)
    assert info.size_bytes == (tmp_path / "x.html").stat().st_size
    assert (
        info.n_timelines == 10
        and info.n_calls == nightly.calls.query("status=='ok'")["recording"].nunique()
    )


def test_timelines_are_capped_by_segments_too(nightly, monkeypatch):
    import callsort.analyst.report

    monkeypatch.setattr(callsort.analyst.report, "MAX_TIMELINE_SEGMENTS", 60)
    data = report_data(nightly, max_timelines=100)
    n = data["timeline_cap"]
    assert 0 < n < 100 and len(data["timelines"]) == n
    embedded_segments = sum(len(lane["s"]) for t in data["timelines"] for lane in t["lanes"])
    next_call = data["recs"]["name"][n]
    next_segments = (nightly.segments["recording"] == next_call).sum()
    assert embedded_segments <= 60 < embedded_segments + next_segments
