"""What the CLI shows people: a progress bar, a closing summary, metrics and cards."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

console = Console(stderr=True)  # progress and messages
results = Console()  # what the user asked for: summaries, metrics, cards


class LabelProgress:
    """Files done, hours of audio done and throughput, updated per recording."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self.audio_s = 0.0
        self.started = time.perf_counter()
        self._progress = Progress(
            TextColumn("[bold]labelling"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("files"),
            TextColumn("{task.fields[audio]}"),
            TextColumn("{task.fields[speed]}"),
            TimeElapsedColumn(),
            console=console,
            disable=not enabled,
            transient=False,
        )
        self._task = None

    def __enter__(self) -> LabelProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def start(self, recordings: Sequence) -> None:
        self.started = time.perf_counter()
        self._task = self._progress.add_task(
            "label", total=len(recordings), audio="0.00 h audio", speed=""
        )

    def advance(self, result) -> None:
        if result.analysis is not None:
            self.audio_s += result.analysis.duration_s
        wall = max(time.perf_counter() - self.started, 1e-6)
        self._progress.update(
            self._task,
            advance=1,
            audio=f"{self.audio_s / 3600:.2f} h audio",
            speed=f"{self.audio_s / wall:,.0f}x real time",
        )


def print_summary(run, out: Path) -> None:
    """Closing table: files ok, failed and skipped, hours of audio, wall time, label shares."""
    audio_s = run.audio_s
    table = Table(title="callsort label", show_header=False, title_justify="left")
    table.add_row("files labelled", str(run.n_ok))
    table.add_row("files failed", str(run.n_failed))
    if run.dataset is not None:
        table.add_row("files unchanged", f"{run.skipped} (skipped; --force reprocesses them)")
        if run.deferred:
            table.add_row("files left for later", f"{run.deferred} (--max-files)")
    table.add_row("audio", f"{audio_s / 3600:.2f} h ({audio_s:,.0f} s)")
    table.add_row(
        "wall time", f"{run.wall_s:.1f} s ({audio_s / max(run.wall_s, 1e-9):,.0f}x real time)"
    )
    calls = run.calls.to_pandas()
    ok = calls[calls["status"] == "ok"] if len(calls) else calls
    shares = [c for c in ok.columns if c.startswith("share_")]
    speech = ok["speech_s"].fillna(0) if len(ok) else None
    if speech is not None and speech.sum() > 0:
        seconds = {c[len("share_") :]: float((ok[c].fillna(0) * speech).sum()) for c in shares}
        total = sum(seconds.values()) or 1.0
        table.add_row(
            "speech by label", ", ".join(f"{k} {v / total:.0%}" for k, v in seconds.items())
        )
    escalated = calls[calls["escalated"].fillna(False).astype(bool)] if len(calls) else calls
    table.add_row(
        "escalated",
        ", ".join(escape(f"{r.recording} [{r.channel}]") for r in escalated.itertuples()) or "none",
    )
    table.add_row("model", run.model_version)
    table.add_row("tables", ", ".join(str(p) for p in run.written) or "(none written)")
    if run.summary_file is not None:
        table.add_row("run summary", str(run.summary_file))
    results.print(table)
    for note in run.notes:
        results.print(f"[yellow]note[/yellow] {note}")
    for recording, error in run.failures:
        results.print(f"[red]error[/red] {escape(recording)}: {escape(error)}")


def print_plan(run) -> None:
    """``--dry-run``: one line per recording that would be processed, then the counts."""
    for p in run.planned:
        results.print(f"{p.reason:<9} {p.date}  {p.recording.name}", markup=False, highlight=False)
    results.print(
        f"would process {len(run.planned)} recordings; {run.skipped} unchanged"
        + (f", {run.deferred} left for later (--max-files)" if run.deferred else "")
        + (f", {run.outside} before --since" if run.outside else ""),
        markup=False,
        highlight=False,
    )


def print_waiting(holder: dict) -> None:
    console.print(
        f"waiting for run {holder.get('run_id', '?')} (pid {holder.get('pid', '?')} on "
        f"{holder.get('host', '?')}, started {holder.get('started_at', '?')}) to finish ...",
        markup=False,
        highlight=False,
    )


@contextmanager
def clip_progress(*, total: int) -> Iterator:
    """A bar for feature extraction over training clips; yields the advance function."""
    with Progress(
        TextColumn("[bold]features"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("features", total=total)
        yield lambda: progress.advance(task)


def print_metrics(metrics: dict, *, classes: Sequence[str]) -> None:
    """Cross-validated accuracy, macro-F1, per-class F1 and confusion per condition."""
    results.print(
        f"[bold]{metrics['protocol']}[/bold]; {metrics['n_clips']} clips; "
        f"trained on {', '.join(metrics['train_conditions'])} audio"
    )
    for cond in ("clean", "telephone"):
        if cond not in metrics:
            continue
        m = metrics[cond]
        table = Table(
            title=f"{cond} test clips: accuracy {m['accuracy']:.3f}, "
            f"macro-F1 {m['macro_f1']:.3f} (mean of folds)",
            title_justify="left",
        )
        table.add_column("truth \\ predicted")
        for c in classes:
            table.add_column(c, justify="right")
        table.add_column("F1", justify="right")
        for c, row in zip(classes, m["confusion"], strict=True):
            table.add_row(c, *map(str, row), f"{m['per_class_f1'][c]:.3f}")
        results.print(table)
    protocols = {metrics.get("headline", "headline"): metrics, **metrics.get("other_protocols", {})}
    conditions = [c for c in ("clean", "telephone", "alaw", "gsm", "g721") if c in metrics]
    table = Table(title="macro-F1 by protocol and test audio", title_justify="left")
    table.add_column("protocol")
    table.add_column("clips", justify="right")
    for c in conditions:
        table.add_column(c, justify="right")
    for name, m in protocols.items():
        table.add_row(
            name,
            str(m.get("n_clips", "")),
            *(f"{m[c]['macro_f1']:.3f}" if c in m else "" for c in conditions),
        )
    results.print(table)
    for k, fold in enumerate(metrics.get("tuning", {}).get("per_fold", [])):
        chosen = ", ".join(f"{n}={v}" for n, v in fold["chosen"].items() if v is not None)
        results.print(f"fold {k}: the search inside its training speakers chose {chosen}")


def print_card(model, *, title: str | None = None) -> None:
    """The model in use, as ``callsort info`` shows it."""
    card = model.card
    table = Table(title=title or "callsort model", show_header=False, title_justify="left")
    table.add_row("version", card.version)
    table.add_row("folder", str(model.path))
    table.add_row("classes", ", ".join(card.classes))
    encoder = card.feature_settings.get("encoder")
    table.add_row(
        "features",
        f"{len(card.feature_names)} per segment"
        + (
            f" ({encoder} encoder's embedding through a linear head, stacked)"
            if encoder
            else " (hand-made, no encoder)"
        ),
    )
    if card.normalisation is not None:
        table.add_row(
            "channel normalisation",
            f"half of the features are z-scores within each channel; a channel's statistics "
            f"are shrunk toward the training population's, counted as "
            f"{card.normalisation['weight']:g} segments",
        )
    table.add_row(
        "calibration",
        f"temperature {card.temperature:g}"
        + (" (not calibrated)" if card.metrics.get("evaluated") is False else ""),
    )
    t = card.training
    if t:
        table.add_row(
            "training data",
            f"{t.get('data')}: {t.get('n_clips')} clips, "
            f"{len(t.get('speakers', []))} speakers "
            f"(held out: {', '.join(t.get('held_out_speakers', [])) or 'none'})",
        )
    if card.metrics.get("evaluated") is False:
        table.add_row("figures", "not evaluated (trained with --no-evaluate)")
    for cond in ("clean", "telephone"):
        m = card.metrics.get(cond)
        if m:
            how = " in pseudo-calls" if card.metrics.get("channel_normalisation") else ""
            table.add_row(
                f"{cond} ({card.metrics.get('n_folds', 6)}-fold CV{how})",
                f"accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}",
            )
    for name, m in card.metrics.get("other_protocols", {}).items():
        table.add_row(
            name,
            ", ".join(
                f"{c} macro-F1 {m[c]['macro_f1']:.3f}" for c in ("clean", "telephone") if c in m
            ),
        )
    if card.metrics.get("protocol"):
        table.add_row("protocol", card.metrics["protocol"])
    table.add_row("created", card.created_at)
    table.add_row("libraries", ", ".join(f"{k} {v}" for k, v in card.library_versions.items()))
    table.add_row("licence", card.licence)
    results.print(table)
