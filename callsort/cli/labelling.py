"""``callsort label``: its options, and the plain function that runs it."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from callsort.cli.app import state
from callsort.errors import UsageError
from callsort.run.options import DEFAULT_BATCH, DEFAULT_FILE_TIMEOUT_S
from callsort.settings import MAX_SEGMENT_LIMIT_S


class ChannelMode(str, Enum):
    split = "split"
    mix = "mix"


class Speakers(str, Enum):
    one = "1"
    two = "2"
    auto = "auto"


class Agent(str, Enum):
    first = "first"
    most = "most"
    none = "none"


class Engine(str, Enum):
    local = "local"
    dask = "dask"


_DATASET = "Dataset and nightly runs"
_OUTPUT = "Output"


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
        str | None,
        typer.Option(
            help="Names of the two channels of a stereo file, left first [default: "
            "left,right]; and of the two speakers of a mono file, the agent first (see "
            "--agent) [default: speaker_a,speaker_b].",
            show_default=False,
        ),
    ] = None,
    speakers: Annotated[
        Speakers,
        typer.Option(
            help="Speakers of a mono file: 2 tells them apart into two channels, 1 keeps "
            "the file one channel, auto decides per file (one voice stays whole). Stereo "
            "files are not affected."
        ),
    ] = Speakers.auto,
    agent: Annotated[
        Agent,
        typer.Option(
            help="Which speaker of a mono file takes the first --channel-names name: first: "
            "the one heard first (the agent opens the call); most: the one with more "
            "speech; none: no agent, speakers named speaker_a (heard first) and speaker_b."
        ),
    ] = Agent.first,
    max_segment: Annotated[
        float,
        typer.Option(
            help="Longest segment in seconds; longer speech is cut.",
            min=0.5,
            max=MAX_SEGMENT_LIMIT_S,
        ),
    ] = 4.0,
    context: Annotated[
        bool,
        typer.Option(
            "--context/--no-context",
            help="Label each segment in the context of its channel's other segments "
            "(--no-context: each on its own; raw_label and raw_p_* always hold that).",
        ),
    ] = True,
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
    ] = DEFAULT_FILE_TIMEOUT_S,
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
    archive_statistics: Annotated[
        Path | None,
        typer.Option(
            "--archive-statistics",
            help="Label with these archive statistics (e.g. another dataset's "
            "archive-statistics.json) instead of this archive's own; only for a model "
            "that standardises features per archive.",
            rich_help_panel=_DATASET,
        ),
    ] = None,
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
    ] = DEFAULT_BATCH,
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
    from callsort.run.options import analysis_settings, default_jobs

    jobs = jobs or default_jobs()
    use_encoder_dir(encoder_dir)  # before the fork server starts: workers inherit its environment
    if state.own_process:  # the `callsort` command: its fork server is callsort's to tune
        from callsort.run.pool import preload_fork_server, start_workers

        preload_fork_server()
        if not dry_run and (len(paths) > 1 or any(p.is_dir() for p in paths)):
            start_workers(jobs)  # a batch: the workers' imports overlap this process's start
    fmt = parse_formats(formats)
    settings = analysis_settings(
        channels=channels.value,
        channel_names=None
        if channel_names is None
        else [n.strip() for n in channel_names.split(",")],
        max_segment_s=max_segment,
        context=context,
        names_option="--channel-names",
        speakers=speakers.value,
        agent=agent.value,
    )
    from callsort.run.progress import LabelProgress, print_plan, print_summary, print_waiting

    with LabelProgress(enabled=not quiet and not dry_run) as progress:
        run = run_label(
            paths,
            out=out,
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
            archive_statistics=archive_statistics,
            on_start=progress.start,
            on_result=progress.advance,
        )
    if dry_run:
        print_plan(run)
        raise typer.Exit(0)
    if not quiet:
        print_summary(run, out)
    if run.summary_error:  # even with --quiet: cron must hear of it
        typer.secho(
            f"callsort: {run.summary_error}; the tables were written, exit code {run.exit_code}",
            err=True,
            fg="red",
        )
    raise typer.Exit(run.exit_code)


def run_label(paths: list[Path], **options):
    """:func:`callsort.run.batch.label` with ``options``, LightGBM imported lean when this
    process is the ``callsort`` command (a program calling :data:`app` keeps its own)."""
    from callsort.run.batch import label as label_recordings

    if state.own_process:
        from callsort.model.booster import lean_lightgbm_import

        lean_lightgbm_import()
    return label_recordings(paths, **options)


def parse_formats(formats: str) -> list[str]:
    """``--format parquet,csv`` as a list, refused unless a subset of the known formats."""
    from callsort.dataset.writers import FORMATS

    fmt = [f.strip().lower() for f in formats.split(",") if f.strip()]
    if not fmt or set(fmt) - set(FORMATS):
        raise UsageError(f"--format takes a comma-separated subset of {', '.join(FORMATS)}")
    return fmt


def use_encoder_dir(encoder_dir: Path | None) -> None:
    """Hand ``--encoder-dir`` to this process's encoder and to the workers it starts."""
    if encoder_dir is None:
        return
    if not (encoder_dir / "model.bin").is_file():
        raise UsageError(f"--encoder-dir: {encoder_dir / 'model.bin'} not found")
    os.environ["CALLSORT_ENCODER_DIR"] = str(encoder_dir.resolve())
