"""The ``callsort`` command: a thin Typer layer over plain functions.

Exit codes: 0 every recording labelled; 1 some recordings failed (tables are
still written); 2 usage error (bad option, path or model); 3 another run holds
the output folder's lock; 70 internal error.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from callsort import __version__
from callsort.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, CallsortError, UsageError

app = typer.Typer(
    name="callsort",
    help="Label call recordings by the emotion in the voice (angry, calm, happy, sad).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
EXIT_FAILED_RECORDINGS = 1
_state = {"debug": False, "own_process": False}


class ChannelMode(str, Enum):
    split = "split"
    mix = "mix"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"callsort {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks of internal errors.")
    ] = False,
) -> None:
    _state["debug"] = debug


class Engine(str, Enum):
    local = "local"
    dask = "dask"


_DATASET = "Dataset and nightly runs"
_OUTPUT = "Output"


@app.command()
def label(
    paths: Annotated[
        list[Path], typer.Argument(help="Recordings and folders (walked recursively).")
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Dataset folder: calls.csv, segments/ and calls/ (Parquet)."
        ),
    ] = Path("callsort-reports"),
    formats: Annotated[
        str,
        typer.Option(
            "--format",
            help="parquet (always: the dataset) and csv (calls.csv at the top).",
            rich_help_panel=_OUTPUT,
        ),
    ] = "parquet,csv",
    segments_csv: Annotated[
        bool,
        typer.Option(
            "--segments-csv", help="Also write segments.csv (can be huge).", rich_help_panel=_OUTPUT
        ),
    ] = False,
    include: Annotated[
        list[str] | None, typer.Option(help="Only names matching this glob (repeatable).")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option(help="Skip names matching this glob (repeatable).")
    ] = None,
    channels: Annotated[
        ChannelMode, typer.Option(help="split: label each channel; mix: average them first.")
    ] = ChannelMode.split,
    channel_names: Annotated[
        str, typer.Option(help="Names of the two channels of a stereo file, left first.")
    ] = "left,right",
    max_segment: Annotated[
        float, typer.Option(help="Longest segment in seconds; longer speech is cut.", min=0.5)
    ] = 4.0,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Worker processes; 0: all cores.")] = 0,
    model: Annotated[
        str | None,
        typer.Option(
            help="'default' (Whisper base encoder + hand-made features), 'fast' (hand-made "
            "features only, about 3x faster) or a model folder."
        ),
    ] = None,
    encoder_dir: Annotated[
        Path | None,
        typer.Option(
            envvar="CALLSORT_ENCODER_DIR",
            help="Your own CTranslate2 copy of Whisper base (e.g. a faster-whisper base "
            "folder), used if it reproduces callsort's reference embedding.",
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress or summary (errors still shown).")
    ] = False,
    file_timeout: Annotated[
        float,
        typer.Option(
            help="Seconds one recording may take before it becomes an error row; 0: no limit.",
            min=0.0,
        ),
    ] = 3600.0,
    absolute_paths: Annotated[
        bool,
        typer.Option(
            "--absolute-paths", help="Name recordings by absolute path, not relative to the input."
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Reprocess every recording.", rich_help_panel=_DATASET),
    ] = False,
    verify_hash: Annotated[
        bool,
        typer.Option(
            "--verify-hash",
            help="Also compare a hash of each file's bytes (reads every file).",
            rich_help_panel=_DATASET,
        ),
    ] = False,
    retry_failed: Annotated[
        bool,
        typer.Option(
            "--retry-failed",
            help="Try unchanged recordings that failed last time again.",
            rich_help_panel=_DATASET,
        ),
    ] = False,
    date_pattern: Annotated[
        str | None,
        typer.Option(
            "--date-pattern",
            metavar="REGEX",
            help="Date of a recording from its path, e.g. '(\\d{4}-\\d{2}-\\d{2})'; "
            "else its file's modification date (UTC).",
            rich_help_panel=_DATASET,
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="DATE",
            help="Only recordings dated on or after DATE (YYYY-MM-DD).",
            rich_help_panel=_DATASET,
        ),
    ] = None,
    max_files: Annotated[
        int | None,
        typer.Option(
            "--max-files",
            metavar="N",
            help="Process at most N recordings (oldest first); the rest wait for the next run.",
            rich_help_panel=_DATASET,
            min=0,
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="List what would be processed, and why.", rich_help_panel=_DATASET
        ),
    ] = False,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Wait for another run holding the output folder (default: exit 3).",
            rich_help_panel=_DATASET,
        ),
    ] = False,
    log_file: Annotated[
        Path | None,
        typer.Option(
            "--log-file", help="Append JSON-lines events to this file.", rich_help_panel=_DATASET
        ),
    ] = None,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            metavar="N",
            help="Recordings per commit to the dataset (also committed every minute).",
            rich_help_panel=_DATASET,
            min=1,
        ),
    ] = 200,
    engine: Annotated[
        Engine,
        typer.Option(
            help="local: processes on this machine; dask: a Dask cluster.",
            rich_help_panel=_DATASET,
        ),
    ] = Engine.local,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            metavar="ADDRESS",
            help="Dask scheduler, e.g. tcp://10.0.0.5:8786 (default: a local cluster of --jobs).",
            rich_help_panel=_DATASET,
        ),
    ] = None,
) -> None:
    """Label recordings into a dataset; rerun it to process only new or changed ones.

    Example: [bold]callsort label ./recordings --out ./reports --channel-names agent,customer[/bold]

    The output folder gets calls.csv (one row per call channel) and the Parquet
    tables segments/ and calls/, partitioned by date. Exit codes: 0 all labelled,
    1 some recordings failed, 2 usage error, 3 another run holds the output folder.
    """
    from dataclasses import replace

    from callsort.dataset.writers import FORMATS
    from callsort.settings import AnalysisSettings, ChannelSettings, SegmentationSettings

    jobs = jobs or _jobs(0)
    if not quiet and not dry_run:
        from callsort.run.progress import print_first_run_note

        print_first_run_note()  # before the workers start importing librosa
    if (
        _state.get("own_process")
        and not dry_run
        and (len(paths) > 1 or any(p.is_dir() for p in paths))
    ):
        from callsort.run.batch import start_workers

        start_workers(jobs)  # a batch: the workers' imports overlap this process's start
    with _user_errors():
        _use_encoder_dir(encoder_dir)
        fmt = [f.strip().lower() for f in formats.split(",") if f.strip()]
        if not fmt or set(fmt) - set(FORMATS):
            raise UsageError(f"--format takes a comma-separated subset of {', '.join(FORMATS)}")
        names = tuple(n.strip() for n in channel_names.split(","))
        if len(names) != 2 or not all(names) or names[0] == names[1]:
            raise UsageError("--channel-names takes two different names, e.g. agent,customer")
        settings = AnalysisSettings(
            channels=ChannelSettings(mode=channels.value, names=names),  # type: ignore[arg-type]
            segmentation=replace(SegmentationSettings(), max_segment_s=max_segment),
        )
        from callsort.run.progress import LabelProgress, print_plan, print_summary, print_waiting

        options = dict(
            formats=fmt,
            segments_csv=segments_csv,
            model_dir=model,
            settings=settings,
            include=include or (),
            exclude=exclude or (),
            jobs=jobs,
            engine=engine.value,
            scheduler=scheduler,
            force=force,
            verify_hash=verify_hash,
            retry_failed=retry_failed,
            date_pattern=date_pattern,
            since=since,
            max_files=max_files,
            dry_run=dry_run,
            wait=wait,
            on_wait=None if quiet else print_waiting,
            log_file=log_file,
            batch_size=batch_size,
            keep_results=False,  # bounded memory for archives of any size
            file_timeout_s=file_timeout,
            absolute_paths=absolute_paths,
        )
        with LabelProgress(enabled=not quiet and not dry_run) as progress:
            run = _label(paths, out, options, progress)
        if dry_run:
            print_plan(run)
            raise typer.Exit(0)
        if not quiet:
            print_summary(run, out)
        if run.summary_error:  # even with --quiet: cron must hear of it
            typer.secho(
                f"callsort: {run.summary_error}; the tables were written, exit code "
                f"{run.exit_code}",
                err=True,
                fg="red",
            )
    raise typer.Exit(run.exit_code)


def _label(paths, out, options, progress):
    from callsort.run.batch import label as label_recordings

    if _state.get("own_process"):  # not when a test or a program calls the app in-process
        from callsort.model.booster import lean_lightgbm_import

        lean_lightgbm_import()
    return label_recordings(
        paths, out=out, on_start=progress.start, on_result=progress.advance, **options
    )


@app.command()
def train(
    data_dirs: Annotated[
        list[Path],
        typer.Argument(
            help="Corpus folders (RAVDESS layout, or with labels.csv), each with its own speakers."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model folder to write.")],
    fast: Annotated[
        bool,
        typer.Option("--fast", help="The fast model: hand-made features only, no encoder."),
    ] = False,
    classes: Annotated[str, typer.Option(help="Comma-separated classes.")] = "angry,calm,happy,sad",
    holdout_speakers: Annotated[
        str, typer.Option(help="Speakers left out of the final model, e.g. 23,24.")
    ] = "",
    calm_from_neutral: Annotated[
        bool, typer.Option(help="Also train the calm class on RAVDESS neutral clips.")
    ] = False,
    no_telephone: Annotated[
        bool, typer.Option("--no-telephone", help="Train without telephone-degraded copies.")
    ] = False,
    no_channel_normalisation: Annotated[
        bool,
        typer.Option(
            "--no-channel-normalisation",
            help="Raw features only, not also normalised within each channel.",
        ),
    ] = False,
    tune: Annotated[
        bool,
        typer.Option(
            "--tune",
            help="Choose LightGBM settings and feature selection by a search inside the "
            "training speakers (nested in the evaluation; about 30x slower).",
        ),
    ] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Processes; 0: all cores.")] = 0,
    cache: Annotated[Path | None, typer.Option(help="Feature cache folder.")] = None,
    licence: Annotated[str | None, typer.Option(help="Licence note for the card.")] = None,
    encoder_dir: Annotated[
        Path | None,
        typer.Option(envvar="CALLSORT_ENCODER_DIR", help="Your own copy of Whisper base."),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the card's figures here.")
    ] = None,
) -> None:
    """Train a model, cross-validate it by speaker, and write it with its card.

    Example (the shipped models: scripts/train_shipped_models.sh):
    [bold]callsort train ../shared/datasets/ravdess-speech-16k ../shared/datasets/nemo-speech-16k --out callsort/models/default --holdout-speakers 23,24[/bold]
    """
    from callsort.model.folder import save_model
    from callsort.run.progress import print_metrics, results
    from callsort.training import train as training
    from callsort.training.corpora import default_licence

    with _user_errors():
        config = _training_config(
            classes,
            holdout_speakers,
            calm_from_neutral,
            no_telephone,
            no_channel_normalisation,
            tune=tune,
        )
        _use_encoder_dir(encoder_dir)
        n_jobs = _jobs(jobs)
        run = _extract(data_dirs, config, n_jobs, cache, fast=fast)
        metrics = training.corpus_protocols(run, config, jobs=n_jobs, on_fold=_print_fold)
        classifier, card = training.train_model(
            run,
            config,
            data_dir=data_dirs,
            metrics=metrics,
            jobs=n_jobs,
            licence=licence or default_licence(data_dirs),
        )
        save_model(classifier, card, out)
        if json_out:
            import json

            json_out.write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
        print_metrics(metrics, classes=config.classes)
        results.print(f"model {card.version} written to {out}")


@app.command()
def evaluate(
    data_dirs: Annotated[
        list[Path],
        typer.Argument(help="Corpus folders (RAVDESS layout, or with labels.csv)."),
    ],
    fast: Annotated[
        bool, typer.Option("--fast", help="Hand-made features only, no encoder.")
    ] = False,
    classes: Annotated[str, typer.Option(help="Comma-separated classes.")] = "angry,calm,happy,sad",
    calm_from_neutral: Annotated[bool, typer.Option(help="Calm also from neutral clips.")] = False,
    no_telephone: Annotated[
        bool, typer.Option("--no-telephone", help="Train without telephone copies.")
    ] = False,
    no_channel_normalisation: Annotated[
        bool, typer.Option("--no-channel-normalisation", help="Raw features only.")
    ] = False,
    tune: Annotated[
        bool, typer.Option("--tune", help="Nested search of LightGBM settings (slow).")
    ] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Processes; 0: all cores.")] = 0,
    cache: Annotated[Path | None, typer.Option(help="Feature cache folder.")] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write figures here.")
    ] = None,
    check_card: Annotated[
        Path | None,
        typer.Option(help="Exit 1 unless the figures match this model folder's card."),
    ] = None,
    tolerance: Annotated[
        float, typer.Option(help="Largest accepted difference with --check-card.")
    ] = 0.01,
    headline_only: Annotated[
        bool,
        typer.Option(
            "--headline-only",
            help="Only the first corpus's speaker folds, clean and mu-law telephone (the "
            "figures --check-card compares).",
        ),
    ] = False,
    encoder_dir: Annotated[
        Path | None,
        typer.Option(envvar="CALLSORT_ENCODER_DIR", help="Your own copy of Whisper base."),
    ] = None,
) -> None:
    """Run the speaker-independent protocol (6 folds by speaker) and print the figures.

    Example: [bold]callsort evaluate ../shared/datasets/ravdess-speech-16k[/bold]
    """
    import json

    from callsort.run.progress import print_metrics, results
    from callsort.training import train as training

    with _user_errors():
        config = _training_config(
            classes, "", calm_from_neutral, no_telephone, no_channel_normalisation, tune=tune
        )
        _use_encoder_dir(encoder_dir)
        n_jobs = _jobs(jobs)
        run = _extract(data_dirs, config, n_jobs, cache, fast=fast, codecs=not headline_only)
        metrics = training.corpus_protocols(
            run,
            config,
            jobs=n_jobs,
            headline_only=headline_only,
            on_fold=_print_fold,
        )
        print_metrics(metrics, classes=config.classes)
        if json_out:
            json_out.write_text(json.dumps(metrics, indent=2) + "\n")
        if check_card is not None:
            from callsort.model.folder import load_model
            from callsort.training.metrics import metric_differences

            expected = load_model(check_card).card.metrics
            differences = metric_differences(expected, metrics, tolerance=tolerance)
            for line in differences:
                results.print(f"[red]{line}[/red]")
            if differences:
                raise typer.Exit(1)
            results.print(f"figures match the card in {check_card} (tolerance {tolerance})")


@app.command()
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

    with _user_errors():
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


@app.command()
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

    with _user_errors():
        data = read_dataset(dataset)
        info = write_report(data, out, title=title, max_timelines=timelines, customer=customer)
        results.print(
            f"report written to {out} ({info.size_bytes / 1e6:.1f} MB; {info.n_calls:,} calls, "
            f"{info.n_timelines:,} timelines)"
        )


@app.command()
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

    with _user_errors():
        figures = summarise(read_dataset(dataset), top=top, customer=customer)
        if as_json:
            typer.echo(json.dumps(figures, indent=2, ensure_ascii=False))
        else:
            from callsort.run.progress import results

            print_summary(figures, console=results)


@app.command()
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

    with _user_errors():
        conditions = [parse_condition(w) for w in where or []]
        conditions += date_conditions(since, until)
        rows = select(read_dataset(dataset), table=table.value, conditions=conditions)
        write_export(rows, fmt.value, out)
        if out is not None:
            from callsort.run.progress import console

            console.print(f"{len(rows):,} {table.value} rows written to {out}")


def _training_config(
    classes: str,
    holdout: str,
    calm_from_neutral: bool,
    no_telephone: bool,
    no_channel_normalisation: bool = False,
    *,
    tune: bool = False,
):
    from callsort.training.train import TrainingConfig

    names = tuple(c.strip() for c in classes.split(",") if c.strip())
    if len(names) < 2 or len(set(names)) != len(names):
        raise UsageError("--classes takes at least two different class names")
    conditions = TrainingConfig().train_conditions
    if no_telephone:
        conditions = tuple(c for c in conditions if c != "telephone")
    return TrainingConfig(
        classes=names,
        train_conditions=conditions,
        channel_normalisation=not no_channel_normalisation,
        calm_from_neutral=calm_from_neutral,
        tune=tune,
        holdout_speakers=tuple(s.strip() for s in holdout.split(",") if s.strip()),
    )


def _jobs(jobs: int) -> int:
    from callsort.run.batch import default_jobs

    return jobs or default_jobs()


def _extract(data_dirs, config, jobs, cache, *, fast: bool, codecs: bool = True):
    from callsort.features.encoder import WHISPER_BASE
    from callsort.run.progress import clip_progress
    from callsort.settings import FeatureSettings
    from callsort.training import train as training
    from callsort.training.corpora import find_corpora

    n = len(
        find_corpora(data_dirs, classes=config.classes, calm_from_neutral=config.calm_from_neutral)
    )
    tested = (*training.CONDITIONS, *(training.CODEC_CONDITIONS if codecs else ()))
    conditions = dict.fromkeys([*tested, *config.train_conditions])
    with clip_progress(total=n * len(conditions)) as advance:
        return training.extract(
            data_dirs,
            config,
            jobs=jobs,
            cache_dir=cache or training.default_cache_dir(),
            on_done=advance,
            conditions=tested,
            feature_settings=FeatureSettings(encoder=None if fast else WHISPER_BASE),
        )


def _print_fold(protocol: str, k: int, report: dict) -> None:
    from callsort.run.progress import results
    from callsort.training.train import CONDITIONS

    results.print(
        f"{protocol}, fold {k} ({len(report['test_speakers'])} test speakers): "
        + ", ".join(f"{c} macro-F1 {report[c]['macro_f1']:.3f}" for c in CONDITIONS)
    )


def _use_encoder_dir(encoder_dir: Path | None) -> None:
    """Hand ``--encoder-dir`` to this process's encoder and to the workers it starts."""
    if encoder_dir is None:
        return
    if not (encoder_dir / "model.bin").is_file():
        raise UsageError(f"--encoder-dir: {encoder_dir / 'model.bin'} not found")
    os.environ["CALLSORT_ENCODER_DIR"] = str(encoder_dir.resolve())


