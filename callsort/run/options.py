"""What a labelling run is asked to do (:class:`LabelOptions`) and what it did (:class:`LabelRun`).

Cheap to import (no analysis library): the command line reads its defaults here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from callsort.errors import DatasetWriteError, UsageError
from callsort.settings import (
    MAX_SEGMENT_LIMIT_S,
    AnalysisSettings,
    ChannelSettings,
    ContextSettings,
    DiarisationSettings,
    SegmentationSettings,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from callsort.audio.discover import Recording
    from callsort.dataset.manifest import Pending
    from callsort.dataset.tables import RecordingResult

ProgressCallback = Callable[["RecordingResult"], None]

DEFAULT_FILE_TIMEOUT_S = 3600.0
"""Per-recording time limit by default: generous (labelling runs far faster than real time)."""

DEFAULT_BATCH = 200
"""Recordings per commit to a dataset (a commit also happens every ``batch_seconds``)."""

DEFAULT_BATCH_SECONDS = 60.0
"""Longest time between two commits to a dataset, in seconds."""


def default_jobs() -> int:
    """All the cores this process may use."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def analysis_settings(
    *,
    channels: str = "split",
    channel_names: Sequence[str] | None = None,
    max_segment_s: float = 4.0,
    context: bool = True,
    names_option: str = "channel_names",
    speakers: str | int | None = "auto",
    agent: str = "first",
) -> AnalysisSettings:
    """The analysis settings for the user's channel options, checked; ``context=False``
    labels each segment on its own (no :class:`~callsort.settings.ContextSettings`).

    ``channel_names`` name the two channels of a stereo file (default ``left``,
    ``right``) and the two speakers of a mono file (default ``speaker_a``,
    ``speaker_b``), the first name for the agent as ``agent`` finds it (``first``: the
    speaker heard first; ``most``: the one with more speech; ``none``: no agent, the
    speakers stay ``speaker_a``, heard first, and ``speaker_b``). ``speakers``: how many
    speakers a mono file has, 1, 2 or ``auto`` (told by the clusters' separation).

    ``names_option`` is how the user spelt the names option (``--channel-names``
    on the command line), for the message of the :class:`UsageError` raised
    when ``channel_names`` are not two different, non-empty names.
    """
    if channels not in ("split", "mix"):
        raise UsageError(f"channels is 'split' or 'mix', not {channels!r}")
    if not 0 < max_segment_s <= MAX_SEGMENT_LIMIT_S:
        raise UsageError(
            f"the longest segment is more than 0 and at most {MAX_SEGMENT_LIMIT_S:g} s (a "
            f"worker's memory grows with it), not {max_segment_s:g}"
        )
    if str(speakers) not in ("1", "2", "auto"):
        raise UsageError(f"speakers is 1, 2 or auto, not {speakers!r}")
    if agent not in ("first", "most", "none"):
        raise UsageError(f"agent is first, most or none, not {agent!r}")
    names = tuple(channel_names) if channel_names is not None else None
    if names is not None and (len(names) != 2 or not all(names) or names[0] == names[1]):
        raise UsageError(
            f"{names_option} takes two different names (e.g. agent and customer), not {names!r}"
        )
    diarisation = DiarisationSettings(
        speakers=None if str(speakers) == "auto" else int(speakers),
        agent=agent,  # type: ignore[arg-type]
        **({"names": names} if names is not None else {}),
    )
    return AnalysisSettings(
        channels=ChannelSettings(
            mode=channels,  # type: ignore[arg-type]
            **({"names": names} if names is not None else {}),
        ),
        diarisation=diarisation,
        segmentation=replace(SegmentationSettings(), max_segment_s=max_segment_s),
        context=ContextSettings() if context else None,
    )


@dataclass(frozen=True)
class LabelOptions:
    """Every option of :func:`callsort.run.batch.label` but the paths and the output folder.

    See that function for their meaning; ``jobs`` is resolved (at least 1).
    """

    formats: tuple[str, ...] = ("parquet", "csv")
    model_dir: Path | str | None = None
    settings: AnalysisSettings = AnalysisSettings()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    jobs: int = 1
    on_start: Callable[[list[Recording]], None] | None = None
    on_result: ProgressCallback | None = None
    file_timeout_s: float | None = DEFAULT_FILE_TIMEOUT_S
    absolute_paths: bool = False
    engine: str = "local"
    scheduler: str | None = None
    force: bool = False
    verify_hash: bool = False
    retry_failed: bool = False
    date_pattern: str | None = None
    since: date | str | None = None
    max_files: int | None = None
    dry_run: bool = False
    segments_csv: bool = False
    wait: bool = False
    on_wait: Callable[[dict], None] | None = None
    log_file: Path | str | None = None
    batch_size: int = DEFAULT_BATCH
    batch_seconds: float = DEFAULT_BATCH_SECONDS
    keep_results: bool = True
    # statistics imposed on a model that standardises per archive: ArchiveStatistics, their
    # dict, or a JSON file of them (callsort.run.archive.checked_statistics)
    archive_statistics: object | None = None


@dataclass(frozen=True)
class LabelRun:
    """The outcome of one batch: the tables, where they went, and the results.

    Without an output folder, ``segments`` and ``calls`` hold every recording's
    rows. With one (a dataset), they hold the rows of the recordings this run
    analysed, not those it skipped as unchanged (read the dataset for those);
    ``segments`` and ``results`` are empty when the run was asked not to keep
    them (``keep_results=False``, as the command does).
    """

    segments: pa.Table
    calls: pa.Table
    results: list[RecordingResult]
    written: list[Path]
    model_version: str
    wall_s: float
    n_ok: int = 0
    failures: tuple[tuple[str, str], ...] = ()  # (recording, reason)
    audio_s: float = 0.0  # of the recordings analysed ok
    skipped: int = 0  # unchanged since the last run
    deferred: int = 0  # left for a later run by max_files
    outside: int = 0  # dated before `since`
    planned: tuple[Pending, ...] = ()  # what this run analysed (or, dry run, would)
    dataset: Path | None = None
    run_id: str = ""
    summary_file: Path | None = None
    dry_run: bool = False
    notes: tuple[str, ...] = ()  # recovery and lock takeover, for the user
    summary_error: str = ""  # why runs/<run_id>.json could not be written, if it could not
    # for a model that standardises per archive: where its statistics came from
    # (callsort.run.archive.ArchiveChoice.summary), else None
    archive: dict | None = None

    @property
    def n_failed(self) -> int:
        return len(self.failures)

    @property
    def exit_code(self) -> int:
        if self.summary_error:  # the tables are committed, but cron must hear of it
            return DatasetWriteError.exit_code
        return 1 if self.failures else 0
