"""The Python API: label recordings, read datasets and load models from a program.

Everything here is also reachable as ``callsort.label``, ``callsort.read_dataset``
and ``callsort.load_model`` (imported on first use, so ``import callsort`` stays
cheap)::

    import callsort

    segments, calls = callsort.label(["recordings/"], channel_names=("agent", "customer"))
    calls[calls.escalated]

    data = callsort.read_dataset("reports/")     # what `callsort label --out reports` wrote
    data.calls.groupby("dominant_label").size()
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from callsort.dataset.reading import Dataset, frames_from_tables, read_dataset
from callsort.model.folder import Model, load_model

__all__ = ["Dataset", "Model", "label", "load_model", "read_dataset"]


def label(
    paths: Path | str | Sequence[Path | str],
    *,
    model: Path | str | None = None,
    channels: Literal["split", "mix"] = "split",
    channel_names: tuple[str, str] | None = None,
    max_segment_s: float = 4.0,
    context: bool = True,
    speakers: Literal[1, 2, "auto"] = "auto",
    agent: Literal["first", "most", "none"] = "first",
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    jobs: int | None = None,
    archive_statistics: object | None = None,
) -> Dataset:
    """Label recordings and return their tables as DataFrames; nothing is written.

    ``paths`` are recordings and folders (walked recursively), as for
    ``callsort label``; the other arguments are that command's options.
    Returns a :class:`~callsort.dataset.reading.Dataset` that unpacks as
    ``segments, calls``. A recording that cannot be analysed is a ``calls``
    row with ``status == "error"``, never an exception. ``jobs=None`` uses
    every core; ``jobs=1`` stays in this process. A model that standardises
    features per archive labels with the statistics of a sample of ``paths``, or
    with ``archive_statistics`` (a JSON file such as a dataset's
    ``archive-statistics.json``, a dict, or
    :class:`~callsort.features.archive.ArchiveStatistics`) when given.
    """
    from callsort.run.batch import label as run_pipeline
    from callsort.run.options import analysis_settings

    if isinstance(paths, (str, Path)):
        paths = [paths]
    settings = analysis_settings(
        channels=channels,
        channel_names=channel_names,
        max_segment_s=max_segment_s,
        context=context,
        speakers=speakers,
        agent=agent,
    )
    run = run_pipeline(
        list(paths),
        out=None,
        model_dir=model,
        settings=settings,
        include=include,
        exclude=exclude,
        jobs=jobs,
        archive_statistics=archive_statistics,
    )
    return frames_from_tables(run.segments, run.calls)