class _user_errors:
    """Turn :class:`CallsortError` into a message and its exit code."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or not isinstance(exc, CallsortError):
            return False
        if _state["debug"]:
            return False
        typer.secho(f"callsort: {exc}", err=True, fg="red")
        raise typer.Exit(exc.exit_code)


def main() -> None:
    """Console-script entry point: no traceback for the user unless ``--debug``."""
    started = time.perf_counter()
    _state["own_process"] = True
    # Importing numpy, scipy, librosa and LightGBM allocates hundreds of thousands of
    # objects, and the default threshold (700) runs the cyclic collector over them again
    # and again: 8% of labelling one short file. Cycles are still collected, less often.
    gc.set_threshold(50_000, 20, 20)
    try:
        app()
    except KeyboardInterrupt:
        typer.secho("callsort: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:
        if _state["debug"] or "--debug" in sys.argv:
            raise
        typer.secho(
            f"callsort: internal error after {time.perf_counter() - started:.1f} s: "
            f"{type(exc).__name__}: {exc} (run with --debug for the traceback)",
            err=True,
            fg="red",
        )
        sys.exit(EXIT_INTERNAL)
    finally:
        # The process is about to exit: spare the collector's passes over every imported
        # object while the interpreter shuts down (0.3 s once librosa is loaded).
        gc.freeze()
