"""How far a dataset agrees with a centre's own labels: what ``callsort agreement`` prints.

The labels file (:mod:`callsort.dataset.labels`) labels segments; each
labelled segment is one case: the file's label against callsort's ``label``.
From these come per-class precision, recall and F1, the confusion matrix
(rows: the file's labels, columns: callsort's), the share of segments (and of
their seconds) that agree, and macro-F1: the mean F1 of the classes the file
uses (a class it never uses has no recall and is left out of the mean).

Segments of one call are not independent cases (one voice, one line, one
mood), so the 95 % interval of macro-F1 resamples **recordings**, not
segments: ``n_bootstrap`` times, draw as many recordings as were labelled,
with replacement, add up their confusion matrices and take macro-F1 (over the
classes that draw's labels use); the interval is the 2.5th to 97.5th
percentile, with a fixed seed. With few recordings it is wide, as it should be.

Whole-channel labels are also compared with each channel's ``dominant_label``
(the label of most of its speech seconds, from the calls table).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from callsort.analyst.summary import label_columns
from callsort.dataset.labels import LabelMatch, LabelsFile, match_segments
from callsort.dataset.reading import Dataset

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_BOOTSTRAP = 1000
"""Bootstrap resamples for the macro-F1 interval."""
DEFAULT_SEED = 0
BOOTSTRAP_UNIT = "recording"
SHOW_LINES = 10
"""How many unmatched lines the text lists."""


@dataclass(frozen=True)
class ClassScore:
    """One class: precision and recall (None when undefined: never predicted / never labelled)."""

    label: str
    precision: float | None
    recall: float | None
    f1: float | None
    support: int
    """Segments the labels file gives this class."""
    predicted: int
    """Labelled segments callsort gives this class."""


@dataclass(frozen=True)
class ChannelResult:
    """A whole-channel label against the channel's dominant label."""

    line: int
    recording: str
    channel: str
    label: str
    dominant_label: str


