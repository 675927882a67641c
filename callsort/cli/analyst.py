"""``callsort info``, ``report``, ``summary`` and ``export``: reading models and datasets."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer


def info(
    model: Annotated[
        str | None,
        typer.Option(help="'default', 'fast' or a model folder (default: both shipped)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole card as JSON.")] = False,
) -> None:
    """Show the model in use: version, classes, training data and measured accuracy.

    Example: [bold]callsort info[/bold]
    """
    from callsort.model.card import SHIPPED_MODELS
    from callsort.model.folder import load_model
    from callsort.run.progress import print_card

    # --json prints one card: the model named, or the default
    names = [model] if model is not None or as_json else list(SHIPPED_MODELS)
    for name in names:
        loaded = load_model(name)
        if as_json:
            typer.echo(loaded.card.to_json(), nl=False)
        else:
            print_card(loaded, title=f"callsort model {name}" if model is None else None)


class ExportFormat(str, Enum):
    csv = "csv"
    parquet = "parquet"
    json = "json"


class ExportTable(str, Enum):
    calls = "calls"
    segments = "segments"


_DATASET_HELP = "Folder written by callsort label --out (flat or date-partitioned)."
_CUSTOMER_HELP = "Channel that ranks calls first (default: 'customer' when present)."


def report(
    dataset: Annotated[Path, typer.Argument(help=_DATASET_HELP)],
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")] = Path(
        "report.html"
    ),
    title: Annotated[str | None, typer.Option(help="Page title.")] = None,
    timelines: Annotated[
        int,
        typer.Option(help="Calls whose timelines are embedded, most escalated first.", min=0),
    ] = 1000,
    customer: Annotated[str | None, typer.Option(help=_CUSTOMER_HELP)] = None,
) -> None:
    """Write one self-contained HTML report: figures, ranked calls, timelines, shares by day.

    Example: [bold]callsort report reports --out reports/report.html[/bold]
    """
    from callsort.analyst.report import write_report
    from callsort.dataset.reading import read_dataset
    from callsort.run.progress import results

    data = read_dataset(dataset)
    info = write_report(data, out, title=title, max_timelines=timelines, customer=customer)
    results.print(
        f"report written to {out} ({info.size_bytes / 1e6:.1f} MB; {info.n_calls:,} calls, "
        f"{info.n_timelines:,} timelines)"
    )


def summary(
    dataset: Annotated[Path, typer.Argument(help=_DATASET_HELP)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    top: Annotated[int, typer.Option(help="How many escalated calls to list.", min=0)] = 10,
    customer: Annotated[str | None, typer.Option(help=_CUSTOMER_HELP)] = None,
) -> None:
    """Print a dataset's figures: calls, speech, label shares, most escalated calls.

    Example: [bold]callsort summary reports --json[/bold]
    """
    import json

    from callsort.analyst.summary import print_summary, summarise
    from callsort.dataset.reading import read_dataset

    figures = summarise(read_dataset(dataset), top=top, customer=customer)
    if as_json:
        typer.echo(json.dumps(figures, indent=2, ensure_ascii=False))
    else:
        from callsort.run.progress import results

        print_summary(figures, console=results)


def export(
    dataset: Annotated[Path, typer.Argument(help=_DATASET_HELP)],
    fmt: Annotated[ExportFormat, typer.Option("--format", help="Output format.")] = (
        ExportFormat.csv
    ),
    table: Annotated[ExportTable, typer.Option(help="Which table to export.")] = (
        ExportTable.calls
    ),
    where: Annotated[
        list[str] | None,
        typer.Option(
            help="COLUMN OP VALUE, OP one of = != < <= > >= ~ (contains); repeat to AND. "
            "Values a,b after = mean either."
        ),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="First date, YYYY-MM-DD (partitioned datasets).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Last date, YYYY-MM-DD, inclusive.")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="File to write (default: stdout).")
    ] = None,
) -> None:
    """Export the rows that match, as CSV, Parquet or JSON.

    Example (the escalated calls of a week):
    [bold]callsort export nightly --where escalated=true --since 2025-03-03 --until 2025-03-09 --out escalated.csv[/bold]
    """
    from callsort.analyst.export import date_conditions, parse_condition, select, write_export
    from callsort.dataset.reading import read_dataset

    conditions = [parse_condition(w) for w in where or []]
    conditions += date_conditions(since, until)
    rows = select(read_dataset(dataset), table=table.value, conditions=conditions)
    write_export(rows, fmt.value, out)
    if out is not None:
        from callsort.run.progress import console

        console.print(f"{len(rows):,} {table.value} rows written to {out}")


def agreement(
    dataset: Annotated[Path, typer.Argument(help=_DATASET_HELP)],
    labels: Annotated[
        Path,
        typer.Argument(
            help="CSV of recording,channel,start_s,end_s,label (spans) or "
            "recording,channel,label (whole channels); 'emotion' may name the label column."
        ),
    ],
    json_out: Annotated[
        str | None,
        typer.Option(
            "--json", help="Also write the figures as JSON to FILE; '-' prints only them."
        ),
    ] = None,
    bootstrap: Annotated[
        int, typer.Option(help="Resamples of recordings for the macro-F1 interval.", min=0)
    ] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
) -> None:
    """Compare a dataset with your own labels: precision, recall, F1, confusion, macro-F1.

    A span labels the segments it overlaps most; a whole-channel row labels all its
    channel's segments. The macro-F1 interval resamples recordings, not segments.

    Example (the demo calls and their ground truth):
    [bold]callsort agreement reports sample_recordings/ground_truth.csv[/bold]
    """
    import json

    from callsort.analyst.agreement import agreement as compare
    from callsort.analyst.agreement import dataset_classes, print_agreement
    from callsort.dataset.labels import read_labels
    from callsort.dataset.reading import read_dataset

    data = read_dataset(dataset)
    result = compare(
        data, read_labels(labels, classes=dataset_classes(data)), n_bootstrap=bootstrap, seed=seed
    )
    text = json.dumps(result.to_dict(), indent=2, ensure_ascii=False)
    if json_out == "-":
        typer.echo(text)
        return
    if json_out is not None:
        from callsort.errors import UsageError

        try:
            Path(json_out).write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write {json_out}: {exc.strerror or exc}") from None
    from callsort.run.progress import results

    print_agreement(result, console=results)
