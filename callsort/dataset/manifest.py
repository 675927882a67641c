"""What a dataset knows of each recording, and which recordings a run analyses.

The manifest (``manifest.parquet``, written by :mod:`callsort.dataset.store`)
holds one row per recording: its size, modification time, optional content
hash, the fingerprint of the model and settings that made its rows, and its
status. :func:`plan` compares the recordings found now with it; a recording is
dated by its path (``--date-pattern``) or its file's modification time.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

from callsort.audio.discover import Recording
from callsort.errors import ModelError, UsageError
from callsort.settings import ENCODER_COMPUTE_TYPE, AnalysisSettings, identity

MANIFEST = "manifest.parquet"
FINGERPRINT_VERSION = 1
"""Part of every fingerprint: bump it when a code change alters results for the same
model and settings, so that datasets are reprocessed."""

_DATE_FORMATS = ("%Y-%m-%d", "%Y%m%d", "%Y/%m/%d", "%Y_%m_%d", "%Y.%m.%d")


# --- what changes results -----------------------------------------------------------------


@dataclass(frozen=True)
class Fingerprint:
    value: str  # 16 hex digits
    model_version: str
    classes: list[str]
    model_sha256: str


def fingerprint(model_dir: Path, settings: AnalysisSettings) -> Fingerprint:
    """The fingerprint of a model folder and analysis settings, with the card's facts.

    Covers what decides the rows: the booster's bytes (their SHA-256, checked
    against the card), everything on the card that can change a prediction or
    that the rows name (:meth:`~callsort.model.card.ModelCard.prediction_identity`:
    classes, feature settings, temperature, normalisation prior, archive
    standardisation, version, ...), every analysis setting,
    :data:`FINGERPRINT_VERSION` and, for a model with the encoder,
    :data:`~callsort.settings.ENCODER_COMPUTE_TYPE`. Not output options (formats, CSV, partitioning),
    nor the card's metrics, creation time, library versions or licence. Reads the
    model folder without loading LightGBM, so a run with nothing to do stays cheap;
    a folder that is not a model is refused here.
    """
    from callsort.model.card import ModelCard, file_sha256, model_files

    model_file, card_file = model_files(model_dir)
    card = ModelCard.read(card_file)
    booster_sha = file_sha256(model_file)
    if card.model_sha256 and card.model_sha256 != booster_sha:
        raise ModelError(
            f"{model_file} does not match its card (checksum differs): truncated or replaced?"
        )
    described = {
        "fingerprint_version": FINGERPRINT_VERSION,
        "booster_sha256": booster_sha,
        "card": card.prediction_identity(),
        "analysis": identity(settings),
    }
    if card.feature_settings.get("encoder"):  # how the encoder runs changes its model's rows
        described["encoder_compute_type"] = ENCODER_COMPUTE_TYPE
    text = json.dumps(described, sort_keys=True, default=str)
    value = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    return Fingerprint(value, str(card.version), list(card.classes), booster_sha)


# --- dates --------------------------------------------------------------------------------


def compile_date_pattern(pattern: str | None) -> re.Pattern | None:
    if not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise UsageError(f"--date-pattern is not a valid regular expression: {exc}") from None


def recording_date(name: str, mtime_ns: int, pattern: re.Pattern | None) -> tuple[str, bool]:
    """``(YYYY-MM-DD, from_path)``: the date in ``name`` by ``pattern``, else the mtime's (UTC).

    The pattern is searched in the path relative to the archive root. Named groups
    ``year``, ``month``, ``day`` are used when present; otherwise the first group
    (or the whole match) is read as ``2026-11-25``, ``20261125``, ``2026/11/25``,
    ``2026_11_25`` or ``2026.11.25``.
    """
    if pattern is not None:
        found = _date_in(name, pattern)
        if found is not None:
            return found.isoformat(), True
    moment = datetime.fromtimestamp(mtime_ns / 1e9, tz=timezone.utc)
    return moment.date().isoformat(), False


def _date_in(name: str, pattern: re.Pattern) -> date | None:
    match = pattern.search(name)
    if match is None:
        return None
    groups = match.groupdict()
    try:
        if {"year", "month", "day"} <= set(groups) and all(
            groups[k] for k in ("year", "month", "day")
        ):
            return date(int(groups["year"]), int(groups["month"]), int(groups["day"]))
    except ValueError:
        return None
    text = match.group(1) if match.re.groups else match.group(0)
    return parse_date(text or "")


def parse_date(text: str) -> date | None:
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text.strip(), fmt).date()
        except ValueError:
            continue
    return None


# --- planning -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pending:
    """A recording this run analyses, and what the manifest will record about it."""

    recording: Recording
    size_bytes: int
    mtime_ns: int
    content_sha256: str
    date: str
    reason: str  # new, changed, content, settings, forced, retry


@dataclass(frozen=True)
class Plan:
    pending: list[Pending]
    skipped: int  # unchanged since the last run
    deferred: int  # left for a later run by max_files
    outside: int  # before --since
    dates_from_mtime: int


def plan(
    recordings: Sequence[Recording],
    manifest: dict[str, tuple],
    *,
    fingerprint: str,
    force: bool = False,
    verify_hash: bool = False,
    retry_failed: bool = False,
    date_pattern: re.Pattern | None = None,
    since: date | None = None,
    max_files: int | None = None,
) -> Plan:
    """Which recordings to analyse, oldest date first, and how many are left alone.

    A recording is analysed when it is new, its size or modification time
    changed (with ``verify_hash``, also when its bytes' hash differs or was never
    taken), the fingerprint of model and settings changed, or ``force``. An
    unchanged recording that failed is tried again only with ``retry_failed``,
    unless callsort itself failed on it (status ``internal_error``): that one
    is tried again by every run.
    """
    pending: list[Pending] = []
    skipped = outside = from_mtime = 0
    since_text = since.isoformat() if since else None
    for recording in recordings:
        try:
            st = os.stat(recording.path)
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime = -1, 0  # vanished or unreadable: analysed, and reported as failed
        day, from_path = recording_date(recording.name, mtime, date_pattern)
        if since_text and day < since_text:
            outside += 1
            continue
        from_mtime += not from_path
        known = manifest.get(recording.name)
        sha = ""
        if force:
            reason = "forced"
        elif known is None:
            reason = "new"
        elif (known[0], known[1]) != (size, mtime):
            reason = "changed"
        elif known[3] != fingerprint:
            reason = "settings"
        else:
            reason = ""
            if verify_hash:
                sha = _try_sha(recording.path)
                if not known[2] or known[2] != sha:
                    reason = "content"
            if not reason and known[4] == INTERNAL_ERROR_STATUS:
                reason = "retry"  # callsort failed on it, not the file: always tried again
            if not reason and known[4] != "ok" and retry_failed:
                reason = "retry"
            if not reason:
                skipped += 1
                continue
        if verify_hash and not sha:
            sha = _try_sha(recording.path)
        pending.append(Pending(recording, size, mtime, sha, day, reason))
    pending.sort(key=lambda p: (p.date, p.recording.name))
    deferred = 0
    if max_files is not None and len(pending) > max_files:
        deferred = len(pending) - max_files
        pending = pending[:max_files]
    return Plan(pending, skipped, deferred, outside, from_mtime)


def _try_sha(path: Path) -> str:
    from callsort.model.card import file_sha256

    try:
        return file_sha256(Path(path))
    except OSError:
        return ""


INTERNAL_ERROR_STATUS = "internal_error"
"""Manifest status of a recording callsort itself failed on (a bug): retried by every run."""


def status_of(result) -> str:
    """The manifest status of a :class:`~callsort.dataset.tables.RecordingResult`:
    ``ok``, ``error`` (the file's fault) or ``internal_error`` (callsort's)."""
    if result.analysis is not None:
        return "ok"
    return INTERNAL_ERROR_STATUS if getattr(result, "internal", False) else "error"