@dataclass(frozen=True)
class Agreement:
    """Agreement of a dataset with a labels file (module doc); ``to_dict`` for JSON."""

    dataset: str | None
    labels_file: str
    labels_sha256: str
    classes: tuple[str, ...]
    n_label_rows: int
    n_rows_matched: int
    unmatched_lines: tuple[int, ...]
    outside_classes: dict[str, int]
    """Rows per label outside the classes (counted, not scored)."""
    n_segments: int
    """Segments in the dataset."""
    n_labelled: int
    """Segments labelled by a row of the file with one of the classes: the scored cases."""
    n_outside_segments: int
    accuracy: float | None
    """Share of scored segments where callsort's label is the file's."""
    accuracy_s: float | None
    """The same, weighted by segment seconds."""
    macro_f1: float | None
    macro_f1_low: float | None
    macro_f1_high: float | None
    bootstrap_unit: str
    n_units: int
    """Recordings with scored segments: what the bootstrap resamples."""
    n_bootstrap: int
    seed: int
    per_class: tuple[ClassScore, ...]
    confusion: tuple[tuple[int, ...], ...]
    """``confusion[i][j]``: segments the file labels ``classes[i]`` and callsort ``classes[j]``."""
    channels: tuple[ChannelResult, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; floats as computed."""
        out = asdict(self)
        out["classes"] = list(self.classes)
        out["unmatched_lines"] = list(self.unmatched_lines)
        out["confusion"] = {
            "rows": "labels file",
            "columns": "callsort",
            "labels": list(self.classes),
            "counts": [list(r) for r in self.confusion],
        }
        out["per_class"] = {
            s.label: {k: v for k, v in asdict(s).items() if k != "label"} for s in self.per_class
        }
        out["channels"] = [asdict(c) for c in self.channels]
        out["channels_agree"] = sum(c.label == c.dominant_label for c in self.channels)
        return out


def agreement(
    data: Dataset,
    labels: LabelsFile,
    *,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
) -> Agreement:
    """Compare ``data`` (a dataset) with ``labels`` read against the dataset's classes."""
    calls = data.calls
    key = ["recording", "channel", "segment_index"]
    segments = data.segments.drop_duplicates(key, keep="last")  # a segment is one case
    classes = list(labels.classes)
    ok = calls[calls["status"].astype(str) == "ok"]
    match = match_segments(
        labels,
        segments,
        recordings=calls["recording"].astype(str),
        channels=zip(ok["recording"].astype(str), ok["channel"].astype(str), strict=True),
    )
    cases = _cases(match, segments)
    truth = _codes(cases["label"], classes)
    predicted = _codes(cases["predicted"], classes)
    confusion = _confusion(truth, predicted, len(classes))
    per_class = _scores(confusion, classes)
    units = cases["recording"].to_numpy()
    low, high = _interval(truth, predicted, units, len(classes), n_bootstrap, seed)
    agree = truth == predicted
    seconds = (cases["end_s"] - cases["start_s"]).to_numpy(dtype=float)
    n = len(cases)
    return Agreement(
        dataset=str(data.path) if data.path is not None else None,
        labels_file=str(labels.path),
        labels_sha256=labels.sha256,
        classes=tuple(classes),
        n_label_rows=labels.n_rows,
        n_rows_matched=match.n_matched_rows,
        unmatched_lines=tuple(r.line for r in match.unmatched),
        outside_classes=labels.unknown_labels,
        n_segments=int(len(segments)),
        n_labelled=n,
        n_outside_segments=match.n_outside_segments,
        accuracy=float(agree.mean()) if n else None,
        accuracy_s=float(seconds[agree].sum() / seconds.sum()) if seconds.sum() > 0 else None,
        macro_f1=macro_f1(confusion),
        macro_f1_low=low,
        macro_f1_high=high,
        bootstrap_unit=BOOTSTRAP_UNIT,
        n_units=int(len(set(units))),
        n_bootstrap=n_bootstrap,
        seed=seed,
        per_class=per_class,
        confusion=tuple(tuple(int(v) for v in row) for row in confusion),
        channels=_channel_results(labels, calls),
    )


def dataset_classes(data: Dataset) -> list[str]:
    """The dataset's classes: its ``share_<class>`` columns, else its ``p_<class>`` columns."""
    classes = label_columns(data.calls)
    return classes or [c.removeprefix("p_") for c in data.segments.columns if c.startswith("p_")]


def _cases(match: LabelMatch, segments: pd.DataFrame) -> pd.DataFrame:
    key = ["recording", "channel", "segment_index"]
    ours = segments[[*key, "label"]].rename(columns={"label": "predicted"})
    ours = ours.astype({"recording": str, "channel": str, "predicted": str})
    return match.labelled.merge(ours, on=key, how="left", validate="one_to_one")


def _codes(values: pd.Series, classes: list[str]) -> np.ndarray:
    """Class positions; -1 for anything else (a missing prediction)."""
    position = {c: i for i, c in enumerate(classes)}
    return np.asarray([position.get(v, -1) for v in values.astype(str)], dtype=np.int64)


def _confusion(truth: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    both = (truth >= 0) & (predicted >= 0)
    flat = np.bincount(truth[both] * k + predicted[both], minlength=k * k)
    return flat.reshape(k, k)


def macro_f1(confusion: np.ndarray) -> float | None:
    """Mean F1 over the classes with labelled cases (rows with a count); None without any."""
    confusion = np.asarray(confusion, dtype=float)
    support = confusion.sum(axis=1)
    used = support > 0
    if not used.any():
        return None
    hits = np.diag(confusion)
    twice = support + confusion.sum(axis=0)  # labelled + predicted; F1 = 2 hits / that
    f1 = np.divide(2 * hits, twice, out=np.zeros_like(hits), where=twice > 0)
    return float(f1[used].mean())


def _scores(confusion: np.ndarray, classes: list[str]) -> tuple[ClassScore, ...]:
    scores = []
    for i, label in enumerate(classes):
        hits, support, predicted = (
            int(confusion[i, i]),
            int(confusion[i].sum()),
            int(confusion[:, i].sum()),
        )
        precision = hits / predicted if predicted else None
        recall = hits / support if support else None
        f1 = 2 * hits / (support + predicted) if support else None
        scores.append(ClassScore(label, precision, recall, f1, support, predicted))
    return tuple(scores)


def _interval(
    truth: np.ndarray, predicted: np.ndarray, units: np.ndarray, k: int, n: int, seed: int
) -> tuple[float | None, float | None]:
    """The 95 % percentile interval of macro-F1 over resampled units (module doc)."""
    names, unit = np.unique(units.astype(str), return_inverse=True)
    if len(names) < 2 or n < 1:
        return None, None
    per_unit = np.zeros((len(names), k, k))
    both = (truth >= 0) & (predicted >= 0)
    np.add.at(per_unit, (unit[both], truth[both], predicted[both]), 1)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(names), size=(n, len(names)))
    weights = np.stack([np.bincount(d, minlength=len(names)) for d in draws])
    values = [macro_f1(np.tensordot(w, per_unit, axes=1)) for w in weights]
    low, high = np.percentile([v for v in values if v is not None], [2.5, 97.5])
    return float(low), float(high)


def _channel_results(labels: LabelsFile, calls: pd.DataFrame) -> tuple[ChannelResult, ...]:
    whole = [r for r in labels.rows if r.whole_channel]
    if not whole:
        return ()
    ok = calls[calls["status"].astype(str) == "ok"]
    dominant = {
        (str(r), str(c)): "" if d is None or d != d else str(d)
        for r, c, d in zip(ok["recording"], ok["channel"], ok["dominant_label"], strict=True)
    }
    return tuple(
        ChannelResult(r.line, r.recording, r.channel, r.label, dominant[key])
        for r in whole
        if (key := (r.recording, r.channel)) in dominant
    )


def print_agreement(result: Agreement, *, console=None) -> None:
    """The agreement as text: counts, figures, per-class table, confusion matrix."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()

    def say(text: str) -> None:
        console.print(text, soft_wrap=True, markup=False, highlight=False)

    r = result
    outside = sum(r.outside_classes.values())
    interval = (
        f"95 % interval {_fmt(r.macro_f1_low)}-{_fmt(r.macro_f1_high)}"
        if r.macro_f1_low is not None
        else "no interval: fewer than 2 recordings"
    )
    say(f"callsort agreement: {r.dataset or ''} with {r.labels_file}")
    for name, value in (
        (
            "label rows",
            f"{r.n_label_rows:,}: {r.n_rows_matched:,} matched, {len(r.unmatched_lines):,} "
            f"matched no segment, {outside:,} outside the classes",
        ),
        ("segments", f"{r.n_labelled:,} of {r.n_segments:,} labelled by the file"),
        ("agreement", f"{_fmt(r.accuracy)} of segments, {_fmt(r.accuracy_s)} of seconds"),
        ("macro-F1", f"{_fmt(r.macro_f1)} ({interval})"),
        (
            "interval",
            f"resamples {r.n_units:,} {r.bootstrap_unit}s (not segments) "
            f"{r.n_bootstrap:,} times, seed {r.seed}",
        ),
    ):
        say(f"  {name:<12}{value}")

    say("per class (in file: segments the file gives the class; callsort: those callsort gives it)")
    scores = Table()
    for name in ("class", "precision", "recall", "F1", "in file", "callsort"):
        scores.add_column(name, justify="left" if name == "class" else "right")
    for s in r.per_class:
        scores.add_row(
            s.label,
            _fmt(s.precision),
            _fmt(s.recall),
            _fmt(s.f1),
            f"{s.support:,}",
            f"{s.predicted:,}",
        )
    console.print(scores)

    say("confusion matrix (rows: the labels file, columns: callsort)")
    matrix = Table()
    matrix.add_column("")
    for c in r.classes:
        matrix.add_column(c, justify="right")
    for c, row in zip(r.classes, r.confusion, strict=True):
        matrix.add_row(c, *(f"{v:,}" for v in row))
    console.print(matrix)

    if r.channels:
        agree = sum(c.label == c.dominant_label for c in r.channels)
        say(
            f"whole-channel labels: {agree:,} of {len(r.channels):,} channels' dominant label "
            "agrees"
        )
    if r.unmatched_lines:
        shown = ", ".join(map(str, r.unmatched_lines[:SHOW_LINES]))
        more = len(r.unmatched_lines) - SHOW_LINES
        say(
            f"{len(r.unmatched_lines):,} label rows matched no segment: lines {shown}"
            + (f" and {more:,} more" if more > 0 else "")
        )
    if r.outside_classes:
        counts = ", ".join(f"{k} {v:,}" for k, v in r.outside_classes.items())
        say(
            f"{outside:,} label rows outside the classes ({', '.join(r.classes)}), "
            f"not scored: {counts}"
            + (f"; they cover {r.n_outside_segments:,} segments" if r.n_outside_segments else "")
        )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
