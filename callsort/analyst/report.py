"""The HTML report: one self-contained file an analyst opens in any browser.

Charts are drawn in the page by plotly.js, inlined from the ``plotly``
package (no network access needed). Plotly rather than matplotlib because
the page's filters (date range or folder, dominant emotion, channel,
escalated only) redraw every chart in the browser: a static matplotlib SVG
would need one image per combination of filters. Plotly also gives hover
details (times and probability of each segment) and zoom on long calls, and
costs a fixed 4.8 MB of script, whatever the dataset's size.

The data goes into the page once, as compact JSON: one entry per call
channel (shares in thousandths, speech seconds to 0.1 s), and the segments
of at most ``max_timelines`` calls (times in hundredths of a second,
confidence in hundredths) -- the most escalated calls, ranked as in
:mod:`callsort.analyst.summary` -- and of no more calls than fit in
``MAX_TIMELINE_SEGMENTS`` segments, so that very long calls cannot blow the
size up. So 10,000 calls fit in well under 20 MB; a call
without an embedded timeline says how to export its segments. Timelines are
drawn only when they scroll into view.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from callsort import __version__
from callsort.analyst.summary import customer_channel, label_columns, rank_calls, with_group
from callsort.dataset.reading import Dataset
from callsort.errors import CallsortError, UsageError

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_MAX_TIMELINES = 1000
MAX_TIMELINE_SEGMENTS = 200_000
"""At most this many segments are embedded, whatever ``max_timelines`` (about 4 MB)."""
LABEL_COLOURS = {"angry": "#d62728", "calm": "#2b7bba", "happy": "#f0a500", "sad": "#8c6bb1"}
_OTHER_COLOURS = ("#2ca02c", "#7f7f7f", "#17becf", "#bcbd22", "#e377c2", "#8c564b")


@dataclass(frozen=True)
class ReportInfo:
    """What :func:`write_report` wrote."""

    path: Path
    size_bytes: int
    n_calls: int
    n_timelines: int


def plotly_js() -> str:
    """plotly.js, minified, from the installed ``plotly`` package."""
    try:
        from plotly.offline import get_plotlyjs
    except ImportError:  # pragma: no cover - plotly is a dependency
        raise CallsortError("the report needs the plotly package: pip install plotly") from None
    return get_plotlyjs()


def report_data(
    data: Dataset,
    *,
    max_timelines: int = DEFAULT_MAX_TIMELINES,
    customer: str | None = None,
) -> dict[str, Any]:
    """The JSON the page is drawn from (see the module doc for its encoding)."""
    import numpy as np
    import pandas as pd

    calls_all = data.calls
    labels = label_columns(calls_all)
    if not labels:
        raise UsageError("the calls table has no share_<label> columns: not a callsort dataset?")
    ok_mask = calls_all["status"].astype(str) == "ok"
    calls = with_group(calls_all[ok_mask]).reset_index(drop=True)
    ranked = rank_calls(calls_all, customer=customer)

    rec_names = ranked["recording"].astype(str).tolist()  # recordings in rank order
    rec_index = {name: i for i, name in enumerate(rec_names)}
    channels = sorted(set(calls["channel"].astype(str)))
    cust = customer_channel(calls_all, customer)
    if cust in channels:  # the customer lane first in every list
        channels.remove(cust)
        channels.insert(0, cust)
    groups = sorted(set(calls["group"].astype(str)))

    def codes(values: pd.Series, vocabulary: list[str]) -> list[int]:
        lookup = {v: i for i, v in enumerate(vocabulary)}
        return [lookup.get(v, -1) for v in values.astype(str)]

    def thousandths(column: str) -> list[int | None]:
        values = pd.to_numeric(calls[column], errors="coerce").to_numpy(dtype=float)
        return [None if np.isnan(v) else int(round(v * 1000)) for v in values]

    speech = pd.to_numeric(calls["speech_s"], errors="coerce").fillna(0.0).round(1)
    call_payload = {
        "r": [rec_index[n] for n in calls["recording"].astype(str)],
        "c": codes(calls["channel"], channels),
        "g": codes(calls["group"], groups),
        "sp": speech.tolist(),
        "sh": [[v or 0 for v in thousandths(f"share_{c}")] for c in labels],
        "dom": codes(calls["dominant_label"].fillna(""), labels),
        "esc": calls["escalated"].astype("boolean").fillna(False).astype(int).tolist(),
        "sc": thousandths("escalation_score"),
        "lt": thousandths("angry_share_last_third"),
        "pk": thousandths("peak_p_angry"),
    }

    # a prefix of the ranking: at most max_timelines calls and MAX_TIMELINE_SEGMENTS segments
    per_call = data.segments["recording"].astype(str).value_counts() if len(data.segments) else None
    n_timelines = min(max_timelines, len(rec_names))
    if per_call is not None and n_timelines:
        counts = per_call.reindex(rec_names[:n_timelines]).fillna(0).to_numpy()
        n_timelines = int(np.searchsorted(np.cumsum(counts), MAX_TIMELINE_SEGMENTS, side="right"))
    timelines = _timelines(data.segments, ranked.head(n_timelines), channels, labels)
    tl_of = {rec_index[name]: i for i, name in enumerate(t["name"] for t in timelines)}
    for t in timelines:
        del t["name"]
    duration = pd.to_numeric(ranked["duration_s"], errors="coerce").fillna(0.0).round(2)
    return {
        "grouped_by": "date" if data.has_dates else "folder",
        "labels": labels,
        "colors": _colours(labels),
        "channels": channels,
        "customer": cust if cust in channels else None,
        "groups": groups,
        "n_calls": len(rec_names),
        "failed": int(calls_all.loc[~ok_mask, "recording"].nunique()),
        "timeline_cap": n_timelines,
        "recs": {
            "name": rec_names,
            "id": ranked["recording_id"].astype(str).tolist(),
            "dur": duration.tolist(),
            "tl": [tl_of.get(i, -1) for i in range(len(rec_names))],
        },
        "calls": call_payload,
        "timelines": timelines,
    }


def _timelines(
    segments: pd.DataFrame, chosen: pd.DataFrame, channels: list[str], labels: list[str]
) -> list[dict[str, Any]]:
    """Segments of the ``chosen`` calls, as lanes of integer arrays."""
    import numpy as np

    if chosen.empty or segments.empty:
        return [{"name": name, "lanes": []} for name in chosen["recording"].astype(str)]
    wanted = set(chosen["recording"].astype(str))
    seg = segments[segments["recording"].astype(str).isin(wanted)]
    seg = seg.sort_values(["recording", "channel", "start_s"], kind="mergesort")
    channel_code = {c: i for i, c in enumerate(channels)}
    label_code = {c: i for i, c in enumerate(labels)}
    lanes_by_call: dict[str, list[dict[str, Any]]] = {}
    for (rec, ch), lane in seg.groupby(["recording", "channel"], sort=False):
        if str(ch) not in channel_code:
            continue
        lanes_by_call.setdefault(str(rec), []).append(
            {
                "c": channel_code[str(ch)],
                "s": np.round(lane["start_s"].to_numpy(dtype=float) * 100).astype(int).tolist(),
                "e": np.round(lane["end_s"].to_numpy(dtype=float) * 100).astype(int).tolist(),
                "l": [label_code.get(v, -1) for v in lane["label"].astype(str)],
                "q": np.round(lane["confidence"].to_numpy(dtype=float) * 100).astype(int).tolist(),
            }
        )
    return [
        {"name": name, "lanes": lanes_by_call.get(name, [])}
        for name in chosen["recording"].astype(str)
    ]


def _colours(labels: list[str]) -> list[str]:
    others = iter(_OTHER_COLOURS * (len(labels) // len(_OTHER_COLOURS) + 1))
    return [LABEL_COLOURS.get(label) or next(others) for label in labels]


def render_report(
    data: Dataset,
    *,
    title: str | None = None,
    max_timelines: int = DEFAULT_MAX_TIMELINES,
    customer: str | None = None,
) -> str:
    """The report as one HTML string (styles, script, data and plotly.js inline)."""
    return _render(data, title=title, max_timelines=max_timelines, customer=customer)[0]


def _render(
    data: Dataset, *, title: str | None, max_timelines: int, customer: str | None
) -> tuple[str, dict[str, Any]]:
    payload = report_data(data, max_timelines=max_timelines, customer=customer)
    name = data.path.name if data.path else "calls"
    title = title or f"callsort report: {name}"
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    subtitle = (
        f"{payload['n_calls']:,} calls from {data.path or 'memory'}, "
        f"grouped by {payload['grouped_by']}; generated {generated} by callsort {__version__}"
    )
    template = resources.files("callsort").joinpath("templates", "report.html").read_text("utf-8")
    pieces = {
        "TITLE": lambda: html.escape(title),
        "SUBTITLE": lambda: html.escape(subtitle),
        "VERSION": lambda: html.escape(__version__),
        "DATA": lambda: _script_json(payload),
        "PLOTLY": lambda: plotly_js().replace("</script", "<\\/script"),
    }
    # one pass over the template: what is put in is never searched for placeholders again,
    # so no recording name or title can change how the page is built
    page = re.sub(r"\{\{([A-Z]+)\}\}", lambda m: pieces[m.group(1)](), template)
    return page, payload


def _script_json(payload: dict[str, Any]) -> str:
    """JSON that is safe inside a ``<script>`` element (no ``<``, ``>`` or ``&``)."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def write_report(
    data: Dataset,
    out: Path | str,
    *,
    title: str | None = None,
    max_timelines: int = DEFAULT_MAX_TIMELINES,
    customer: str | None = None,
) -> ReportInfo:
    """Render the report and write it to ``out`` atomically."""
    from callsort.dataset.writers import atomic_path

    page, payload = _render(data, title=title, max_timelines=max_timelines, customer=customer)
    target = Path(out)
    encoded = page.encode("utf-8")
    try:
        with atomic_path(target) as tmp:
            tmp.write_bytes(encoded)
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from None
    return ReportInfo(
        path=target,
        size_bytes=len(encoded),
        n_calls=payload["n_calls"],
        n_timelines=payload["timeline_cap"],
    )
