"""Figures about a dataset: what ``callsort summary`` prints and the report shows.

Everything is computed from the ``calls`` table (one row per recording and
channel), so it works the same for a dataset of any size: label shares are
weighted by seconds of speech (``share_<label> * speech_s``), "calls" count
recordings, and a call is *escalated* when any of its channels is.

Calls are ranked by escalation with the customer's side first: a call whose
customer channel escalated comes before one where only the agent did, then
higher ``escalation_score``, then higher ``peak_p_angry``. The customer
channel is the one named ``customer`` (``callsort label --channel-names
agent,customer``) unless another name is given; without one, a call ranks by
its most escalated channel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from callsort.dataset.reading import Dataset, folder_of

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_CUSTOMER = "customer"


def label_columns(calls: pd.DataFrame) -> list[str]:
    """The labels of the dataset, from its ``share_<label>`` columns, in table order."""
    return [c.removeprefix("share_") for c in calls.columns if c.startswith("share_")]


def customer_channel(calls: pd.DataFrame, customer: str | None = None) -> str | None:
    """The channel that ranks calls: ``customer`` if given, else ``customer`` if present."""
    channels = set(calls["channel"].dropna().astype(str)) if "channel" in calls else set()
    if customer:
        return customer
    return DEFAULT_CUSTOMER if DEFAULT_CUSTOMER in channels else None


def with_group(calls: pd.DataFrame) -> pd.DataFrame:
    """``calls`` plus a ``group`` column: the date, or the recording's folder without dates."""
    frame = calls.copy()
    if "date" in frame.columns and frame["date"].notna().any():
        frame["group"] = frame["date"].astype("string").fillna("(no date)").astype(str)
    else:
        frame["group"] = frame["recording"].astype(str).map(folder_of)
    return frame


def _ok(calls: pd.DataFrame) -> pd.DataFrame:
    return calls[calls["status"].astype(str) == "ok"]


def _flag(series: pd.Series) -> pd.Series:
    return series.astype("boolean").fillna(False).astype(bool)


def rank_calls(calls: pd.DataFrame, *, customer: str | None = None) -> pd.DataFrame:
    """One row per analysed recording, most escalated first (see the module doc).

    Columns: ``recording``, ``recording_id``, ``group``, ``rank_channel`` (the
    channel that ranks the call), ``escalated`` (any channel),
    ``customer_escalated``, ``escalated_channels`` (comma-separated),
    ``escalation_score``, ``angry_share_last_third``, ``peak_p_angry`` (of the
    ranking channel), ``dominant_label`` (of the ranking channel), ``speech_s``
    (all channels) and ``duration_s``, plus ``date`` when the dataset has dates.
    """
    import pandas as pd

    frame = with_group(_ok(calls))
    cust = customer_channel(calls, customer)
    if frame.empty:
        return pd.DataFrame(
            columns=[
                "recording", "recording_id", "group", "rank_channel", "escalated",
                "customer_escalated", "escalated_channels", "escalation_score",
                "angry_share_last_third", "peak_p_angry", "dominant_label", "speech_s",
                "duration_s",
            ]
        )  # fmt: skip
    frame = frame.assign(
        _esc=_flag(frame["escalated"]),
        _is_customer=frame["channel"].astype(str) == (cust or "\0"),
        _score=pd.to_numeric(frame["escalation_score"], errors="coerce"),
        _peak=pd.to_numeric(frame["peak_p_angry"], errors="coerce"),
    )
    # the ranking channel of each call: its customer channel, else its most escalated one
    frame = frame.sort_values(
        ["recording", "_is_customer", "_esc", "_score", "_peak"],
        ascending=[True, False, False, False, False],
        na_position="last",
        kind="mergesort",
    )
    by_call = frame.groupby("recording", sort=False)
    first = by_call.head(1).set_index("recording")
    escalated_channels = (
        frame[frame["_esc"]].groupby("recording")["channel"].agg(lambda s: ",".join(map(str, s)))
    )
    ranked = pd.DataFrame(
        {
            "recording": first.index,
            "recording_id": first["recording_id"].to_numpy(),
            "group": first["group"].to_numpy(),
            "rank_channel": first["channel"].astype(str).to_numpy(),
            "escalated": by_call["_esc"].any().reindex(first.index).to_numpy(),
            "customer_escalated": (first["_is_customer"] & first["_esc"]).to_numpy(),
            "escalated_channels": escalated_channels.reindex(first.index).fillna("").to_numpy(),
            "escalation_score": first["_score"].to_numpy(),
            "angry_share_last_third": pd.to_numeric(
                first["angry_share_last_third"], errors="coerce"
            ).to_numpy(),
            "peak_p_angry": first["_peak"].to_numpy(),
            "dominant_label": first["dominant_label"].astype(str).to_numpy(),
            "speech_s": by_call["speech_s"].sum().reindex(first.index).to_numpy(),
            "duration_s": pd.to_numeric(first["duration_s"], errors="coerce").to_numpy(),
        }
    )
    if "date" in first.columns:
        ranked["date"] = first["date"].to_numpy()
    ranked = ranked.sort_values(
        ["customer_escalated", "escalated", "escalation_score", "peak_p_angry", "recording"],
        ascending=[False, False, False, False, True],
        na_position="last",
        kind="mergesort",
    )
    return ranked.reset_index(drop=True)


