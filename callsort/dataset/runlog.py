"""What a run leaves for cron: JSON-lines events (``--log-file``) and ``runs/<run>.json``."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def new_run_id() -> str:
    """UTC start time to the microsecond: sorts in time order, unique per dataset (locked)."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


class RunLog:
    """Append one JSON object per event to a file; does nothing without a file."""

    def __init__(self, path: Path | str | None, run_id: str) -> None:
        self.path = Path(path) if path else None
        self.run_id = run_id
        self._file = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def event(self, name: str, **fields: Any) -> None:
        if self._file is None:
            return
        record = {
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "event": name,
            "run_id": self.run_id,
            **fields,
        }
        self._file.write(json.dumps(record, default=str) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def write_summary(folder: Path, run_id: str, summary: dict[str, Any]) -> Path:
    """``folder/runs/<run_id>.json``, written atomically."""
    from callsort.dataset.writers import atomic_path

    target = Path(folder) / "runs" / f"{run_id}.json"
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    return target


def record_summary(folder: Path, run_id: str, summary: dict[str, Any]) -> tuple[Path | None, str]:
    """:func:`write_summary`, or why it could not be written: ``(file, "")`` or ``(None, why)``.

    A summary that cannot be written is a dataset that cannot be written: ``why``
    joins ``summary["error"]``, and a run that otherwise succeeded (exit code 0
    or 1) gets that exit code in ``summary``, as the caller should.
    """
    from callsort.errors import DatasetWriteError

    try:
        return write_summary(folder, run_id, summary), ""
    except OSError as exc:
        why = (
            f"cannot write the run summary {Path(folder) / 'runs' / (run_id + '.json')}: "
            f"{exc.strerror or exc}"
        )
        summary["error"] = "; ".join(e for e in (summary.get("error", ""), why) if e)
        if summary.get("exit_code") in (0, 1):
            summary["exit_code"] = DatasetWriteError.exit_code
        return None, why
