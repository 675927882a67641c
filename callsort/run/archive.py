"""The archive statistics a run labels with, for a model that standardises per archive.

A model trained with archive standardisation (:mod:`callsort.features.archive`)
expects every segment's raw features standardised over the archive it comes
from. Before labelling, a run gets the statistics of its archive (shrunk toward
the model's training population): imposed by the caller, read from a dataset's
``archive-statistics.json`` made for the same model and settings, or computed
from the raw features of a sample of the archive's recordings
(:func:`sample_recordings`), in the run's own workers. A dataset keeps what was
computed, so that every later run labels its new recordings alike; a dataset
whose rows were labelled with statistics its file no longer holds (deleted,
corrupt) is refused rather than labelled with others.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from callsort.audio.discover import Recording
from callsort.errors import DatasetWriteError, UsageError
from callsort.features.archive import ArchiveStatistics, archive_statistics, pooled, shrunk

if TYPE_CHECKING:
    import pyarrow as pa

    from callsort.dataset.manifest import Fingerprint
    from callsort.model.folder import Model
    from callsort.run.engines import EngineSession
    from callsort.settings import AnalysisSettings

ARCHIVE_FILE = "archive-statistics.json"
"""Where a dataset keeps the archive statistics its rows were labelled with."""
ARCHIVE_FORMAT = 1


KEEP_BYTES = 256 << 20
"""Raw features of sampled recordings kept for their labelling, at most (bytes); the
recordings beyond are decoded again by the labelling pass."""


@dataclass(frozen=True)
class ArchiveChoice:
    """The statistics a run labels with and where they came from.

    ``source`` is ``"computed"`` (from ``recordings`` sampled recordings with
    ``segments`` segments; ``failed`` more could not be analysed), ``"reused"``
    (a dataset's file), ``"imposed"`` (the caller's) or ``"population"`` (nothing
    to compute them from: the model's training population, no shift).
    """

    statistics: ArchiveStatistics | None
    source: str
    recordings: int = 0
    segments: int = 0
    failed: int = 0
    # the sampled recordings' outcomes (SampledFeatures, or a failure RecordingResult) by
    # recording id: labelled from these (:func:`sampled_results`), not analysed again
    sampled: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    notes: tuple[str, ...] = ()  # for the user and the run summary

    def summary(self) -> dict[str, Any]:
        """What a run summary says of them."""
        out: dict[str, Any] = {"source": self.source}
        if self.source == "computed" or self.source == "population":
            out |= {
                "sampled_recordings": self.recordings,
                "sampled_segments": self.segments,
                "failed_recordings": self.failed,
            }
        return out


def population_note(choice: ArchiveChoice) -> str:
    """What a run tells the user when it had no archive statistics to label with."""
    return (
        f"archive statistics: none of the {choice.recordings + choice.failed} sampled "
        f"recordings gave a segment ({choice.failed} failed); labelled against the model's "
        "training population (no shift)"
    )


def sample_recordings(recordings: Sequence[Recording], *, n: int) -> list[Recording]:
    """Up to ``n`` of ``recordings``, evenly spread over them sorted by name."""
    ordered = sorted(recordings, key=lambda r: r.name)
    if n <= 0 or not ordered:
        return []
    if len(ordered) <= n:
        return ordered
    picks = np.unique(np.round(np.linspace(0, len(ordered) - 1, n)).astype(int))
    return [ordered[i] for i in picks]


def compute_statistics(
    session: EngineSession,
    recordings: Sequence[Recording],
    *,
    model: Model,
    n: int,
    keep: Collection[str] | None = None,
) -> ArchiveChoice:
    """The statistics of the raw features of every analysis channel of up to ``n`` of
    ``recordings`` (:func:`sample_recordings`), computed by ``session``'s workers and
    shrunk toward ``model``'s population. Recordings that fail are skipped; when none
    gives a segment, the population itself (source ``"population"``). The outcomes of
    sampled recordings whose id is in ``keep`` (default: all) are kept for labelling."""
    from callsort.run.worker import Task

    population = model.archive_population
    assert population is not None, "the model does not standardise per archive"
    sample = sample_recordings(recordings, n=n)
    by_id: dict[str, ArchiveStatistics] = {}  # pooled in sample order: the same figures
    counts = {"ok": 0, "failed": 0, "segments": 0}  # whatever order the workers finish in
    sampled: dict[str, Any] = {}
    kept_bytes = 0

    def take(result) -> None:
        nonlocal kept_bytes
        wanted = keep is None or result.recording_id in keep
        if not result.ok:
            counts["failed"] += 1
            if wanted:
                sampled[result.recording_id] = result  # its error row: not tried twice
            return
        counts["ok"] += 1
        size = sum(x.nbytes for x in result.features)
        if wanted and kept_bytes + size <= KEEP_BYTES:
            sampled[result.recording_id] = result
            kept_bytes += size
        X = [x for x in result.features if len(x)]
        if X:
            rows = np.concatenate(X)
            if np.isfinite(rows).all(axis=1).any():
                stats = archive_statistics(rows)
                by_id[result.recording_id] = stats
                counts["segments"] += int(stats.n_segments)

    session.each(sample, on_result=take, task=Task(kind="features"))
    parts = [by_id[r.recording_id] for r in sample if r.recording_id in by_id]
    if not parts:
        return ArchiveChoice(
            statistics=population,
            source="population",
            recordings=counts["ok"],
            failed=counts["failed"],
            sampled=sampled,
        )
    statistics = shrunk(pooled(parts), population=population, weight=model.archive_prior_weight)
    return ArchiveChoice(
        statistics=statistics,
        source="computed",
        recordings=counts["ok"],
        segments=counts["segments"],
        failed=counts["failed"],
        sampled=sampled,
    )


def sampled_results(
    choice: ArchiveChoice | None, *, model: Model, settings: AnalysisSettings
) -> list:
    """The result rows of the recordings the sampling pass kept, labelled here with the
    statistics chosen (:class:`~callsort.dataset.tables.RecordingResult`): those that
    failed keep their error, the others are labelled from their kept features exactly as
    a worker labels them (with ``settings``, the run's)."""
    import time
    from datetime import datetime, timezone

    from callsort.dataset.tables import RecordingResult
    from callsort.run.analysis import RecordingAnalysis, labelled_channels

    if choice is None:
        return []
    out = []
    for result in choice.sampled.values():
        if not result.ok:
            out.append(result)
            continue
        started = time.perf_counter()
        raw = result.raw
        channels = labelled_channels(raw, model=model, settings=settings, archive=choice.statistics)
        out.append(
            RecordingResult(
                recording=result.recording,
                recording_id=result.recording_id,
                analysis=RecordingAnalysis(
                    info=raw.info, duration_s=raw.duration_s, channels=channels
                ),
                error="",
                processing_s=result.processing_s + time.perf_counter() - started,
                processed_at=datetime.now(timezone.utc),
            )
        )
    return out


def checked_statistics(
    given: ArchiveStatistics | dict | Path | str, *, model: Model, what: str
) -> ArchiveStatistics:
    """``given`` (statistics, their dict, or a JSON file of them such as a dataset's
    ``archive-statistics.json``) as :class:`ArchiveStatistics` that fit ``model``;
    :class:`~callsort.errors.UsageError` naming ``what`` otherwise."""
    population = model.archive_population
    if population is None:
        raise UsageError(
            f"{what}: the model in {model.path} does not standardise features per archive; "
            "it takes no archive statistics"
        )
    if isinstance(given, (str, Path)):
        try:
            given = json.loads(Path(given).read_text(encoding="utf-8"))
        except OSError as exc:
            raise UsageError(f"{what}: cannot read {given}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise UsageError(f"{what}: {given} is not JSON: {exc}") from None
    if isinstance(given, dict):
        try:
            given = ArchiveStatistics.from_dict(given)
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(
                f"{what}: not archive statistics (n_segments, mean and var of every raw "
                f"feature): {type(exc).__name__}: {exc}"
            ) from None
    if not isinstance(given, ArchiveStatistics):
        raise UsageError(f"{what}: not archive statistics: {type(given).__name__}")
    n = len(population.mean)
    if len(given.mean) != n:
        raise UsageError(
            f"{what}: statistics of {len(given.mean)} features; the model in {model.path} "
            f"computes {n} raw features (statistics made with another model or callsort?)"
        )
    mean, var = np.asarray(given.mean, float), np.asarray(given.var, float)
    if not (np.isfinite(mean).all() and np.isfinite(var).all() and (var >= 0).all()):
        raise UsageError(f"{what}: the statistics hold non-finite values or negative variances")
    if not (np.isfinite(given.n_segments) and given.n_segments > 0):
        raise UsageError(f"{what}: n_segments must be a positive number")
    return given


def file_identity(fp: Fingerprint) -> dict[str, Any]:
    """What a dataset's statistics file says it was made for: the model (its version and
    booster checksum) and the run's fingerprint (model, feature and analysis settings)."""
    return {
        "fingerprint": fp.value,
        "model_version": fp.model_version,
        "booster_sha256": fp.model_sha256,
    }


MISSING = "is missing"
POPULATION = "holds the training population (no sampled recording could be analysed)"


@dataclass(frozen=True)
class StoredStatistics:
    """What a dataset's statistics file gives a run: ``statistics`` made for its model
    and settings, or None and ``problem``, what the file is instead (:data:`MISSING`,
    :data:`POPULATION`, or what is wrong with it), said after its path."""

    statistics: ArchiveStatistics | None
    problem: str = ""


def read_dataset_statistics(root: Path, fp: Fingerprint, *, model: Model) -> StoredStatistics:
    """The statistics file of the dataset at ``root``, checked against the model and
    settings (``fp``) and ``model``'s features. A file that cannot be read (other than
    missing) is the dataset's :class:`~callsort.errors.DatasetWriteError`."""
    path = root / ARCHIVE_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return StoredStatistics(None, MISSING)
    except OSError as exc:
        raise DatasetWriteError(
            f"cannot read the dataset's {path}: {exc.strerror or exc}"
        ) from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        return StoredStatistics(None, f"is not JSON (truncated?): {exc}")
    if not isinstance(doc, dict) or doc.get("format") != ARCHIVE_FORMAT:
        return StoredStatistics(None, f"is not archive statistics of format {ARCHIVE_FORMAT}")
    if any(doc.get(k) != v for k, v in file_identity(fp).items()):
        return StoredStatistics(None, "was made for another model or other settings")
    if doc.get("source") == "population":
        return StoredStatistics(None, POPULATION)
    try:
        return StoredStatistics(checked_statistics(doc, model=model, what="file"))
    except UsageError as exc:
        return StoredStatistics(None, f"does not fit the model ({str(exc).removeprefix('file: ')})")


def write_dataset_statistics(
    root: Path, fp: Fingerprint, choice: ArchiveChoice, *, model: Model
) -> Path:
    """Write ``choice`` as the dataset's ``archive-statistics.json``, atomically; an
    ``OSError`` is the dataset's (:class:`~callsort.errors.DatasetWriteError`)."""
    from callsort.dataset.writers import atomic_path

    assert choice.statistics is not None
    doc = {
        "format": ARCHIVE_FORMAT,
        **file_identity(fp),
        "source": choice.source,
        "prior_weight": model.archive_prior_weight,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **choice.summary(),
        **choice.statistics.to_dict(),
    }
    path = root / ARCHIVE_FILE
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    except OSError as exc:
        raise DatasetWriteError(
            f"cannot write to the dataset {root} ({ARCHIVE_FILE}): {exc.strerror or exc}; "
            "what was committed before stays as it was"
        ) from None
    return path


def same_statistics(a: ArchiveStatistics, b: ArchiveStatistics) -> bool:
    return bool(
        len(a.mean) == len(b.mean)
        and np.allclose(a.mean, b.mean, rtol=1e-9, atol=0)
        and np.allclose(a.var, b.var, rtol=1e-9, atol=0)
    )


def labelled_under(manifest: pa.Table, fp: Fingerprint) -> int:
    """Recordings of a dataset's manifest labelled (status ok) under the fingerprint ``fp``."""
    import pyarrow.compute as pc

    same = pc.and_(pc.equal(manifest["fingerprint"], fp.value), pc.equal(manifest["status"], "ok"))
    return int(pc.sum(same).as_py() or 0)


def sample_size(
    root: Path,
    fp: Fingerprint,
    model: Model,
    imposed: ArchiveChoice | None,
    recordings: Sequence[Recording],
    n: int,
) -> int:
    """How many of ``recordings`` :func:`dataset_choice` will sample for ``model`` into the
    dataset at ``root`` (to size the pool): none for a model that takes no statistics,
    with ``imposed`` ones, or when the dataset's file is usable."""
    if model.archive_population is None or imposed is not None:
        return 0
    if read_dataset_statistics(root, fp, model=model).statistics is not None:
        return 0
    return min(len(recordings), max(n, 0))


def dataset_choice(
    session: EngineSession,
    recordings: Sequence[Recording],
    *,
    root: Path,
    fp: Fingerprint,
    model: Model,
    imposed: ArchiveChoice | None,
    n: int,
    labelled: int = 0,
    force: bool = False,
    keep: Collection[str] | None = None,
) -> ArchiveChoice:
    """The statistics a run labels the dataset at ``root`` with: ``imposed`` (refused if
    the dataset has others of its own), else its ``archive-statistics.json`` made for the
    same model and settings (``fp``), else those computed from up to ``n`` of
    ``recordings`` (every recording of the archive, not only those this run labels;
    the outcomes of those in ``keep`` are kept for labelling). The file is written
    when it holds none (for the population fallback too, which the next run samples
    again).

    When ``labelled`` recordings of the dataset were labelled under ``fp`` but the file
    no longer holds their statistics (missing, corrupt, or another model's), the run
    is refused (:class:`~callsort.errors.UsageError`): their rows would disagree with
    the new ones. ``force`` computes them again, and ``imposed`` replaces them.
    """
    path = root / ARCHIVE_FILE
    stored = read_dataset_statistics(root, fp, model=model)
    lost = labelled > 0 and stored.statistics is None and stored.problem != POPULATION
    notes: list[str] = []
    if imposed is not None:
        choice = imposed
        if stored.statistics is not None and not same_statistics(
            stored.statistics, imposed.statistics
        ):
            raise UsageError(
                f"the dataset in {root} was labelled with archive statistics of its own "
                f"({ARCHIVE_FILE}); impose others on a new output folder"
            )
        if lost:
            notes.append(f"archive statistics: {path} {stored.problem}; replaced by those imposed")
    elif stored.statistics is not None:
        return ArchiveChoice(stored.statistics, source="reused")
    elif lost and not force:
        raise UsageError(
            f"{path} {stored.problem}, but {labelled} recordings of this dataset were "
            "labelled with the archive statistics it held: new rows labelled with others "
            "would not compare with theirs. Restore the file (from a backup), or pass "
            "--archive-statistics FILE to label with statistics of your choice, or --force "
            "to compute them again and label every recording again"
        )
    else:
        choice = compute_statistics(session, recordings, model=model, n=n, keep=keep)
        if lost:
            notes.append(f"archive statistics computed again (--force): {path} {stored.problem}")
        elif stored.problem not in (MISSING, POPULATION):
            notes.append(f"archive statistics: {path} {stored.problem}; computed again")
        if choice.source == "population":
            notes.append(population_note(choice))
    if stored.statistics is None:
        write_dataset_statistics(root, fp, choice, model=model)
    return replace(choice, notes=tuple(notes))
