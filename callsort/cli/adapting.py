"""``callsort adapt``: its options; the work is :func:`callsort.training.adapt.adapt`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from callsort.cli.labelling import ChannelMode, use_encoder_dir
from callsort.cli.training import resolve_jobs


def adapt(
    labels: Annotated[
        Path,
        typer.Argument(
            help="Labels file: recording,channel,start_s,end_s,label (or recording,channel,"
            "label for whole channels), recordings named relative to --recordings."
        ),
    ],
    recordings: Annotated[
        Path, typer.Option("--recordings", "-r", help="Folder holding the labelled recordings.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Adapted model folder to write.")],
    model: Annotated[
        str | None,
        typer.Option(help="The model to adapt: 'default', 'fast' or a model folder."),
    ] = None,
    channels: Annotated[
        ChannelMode, typer.Option(help="As for callsort label: split or mix.")
    ] = ChannelMode.split,
    channel_names: Annotated[
        str, typer.Option(help="Names of the two channels of a stereo file, left first.")
    ] = "left,right",
    max_segment: Annotated[
        float, typer.Option(help="Longest segment in seconds, as for callsort label.", min=0.5)
    ] = 4.0,
    lam: Annotated[
        float | None,
        typer.Option("--lambda", help="Pull toward the model (default 0.003, measured)."),
    ] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Processes; 0: all cores.")] = 0,
    encoder_dir: Annotated[
        Path | None,
        typer.Option(envvar="CALLSORT_ENCODER_DIR", help="Your own copy of Whisper base."),
    ] = None,
) -> None:
    """Learn your archive's labels on top of a model; write a new model folder.

    The labelled recordings go through callsort label's own segmentation and
    features; label with the result using --model.

    Example: [bold]callsort adapt labels.csv --recordings ./recordings --out ./our-model[/bold]
    then [bold]callsort label ./recordings --out ./reports --model ./our-model[/bold]
    """
    from callsort.run.options import analysis_settings
    from callsort.run.progress import results
    from callsort.training.adapt import DEFAULT_LAMBDA, summary_lines
    from callsort.training.adapt import adapt as adapt_model

    settings = analysis_settings(
        channels=channels.value,
        channel_names=[n.strip() for n in channel_names.split(",")],
        max_segment_s=max_segment,
        names_option="--channel-names",
        speakers=1,  # a mono file's labels name its one channel, mono
    )
    use_encoder_dir(encoder_dir)
    lam = DEFAULT_LAMBDA if lam is None else lam
    command = (
        f"callsort adapt {labels.name} --recordings RECORDINGS --out MODEL_DIR"
        + (
            f" --model {model}"
            if model in ("default", "fast")
            else " --model BASE_DIR"
            if model
            else ""
        )
        + (f" --lambda {lam}" if lam != DEFAULT_LAMBDA else "")
    )
    result = adapt_model(
        labels,
        recordings,
        out=out,
        model=model,
        settings=settings,
        jobs=resolve_jobs(jobs),
        lam=lam,
        command=command,
    )
    for line in summary_lines(result):
        results.print(line)
