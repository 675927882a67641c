"""How a run names recordings: by absolute path when asked, never by full path in an error."""

from __future__ import annotations

import os
from pathlib import Path

from callsort.audio.discover import Recording, table_name


def absolute_named(recording: Recording) -> Recording:
    """``recording`` named by its absolute path (``--absolute-paths``)."""
    return Recording(path=recording.path, name=Path(os.path.abspath(recording.path)).as_posix())


def without_paths(reason: str, recording: Recording) -> str:
    """An error reason that names the recording as the tables do, never by its full path."""
    full = [os.path.abspath(recording.path), str(recording.path)]
    for path in sorted(set(full), key=len, reverse=True):
        if path and path != ".":
            reason = reason.replace(path, recording.name)
    return table_name(reason)