def label_seconds(calls: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """Seconds of speech per label for every call row (``share_<label> * speech_s``)."""
    import pandas as pd

    speech = pd.to_numeric(calls["speech_s"], errors="coerce").fillna(0.0)
    return pd.DataFrame(
        {
            c: pd.to_numeric(calls[f"share_{c}"], errors="coerce").fillna(0.0) * speech
            for c in labels
        },
        index=calls.index,
    )


def summarise(data: Dataset, *, top: int = 10, customer: str | None = None) -> dict[str, Any]:
    """The dataset in figures (plain JSON types): what ``callsort summary --json`` prints."""
    calls = data.calls
    labels = label_columns(calls)
    ok = with_group(_ok(calls))
    recordings = calls["recording"].astype(str)
    failed = sorted(set(recordings[calls["status"].astype(str) != "ok"]))
    seconds = label_seconds(ok, labels)
    speech_s = float(seconds.to_numpy().sum())
    ranked = rank_calls(calls, customer=customer)
    escalated = ranked[ranked["escalated"]]
    esc_rows = ok[_flag(ok["escalated"])]
    per_group = []
    group_seconds = seconds.groupby(ok["group"]).sum()
    group_calls = ok.groupby("group")["recording"].nunique()
    group_escalated = esc_rows.groupby("group")["recording"].nunique()
    for group, row in group_seconds.iterrows():
        total = float(row.sum())
        per_group.append(
            {
                "group": str(group),
                "calls": int(group_calls.get(group, 0)),
                "escalated_calls": int(group_escalated.get(group, 0)),
                "speech_hours": round(total / 3600, 4),
                "label_share": {
                    c: round(float(row[c]) / total, 4) if total else 0.0 for c in labels
                },
            }
        )
    audio_s = float(ok.groupby("recording")["duration_s"].first().astype(float).fillna(0.0).sum())
    return {
        "dataset": str(data.path) if data.path else None,
        "layout": data.layout,
        "grouped_by": "date" if data.has_dates else "folder",
        "calls": int(recordings.nunique()),
        "calls_analysed": int(ok["recording"].nunique()),
        "calls_failed": len(failed),
        "channels": int(len(ok)),
        "segments": int(len(data.segments)),
        "audio_hours": round(audio_s / 3600, 4),
        "speech_hours": round(speech_s / 3600, 4),
        "label_share": {
            c: round(float(seconds[c].sum()) / speech_s, 4) if speech_s else 0.0 for c in labels
        },
        "escalated_calls": int(len(escalated)),
        "escalated_channels": {
            str(k): int(v) for k, v in esc_rows["channel"].astype(str).value_counts().items()
        },
        "customer_channel": customer_channel(calls, customer),
        "dates": (
            {"first": str(ok["date"].min()), "last": str(ok["date"].max())}
            if data.has_dates and len(ok)
            else None
        ),
        "groups": per_group,
        "top_escalated": [
            {
                "recording": r.recording,
                "group": r.group,
                "channels": r.escalated_channels,
                "customer_escalated": bool(r.customer_escalated),
                "escalation_score": _num(r.escalation_score),
                "angry_share_last_third": _num(r.angry_share_last_third),
                "peak_p_angry": _num(r.peak_p_angry),
            }
            for r in escalated.head(top).itertuples()
        ],
        "failed": failed[:top],
        "model_versions": sorted(set(calls["model_version"].dropna().astype(str)) - {""}),
    }


def _num(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if number != number else round(number, 4)


def print_summary(summary: dict[str, Any], *, console=None) -> None:
    """The summary as rich tables: figures, label shares by group, top escalated calls."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    s = summary
    head = Table(title=f"callsort summary: {s['dataset'] or ''}", show_header=False,
                 title_justify="left")  # fmt: skip
    head.add_row("calls", f"{s['calls']:,} ({s['calls_failed']:,} failed)")
    head.add_row("channels analysed", f"{s['channels']:,}")
    head.add_row("audio", f"{s['audio_hours']:,.2f} h")
    head.add_row("speech", f"{s['speech_hours']:,.2f} h in {s['segments']:,} segments")
    head.add_row(
        "speech by label",
        ", ".join(f"{c} {v:.0%}" for c, v in s["label_share"].items())
        if s["speech_hours"]
        else "no speech",
    )
    escalated_by = ", ".join(f"{k} {v}" for k, v in s["escalated_channels"].items())
    head.add_row(
        "escalated calls",
        f"{s['escalated_calls']:,}" + (f" (channels: {escalated_by})" if escalated_by else ""),
    )
    if s["dates"]:
        head.add_row("dates", f"{s['dates']['first']} to {s['dates']['last']}")
    head.add_row("model", ", ".join(s["model_versions"]) or "-")
    console.print(head)

    labels = list(s["label_share"])
    if s["groups"] and labels:
        groups = Table(title=f"by {s['grouped_by']}", title_justify="left")
        groups.add_column(s["grouped_by"])
        groups.add_column("calls", justify="right")
        groups.add_column("escalated", justify="right")
        groups.add_column("speech h", justify="right")
        for c in labels:
            groups.add_column(c, justify="right")
        shown = s["groups"][-31:]  # the last month of dates, or the first folders
        for g in shown:
            groups.add_row(
                g["group"],
                f"{g['calls']:,}",
                f"{g['escalated_calls']:,}",
                f"{g['speech_hours']:.2f}",
                *(f"{g['label_share'][c]:.0%}" for c in labels),
            )
        if len(s["groups"]) > len(shown):
            groups.caption = f"last {len(shown)} of {len(s['groups'])} {s['grouped_by']}s"
        console.print(groups)

    if s["top_escalated"]:
        top = Table(title="most escalated calls (customer side first)", title_justify="left")
        top.add_column("#", justify="right", no_wrap=True)
        top.add_column("recording", overflow="fold", ratio=1)
        top.add_column(s["grouped_by"], overflow="fold", min_width=10)
        top.add_column("escalated", overflow="fold", min_width=8)
        top.add_column("score", justify="right", no_wrap=True, min_width=5)
        top.add_column("angry at end", justify="right", min_width=5)
        top.add_column("peak anger", justify="right", min_width=5)
        for i, r in enumerate(s["top_escalated"], 1):
            top.add_row(
                str(i),
                r["recording"],
                r["group"],
                r["channels"],
                _fmt(r["escalation_score"], "{:+.2f}"),
                _fmt(r["angry_share_last_third"], "{:.0%}"),
                _fmt(r["peak_p_angry"], "{:.2f}"),
            )
        console.print(top)
    else:
        console.print("no escalated calls")
    if s["failed"]:
        more = s["calls_failed"] - len(s["failed"])
        console.print(
            f"[red]{s['calls_failed']:,} recordings failed[/red]"
            + (f" (first {len(s['failed'])} listed)" if more > 0 else "")
            + ": see the error column of the calls table"
        )
        for name in s["failed"]:
            console.print(f"  {name}")


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)
